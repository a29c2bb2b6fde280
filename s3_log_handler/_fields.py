"""Partitions taken from record fields, and the record time taken from a payload field.

``key_template`` may name payload fields: ``{prefix}/event_type={field:event_type}/...``, or a
nested path such as ``{field:discovered_signals.qualification_tier}``. Pure functions: the
caller's thread reads the values once per record (see :class:`FieldReader`).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime

import orjson

from ._keys import safe_segment, template_fields

_PATH = re.compile(r"[^.{}:]+(?:\.[^.{}:]+)*")
#: Where a record goes whose field is missing, empty, null or not a scalar (an object or a
#: list): a value Hive and Athena list like any other (not ``__HIVE_DEFAULT_PARTITION__``,
#: whose leading ``_`` some readers hide). A record whose value *is* this text gets a hash
#: suffix, so the two stay apart.
DEFAULT_VALUE = "missing"
#: Longest field value kept in a key; longer values are cut and get a hash suffix.
MAX_VALUE_CHARS = 64
#: Epoch numbers from this magnitude on are milliseconds (1e11 s is the year 5138).
_MILLISECONDS = 1e11


def is_field_path(path: str) -> bool:
    """True for a dotted payload path such as ``event_type`` or ``signals.tier``."""
    return _PATH.fullmatch(path) is not None


def partition_value(raw: object) -> str | None:
    """A field's value as a key segment, or ``None`` when it has none (missing, empty, null,
    an object or a list, a non-finite number): the caller uses :data:`DEFAULT_VALUE`.

    The segment matches ``[A-Za-z0-9._-]+``, never starts with ``.`` or ``_`` and has at most
    :data:`MAX_VALUE_CHARS` characters plus a hash suffix, which is added whenever the text
    was changed, so distinct values stay distinct (see :func:`~s3_log_handler._keys.safe_segment`).
    """
    if isinstance(raw, bool):
        text = "true" if raw else "false"
    elif isinstance(raw, str):
        text = raw
    elif isinstance(raw, int):
        text = str(raw)
    elif isinstance(raw, float) and math.isfinite(raw):
        text = repr(raw)
    else:
        return None
    return _segment(text) if text else None


@functools.lru_cache(maxsize=4096)
def _segment(text: str) -> str:
    # Partition values repeat (event types, tenants): a cache makes most lookups one hash.
    return safe_segment(text, MAX_VALUE_CHARS, changed=text == DEFAULT_VALUE)


def lookup(payload: object, path: str) -> object:
    """The value at dotted ``path`` in ``payload`` (nested mappings), or ``None``."""
    value = payload
    for name in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(name)
    return value


def record_time(value: object) -> float | None:
    """Epoch seconds of a payload time: ISO 8601 text (no zone means UTC) or epoch seconds
    or milliseconds (a number, or numeric text, from 1e11 on read as milliseconds).
    ``None`` when ``value`` is none of those."""
    if isinstance(value, str):
        text = value
        try:
            value = float(text)
        except ValueError:
            try:
                parsed = datetime.fromisoformat(text)
            except ValueError:
                return None
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            return parsed.timestamp()
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    seconds = float(value)
    if not math.isfinite(seconds):
        return None
    return seconds / 1000 if abs(seconds) >= _MILLISECONDS else seconds


class FieldReader:
    """Reads one record's partition values (and, with ``time_field``, its time) once."""

    def __init__(self, template: str, time_field: str | None) -> None:
        self.paths = template_fields(template)
        self.time_field = time_field

    @property
    def active(self) -> bool:
        """True when the template names fields or a ``time_field`` is set."""
        return bool(self.paths) or self.time_field is not None

    def values(self, payload: object) -> tuple[tuple[str, ...], int]:
        """``payload``'s partition values in template order, and how many of them fell back
        to :data:`DEFAULT_VALUE`."""
        values: list[str] = []
        defaults = 0
        for path in self.paths:
            value = partition_value(lookup(payload, path))
            if value is None:
                defaults += 1
                value = DEFAULT_VALUE
            values.append(value)
        return tuple(values), defaults

    def time(self, payload: object) -> float | None:
        """The payload's ``time_field`` in epoch seconds, or ``None`` (absent, unparsable)."""
        return None if self.time_field is None else record_time(
            lookup(payload, self.time_field))

    def values_of_line(self, body: bytes) -> tuple[str, ...]:
        """:meth:`values` of a JSON line, for records recovered from a spool."""
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            payload = None
        return self.values(payload)[0]
