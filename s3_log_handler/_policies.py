"""Small frozen policies cut from the flat, validated settings: each component gets its own.

``S3Handler`` takes flat keyword arguments (``dictConfig`` needs them) and checks them once in
:mod:`_settings`; these are the pieces it hands on. The ledger gets a :class:`QueuePolicy`,
the batch accumulator a :class:`BatchPolicy`, upload threads a :class:`RetryPolicy`, the
uploader a :class:`PutPolicy` and a :class:`ClientPolicy`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._settings import HandlerConfig


@dataclass(frozen=True, slots=True)
class QueuePolicy:
    """Memory bound of queued records (bytes, with per-record overhead) and what happens when
    it is reached: ``spool`` (keep on disk only), ``drop`` or ``block`` (up to
    ``block_timeout`` seconds)."""

    max_bytes: int
    when_full: str
    block_timeout: float

    @classmethod
    def of(cls, c: HandlerConfig) -> QueuePolicy:
        """The queue policy of settings ``c``."""
        return cls(c.max_queue_bytes, c.when_full, c.block_timeout)


@dataclass(frozen=True, slots=True)
class BatchPolicy:
    """When a batch becomes an object: ``max_records`` records, ``max_bytes`` uncompressed
    bytes, or its first record ``max_age`` seconds old; ``hourly`` partitions by hour;
    ``target_bytes`` of estimated compressed size; ``max_open`` open batches at most; open
    batches holding ``memory_bytes`` (half of ``max_queue_bytes``) cut the largest; a large
    batch cut by a flush becomes up to ``flush_parts`` (``workers``) objects."""

    max_records: int
    max_bytes: int
    max_age: float
    hourly: bool
    target_bytes: int = 1 << 62
    max_open: int = 100
    memory_bytes: int = 1 << 62
    flush_parts: int = 1

    @classmethod
    def of(cls, c: HandlerConfig) -> BatchPolicy:
        """The batch policy of settings ``c``."""
        return cls(c.max_batch_records, c.max_batch_bytes, c.max_batch_age,
                   "{hour}" in c.key_template, c.target_object_bytes, c.max_open_partitions,
                   c.max_queue_bytes // 2, c.workers)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Pauses after a failed attempt (botocore has already retried inside it): capped
    exponential backoff with jitter from ``base`` to ``cap`` seconds, and ``config_pause``
    seconds after a configuration error (credentials, permissions), which a retry soon
    cannot fix."""

    base: float
    cap: float
    config_pause: float

    @classmethod
    def of(cls, c: HandlerConfig) -> RetryPolicy:
        """The retry policy of settings ``c``."""
        return cls(c.retry_base, c.retry_cap, c.config_error_retry)


#: The Content-Type of a batch object per ``format``.
_CONTENT_TYPES = {"ndjson": "application/x-ndjson", "parquet": "application/vnd.apache.parquet"}


@dataclass(frozen=True, slots=True)
class PutPolicy:
    """What every ``PutObject`` carries, and what failure hints and the start-up line name."""

    bucket: str
    prefix: str
    content_type: str
    checksum_algorithm: str
    sse: str | None = None
    sse_kms_key_id: str | None = None
    expected_bucket_owner: str | None = None
    storage_class: str | None = None
    acl: str | None = None
    mode: str = "object"

    @classmethod
    def of(cls, c: HandlerConfig) -> PutPolicy:
        """The put options of settings ``c``."""
        return cls(c.bucket or "", c.prefix,
                   _CONTENT_TYPES[c.format] if c.mode == "batch" else "application/json",
                   c.checksum_algorithm, c.sse, c.sse_kms_key_id, c.expected_bucket_owner,
                   c.storage_class, c.acl, c.mode)

    def static_args(self) -> dict[str, Any]:
        """The ``put_object`` arguments that are the same for every object."""
        args: dict[str, Any] = {"Bucket": self.bucket, "ContentType": self.content_type,
                                "ChecksumAlgorithm": self.checksum_algorithm}
        optional = {
            "ServerSideEncryption": self.sse,
            "SSEKMSKeyId": self.sse_kms_key_id,
            "ExpectedBucketOwner": self.expected_bucket_owner,
            "StorageClass": self.storage_class,
            "ACL": self.acl,
        }
        args.update({k: v for k, v in optional.items() if v})
        return args


@dataclass(frozen=True, slots=True)
class ClientPolicy:
    """How the S3 client is made: the user's session and botocore ``Config`` (merged over
    ours), region, endpoint, profile, and the connection pool for ``workers`` threads."""

    region_name: str | None = None
    endpoint_url: str | None = None
    profile_name: str | None = None
    boto3_session: Any = None
    botocore_config: Any = None
    workers: int = 4

    @classmethod
    def of(cls, c: HandlerConfig) -> ClientPolicy:
        """The client policy of settings ``c``."""
        return cls(c.region_name, c.endpoint_url, c.profile_name, c.boto3_session,
                   c.botocore_config, c.workers)
