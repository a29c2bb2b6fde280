"""AnalyticsJsonFormatter: the JSON shape CloudWatch Logs receives for each record."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import decimal
import logging
import sys
import uuid
from typing import Any, NamedTuple

import orjson
import pytest

from s3_log_handler import AnalyticsJsonFormatter
from s3_log_handler._encode import json_line
from s3_log_handler._redact import keyed_hash

PAYLOAD: dict[str, Any] = {
    "session_id": "rm_abc123",
    "user_email": "user@example.com",
    "duration_seconds": 300,
    "discovered_signals": {"team_size": 8, "monthly_volume": 40, "qualification_tier": "qualified"},
    "tool_calls": [{"tool": "schedule_demo", "timestamp": "2025-10-29T14:31:00Z"}],
}


def record(payload: Any = None, *, msg: str = "Session analytics data", attribute: str =
           "analytics_data", exc: bool = False, **extra: Any) -> logging.LogRecord:
    """A record as ``analytics_logger.info(msg, extra={attribute: payload})`` creates it."""
    if payload is not None:
        extra[attribute] = payload
    exc_info = None
    if exc:
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            exc_info = sys.exc_info()
    return logging.getLogger("analytics").makeRecord(
        "analytics", logging.INFO, __file__, 1, msg, (), exc_info, extra=extra)


def formatted(formatter: logging.Formatter, rec: logging.LogRecord) -> dict[str, Any]:
    out = orjson.loads(formatter.format(rec))
    assert isinstance(out, dict)
    return out


class TestAnalyticsRecords:
    def test_payload_keys_are_top_level_with_event_fields(self) -> None:
        """Payload keys sit at the top level next to _event_type, _session_id and log fields."""
        out = formatted(AnalyticsJsonFormatter(), record(PAYLOAD))
        assert {k: out[k] for k in PAYLOAD} == PAYLOAD
        assert out["_event_type"] == "session_analytics"
        assert out["_session_id"] == "rm_abc123"
        assert out["level"] == "INFO" and out["logger"] == "analytics"
        assert out["message"] == "Session analytics data"
        assert dt.datetime.fromisoformat(out["timestamp"]).tzinfo is not None
        assert "analytics_data" not in out

    def test_insights_filters_select_the_event(self) -> None:
        """The plan's Insights filters hold on the parsed event (what CloudWatch indexes)."""
        out = formatted(AnalyticsJsonFormatter(), record(PAYLOAD))
        assert out["_event_type"] == "session_analytics"
        assert out["discovered_signals"]["team_size"] >= 5

    def test_event_type_attribute_and_id_field_are_configurable(self) -> None:
        """event_type, the record attribute and the id field can be renamed."""
        formatter = AnalyticsJsonFormatter(attribute="call", id_field="room",
                                           event_type="call_summary")
        out = formatted(formatter, record({"room": "r1", "x": 1}, attribute="call"))
        assert (out["_event_type"], out["_session_id"], out["x"]) == ("call_summary", "r1", 1)
        assert "call" not in out

    def test_missing_id_gives_null_session_id(self) -> None:
        """A payload without its id field still formats, with _session_id null."""
        out = formatted(AnalyticsJsonFormatter(), record({"duration_seconds": 3}))
        assert out["_session_id"] is None and out["duration_seconds"] == 3

    def test_payload_wins_over_log_fields_it_collides_with(self) -> None:
        """A payload key named like a log field keeps the payload's value (data first)."""
        out = formatted(AnalyticsJsonFormatter(), record({"message": "m", "level": 3}))
        assert (out["message"], out["level"]) == ("m", 3)

    def test_non_mapping_payload_is_kept_under_its_attribute(self) -> None:
        """A list payload is written under analytics_data, still tagged as an event."""
        out = formatted(AnalyticsJsonFormatter(), record([1, 2]))
        assert out["analytics_data"] == [1, 2]
        assert out["_event_type"] == "session_analytics" and out["_session_id"] is None

    def test_non_json_values_encode_as_the_s3_side_does(self) -> None:
        """datetime, Decimal, UUID, sets and arbitrary objects never break formatting."""
        payload = {"at": dt.datetime(2025, 10, 29, 14, 30, tzinfo=dt.UTC),
                   "price": decimal.Decimal("1.25"), "id": uuid.UUID(int=7),
                   "tags": {"b", "a"}, "thing": object()}
        out = formatted(AnalyticsJsonFormatter(), record(payload))
        s3_side = orjson.loads(json_line(payload).body)
        assert {k: out[k] for k in payload} == s3_side

    def test_neither_record_nor_payload_is_changed(self) -> None:
        """Formatting leaves the caller's payload and the shared record's payload intact."""
        payload = copy.deepcopy(PAYLOAD)
        rec = record(payload)
        AnalyticsJsonFormatter(redact_fields=["user_email", "discovered_signals.team_size"]
                               ).format(rec)
        assert rec.__dict__["analytics_data"] is payload and payload == PAYLOAD


class TestOrdinaryRecords:
    def test_plain_record_is_an_ordinary_json_log(self) -> None:
        """A record without analytics_data has the log fields and its extras, no event tags."""
        out = formatted(AnalyticsJsonFormatter(), record(msg="hello %s", request_id="q1"))
        assert out["message"] == "hello %s" and out["request_id"] == "q1"
        assert "_event_type" not in out and "_session_id" not in out

    def test_none_payload_is_an_ordinary_log_as_on_the_s3_side(self) -> None:
        """analytics_data=None is no event (S3Handler ignores it too)."""
        out = formatted(AnalyticsJsonFormatter(), record(msg="m", analytics_data=None))
        assert "_event_type" not in out and "analytics_data" not in out

    def test_exception_is_included(self) -> None:
        """exc_info is formatted into the JSON object."""
        out = formatted(AnalyticsJsonFormatter(), record(exc=True))
        assert "RuntimeError: boom" in out["exc_info"]


class TestRedaction:
    def test_redacted_fields_are_removed_at_any_depth(self) -> None:
        """redact_fields removes dotted paths; siblings survive."""
        formatter = AnalyticsJsonFormatter(redact_fields=["user_email",
                                                          "discovered_signals.team_size"])
        out = formatted(formatter, record(PAYLOAD))
        assert "user_email" not in out and "team_size" not in out["discovered_signals"]
        assert out["discovered_signals"]["monthly_volume"] == 40

    def test_comma_separated_string_is_accepted(self) -> None:
        """The env-friendly form 'a, b.c' means the same list."""
        formatter = AnalyticsJsonFormatter(redact_fields="user_email, discovered_signals.team_size")
        assert formatter.redact_fields == ("user_email", "discovered_signals.team_size")

    def test_hashed_fields_use_the_keyed_hash(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """hash_fields replaces values by HMAC-SHA256 under $ANALYTICS_HASH_KEY, like S3Handler."""
        monkeypatch.setenv("ANALYTICS_HASH_KEY", "k" * 32)
        out = formatted(AnalyticsJsonFormatter(hash_fields=["user_email"]), record(PAYLOAD))
        assert out["user_email"] == keyed_hash("user@example.com", b"k" * 32)

    def test_hashing_without_a_key_fails_closed(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without $ANALYTICS_HASH_KEY a hashed field is removed, never sent in clear."""
        monkeypatch.delenv("ANALYTICS_HASH_KEY", raising=False)
        out = formatted(AnalyticsJsonFormatter(hash_fields="user_email"), record(PAYLOAD))
        assert "user_email" not in out

    def test_invalid_field_list_is_rejected_at_construction(self) -> None:
        """A field list that is neither a list nor a string fails when logging is configured."""
        with pytest.raises(ValueError, match="field paths"):
            AnalyticsJsonFormatter(redact_fields=5)  # type: ignore[arg-type]


class TestNoBypass:
    def test_extra_fields_are_redacted_like_payload_fields(self) -> None:
        """A same-named field passed in extra is removed from the final event too."""
        formatter = AnalyticsJsonFormatter(redact_fields=["user_email", "contact.phone"])
        rec = record(PAYLOAD, USER_EMAIL="raw@example.com",
                     contact={"phone": "+1555", "role": "ops"})
        text = formatter.format(rec)
        out = orjson.loads(text)
        assert "@example.com" not in text and "+1555" not in text
        assert out["contact"] == {"role": "ops"} and out["session_id"] == "rm_abc123"

    def test_ordinary_records_are_redacted_too(self) -> None:
        """A plain log line with PII in extra goes through the same paths."""
        formatter = AnalyticsJsonFormatter(redact_fields="user_email")
        out = formatted(formatter, record(msg="login", user_email="raw@example.com", ok=1))
        assert "user_email" not in out and out["ok"] == 1 and "_event_type" not in out

    @pytest.mark.parametrize("fmt", ["%(message)s %(analytics_data)s",
                                     "%(levelname)s %(analytics_data)s %(name)s"])
    @pytest.mark.parametrize("redact", [[], ["user_email"]])
    def test_a_format_naming_the_payload_never_renders_it_raw(self, fmt: str,
                                                             redact: list[str]) -> None:
        """fmt naming the attribute (or a rename of it) adds no raw copy of the payload."""
        formatter = AnalyticsJsonFormatter(fmt, redact_fields=redact,
                                           rename_fields={"analytics_data": "data"})
        text = formatter.format(record(PAYLOAD))
        out = orjson.loads(text)
        assert "analytics_data" not in out and "data" not in out
        assert ("user@example.com" in text) == (not redact)

    def test_hashed_id_is_the_session_id_and_a_redacted_one_is_null(
            self, monkeypatch: pytest.MonkeyPatch) -> None:
        """_session_id is the id as it stands after redaction, never the raw one."""
        monkeypatch.setenv("ANALYTICS_HASH_KEY", "k" * 32)
        hashed = formatted(AnalyticsJsonFormatter(hash_fields="session_id"), record(PAYLOAD))
        assert hashed["_session_id"] == hashed["session_id"] == keyed_hash("rm_abc123",
                                                                           b"k" * 32)
        gone = formatted(AnalyticsJsonFormatter(redact_fields="SESSION_ID"), record(PAYLOAD))
        assert gone["_session_id"] is None and "session_id" not in gone

    def test_objects_are_lifted_to_the_top_level(self) -> None:
        """A dataclass or NamedTuple payload formats like the dict it converts to."""
        @dataclasses.dataclass
        class Session:
            session_id: str
            user_email: str

        class Row(NamedTuple):
            session_id: str
            user_email: str

        for payload in (Session("s1", "a@example.com"), Row("s1", "a@example.com")):
            plain = formatted(AnalyticsJsonFormatter(), record(payload))
            assert (plain["_session_id"], plain["user_email"]) == ("s1", "a@example.com")
            hidden = formatted(AnalyticsJsonFormatter(redact_fields="user_email"),
                               record(payload))
            assert hidden["_session_id"] == "s1" and "user_email" not in hidden


class TestValidText:
    @pytest.mark.parametrize("redact", [[], ["x"]])
    def test_a_lone_surrogate_formats_as_replacement_and_is_counted(self,
                                                                   redact: list[str]) -> None:
        """The event is valid UTF-8 with U+FFFD where the surrogate was; counted."""
        formatter = AnalyticsJsonFormatter(redact_fields=redact)
        text = formatter.format(record({"session_id": "s", "note": "a\ud800b"},
                                       msg="m \udcff"))
        out = orjson.loads(text.encode("utf-8"))
        assert out["note"] == "a\ufffdb" and out["message"] == "m \ufffd"
        assert formatter.fallbacks == 2
