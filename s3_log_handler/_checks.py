"""Checks for single setting values: each names the setting, the value and what is accepted.

``integer("workers", 2.5)`` raises ``ValueError: workers must be a positive integer, got 2.5
(float)``; a wrong type raises ``TypeError``. Used by :mod:`_settings` only.
"""

from __future__ import annotations

import math
import numbers
import os
import re
from collections.abc import Callable

from botocore.config import Config

from . import _names as names

#: Allowed ``compress_level`` per codec, inclusive; a codec not listed takes no level.
LEVELS = {"gzip": (0, 9), "zstd": (1, 22)}
#: Settings limited to a fixed set of strings (checksum_algorithm is matched case-insensitively).
CHOICES: dict[str, tuple[str, ...]] = {
    "mode": ("object", "batch"),
    "when_full": ("spool", "drop", "block"),
    "spool_fsync": ("never", "interval", "always"),
    "compression": ("gzip", "zstd", "none"),
    "format": ("ndjson", "parquet"),
    "parquet_compression": ("zstd", "snappy"),
    "sse": ("AES256", "aws:kms"),
    # S3's ChecksumAlgorithm values; CRC32C and CRC64NVME also need botocore[crt].
    "checksum_algorithm": ("CRC32", "CRC32C", "SHA1", "SHA256", "CRC64NVME"),
}
INTEGERS = ("workers", "max_batch_records", "max_batch_bytes", "max_record_bytes",
             "max_queue_bytes", "max_spool_bytes", "max_dead_letter_bytes",
             "target_object_bytes", "max_open_partitions")
#: Settings in seconds, and whether 0 is allowed (a 0 retry or batch age would spin).
SECONDS = {"close_timeout": True, "block_timeout": True, "max_batch_age": False,
            "retry_base": False, "retry_cap": False, "config_error_retry": False,
            "metrics_interval": True}  # 0: no metrics
#: Strings checked by a rule of :mod:`_names` (bucket: also an access point; prefix: also
#: empty, which ``validate`` allows only for a key template without ``{prefix}``).
NAMED: dict[str, Callable[[str], str]] = {
    "bucket": lambda value: names.bucket(value, writable=True),
    "prefix": lambda value: names.prefix(value) if value else value,
    "sse_kms_key_id": names.kms_key_arn,
}
#: Strings that must also match a pattern.
TEXT_FORMS = {
    "endpoint_url": (re.compile(r"https?://[^/?#\s]+\S*", re.IGNORECASE),
                     "an http:// or https:// URL"),
    "attribute": (re.compile(r".+", re.DOTALL), "a non-empty LogRecord attribute name"),
}



def bad(name: str, accepted: str, value: object) -> str:
    """``<name> must be <accepted>, got <value> (<type>)``, the value's repr cut to 80 chars."""
    shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
    return f"{name} must be {accepted}, got {shown} ({type(value).__name__})"


def number(name: str, value: object, accepted: str, integral: bool,
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
            msg = bad(name, accepted, value)
            raise ValueError(msg) from None
    elif isinstance(value, bool) or not isinstance(value, numbers.Real):
        msg = bad(name, accepted, value)
        raise TypeError(msg)
    elif integral:
        number = int(value) if isinstance(value, numbers.Integral) else math.nan
    else:
        try:
            number = float(value)
        except OverflowError:  # an int too large for a float
            number = math.inf
    if not (math.isfinite(number) and ok(number)):
        msg = bad(name, accepted, value)
        raise ValueError(msg)
    return number


def integer(name: str, value: object) -> int:
    """A positive integer: an int or integral text, never a bool or a float."""
    return int(number(name, value, "a positive integer", True, lambda n: n >= 1))


def seconds(name: str, value: object) -> float:
    """A finite number of seconds (or numeric text), > 0 or >= 0 as :data:`SECONDS` says."""
    if SECONDS[name]:
        return number(name, value, "a number of seconds >= 0", False, lambda n: n >= 0)
    return number(name, value, "a number of seconds > 0", False, lambda n: n > 0)


def level(value: object, compression: str) -> int:
    """``compress_level`` checked against the range of ``compression`` in :data:`LEVELS`."""
    if compression not in LEVELS:
        codecs = " or ".join(map(repr, LEVELS))
        msg = bad("compress_level", f"unset for compression={compression!r} (a level needs "
                   f"compression {codecs})", value)
        raise ValueError(msg)
    low, high = LEVELS[compression]
    return int(number(f"compress_level for {compression}", value,
                       f"an integer from {low} to {high}", True, lambda n: low <= n <= high))


def text(name: str, value: object) -> str:
    """A string (``spool_dir`` also a path), passing its :data:`NAMED` rule or matching its
    :data:`TEXT_FORMS` pattern if it has one."""
    if name == "spool_dir" and isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        msg = bad(name, "a string", value)
        raise TypeError(msg)
    if name in NAMED:
        return NAMED[name](value)
    pattern, accepted = TEXT_FORMS.get(name, (None, ""))
    if pattern is not None and not pattern.fullmatch(value):
        msg = bad(name, accepted, value)
        raise ValueError(msg)
    return value


def choice(name: str, value: object) -> str:
    """One of ``CHOICES[name]`` (``checksum_algorithm`` in any case, returned upper-case)."""
    allowed = CHOICES[name]
    accepted = "one of " + ", ".join(map(repr, allowed))
    if not isinstance(value, str):
        msg = bad(name, accepted, value)
        raise TypeError(msg)
    if name == "checksum_algorithm":
        value = value.upper()
    if value not in allowed:
        msg = bad(name, accepted, value)
        raise ValueError(msg)
    return value


def field_paths(name: str, value: object) -> tuple[str, ...]:
    """Dotted field paths from a list/tuple of str, or one comma-separated string (env-friendly).

    Blank entries are dropped. ``TypeError`` for a non-str item; ``ValueError`` for anything
    else, and for a path that could never match a key: an empty part (``"a..b"``,
    ``"user_email."``), a part with surrounding spaces or control characters, or a wildcard
    or index (``*``, ``[0]``: paths already run through every element of a list).
    """
    items = value.split(",") if isinstance(value, str) else value
    accepted = "a list of dotted field paths or a comma-separated string"
    if not isinstance(items, list | tuple):  # a ValueError, as AnalyticsJsonFormatter promises
        msg = bad(name, accepted, value)
        raise ValueError(msg)
    for item in items:
        if not isinstance(item, str):
            msg = bad(f"each item of {name}", "a string", item)
            raise TypeError(msg)
        if item.strip() and not all(map(_path_part_ok, item.strip().split("."))):
            msg = bad(f"each item of {name}", "a dotted field path like 'user.email' (parts "
                      "not empty, no surrounding spaces, no control characters, * [ or ])", item)
            raise ValueError(msg)
    return tuple(p.strip() for p in items if p.strip())


def _path_part_ok(part: str) -> bool:
    return bool(part) and part == part.strip() and not any(
        c in "*[]" or ord(c) < 0x20 or ord(c) == 0x7F for c in part)


def client_part(name: str, value: object) -> object:
    """``boto3_session``: anything with a callable ``client``; ``botocore_config``: a Config."""
    if name == "botocore_config":
        ok, accepted = isinstance(value, Config), "a botocore.config.Config"
    else:
        ok = callable(getattr(value, "client", None))
        accepted = "a boto3.session.Session (an object with a client() method)"
    if not ok:
        msg = bad(name, accepted, value)
        raise TypeError(msg)
    return value
