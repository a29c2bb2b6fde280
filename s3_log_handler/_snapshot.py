"""The snapshot: one record's payload made into an :class:`Entry` on the caller's thread.

Whatever cannot become a line of the table is dead-lettered here, through the ledger, with its
reason: ``encode_error`` (no JSON form; then re-raised for ``handleError``), ``not_an_object``
(Athena's JSON SerDe fails a whole query on such a line) and ``too_large``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping

import orjson

from ._diagnostics import Reports
from ._encode import EncodeError, json_line
from ._fields import MAX_VALUE_CHARS, FieldReader
from ._keys import (
    EARLIEST_TIME,
    LATEST_TIME,
    MAX_ID_CHARS,
    Partition,
    render_key,
    sanitize_id,
    template_fields,
)
from ._ledger import Ledger
from ._records import DEAD_LETTERED, Entry
from ._redact import Redactor
from ._settings import HandlerConfig

#: Key placeholders that differ between processes: such a key is fixed at emit time (and
#: kept in the spool), so a retry or a replay by another process keeps it.
_PER_PROCESS = ("{uuid}", "{pid}", "{host}", "{seq}")


def check_key_template(config: HandlerConfig, suffix: str) -> None:
    """Raise ``ValueError`` when ``config``'s keys can exceed S3's 1,024-byte limit (with the
    longest id a record can have), so that fails at start-up rather than per record."""
    ext = (".ndjson" if config.mode == "batch" else ".json") + suffix
    longest = ("x" * MAX_VALUE_CHARS,) * len(template_fields(config.key_template))
    render_key(config.key_template, prefix=config.prefix, ext=ext, partition=Partition.of(0),
               record_id="x" * MAX_ID_CHARS, fields=longest)


class Snapshotter:
    """Turns ``(record, payload)`` into an :class:`Entry`, or dead-letters it."""

    def __init__(self, config: HandlerConfig, suffix: str, ledger: Ledger,
                 reports: Reports) -> None:
        self._ledger = ledger
        self._reports = reports
        self._template = config.key_template
        self._prefix = config.prefix
        self._attribute = config.attribute
        self._id_field = config.id_field
        self._max_bytes = config.max_record_bytes
        self._ext = ".json" + suffix
        # A key that depends only on the record (time, id) is made on the upload thread.
        self._key_at_emit = config.mode == "object" and any(
            part in self._template for part in _PER_PROCESS)
        reader = FieldReader(self._template, config.time_field)
        self._fields = reader if reader.active else None

    def take_redacted(self, record: logging.LogRecord, payload: object,
                      redactor: Redactor, letter: str | None = None) -> Entry | None:
        """:meth:`take` for the payload converted to plain JSON types and redacted, so the id,
        the object and any dead letter come from that result, never from ``payload``.
        Values conversion dropped (fail closed) or changed are counted in ``fallbacks``."""
        try:
            plain, fallbacks = redactor.apply(payload)
        except EncodeError:  # nested deeper than the interpreter can walk
            body = (f"<{type(payload).__name__} too deeply nested to redact; not kept>"
                    ).encode("utf-8", "replace")
            self._ledger.settle([Entry(body, _valid_time(record.created, self._ledger),
                                       sanitize_id(None), None, letter=letter)],
                                DEAD_LETTERED, "encode_error")
            raise
        if fallbacks:
            self._ledger.add(fallbacks=fallbacks)
        return self.take(record, plain, letter)

    def take(self, record: logging.LogRecord, payload: object,
             letter: str | None = None) -> Entry | None:
        """The record as an :class:`Entry`, or ``None`` when it was dead-lettered here.
        Raises :class:`EncodeError` (after dead-lettering) for a payload with no JSON form.
        ``letter``: the dead letter ``replay`` re-emits it from (kept on the entry)."""
        record_id = sanitize_id(payload.get(self._id_field) if type(payload) is dict
                                else _payload_id(payload, self._id_field))
        created = record.created
        try:
            line = json_line(payload)
        except EncodeError:
            body = _safe_repr(payload)[:4096].encode("utf-8", "replace")
            self._ledger.settle([Entry(body, _valid_time(created, self._ledger), record_id,
                                       None, letter=letter)], DEAD_LETTERED, "encode_error")
            raise
        if line.fallbacks:
            self._ledger.add(fallbacks=line.fallbacks)
        body = line.body
        fields = None
        if self._fields is not None and body[0] == 0x7B:  # "{": else dead-lettered below
            created, fields = self._read_fields(payload, body, created)
        if not EARLIEST_TIME <= created < LATEST_TIME:  # NaN too: a filter may set anything
            created = _valid_time(created, self._ledger)
        key = None
        if self._key_at_emit:
            key = render_key(self._template, prefix=self._prefix, ext=self._ext,
                             partition=Partition.of(created), record_id=record_id,
                             fields=fields or ())
        entry = Entry(body, created, record_id, key, letter=letter, fields=fields)
        if body[0] != 0x7B:  # "{"
            self._ledger.settle([entry], DEAD_LETTERED, "not_an_object")
            self._reports.report(f"not_an_object-{record.name}", logging.WARNING,
                                 "logger %r sent a %s as %s, not a JSON object; dead-lettered "
                                 "(not_an_object)", record.name, type(payload).__name__,
                                 self._attribute)
            return None
        if len(body) > self._max_bytes:
            self._ledger.settle([entry], DEAD_LETTERED, "too_large")
            self._reports.report("too_large", logging.ERROR,
                                 "analytics record %s is %d bytes, over max_record_bytes=%d; "
                                 "dead-lettered", record_id, len(body), self._max_bytes)
            return None
        return entry

    def _read_fields(self, payload: object, body: bytes, created: float) -> tuple[
            float, tuple[str, ...]]:
        """The record's time (``time_field``, else ``created``) and partition values; each
        fallback (a default partition value, a missing or unparsable time) is counted."""
        reader = self._fields
        assert reader is not None
        data = payload if type(payload) is dict else orjson.loads(body)
        fields, defaults = reader.values(data)
        if defaults:
            self._ledger.add(field_defaults=defaults)
        if reader.time_field is not None:
            when = reader.time(data)
            if when is None or not EARLIEST_TIME <= when < LATEST_TIME:
                self._ledger.add(time_fallbacks=1)
            else:
                created = when
        return created, fields


def _valid_time(created: float, ledger: Ledger) -> float:
    """``created`` when it has a UTC partition, else now (counted in ``fallbacks``)."""
    if EARLIEST_TIME <= created < LATEST_TIME:  # False for NaN: a filter may set anything
        return created
    ledger.add(fallbacks=1)
    return time.time()


def _payload_id(payload: object, field: str) -> object:
    """The payload's id field: a mapping's item, or the attribute of a dataclass, NamedTuple
    or ``model_dump()`` model (the objects the encoder writes as JSON objects); else None."""
    if isinstance(payload, Mapping):
        return payload.get(field)
    if (dataclasses.is_dataclass(payload) or callable(getattr(payload, "model_dump", None))
            or (isinstance(payload, tuple) and hasattr(payload, "_asdict"))):
        return getattr(payload, field, None)
    return None


def _safe_repr(payload: object) -> str:
    """What a dead letter keeps of a payload that has no JSON form; never raises."""
    try:
        return repr(payload)
    except Exception as exc:
        return f"<unrepresentable {type(payload).__name__}: {type(exc).__name__}>"
