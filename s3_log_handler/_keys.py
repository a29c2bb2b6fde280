"""S3 object keys: Hive date partitions from a record's UTC time, and ids made safe for a key.

Pure functions: no I/O, no clock of their own except :func:`generated_id`'s randomness.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import socket
import time
import uuid
from dataclasses import dataclass

#: S3 caps a key at 1,024 bytes of UTF-8.
S3_MAX_KEY_BYTES = 1024
#: Longest sanitised id we put in a key; longer ids are cut and get a hash suffix.
MAX_ID_CHARS = 128
#: Record times (epoch seconds) that have a UTC partition: years 1 to 9999.
EARLIEST_TIME, LATEST_TIME = -62_135_596_800.0, 253_402_300_800.0
_HASH_CHARS = 16
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
#: A ``{field:path}`` placeholder of a key template (see :mod:`~s3_log_handler._fields`).
FIELD = re.compile(r"\{field:([^{}]*)\}")
_HOST = _UNSAFE.sub("-", socket.gethostname()) or "host"


@dataclass(frozen=True, slots=True)
class Partition:
    """The UTC date parts a record belongs to; keys of one partition share a folder."""

    year: str
    month: str
    day: str
    hour: str

    @classmethod
    def of(cls, created: float) -> Partition:
        """The partition of a record created at ``created`` (epoch seconds), in UTC."""
        return _partition_of_hour(int(created // 3600))

    @classmethod
    def day_of(cls, created: float) -> Partition:
        """Like :meth:`of` with the hour left empty: for templates that group by day only."""
        return _partition_of_day(int(created // 86400))


@functools.lru_cache(maxsize=64)
def _partition_of_hour(hours: int) -> Partition:
    # Records arrive in time order, so a handful of cached hours serve almost every call.
    t = time.gmtime(hours * 3600)
    return Partition(f"{t.tm_year:04d}", f"{t.tm_mon:02d}", f"{t.tm_mday:02d}",
                     f"{t.tm_hour:02d}")


@functools.lru_cache(maxsize=16)
def _partition_of_day(days: int) -> Partition:
    hourly = _partition_of_hour(days * 24)
    return Partition(hourly.year, hourly.month, hourly.day, "")


def generated_id() -> str:
    """A fresh unique id for a record that has none (never a shared ``unknown``)."""
    return f"gen-{uuid.uuid4().hex}"


def sanitize_id(raw: object) -> str:
    """Turn any id into a key segment that cannot leave its partition.

    Guarantees: the result is non-empty, matches ``[A-Za-z0-9._-]+``, contains no ``/``,
    is never ``.``/``..`` nor starts with ``.`` or ``_`` (Hive readers hide such files), and is
    at most :data:`MAX_ID_CHARS` characters. Unsafe characters become ``_``; when that
    changes the id, or the id is too long, a hash of the original is appended so distinct
    ids stay distinct. A missing, empty or non-string id gets :func:`generated_id`.
    """
    if not isinstance(raw, str) or not raw:
        return generated_id()
    return safe_segment(raw, MAX_ID_CHARS)


def safe_segment(raw: str, max_chars: int, *, changed: bool = False) -> str:
    """``raw`` (non-empty) as one key segment: ``[A-Za-z0-9._-]+``, not starting with ``.``
    or ``_``, at most ``max_chars`` characters. When the text had to change (or ``changed``
    says so), it ends in ``-`` and 16 hex digits of the original's SHA-256."""
    safe = _UNSAFE.sub("_", raw)
    if safe[0] in "._":
        safe = "id" + safe
    if safe == raw and len(safe) <= max_chars and not changed:
        return safe
    digest = hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_CHARS]
    return f"{safe[: max_chars - _HASH_CHARS - 1]}-{digest}"


def render_key(
    template: str,
    *,
    prefix: str,
    partition: Partition,
    ext: str,
    record_id: str = "",
    seq: int = 0,
    fields: tuple[str, ...] = (),
) -> str:
    """Fill ``template``'s placeholders and check the result fits S3's key limit.

    Placeholders: prefix, year, month, day, hour, id, ext, uuid, host, pid, seq, and
    ``{field:path}``, filled from ``fields`` (already made safe, in the order of
    :func:`template_fields`). Raises ``ValueError`` if the key would
    exceed :data:`S3_MAX_KEY_BYTES`.
    """
    pid = os.getpid() if "{pid}" in template else 0
    if fields:
        template = _indexed(template)
    values = {"id": record_id}
    for i, value in enumerate(fields):
        values[f"f{i}"] = value
    if "{uuid}" in template:
        values["uuid"] = uuid.uuid4().hex
    if "{seq}" in template:
        values["seq"] = f"{seq:08d}"
    key = _fixed_part(template, prefix, partition, ext, pid).format_map(values)
    if len(key.encode("utf-8")) > S3_MAX_KEY_BYTES:
        msg = f"S3 key longer than {S3_MAX_KEY_BYTES} bytes: {key[:80]}..."
        raise ValueError(msg)
    return key


def template_fields(template: str) -> tuple[str, ...]:
    """The field paths ``template`` names, in order (a path named twice counts once)."""
    return tuple(dict.fromkeys(FIELD.findall(template)))


@functools.lru_cache(maxsize=64)
def _indexed(template: str) -> str:
    # {field:path} -> {f<i>}, i the path's place in template_fields(): what render_key fills.
    order = {path: i for i, path in enumerate(template_fields(template))}
    return FIELD.sub(lambda m: f"{{f{order[m.group(1)]}}}", template)


class _PerRecordFields(dict[str, str]):
    """Leaves the per-record placeholders (id, uuid, seq, fields) in place for a second pass."""

    def __missing__(self, name: str) -> str:
        return "{" + name + "}"


@functools.lru_cache(maxsize=256)
def _fixed_part(template: str, prefix: str, partition: Partition, ext: str, pid: int) -> str:
    # Everything but id/uuid/seq changes at most hourly: fill it once per hour, not per record.
    fixed = {"prefix": prefix, "year": partition.year, "month": partition.month,
             "day": partition.day, "hour": partition.hour, "ext": ext, "host": _HOST,
             "pid": str(pid)}
    escaped = {k: v.replace("{", "{{").replace("}", "}}") for k, v in fixed.items()}
    return template.format_map(_PerRecordFields(escaped))
