"""The one source of truth for an S3Handler's settings: defaults, environment, validation.

A value that cannot work fails when the handler is built: ``TypeError`` for a wrong type,
``ValueError`` for a wrong value, e.g. ``workers must be a positive integer, got 2.5 (float)``.
"""

from __future__ import annotations

import dataclasses
import os
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ._checks import (
    CHOICES,
    INTEGERS,
    SECONDS,
    bad,
    choice,
    client_part,
    field_paths,
    integer,
    level,
    seconds,
    text,
)
from ._fields import is_field_path

Mode = Literal["object", "batch"]
WhenFull = Literal["spool", "drop", "block"]
FsyncPolicy = Literal["never", "interval", "always"]

OBJECT_KEY_TEMPLATE = "{prefix}/year={year}/month={month}/day={day}/{id}{ext}"
BATCH_KEY_TEMPLATE = "{prefix}/year={year}/month={month}/day={day}/{host}-{pid}-{seq}-{uuid}{ext}"

MIB = 1024 * 1024
#: A single PUT may carry 5 GiB; we cap one record far lower so one bad payload cannot hog memory.
DEFAULT_MAX_RECORD_BYTES = 5 * MIB
DEFAULT_MAX_QUEUE_BYTES = 64 * MIB
#: Batch mode holds an object's records in memory until it is cut: room for objects of tens
#: of MB compressed (see ``target_object_bytes``).
DEFAULT_BATCH_MAX_QUEUE_BYTES = 256 * MIB
#: Compressed size a batch object is cut at. Athena reads files of tens of MB or more best
#: ("Top 10 performance tuning tips for Amazon Athena": avoid files under 128 MB where one
#: can); 16 MiB of gzip is ~90 MB of JSON, as much as memory allows by default.
DEFAULT_TARGET_OBJECT_BYTES = 16 * MIB
#: Disk the spool's segments may fill during an outage; past it ``when_full`` decides.
DEFAULT_MAX_SPOOL_BYTES = 1024 * MIB
#: Disk the dead letters may fill (besides at most 10,000 letters).
DEFAULT_MAX_DEAD_LETTER_BYTES = 64 * MIB

#: What :func:`~s3_log_handler._keys.render_key` fills in.
_PLACEHOLDERS = ("prefix", "year", "month", "day", "hour", "id", "ext", "uuid", "host", "pid",
                 "field",
                 "seq")
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
    #: Batch objects as NDJSON (compressed by ``compression``) or Parquet (needs the
    #: ``parquet`` extra; ``parquet_compression`` zstd or snappy, ``parquet_schema`` a sample
    #: payload or a column list file, else each partition's first batch pins the columns).
    format: str = "ndjson"
    parquet_compression: str = "zstd"
    parquet_schema: str | None = None
    max_batch_records: int = 1_000_000
    max_batch_bytes: int = 128 * MIB
    max_batch_age: float = 60.0
    target_object_bytes: int = DEFAULT_TARGET_OBJECT_BYTES
    max_open_partitions: int = 100
    #: A payload field (dotted path) holding the record's time for its partition (ISO 8601
    #: or epoch seconds/ms); ``record.created`` when unset, absent or unparsable.
    time_field: str | None = None
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES
    max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES
    when_full: WhenFull = "drop"
    block_timeout: float = 1.0
    spool_dir: str | None = None
    spool_fsync: FsyncPolicy = "never"
    max_spool_bytes: int = DEFAULT_MAX_SPOOL_BYTES
    max_dead_letter_bytes: int = DEFAULT_MAX_DEAD_LETTER_BYTES
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
    #: Seconds between health-metric lines (CloudWatch EMF) on ``s3_log_handler.metrics``;
    #: ``None`` or 0: none.
    metrics_interval: float | None = None
    #: Key for an HMAC on every spool line (default ``$ANALYTICS_SPOOL_KEY``); lines without
    #: a valid one are dead-lettered ``tampered``. Unset: no HMAC.
    spool_hmac_key: str | None = None
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
        """Build settings from constructor keywords and the environment (default ``os.environ``).

        ``None`` means "use the default"; so does ``""`` for optional strings (``bucket``,
        ``sse``, ...). ``bucket`` falls back to ``ANALYTICS_S3_BUCKET``; ``region_name`` to
        ``AWS_REGION`` when ``AWS_DEFAULT_REGION`` (which botocore reads) is unset. Integers
        also take integral text (``"4"``), seconds numeric text (``"2.5"``), as ``${VAR}``
        expansion gives; bools, floats for integers, ``nan`` and ``inf`` are refused.

        Raises ``TypeError`` for an unknown keyword (``S3Handler() got an unexpected keyword
        argument 'x'``, the first sorted) or a wrong type, ``ValueError`` for a wrong value.
        """
        if env is not None and not isinstance(env, Mapping):
            msg = bad("env", "a mapping of environment variables or None", env)
            raise TypeError(msg)
        environ = os.environ if env is None else env
        unknown = sorted(set(kwargs) - _FIELDS)
        if unknown:
            msg = f"S3Handler() got an unexpected keyword argument '{unknown[0]}'"
            raise TypeError(msg)
        values: dict[str, Any] = {}
        for name, value in kwargs.items():
            if value is None or (isinstance(value, str) and not value and name in _BLANK_IS_UNSET):
                continue
            values[name] = _CONVERTERS[name](name, value) if name in _CONVERTERS else value
        if "bucket" not in values:
            from_env = environ.get("ANALYTICS_S3_BUCKET")
            values["bucket"] = text("bucket", from_env) if from_env else None
        if "region_name" not in values and not environ.get("AWS_DEFAULT_REGION"):
            values["region_name"] = environ.get("AWS_REGION") or None
        if values.get("mode") == "batch":
            values.setdefault("key_template", BATCH_KEY_TEMPLATE)
            values.setdefault("max_queue_bytes", DEFAULT_BATCH_MAX_QUEUE_BYTES)
        if "when_full" not in values and values.get("spool_dir"):
            values["when_full"] = "spool"
        if "compress_level" in values:
            values["compress_level"] = level(values["compress_level"],
                                              values.get("compression", "gzip"))
        config = cls(**values)
        config.validate()
        return config

    def validate(self) -> None:
        """Raise ``ValueError`` for settings that are valid alone but cannot work together.

        Each value on its own is checked by :meth:`from_kwargs`, the only way to build one.
        """
        if self.sse_kms_key_id and self.sse != "aws:kms":
            # S3 answers 400 InvalidArgument, which would dead-letter every record.
            key, sse = self.sse_kms_key_id, self.sse
            msg = f"sse_kms_key_id {key!r} needs sse='aws:kms', got sse={sse!r}"
            raise ValueError(msg)
        if self.when_full == "spool" and not self.spool_dir:
            msg = "when_full='spool' needs spool_dir to be set (or when_full 'drop' or 'block')"
            raise ValueError(msg)
        if self.format == "parquet":
            _check_parquet(self.mode)
        if self.retry_cap < self.retry_base:
            msg = bad("retry_cap", f"a number of seconds >= retry_base ({self.retry_base})",
                       self.retry_cap)
            raise ValueError(msg)
        template = self.key_template
        try:
            parsed = [(f, spec) for _, f, spec, _ in string.Formatter().parse(template)
                      if f is not None]
        except ValueError:  # a lone { or }
            parsed = [("{", "")]
        names = {f for f, _ in parsed}
        paths = [spec or "" for f, spec in parsed if f == "field"]
        if not all(map(is_field_path, paths)):
            msg = bad("key_template", "{field:path} placeholders with a dotted field path "
                       "(e.g. {field:event_type} or {field:signals.tier})", template)
            raise ValueError(msg)
        if self.time_field is not None and not is_field_path(self.time_field):
            msg = bad("time_field", "a payload field name or dotted path (e.g. end_time)",
                       self.time_field)
            raise ValueError(msg)
        if not names.issubset(_PLACEHOLDERS):
            accepted = "a template using only " + ", ".join(f"{{{n}}}" for n in _PLACEHOLDERS)
            msg = bad("key_template", accepted, template)
            raise ValueError(msg)
        if not self.prefix and "prefix" in names:
            msg = bad("prefix", "a non-empty key prefix when key_template has {prefix} (keys "
                      "would start with '/')", self.prefix)
            raise ValueError(msg)
        if self.prefix and "prefix" not in names:
            msg = bad("key_template", "a template with {prefix}, so keys stay under the "
                       "IAM-granted prefix", template)
            raise ValueError(msg)
        unique = ("id", "uuid") if self.mode == "object" else ("uuid", "seq")
        if not names & set(unique):
            msg = bad("key_template", f"a template with {{{unique[0]}}} or {{{unique[1]}}} in "
                       f"{self.mode} mode, else objects overwrite each other", template)
            raise ValueError(msg)


def _check_parquet(mode: str) -> None:
    if mode != "batch":
        msg = bad("format", "'ndjson' in object mode (Parquet is written per batch: set "
                  "mode='batch')", "parquet")
        raise ValueError(msg)
    from ._parquet import require_pyarrow

    require_pyarrow()  # ImportError naming the [parquet] extra


_FIELDS = frozenset(f.name for f in dataclasses.fields(HandlerConfig))
#: Optional strings, where "" (e.g. an unset ``${VAR:-}`` in YAML) means "not set".
_BLANK_IS_UNSET = frozenset(f.name for f in dataclasses.fields(HandlerConfig)
                            if f.type == "str | None")


#: How each setting's value is checked and converted; compress_level is checked in from_kwargs.
_CONVERTERS: dict[str, Callable[[str, object], object]] = {
    **{name: integer for name in INTEGERS},
    **{name: seconds for name in SECONDS},
    **{f.name: text for f in dataclasses.fields(HandlerConfig) if f.type in ("str", "str | None")},
    **{name: choice for name in CHOICES},  # after text: these str settings are enumerated
    "redact_fields": field_paths,
    "hash_fields": field_paths,
    "boto3_session": client_part,
    "botocore_config": client_part,
}
