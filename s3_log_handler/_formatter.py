"""AnalyticsJsonFormatter: the CloudWatch side of the dual write, as one JSON object per record."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from ._encode import json_line
from ._plain import to_plain
from ._redact import Redactor, make_redactor
from ._settings import HandlerConfig

#: ``{"levelname": ..., "name": ..., "message": ...}`` renamed to level/logger/message.
DEFAULT_FORMAT = "%(levelname)s %(name)s %(message)s"
DEFAULT_RENAMES = {"levelname": "level", "name": "logger"}


class AnalyticsJsonFormatter(JsonFormatter):
    """A python-json-logger ``JsonFormatter`` that lifts an analytics payload to the top level.

    For a record carrying a payload in ``record.<attribute>`` (default ``analytics_data``: a
    dict, dataclass, ``model_dump()`` model or NamedTuple) the output is one JSON object with
    ``timestamp`` (ISO 8601, UTC), ``level``, ``logger``, ``message``, every payload key at
    the top level, ``_event_type`` (``event_type``, default ``"session_analytics"``) and
    ``_session_id`` (the payload's ``id_field``, or ``null``). A payload key that collides
    with ``timestamp``/``level``/``logger``/``message`` wins: the payload is the data. So
    CloudWatch Logs Insights queries such as
    ``filter _event_type = "session_analytics" | filter discovered_signals.team_size >= 5``
    work verbatim. A payload that is not an object is written under ``<attribute>``; the raw
    attribute is never rendered, even when ``fmt`` names it.

    Records without the attribute (or with ``None`` there, which S3Handler ignores too) format
    as ordinary JSON logs (the same fields plus any ``extra``). ``redact_fields`` and
    ``hash_fields`` (a list, or one comma-separated string, of dotted paths) are applied by
    the redactor S3Handler uses (:func:`s3_log_handler._redact.make_redactor`), to the whole
    final event (``extra`` fields too) after converting it to plain JSON types, so both sinks
    hide the same fields. Values without a JSON form are encoded as S3Handler encodes them
    (:func:`s3_log_handler._encode.json_line`; dropped when redaction is configured) and
    counted in ``fallbacks``, as are lone surrogates (written as U+FFFD); formatting never
    changes the record or the caller's payload. Other keyword arguments go to
    ``JsonFormatter`` (``fmt``, ``rename_fields``, ``static_fields``, ``timestamp``, ...).
    """

    def __init__(self, fmt: str | Sequence[str] | None = DEFAULT_FORMAT, *args: Any,
                 attribute: str = "analytics_data", id_field: str = "session_id",
                 event_type: str = "session_analytics",
                 redact_fields: Sequence[str] | str = (), hash_fields: Sequence[str] | str = (),
                 **kwargs: Any) -> None:
        kwargs.setdefault("rename_fields", dict(DEFAULT_RENAMES))
        kwargs.setdefault("timestamp", True)
        super().__init__(fmt, *args, **kwargs)
        self.attribute = attribute
        self.id_field = id_field
        self.event_type = event_type
        # The S3 side's own parsing and validation of the field lists, then its redactor.
        paths = HandlerConfig.from_kwargs(env={}, redact_fields=redact_fields,
                                          hash_fields=hash_fields)
        self.redact_fields, self.hash_fields = paths.redact_fields, paths.hash_fields
        redactor = make_redactor(paths)
        self._redactor = redactor if redactor.active else None
        self._skip_fields.add(attribute)
        #: Values without a JSON form and lone surrogates this formatter dropped or replaced.
        self.fallbacks = 0

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord,
                   message_dict: dict[str, Any]) -> None:
        """The ordinary JSON-log fields, then the payload's keys and the two ``_`` fields;
        with redaction configured, the paths then apply to that whole event."""
        super().add_fields(log_data, record, message_dict)
        # A format string naming the attribute must not render the raw payload.
        log_data.pop(self.attribute, None)
        log_data.pop(self._get_rename(self.attribute), None)
        payload = record.__dict__.get(self.attribute)
        if self._redactor is not None:
            self._add_redacted(log_data, payload, self._redactor)
            return
        if payload is None:  # as for S3Handler, None means "no analytics payload"
            return
        if type(payload) is not dict:  # a dataclass, model or NamedTuple is an object too
            plain = to_plain(payload, fail_closed=False)
            self.fallbacks += plain.fallbacks
            payload = plain.value
        if isinstance(payload, dict):
            log_data.update(payload)
            session_id = payload.get(self.id_field)
        else:
            log_data[self.attribute] = payload
            session_id = None
        log_data["_event_type"] = self.event_type
        log_data["_session_id"] = session_id

    def _add_redacted(self, log_data: dict[str, Any], payload: Any, redactor: Redactor) -> None:
        # Everything converted first (fail closed), then the paths on the final event: a
        # field passed in ``extra`` is found as surely as one in the payload.
        event = to_plain(log_data, fail_closed=True)
        plain = to_plain(payload, fail_closed=True)
        self.fallbacks += event.fallbacks + plain.fallbacks
        log_data.clear()
        log_data.update(event.value)
        lifted = payload is not None and isinstance(plain.value, dict)
        if lifted:
            log_data.update(plain.value)
        redactor.strip(log_data)
        if payload is None:
            return
        if not lifted:  # a list (or scalar): the paths run through it, as on the S3 side
            redactor.strip(plain.value)
            log_data[self.attribute] = plain.value
        log_data["_event_type"] = self.event_type
        # The id as it now stands in the event: hashed, or gone (null) when redacted.
        log_data["_session_id"] = (log_data.get(self.id_field)
                                   if lifted and self.id_field in plain.value else None)

    def jsonify_log_record(self, log_data: dict[str, Any]) -> str:
        """Encode with S3Handler's encoder, so a value looks the same in both sinks (and the
        text is valid UTF-8: a lone surrogate becomes U+FFFD, counted in ``fallbacks``)."""
        line = json_line(log_data)
        self.fallbacks += line.fallbacks
        return line.body.decode("utf-8").rstrip("\n")
