"""AnalyticsJsonFormatter: the CloudWatch side of the dual write, as one JSON object per record."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from ._encode import json_line
from ._redact import make_redactor
from ._settings import HandlerConfig

#: ``{"levelname": ..., "name": ..., "message": ...}`` renamed to level/logger/message.
DEFAULT_FORMAT = "%(levelname)s %(name)s %(message)s"
DEFAULT_RENAMES = {"levelname": "level", "name": "logger"}


class AnalyticsJsonFormatter(JsonFormatter):
    """A python-json-logger ``JsonFormatter`` that lifts an analytics payload to the top level.

    For a record carrying a mapping in ``record.<attribute>`` (default ``analytics_data``) the
    output is one JSON object with ``timestamp`` (ISO 8601, UTC), ``level``, ``logger``,
    ``message``, every payload key at the top level, ``_event_type`` (``event_type``, default
    ``"session_analytics"``) and ``_session_id`` (the payload's ``id_field``, or ``null``). A
    payload key that collides with ``timestamp``/``level``/``logger``/``message`` wins: the
    payload is the data. So CloudWatch Logs Insights queries such as
    ``filter _event_type = "session_analytics" | filter discovered_signals.team_size >= 5``
    work verbatim. A payload that is not a mapping is written under ``<attribute>``.

    Records without the attribute (or with ``None`` there, which S3Handler ignores too) format
    as ordinary JSON logs (the same fields plus any ``extra``). ``redact_fields`` and
    ``hash_fields`` (a list, or one comma-separated string, of dotted paths) are applied by
    :func:`s3_log_handler._redact.make_redactor`, the function S3Handler uses, so both sinks
    hide the same fields. Values without a JSON form are encoded as S3Handler encodes them
    (:func:`s3_log_handler._encode.json_line`); formatting never changes the record or the
    caller's payload. Other keyword arguments go to ``JsonFormatter`` (``fmt``,
    ``rename_fields``, ``static_fields``, ``timestamp``, ...).
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
        self._redact = make_redactor(paths)
        self._skip_fields.add(attribute)

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord,
                   message_dict: dict[str, Any]) -> None:
        """The ordinary JSON-log fields, then the payload's keys and the two ``_`` fields."""
        super().add_fields(log_data, record, message_dict)
        payload = record.__dict__.get(self.attribute)
        if payload is None:  # as for S3Handler, None means "no analytics payload"
            return
        payload = self._redact(payload)
        if isinstance(payload, Mapping):
            log_data.update(payload)
            session_id = payload.get(self.id_field)
        else:
            log_data[self.attribute] = payload
            session_id = None
        log_data["_event_type"] = self.event_type
        log_data["_session_id"] = session_id

    def jsonify_log_record(self, log_data: dict[str, Any]) -> str:
        """Encode with S3Handler's encoder, so a value looks the same in both sinks."""
        return json_line(log_data).body.decode("utf-8").rstrip("\n")
