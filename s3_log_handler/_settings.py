"""The one source of truth for an S3Handler's settings: defaults, environment, validation.

A value that cannot work fails when the handler is built: ``TypeError`` for a wrong type,
``ValueError`` for a wrong value, e.g. ``workers must be a positive integer, got 2.5 (float)``.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
import re
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from botocore.config import Config

Mode = Literal["object", "batch"]
WhenFull = Literal["spool", "drop", "block"]
FsyncPolicy = Literal["never", "interval", "always"]

OBJECT_KEY_TEMPLATE = "{prefix}/year={year}/month={month}/day={day}/{id}{ext}"
BATCH_KEY_TEMPLATE = "{prefix}/year={year}/month={month}/day={day}/{host}-{pid}-{seq}-{uuid}{ext}"

MIB = 1024 * 1024
#: A single PUT may carry 5 GiB; we cap one record far lower so one bad payload cannot hog memory.
DEFAULT_MAX_RECORD_BYTES = 5 * MIB
DEFAULT_MAX_QUEUE_BYTES = 64 * MIB

#: Allowed ``compress_level`` per codec, inclusive; a codec not listed takes no level.
_LEVELS = {"gzip": (0, 9), "zstd": (1, 22)}
#: Settings limited to a fixed set of strings (checksum_algorithm is matched case-insensitively).
_CHOICES: dict[str, tuple[str, ...]] = {
    "mode": ("object", "batch"),
    "when_full": ("spool", "drop", "block"),
    "spool_fsync": ("never", "interval", "always"),
    "compression": ("gzip", "zstd", "none"),
    "sse": ("AES256", "aws:kms"),
    # S3's ChecksumAlgorithm values; CRC32C and CRC64NVME also need botocore[crt].
    "checksum_algorithm": ("CRC32", "CRC32C", "SHA1", "SHA256", "CRC64NVME"),
}
_INTEGERS = ("workers", "max_batch_records", "max_batch_bytes", "max_record_bytes",
             "max_queue_bytes")
#: Settings in seconds, and whether 0 is allowed (a 0 retry or batch age would spin).
_SECONDS = {"close_timeout": True, "block_timeout": True, "max_batch_age": False,
            "retry_base": False, "retry_cap": False, "config_error_retry": False}
#: What :func:`~s3_log_handler._keys.render_key` fills in.
_PLACEHOLDERS = ("prefix", "year", "month", "day", "hour", "id", "ext", "uuid", "host", "pid",
                 "seq")
#: Strings that must also match a pattern (bucket: legacy names included, or an access point).
_TEXT_FORMS = {
    "bucket": (re.compile(r"arn:\S+|[A-Za-z0-9._-]+"),
               "a bucket name (letters, digits, '.', '-', '_') or an ARN, without s3://"),
    "endpoint_url": (re.compile(r"https?://[^/?#\s]+\S*", re.IGNORECASE),
                     "an http:// or https:// URL"),
    "attribute": (re.compile(r".+", re.DOTALL), "a non-empty LogRecord attribute name"),
}


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
            msg = _bad("env", "a mapping of environment variables or None", env)
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
            values["bucket"] = _text("bucket", from_env) if from_env else None
        if "region_name" not in values and not environ.get("AWS_DEFAULT_REGION"):
            values["region_name"] = environ.get("AWS_REGION") or None
        if "key_template" not in values and values.get("mode") == "batch":
            values["key_template"] = BATCH_KEY_TEMPLATE
        if "when_full" not in values and values.get("spool_dir"):
            values["when_full"] = "spool"
        if "compress_level" in values:
            values["compress_level"] = _level(values["compress_level"],
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
        if self.retry_cap < self.retry_base:
            msg = _bad("retry_cap", f"a number of seconds >= retry_base ({self.retry_base})",
                       self.retry_cap)
            raise ValueError(msg)
        template = self.key_template
        try:
            names = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
        except ValueError:  # a lone { or }
            names = {"{"}
        if not names.issubset(_PLACEHOLDERS):
            accepted = "a template using only " + ", ".join(f"{{{n}}}" for n in _PLACEHOLDERS)
            msg = _bad("key_template", accepted, template)
            raise ValueError(msg)
        if self.prefix and "prefix" not in names:
            msg = _bad("key_template", "a template with {prefix}, so keys stay under the "
                       "IAM-granted prefix", template)
            raise ValueError(msg)
        unique = ("id", "uuid") if self.mode == "object" else ("uuid", "seq")
        if not names & set(unique):
            msg = _bad("key_template", f"a template with {{{unique[0]}}} or {{{unique[1]}}} in "
                       f"{self.mode} mode, else objects overwrite each other", template)
            raise ValueError(msg)


_FIELDS = frozenset(f.name for f in dataclasses.fields(HandlerConfig))
#: Optional strings, where "" (e.g. an unset ``${VAR:-}`` in YAML) means "not set".
_BLANK_IS_UNSET = frozenset(f.name for f in dataclasses.fields(HandlerConfig)
                            if f.type == "str | None")


def _bad(name: str, accepted: str, value: object) -> str:
    """``<name> must be <accepted>, got <value> (<type>)``, the value's repr cut to 80 chars."""
    shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
    return f"{name} must be {accepted}, got {shown} ({type(value).__name__})"


def _number(name: str, value: object, accepted: str, integral: bool,
            ok: Callable[[float], bool]) -> float:
    """A finite number passing ``ok``, an int when ``integral``; also from numeric text.

    ``TypeError`` for a bool or a non-number; ``ValueError`` otherwise (a float where an int
    is needed, ``nan``, ``inf``, text that is no number or not an integer, out of range).
    """
    number: float
    if isinstance(value, str):
        text = value.strip()
        try:
            number = int(text) if integral else float(text)
        except ValueError:
            try:
                float(text)  # a number after all, but not an integer
            except ValueError:
                accepted = f"a number ({accepted})"
            msg = _bad(name, accepted, value)
            raise ValueError(msg) from None
    elif isinstance(value, bool) or not isinstance(value, numbers.Real):
        msg = _bad(name, accepted, value)
        raise TypeError(msg)
    elif integral:
        number = int(value) if isinstance(value, numbers.Integral) else math.nan
    else:
        try:
            number = float(value)
        except OverflowError:  # an int too large for a float
            number = math.inf
    if not (math.isfinite(number) and ok(number)):
        msg = _bad(name, accepted, value)
        raise ValueError(msg)
    return number


def _integer(name: str, value: object) -> int:
    """A positive integer: an int or integral text, never a bool or a float."""
    return int(_number(name, value, "a positive integer", True, lambda n: n >= 1))


def _seconds(name: str, value: object) -> float:
    """A finite number of seconds (or numeric text), > 0 or >= 0 as :data:`_SECONDS` says."""
    if _SECONDS[name]:
        return _number(name, value, "a number of seconds >= 0", False, lambda n: n >= 0)
    return _number(name, value, "a number of seconds > 0", False, lambda n: n > 0)


def _level(value: object, compression: str) -> int:
    """``compress_level`` checked against the range of ``compression`` in :data:`_LEVELS`."""
    if compression not in _LEVELS:
        codecs = " or ".join(map(repr, _LEVELS))
        msg = _bad("compress_level", f"unset for compression={compression!r} (a level needs "
                   f"compression {codecs})", value)
        raise ValueError(msg)
    low, high = _LEVELS[compression]
    return int(_number(f"compress_level for {compression}", value,
                       f"an integer from {low} to {high}", True, lambda n: low <= n <= high))


def _text(name: str, value: object) -> str:
    """A string (``spool_dir`` also a path), matching its :data:`_TEXT_FORMS` pattern if any."""
    if name == "spool_dir" and isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        msg = _bad(name, "a string", value)
        raise TypeError(msg)
    pattern, accepted = _TEXT_FORMS.get(name, (None, ""))
    if pattern is not None and not pattern.fullmatch(value):
        msg = _bad(name, accepted, value)
        raise ValueError(msg)
    return value


def _choice(name: str, value: object) -> str:
    """One of ``_CHOICES[name]`` (``checksum_algorithm`` in any case, returned upper-case)."""
    allowed = _CHOICES[name]
    accepted = "one of " + ", ".join(map(repr, allowed))
    if not isinstance(value, str):
        msg = _bad(name, accepted, value)
        raise TypeError(msg)
    if name == "checksum_algorithm":
        value = value.upper()
    if value not in allowed:
        msg = _bad(name, accepted, value)
        raise ValueError(msg)
    return value


def _field_paths(name: str, value: object) -> tuple[str, ...]:
    """Dotted field paths from a list/tuple of str, or one comma-separated string (env-friendly).

    Blank entries are dropped. ``TypeError`` for a non-str item; ``ValueError`` for anything
    else (a path with an empty part such as ``"a..b"`` could never match).
    """
    items = value.split(",") if isinstance(value, str) else value
    accepted = "a list of dotted field paths or a comma-separated string"
    if not isinstance(items, list | tuple):  # a ValueError, as AnalyticsJsonFormatter promises
        msg = _bad(name, accepted, value)
        raise ValueError(msg)
    for item in items:
        if not isinstance(item, str):
            msg = _bad(f"each item of {name}", "a string", item)
            raise TypeError(msg)
        if item.strip() and not all(item.strip().split(".")):
            msg = _bad(f"each item of {name}", "a dotted field path like 'user.email'", item)
            raise ValueError(msg)
    return tuple(p.strip() for p in items if p.strip())


def _client_part(name: str, value: object) -> object:
    """``boto3_session``: anything with a callable ``client``; ``botocore_config``: a Config."""
    if name == "botocore_config":
        ok, accepted = isinstance(value, Config), "a botocore.config.Config"
    else:
        ok = callable(getattr(value, "client", None))
        accepted = "a boto3.session.Session (an object with a client() method)"
    if not ok:
        msg = _bad(name, accepted, value)
        raise TypeError(msg)
    return value


#: How each setting's value is checked and converted; compress_level is checked in from_kwargs.
_CONVERTERS: dict[str, Callable[[str, object], object]] = {
    **{name: _integer for name in _INTEGERS},
    **{name: _seconds for name in _SECONDS},
    **{f.name: _text for f in dataclasses.fields(HandlerConfig) if f.type in ("str", "str | None")},
    **{name: _choice for name in _CHOICES},  # after _text: these str settings are enumerated
    "redact_fields": _field_paths,
    "hash_fields": _field_paths,
    "boto3_session": _client_part,
    "botocore_config": _client_part,
}
