"""The one source of truth for an S3Handler's settings: defaults, environment, validation."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Mode = Literal["object", "batch"]
WhenFull = Literal["spool", "drop", "block"]
FsyncPolicy = Literal["never", "interval", "always"]

OBJECT_KEY_TEMPLATE = "{prefix}/year={year}/month={month}/day={day}/{id}{ext}"
BATCH_KEY_TEMPLATE = "{prefix}/year={year}/month={month}/day={day}/{host}-{pid}-{seq}-{uuid}{ext}"

MIB = 1024 * 1024
#: A single PUT may carry 5 GiB; we cap one record far lower so one bad payload cannot hog memory.
DEFAULT_MAX_RECORD_BYTES = 5 * MIB
DEFAULT_MAX_QUEUE_BYTES = 64 * MIB

_MODES = ("object", "batch")
_WHEN_FULL = ("spool", "drop", "block")
_FSYNC = ("never", "interval", "always")
_COMPRESSIONS = ("gzip", "zstd", "none")
_SSE = ("AES256", "aws:kms")
#: S3's ChecksumAlgorithm values; CRC32C and CRC64NVME also need botocore[crt].
_CHECKSUMS = ("CRC32", "CRC32C", "SHA1", "SHA256", "CRC64NVME")


@dataclass(frozen=True, slots=True)
class HandlerConfig:
    """Validated settings of one S3Handler.

    Built once by :meth:`from_kwargs`; every other module reads settings from here.
    ``bucket`` is ``None`` when the handler is disabled (no bucket configured).
    """

    bucket: str | None
    prefix: str = "sessions"
    attribute: str = "analytics_data"
    id_field: str = "session_id"
    mode: Mode = "object"
    key_template: str = OBJECT_KEY_TEMPLATE
    region_name: str | None = None
    endpoint_url: str | None = None
    profile_name: str | None = None
    workers: int = 4
    close_timeout: float = 5.0
    compression: str = "gzip"
    compress_level: int | None = None
    max_batch_records: int = 10_000
    max_batch_bytes: int = 8 * MIB
    max_batch_age: float = 60.0
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES
    max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES
    when_full: WhenFull = "drop"
    block_timeout: float = 1.0
    spool_dir: str | None = None
    spool_fsync: FsyncPolicy = "never"
    retry_base: float = 0.5
    retry_cap: float = 10.0
    config_error_retry: float = 60.0
    sse: str | None = None
    sse_kms_key_id: str | None = None
    expected_bucket_owner: str | None = None
    storage_class: str | None = None
    checksum_algorithm: str = "CRC32"
    acl: str | None = None
    redact_fields: tuple[str, ...] = ()
    hash_fields: tuple[str, ...] = ()
    #: A ``boto3.session.Session`` to create the S3 client from (default: a new one).
    boto3_session: Any = None
    #: A ``botocore.config.Config`` merged over the handler's own (it wins where both set).
    botocore_config: Any = None

    @property
    def enabled(self) -> bool:
        """True when a bucket is configured and records will be shipped."""
        return self.bucket is not None

    @classmethod
    def from_kwargs(
        cls, env: Mapping[str, str] | None = None, **kwargs: object
    ) -> HandlerConfig:
        """Build settings from constructor keywords and the environment.

        ``bucket`` falls back to ``ANALYTICS_S3_BUCKET``; ``region_name`` falls back to
        ``AWS_REGION`` (botocore itself only reads ``AWS_DEFAULT_REGION``). Raises
        ``ValueError`` naming the offending argument for any invalid value, and
        ``TypeError`` for unknown keywords.
        """
        environ = os.environ if env is None else env
        values = {k: v for k, v in kwargs.items() if v is not None}
        if not values.get("bucket"):  # "" (e.g. ${ANALYTICS_S3_BUCKET:-} in YAML) is unset
            values["bucket"] = environ.get("ANALYTICS_S3_BUCKET") or None
        if "region_name" not in values and not environ.get("AWS_DEFAULT_REGION"):
            values["region_name"] = environ.get("AWS_REGION") or None
        mode = values.get("mode", "object")
        if "key_template" not in values and mode == "batch":
            values["key_template"] = BATCH_KEY_TEMPLATE
        if "when_full" not in values and values.get("spool_dir"):
            values["when_full"] = "spool"
        for name in ("redact_fields", "hash_fields"):
            values[name] = _field_paths(values.get(name, ()))
        for name, kind in _NUMERIC_FIELDS.items():
            if isinstance(values.get(name), str):  # e.g. from an ini file or ${VAR} expansion
                values[name] = _number(name, str(values[name]), kind)
        config = cls(**values)  # type: ignore[arg-type]
        config.validate()
        return config

    def validate(self) -> None:
        """Raise ``ValueError`` with an actionable message for any invalid setting."""
        _one_of("mode", self.mode, _MODES)
        _one_of("when_full", self.when_full, _WHEN_FULL)
        _one_of("spool_fsync", self.spool_fsync, _FSYNC)
        _one_of("compression", self.compression, _COMPRESSIONS)
        if self.sse is not None:
            _one_of("sse", self.sse, _SSE)
        _one_of("checksum_algorithm", str(self.checksum_algorithm).upper(), _CHECKSUMS)
        if self.sse_kms_key_id and self.sse != "aws:kms":
            # S3 answers 400 InvalidArgument, which would dead-letter every record.
            msg = f"sse_kms_key_id needs sse='aws:kms', got sse={self.sse!r}"
            raise ValueError(msg)
        if self.when_full == "spool" and not self.spool_dir:
            msg = "when_full='spool' needs spool_dir to be set"
            raise ValueError(msg)
        for name in ("workers", "max_batch_records", "max_batch_bytes", "max_record_bytes",
                     "max_queue_bytes"):
            if int(getattr(self, name)) < 1:
                msg = f"{name} must be a positive integer, got {getattr(self, name)!r}"
                raise ValueError(msg)
        for name in ("close_timeout", "max_batch_age", "block_timeout", "retry_base", "retry_cap",
                     "config_error_retry"):
            if float(getattr(self, name)) < 0:
                msg = f"{name} must be >= 0 seconds, got {getattr(self, name)!r}"
                raise ValueError(msg)
        if "{prefix}" not in self.key_template and self.prefix:
            msg = "key_template must contain {prefix} so keys stay under the IAM-granted prefix"
            raise ValueError(msg)
        if self.mode == "object" and "{id}" not in self.key_template and "{uuid}" not in (
            self.key_template
        ):
            msg = "object-mode key_template needs {id} or {uuid}, else records overwrite one key"
            raise ValueError(msg)
        if self.mode == "batch" and "{uuid}" not in self.key_template and "{seq}" not in (
            self.key_template
        ):
            msg = "batch-mode key_template needs {uuid} or {seq} so batches never collide"
            raise ValueError(msg)


#: Numeric settings, and the type a string value for them is converted to.
_NUMERIC_FIELDS: dict[str, type[int] | type[float]] = {
    f.name: int if f.type.startswith("int") else float
    for f in dataclasses.fields(HandlerConfig)
    if isinstance(f.type, str) and f.type.split(" ")[0] in ("int", "float")
}


def _number(name: str, text: str, kind: type[int] | type[float]) -> int | float:
    try:
        return kind(text)
    except ValueError:
        msg = f"{name} must be a number, got {text!r}"
        raise ValueError(msg) from None


def _field_paths(value: object) -> tuple[str, ...]:
    """Dotted field paths from a list, or from one comma-separated string (env-friendly)."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        msg = f"field paths must be a list or a comma-separated string, got {value!r}"
        raise ValueError(msg)
    return tuple(str(p).strip() for p in items if str(p).strip())


def _one_of(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        msg = f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}"
        raise ValueError(msg)
