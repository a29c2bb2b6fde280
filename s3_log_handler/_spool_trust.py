"""What the spool trusts of a line it reads back: nothing it can check instead.

A spool line carries the object key its record will be uploaded under. A line read back
(adopted from a dead owner, reloaded after a spill, replayed) is checked before its record
may reach S3:

* its id must be one :func:`~s3_log_handler._keys.sanitize_id` leaves unchanged (what every
  id is at emit) and its time must have a UTC partition;
* its key, when it has one, must be a key this handler could have made: in object mode the
  key template's shape, with the handler's prefix and extension, the line's own id and the
  partition of its own time (per-process parts such as ``{uuid}`` or ``{pid}``, and
  ``{field:path}`` values, only need their form); in batch mode, where the batch names the
  object and the line's key is never used, it must lie under the prefix with every segment
  one a handler could render.

A line that fails is dead-lettered ``foreign_key``; with a spool HMAC key a line whose HMAC
is missing or wrong is dead-lettered ``tampered`` (see :mod:`._segment_lines`).
"""

from __future__ import annotations

import os
import re
import string
import threading
from collections.abc import Callable, Mapping

from ._fields import MAX_VALUE_CHARS
from ._keys import (
    EARLIEST_TIME,
    LATEST_TIME,
    MAX_ID_CHARS,
    S3_MAX_KEY_BYTES,
    Partition,
    sanitize_id,
    template_fields,
)
from ._records import SPOOLED, Entry, SpoolRef
from ._segment_lines import TORN_WRITE, Line

FOREIGN_KEY = "foreign_key"
#: The form of each per-record or per-process placeholder's value.
_FORMS = {
    "year": r"\d{4}", "month": r"\d{2}", "day": r"\d{2}", "hour": r"\d{2}",
    "id": rf"[A-Za-z0-9._-]{{1,{MAX_ID_CHARS}}}", "uuid": r"[0-9a-f]{32}", "pid": r"\d{1,10}",
    "host": r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,254}", "seq": r"\d{8,20}",
}
_PARTITION = ("year", "month", "day", "hour")
#: A ``{field:path}`` value as :func:`~s3_log_handler._keys.safe_segment` makes it.
_FIELD_FORM = rf"[A-Za-z0-9-][A-Za-z0-9._-]{{0,{MAX_VALUE_CHARS - 1}}}"
#: One key segment any template could render: visible to Hive-style readers (not starting
#: with ``.`` or ``_``), never ``..``, never empty.
_SAFE_SEGMENT = re.compile(r"[A-Za-z0-9=-][A-Za-z0-9._=-]*")


def spool_mac_key(setting: str | None, environ: Mapping[str, str] | None = None) -> bytes | None:
    """The key for spool line HMACs: ``spool_hmac_key``, else ``$ANALYTICS_SPOOL_KEY``;
    ``None`` (no HMAC) when neither is set."""
    env = os.environ if environ is None else environ
    value = setting or env.get("ANALYTICS_SPOOL_KEY") or ""
    return value.encode("utf-8") if value else None


class KeyCheck:
    """``check(entry)`` is True when ``entry``'s id, time and key could have been made by a
    handler with this ``template``, ``prefix``, object extension ``ext`` and ``mode``."""

    def __init__(self, template: str, prefix: str, ext: str, mode: str) -> None:
        self._prefix = prefix
        self._pattern = _key_pattern(template, prefix, ext) if mode == "object" else None

    def __call__(self, entry: Entry) -> bool:
        created = entry.created
        if not EARLIEST_TIME <= created < LATEST_TIME or (
                sanitize_id(entry.record_id) != entry.record_id):
            return False
        key = entry.key
        if key is None:  # made from the (checked) id and time when uploaded
            return True
        if len(key.encode("utf-8", "surrogatepass")) > S3_MAX_KEY_BYTES:
            return False
        if self._pattern is None:  # batch mode, or a template we cannot model
            return _plausible(key, self._prefix)
        match = self._pattern.fullmatch(key)
        if match is None:
            return False
        found = match.groupdict()
        if found.get("id", entry.record_id) != entry.record_id:
            return False
        partition = Partition.of(created)
        return all(found[name] == getattr(partition, name) for name in _PARTITION
                   if name in found)


def _plausible(key: str, prefix: str) -> bool:
    """A key no template could be modelled for: under ``prefix`` (a whole segment) with
    every segment one a handler could render."""
    if prefix and not key.startswith(prefix + "/"):
        return False
    return all(_SAFE_SEGMENT.fullmatch(segment) for segment in key.split("/"))


def _key_pattern(template: str, prefix: str, ext: str) -> re.Pattern[str] | None:
    """A regex matching the keys ``template`` renders (``{field:path}`` values in their
    safe form), or ``None`` for a template with other format specs or conversions (then
    only :func:`_plausible` applies)."""
    parts: list[str] = []
    seen: set[str] = set()
    fields = {path: f"f{i}" for i, path in enumerate(template_fields(template))}
    for literal, name, spec, conversion in string.Formatter().parse(template):
        parts.append(re.escape(literal))
        if name is None:
            continue
        form = _FIELD_FORM if name == "field" else _FORMS.get(name)
        if name == "field" and spec in fields and not conversion:
            name = fields[spec]
        elif spec or conversion or (form is None and name not in ("prefix", "ext")):
            return None
        if name in ("prefix", "ext"):
            parts.append(re.escape(prefix if name == "prefix" else ext))
        elif name in seen:
            parts.append(f"(?P={name})")
        else:
            seen.add(name)
            parts.append(f"(?P<{name}>{form})")
    return re.compile("".join(parts))


def vet(lines: list[Line], check: Callable[[Entry], bool] | None) -> list[Line]:
    """``lines`` with :data:`FOREIGN_KEY` as the problem of each sound line ``check``
    refuses (all of them unchanged without a ``check``)."""
    if check is None:
        return lines
    return [(i, e, FOREIGN_KEY if p is None and e is not None and not check(e) else p)
            for i, e, p in lines]


class Rejected:
    """Lines read back that must not be uploaded (``tampered``, ``foreign_key``, a line torn
    after adoption), held until the keeper dead-letters them; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lines: dict[str, list[Entry]] = {}

    def add(self, problem: str | None, entry: Entry | None, ref: SpoolRef,
            seq: int | None = None) -> None:
        """Hold the line at ``ref``. Adopted lines (no ``seq``) arrive ``recovered``; a line
        reloaded from disk (its ``seq``) is a record already counted ``spooled``."""
        line = entry if entry is not None else Entry(b"", 0.0, "", None)
        line.ref, line.source = ref, "recovered"
        if seq is not None:
            line.seq, line.state = seq, SPOOLED
        with self._lock:
            self._lines.setdefault(problem or TORN_WRITE, []).append(line)

    def take(self) -> dict[str, list[Entry]]:
        """Every line held, by reason, each handed out once."""
        with self._lock:
            lines, self._lines = self._lines, {}
        return lines
