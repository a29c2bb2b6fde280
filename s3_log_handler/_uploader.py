"""The one module that talks to boto3: ``put_object``, error classification, backoff.

botocore does retries (standard mode), connection pooling, signing and checksums; this
module only decides what a failure *means* for a record once botocore has given up.
"""

from __future__ import annotations

import enum
import random
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    InvalidRegionError,
    MissingDependencyException,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    PartialCredentialsError,
    ProfileNotFound,
)

from ._diagnostics import scrub
from ._oplines import export_enabled
from ._policies import ClientPolicy, PutPolicy


class FailureKind(enum.Enum):
    """What a failed upload means for the records in it."""

    #: Network trouble, 5xx, throttling: retry soon.
    TRANSIENT = "transient"
    #: Credentials, permissions, bucket or region wrong: keep the data, retry slowly.
    CONFIG = "config"
    #: S3 rejected this request itself (e.g. too large): retrying cannot help; dead-letter it.
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class UploadFailure:
    """Why an upload failed, with an actionable hint. Never contains credentials."""

    kind: FailureKind
    code: str
    message: str
    hint: str


_CLIENT_SIDE_CONFIG_ERRORS = (
    PartialCredentialsError, NoRegionError, InvalidRegionError, ProfileNotFound,
    ParamValidationError, MissingDependencyException,
)
_TRANSIENT_CODES = frozenset({
    "SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "RequestTimeTooSkewed",
    "InternalError", "ServiceUnavailable", "RequestLimitExceeded", "OperationAborted",
    "BadDigest", "InvalidDigest",  # the body was damaged on the way: send it again
})
#: Only what is wrong with this one object; settings errors (ACLs, SSE, storage class) hit
#: every record alike and are configuration errors: keep the data, report, retry slowly.
_REJECTED_CODES = frozenset({"EntityTooLarge", "KeyTooLongError", "MetadataTooLarge"})
_CREDENTIAL_CODES = frozenset({
    "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken",
    "TokenRefreshRequired", "NoCredentials",
})
_REGION_CODES = frozenset({
    "PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException",
    "301",
})


def classify(exc: BaseException, put: PutPolicy) -> UploadFailure:
    """Turn a boto3 exception into an :class:`UploadFailure` with a hint for the operator."""
    if isinstance(exc, NoCredentialsError):
        return _failure(FailureKind.CONFIG, "NoCredentials", str(exc), put)
    if isinstance(exc, _CLIENT_SIDE_CONFIG_ERRORS):
        # Deterministic: retrying soon cannot help, but fixing the setup will.
        return _failure(FailureKind.CONFIG, type(exc).__name__, str(exc), put)
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or "Unknown")
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        message = str(error.get("Message") or exc)
        if code in _TRANSIENT_CODES or status >= 500 or status == 429:
            return _failure(FailureKind.TRANSIENT, code, message, put)
        if code in _REJECTED_CODES:
            return _failure(FailureKind.REJECTED, code, message, put)
        return _failure(FailureKind.CONFIG, code, message, put)
    if isinstance(exc, BotoCoreError):
        return _failure(FailureKind.TRANSIENT, type(exc).__name__, str(exc), put)
    return _failure(FailureKind.TRANSIENT, type(exc).__name__, repr(exc), put)


def _failure(kind: FailureKind, code: str, message: str, put: PutPolicy) -> UploadFailure:
    return UploadFailure(kind, code, scrub(message), hint_for(code, kind, put))


def hint_for(code: str, kind: FailureKind, put: PutPolicy) -> str:
    """An actionable sentence for an operator who sees error ``code``."""
    resource = f"arn:aws:s3:::{put.bucket}/{put.prefix}/*"
    if code in {"AccessDenied", "AllAccessDisabled", "Forbidden", "403"}:
        kms = " and kms:GenerateDataKey on the KMS key" if put.sse == "aws:kms" else ""
        return f"allow s3:PutObject on {resource}{kms} for the role or user boto3 resolves"
    if code in {"NoSuchBucket", "404"}:
        return f"bucket {put.bucket!r} does not exist: create it or fix ANALYTICS_S3_BUCKET"
    if code in _CREDENTIAL_CODES:
        return ("check the credentials boto3 resolves (environment, profile, instance role); "
                "refresh expired session tokens")
    if code in _REGION_CODES:
        return "the bucket is in another region: set region_name (or AWS_REGION) to its region"
    if kind is FailureKind.TRANSIENT:
        return f"S3 or the network is unavailable; records are kept and retried ({code})"
    if kind is FailureKind.REJECTED:
        return f"S3 rejected the object itself ({code}); it is dead-lettered, not retried"
    return f"S3 refused the upload ({code}); records are kept and retried slowly"


class Backoff:
    """Capped exponential backoff with equal jitter, as data: ``delay()``, ``reset()``."""

    def __init__(self, base: float, cap: float) -> None:
        self._base = base
        self._cap = cap
        self._failures = 0

    def delay(self) -> float:
        """The next pause in seconds: uniform in [b/2, b] with b = min(cap, base * 2**failures)."""
        bound = min(self._cap, self._base * (2 ** min(self._failures, 30)))
        self._failures += 1
        return random.uniform(bound / 2, bound)

    def reset(self) -> None:
        """Forget past failures after a success."""
        self._failures = 0


class S3Uploader:
    """Puts objects into the configured bucket with one lazily created, shared boto3 client.

    The client is created on first use (on a worker thread, never in ``__init__``), so
    building a handler needs neither network nor credentials.
    """

    def __init__(self, put: PutPolicy, client: ClientPolicy) -> None:
        self._put = put
        self._client_policy = client
        self._lock = threading.Lock()
        self._client: Any = None
        self._static_args = put.static_args()

    def reset_after_fork(self) -> None:
        """Forget the parent's client: its connection pool must not be shared with a child."""
        self._lock = threading.Lock()
        self._client = None

    def client(self) -> Any:
        """The boto3 S3 client, created once per process (see :func:`make_client`); its
        creation logs the INFO line ``S3 export enabled: ...`` (:mod:`_oplines`)."""
        with self._lock:
            if self._client is not None:
                return self._client
            self._client = client = make_client(self._client_policy)
        put = self._put  # logged outside the lock: other upload threads wait for the client
        export_enabled(put.bucket, put.prefix, put.mode, client, self._client_policy.region_name)
        return client

    def put(self, key: str, body: bytes, *, content_encoding: str | None, record_id: str) -> (
        UploadFailure | None
    ):
        """Upload one object; ``None`` on success, else the classified failure. Never raises."""
        args: dict[str, Any] = dict(self._static_args)
        if content_encoding:
            args["ContentEncoding"] = content_encoding
        metadata = {"uploaded_at": datetime.now(UTC).isoformat(timespec="seconds")}
        if record_id:
            metadata["session_id"] = record_id
        try:
            self.client().put_object(Key=key, Body=body, Metadata=metadata, **args)
        except Exception as exc:
            return classify(exc, self._put)
        return None


def make_client(config: ClientPolicy) -> Any:
    """Create the S3 client from the user's AWS objects, or from defaults.

    Which wins where:

    * **Session**: ``boto3_session`` when given (its credentials, profile and region are
      used as they are; ``profile_name`` is then ignored), else
      ``boto3.session.Session(profile_name=profile_name)``.
    * **region_name / endpoint_url**: the handler's settings when set (this includes
      ``$AWS_REGION``, which settings read when ``$AWS_DEFAULT_REGION`` is unset), else
      whatever the session and the environment resolve.
    * **botocore Config**: ours is the base (retries ``mode="standard"``,
      ``connect_timeout=5``, ``read_timeout=30``, ``max_pool_connections=max(10, workers)``);
      ``botocore_config`` is merged over it with ``ours.merge(theirs)``, so every option the
      user set wins (timeouts, proxies, pool size, signature version, ...), and the options
      they did not set keep our values. ``retries`` is merged key by key: a user's
      ``retries={"total_max_attempts": 2}`` keeps our ``mode="standard"`` unless they set
      ``mode`` too.

    The client is created under :class:`S3Uploader`'s lock, so a shared session is only
    touched by one of our threads at a time.
    """
    session = config.boto3_session
    if session is None:
        session = boto3.session.Session(profile_name=config.profile_name)
    kwargs: dict[str, Any] = {"config": client_config(config)}
    if config.region_name:
        kwargs["region_name"] = config.region_name
    if config.endpoint_url:
        kwargs["endpoint_url"] = config.endpoint_url
    return session.client("s3", **kwargs)


def client_config(config: ClientPolicy) -> Config:
    """Our botocore Config with the user's ``botocore_config`` merged over it (theirs wins)."""
    ours = Config(
        retries={"mode": "standard"},
        connect_timeout=5,
        read_timeout=30,
        max_pool_connections=max(10, config.workers),
    )
    theirs: Config | None = config.botocore_config
    if theirs is None:
        return ours
    merged = ours.merge(theirs)
    their_retries = getattr(theirs, "retries", None)
    if their_retries:  # merge() replaces the whole dict: keep our mode unless they set one
        retries: Any = {"mode": "standard", **their_retries}
        merged = merged.merge(Config(retries=retries))
    return merged
