"""PII controls: removed and keyed-hash fields, fail-closed without a key, same on both sinks."""

from __future__ import annotations

import collections
import copy
import dataclasses
import enum
import hashlib
import hmac
import json
import logging
import types
import uuid
from typing import Any, NamedTuple

import boto3
import pytest
import watchtower
from conftest import read_objects, wait_until

from s3_log_handler import S3Handler
from s3_log_handler import _redact as redact
from s3_log_handler._diagnostics import Reports
from s3_log_handler._formatter import AnalyticsJsonFormatter
from s3_log_handler._redact import HASH_KEY_VAR, keyed_hash, make_redactor
from s3_log_handler._settings import HandlerConfig

KEY = "test-hash-key-0123456789-abcdefghijkl"  # 38 bytes: >= MIN_HASH_KEY_BYTES
REDACT = ("user_email", "discovered_signals.contact.phone")
HASHED = ("discovered_signals.company", "caller_id")


def session(n: int = 1) -> dict[str, Any]:
    """A plan-shaped payload with PII in the top level and nested two deep."""
    return {
        "session_id": f"rm_{n:04d}",
        "user_email": f"user{n}@example.com",
        "caller_id": f"+1555000{n:04d}",
        "duration_seconds": 300.5,
        "discovered_signals": {
            "team_size": 7,
            "company": "Acme Corp",
            "contact": {"phone": "+15551234567", "role": "ops"},
        },
    }


def settings(redact_fields: tuple[str, ...] = REDACT,
             hash_fields: tuple[str, ...] = HASHED) -> HandlerConfig:
    return HandlerConfig.from_kwargs(env={}, bucket="bkt", redact_fields=list(redact_fields),
                                     hash_fields=list(hash_fields))


def expected_view(payload: dict[str, Any], key: str = KEY) -> dict[str, Any]:
    """What both sinks must show for :func:`session`: PII gone or replaced by HMAC-SHA256 of
    the value's canonical JSON (so a string is hashed with its quotes)."""
    out = copy.deepcopy(payload)
    del out["user_email"]
    del out["discovered_signals"]["contact"]["phone"]
    mac = hmac.new(key.encode(), digestmod=hashlib.sha256)
    for path in (("discovered_signals", "company"), ("caller_id",)):
        node = out
        for part in path[:-1]:
            node = node[part]
        h = mac.copy()
        h.update(json.dumps(node[path[-1]], separators=(",", ":")).encode())  # type-tagged
        node[path[-1]] = h.hexdigest()
    return out


@pytest.fixture
def fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The missing-key warning is once per process; give this test its own 'once'."""
    monkeypatch.setattr(redact, "_warnings", Reports())


class TestRedactor:
    def test_removes_top_level_and_nested_fields(self) -> None:
        """Dotted paths remove a field at any depth and leave its siblings alone."""
        out = make_redactor(settings(hash_fields=()), {})(session())
        assert "user_email" not in out
        assert out["discovered_signals"]["contact"] == {"role": "ops"}
        assert out["discovered_signals"]["team_size"] == 7

    def test_replaces_hashed_fields_with_hmac_sha256_of_the_key(self) -> None:
        """A hashed field becomes the hex HMAC-SHA256 of its value under ANALYTICS_HASH_KEY."""
        out = make_redactor(settings(), {HASH_KEY_VAR: KEY})(session())
        assert out == expected_view(session())

    def test_hash_is_stable_for_joins_and_depends_on_the_key(self) -> None:
        """The same value hashes the same across calls; another key gives another hash."""
        first = make_redactor(settings(), {HASH_KEY_VAR: KEY})(session())
        again = make_redactor(settings(), {HASH_KEY_VAR: KEY})(session())
        other = make_redactor(settings(), {HASH_KEY_VAR: KEY + "x"})(session())
        assert first["caller_id"] == again["caller_id"] != other["caller_id"]
        assert first["caller_id"] != hashlib.sha256(b"+15550000001").hexdigest()

    def test_paths_run_through_lists(self) -> None:
        """``tool_calls.args.email`` reaches the field in every element of the list."""
        payload = {"tool_calls": [{"tool": "a", "args": {"email": "x@y.z", "n": 1}},
                                  {"tool": "b", "args": {"email": "p@q.r"}}, "not-a-dict"]}
        out = make_redactor(settings(redact_fields=("tool_calls.args.email",), hash_fields=()),
                            {})(payload)
        assert out["tool_calls"] == [{"tool": "a", "args": {"n": 1}},
                                     {"tool": "b", "args": {}}, "not-a-dict"]
        assert payload["tool_calls"][0]["args"]["email"] == "x@y.z"  # caller's copy intact

    def test_never_modifies_the_callers_payload(self) -> None:
        """The caller's dict (and its nested dicts) are unchanged after redaction."""
        payload = session()
        before = copy.deepcopy(payload)
        make_redactor(settings(), {HASH_KEY_VAR: KEY})(payload)
        assert payload == before

    def test_missing_paths_and_non_mapping_payloads_pass_through(self) -> None:
        """Paths absent from a payload, or through a non-object, change nothing."""
        apply = make_redactor(settings(("a.b.c", "session_id.x"), ()), {})
        assert apply({"session_id": "s", "a": 1}) == {"session_id": "s", "a": 1}
        assert apply(["not", "a", "mapping"]) == ["not", "a", "mapping"]

    def test_no_fields_configured_is_the_identity(self) -> None:
        """Without redact_fields/hash_fields the payload object itself is returned."""
        payload = session()
        assert make_redactor(settings((), ()), {})(payload) is payload

    def test_comma_separated_env_style_lists_are_accepted(self) -> None:
        """One comma-separated string (as an environment variable holds) is split into paths."""
        config = HandlerConfig.from_kwargs(env={}, bucket="bkt",
                                           redact_fields=" user_email , a.b ,")
        assert config.redact_fields == ("user_email", "a.b")


class TestFailClosed:
    def test_without_key_hashed_fields_are_removed_and_one_warning_names_the_variable(
            self, fresh_warnings: None, caplog: pytest.LogCaptureFixture) -> None:
        """No ANALYTICS_HASH_KEY: hashed fields are removed, never hashed unkeyed; warn once."""
        caplog.set_level(logging.WARNING, logger="s3_log_handler")
        out1 = make_redactor(settings(), {})(session())
        out2 = make_redactor(settings(), {})(session(2))
        for out in (out1, out2):
            assert "caller_id" not in out
            assert "company" not in out["discovered_signals"]
            assert "user_email" not in out
        warnings = [r for r in caplog.records if HASH_KEY_VAR in r.getMessage()]
        assert len(warnings) == 1
        assert warnings[0].name == "s3_log_handler"
        assert "caller_id" in warnings[0].getMessage()

    def test_handler_starts_without_key_and_ships_fields_removed(
            self, fresh_warnings: None, monkeypatch: pytest.MonkeyPatch, s3: Any, bucket: str,
            moto_endpoint: str, analytics_logger: logging.Logger) -> None:
        """An S3Handler with hash_fields but no key starts, ships, and omits those fields."""
        monkeypatch.delenv(HASH_KEY_VAR, raising=False)
        handler = S3Handler(bucket, endpoint_url=moto_endpoint, hash_fields=list(HASHED))
        analytics_logger.addHandler(handler)
        analytics_logger.info("Session analytics data", extra={"analytics_data": session()})
        assert handler.flush(30)
        (body,) = read_objects(s3, bucket).values()
        shipped = json.loads(body)
        assert "caller_id" not in shipped and "company" not in shipped["discovered_signals"]
        assert shipped["user_email"] == "user1@example.com"  # only hash_fields were set

    def test_the_key_itself_is_never_logged(
            self, fresh_warnings: None, caplog: pytest.LogCaptureFixture,
            monkeypatch: pytest.MonkeyPatch) -> None:
        """Building redactors and formatters with a key logs nothing that contains the key."""
        caplog.set_level(logging.DEBUG)
        monkeypatch.setenv(HASH_KEY_VAR, KEY)
        make_redactor(settings())(session())
        AnalyticsJsonFormatter(hash_fields=list(HASHED)).format(record_with(session()))
        assert KEY not in caplog.text


def record_with(payload: dict[str, Any]) -> logging.LogRecord:
    return logging.makeLogRecord({"name": "analytics", "levelno": logging.INFO,
                                  "levelname": "INFO", "msg": "Session analytics data",
                                  "analytics_data": payload})


class TestBothSinks:
    def test_s3_and_cloudwatch_show_the_same_redacted_and_hashed_payload(
            self, monkeypatch: pytest.MonkeyPatch, s3: Any, bucket: str, moto_endpoint: str,
            analytics_logger: logging.Logger) -> None:
        """One logging call: the S3 object and the CloudWatch event hide the same fields."""
        monkeypatch.setenv(HASH_KEY_VAR, KEY)
        options: dict[str, Any] = {"redact_fields": list(REDACT), "hash_fields": list(HASHED)}
        s3_handler = S3Handler(bucket, endpoint_url=moto_endpoint, **options)
        logs = boto3.client("logs", endpoint_url=moto_endpoint, region_name="us-east-1")
        group = f"/test/redact-{uuid.uuid4().hex[:8]}"
        cw_handler = watchtower.CloudWatchLogHandler(
            log_group_name=group, log_stream_name="s", boto3_client=logs, send_interval=1)
        cw_handler.setFormatter(AnalyticsJsonFormatter(**options))
        analytics_logger.addHandler(s3_handler)
        analytics_logger.addHandler(cw_handler)
        payloads = [session(1), session(2)]
        for payload in payloads:
            analytics_logger.info("Session analytics data", extra={"analytics_data": payload})
        assert s3_handler.flush(30)
        cw_handler.flush()

        def cloudwatch_events() -> list[dict[str, Any]]:
            events = logs.get_log_events(logGroupName=group, logStreamName="s")["events"]
            return [json.loads(e["message"]) for e in events]

        assert wait_until(lambda: len(cloudwatch_events()) == 2, timeout=30)
        in_s3 = sorted((json.loads(b) for b in read_objects(s3, bucket).values()),
                       key=lambda p: p["session_id"])
        in_cw = sorted(cloudwatch_events(), key=lambda p: p["session_id"])
        expected = [expected_view(p) for p in payloads]
        assert in_s3 == expected
        assert [{k: e[k] for k in expected[0]} for e in in_cw] == expected
        for event in in_cw:
            assert "user_email" not in event and event["_event_type"] == "session_analytics"
        for text in [*map(json.dumps, in_s3), *map(json.dumps, in_cw)]:
            assert "@example.com" not in text and "Acme" not in text and "+1555" not in text
        cw_handler.close()

    def test_hashing_the_id_field_keeps_the_raw_id_out_of_the_object_key(
            self, monkeypatch: pytest.MonkeyPatch, s3: Any, bucket: str, moto_endpoint: str,
            analytics_logger: logging.Logger) -> None:
        """With the id field hashed, key and metadata carry the hash, not the raw id."""
        monkeypatch.setenv(HASH_KEY_VAR, KEY)
        handler = S3Handler(bucket, endpoint_url=moto_endpoint, id_field="user_email",
                            hash_fields=["user_email"])
        analytics_logger.addHandler(handler)
        analytics_logger.info("Session analytics data", extra={"analytics_data": session()})
        assert handler.flush(30)
        (key,) = read_objects(s3, bucket)
        head = s3.head_object(Bucket=bucket, Key=key)
        assert "example.com" not in key and "example.com" not in json.dumps(head["Metadata"])
        assert key.endswith(f"/{keyed_hash('user1@example.com', KEY.encode())}.json.gz")


# -- conversion first, then matching as the engines see keys ------------------------------

@dataclasses.dataclass
class Contact:
    email: str
    phone: str


class Person(NamedTuple):
    name: str
    email: str


class Kind(enum.Enum):
    EMAIL = "user_email"


class Model:
    """Quacks like a pydantic v2 model."""

    def __init__(self, **fields: Any) -> None:
        self.fields = fields

    def model_dump(self, mode: str = "python") -> dict[str, Any]:
        return dict(self.fields)


class Opaque:
    def __str__(self) -> str:
        return "alice@example.com"  # str() would leak: conversion must drop it instead


def redactor(redact: tuple[str, ...] = (), hashed: tuple[str, ...] = ()) -> Any:
    return make_redactor(settings(redact, hashed), {HASH_KEY_VAR: KEY})


class TestConversionFirst:
    @pytest.mark.parametrize("payload", [
        {"contact": Contact("a@example.com", "+1555"), "n": 1},
        {"contact": Model(email="a@example.com", phone="+1555"), "n": 1},
        {"contact": {"email": "a@example.com", "phone": "+1555"}, "n": 1},
        {"contact": collections.OrderedDict(email="a@example.com", phone="+1555"), "n": 1},
        {"contact": types.MappingProxyType({"email": "a@example.com", "phone": "+1555"}),
         "n": 1},
    ], ids=["dataclass", "model_dump", "dict", "OrderedDict", "MappingProxy"])
    def test_nested_objects_are_converted_before_paths_apply(self, payload: Any) -> None:
        """A dataclass, model or mapping nested in the payload cannot hide a field."""
        out = redactor(("contact.email",), ("contact.phone",))(payload)
        assert out == {"contact": {"phone": keyed_hash("+1555", KEY.encode())}, "n": 1}

    def test_payload_that_is_itself_a_dataclass_or_namedtuple(self) -> None:
        """Top-level objects become dicts (NamedTuples too), then fields are removed."""
        apply = redactor(("email",))
        assert apply(Contact("a@example.com", "+1")) == {"phone": "+1"}
        assert apply(Person("Al", "a@example.com")) == {"name": "Al"}
        assert apply([Person("Al", "a@example.com")]) == [{"name": "Al"}]

    def test_enum_and_int_keys_become_the_strings_they_serialise_to(self) -> None:
        """{Kind.EMAIL: ...} is the key "user_email" in the output, so it is removed."""
        out = redactor(("user_email", "7"))({Kind.EMAIL: "a@example.com", 7: "x", 8: "y"})
        assert out == {"8": "y"}

    def test_unconvertible_values_are_dropped_and_counted(self) -> None:
        """No str() of an unknown object (it may render PII): dropped, counted."""
        out, fallbacks = redactor(("x",)).apply({"o": Opaque(), "l": [Opaque(), 1], "k": 2})
        assert out == {"l": [None, 1], "k": 2} and fallbacks == 2
        assert "alice" not in json.dumps(out)

    def test_cycles_and_failing_model_dump_are_dropped(self) -> None:
        """A cyclic subtree or a model_dump() that raises is dropped, not a crash."""
        class Broken:
            def model_dump(self, mode: str = "python") -> dict[str, Any]:
                raise RuntimeError("boom")

        cyclic: dict[str, Any] = {"session_id": "s"}
        cyclic["self"] = cyclic
        out, fallbacks = redactor(("x",)).apply({"c": cyclic, "b": Broken(), "k": 1})
        assert out == {"c": {"session_id": "s"}, "k": 1} and fallbacks == 2


class TestMatching:
    @pytest.mark.parametrize("key", ["user_email", "User_Email", "USER_EMAIL", "uSeR_eMaIl"])
    def test_keys_match_case_insensitively(self, key: str) -> None:
        """Athena's SerDe lowercases keys into one column: every spelling is removed."""
        assert redactor(("user_email",))({key: "a@example.com", "k": 1}) == {"k": 1}
        assert redactor(("USER_EMAIL",))({key: "a@example.com", "k": 1}) == {"k": 1}

    def test_all_spellings_in_one_payload_are_removed(self) -> None:
        """Two keys that differ only in case are both reached."""
        payload = {"user_email": "a", "User_Email": "b", "contact": {"Phone": "c"}}
        assert redactor(("user_email", "contact.phone"))(payload) == {"contact": {}}

    @pytest.mark.parametrize("payload", [
        {"contact.phone": "+1555", "k": 1},
        {"Contact.Phone": "+1555", "k": 1},
        {"contact": {"phone": "+1555"}, "k": 1},
        {"a.contact": {"phone": "+1555"}, "k": 1},
    ])
    def test_literal_dotted_keys_match_like_nested_ones(self, payload: dict[str, Any]) -> None:
        """{"contact.phone": ...} is matched by contact.phone, also part-way down a path."""
        out = redactor(("contact.phone", "a.contact.phone"))(payload)
        assert "+1555" not in json.dumps(out) and out["k"] == 1

    def test_hash_paths_match_the_same_way(self) -> None:
        """Hashing reaches every spelling too, with the same hash for the same value."""
        out = redactor(hashed=("caller_id",))({"Caller_ID": "+1555", "x": {"caller_id": 1}})
        assert out == {"Caller_ID": keyed_hash("+1555", KEY.encode()), "x": {"caller_id": 1}}

    def test_remove_wins_over_hash_on_the_same_path(self) -> None:
        """A field listed in both is removed (the stricter control)."""
        assert redactor(("a",), ("a",))({"a": 1, "b": 2}) == {"b": 2}

    @pytest.mark.parametrize("path", ["user_email.", ".user_email", "a..b", "a. b", " a .b",
                                      "a.*", "tool_calls[0].email", "a.\x00", "a.b\tc"])
    def test_malformed_paths_are_refused_at_construction_naming_them(self, path: str) -> None:
        """A path that could never match is a ValueError naming it, in both sinks."""
        for build in (lambda: settings((path,), ()), lambda: settings((), (path,)),
                      lambda: AnalyticsJsonFormatter(redact_fields=[path])):
            with pytest.raises(ValueError, match="dotted field path") as info:
                build()
            assert repr(path) in str(info.value)


class TestHashing:
    def test_type_tagged_values_hash_differently(self) -> None:
        """5 and "5", None and "None", True and "true" never share a hash."""
        key = KEY.encode()
        for a, b in ((5, "5"), (None, "None"), (True, "true"), (5, 5.0), ([1], "[1]")):
            assert keyed_hash(a, key) != keyed_hash(b, key), (a, b)

    def test_same_value_and_key_always_hash_the_same(self) -> None:
        """Stable across calls and redactors (joins work); dict key order does not matter."""
        key = KEY.encode()
        assert keyed_hash("a@example.com", key) == keyed_hash("a@example.com", key)
        assert keyed_hash({"a": 1, "b": 2}, key) == keyed_hash({"b": 2, "a": 1}, key)
        first = redactor(hashed=("caller_id",))({"caller_id": "+1555"})
        second = redactor(hashed=("caller_id",))({"caller_id": "+1555"})
        assert first == second

    def test_the_hash_is_hmac_of_the_canonical_json(self) -> None:
        """Documented form: HMAC-SHA256(key, compact sorted-key JSON of the value), hex."""
        key = KEY.encode()
        assert keyed_hash("a@b.c", key) == hmac.new(key, b'"a@b.c"', hashlib.sha256).hexdigest()
        assert keyed_hash(5, key) == hmac.new(key, b"5", hashlib.sha256).hexdigest()
        assert keyed_hash(None, key) == hmac.new(key, b"null", hashlib.sha256).hexdigest()

    @pytest.mark.parametrize("short", ["k", "x" * 31, "é" * 15])  # 1, 31 and 30 bytes
    def test_a_short_key_removes_the_fields_and_warns_once_saying_why(
            self, short: str, fresh_warnings: None, caplog: pytest.LogCaptureFixture) -> None:
        """A key under 32 bytes is treated as missing: removed, one warning, key not shown."""
        caplog.set_level(logging.WARNING, logger="s3_log_handler")
        for n in (1, 2):
            out = make_redactor(settings((), HASHED), {HASH_KEY_VAR: short})(session(n))
            assert "caller_id" not in out and "company" not in out["discovered_signals"]
        warnings = [r.getMessage() for r in caplog.records if HASH_KEY_VAR in r.getMessage()]
        assert len(warnings) == 1
        assert "shorter than 32 bytes" in warnings[0] and "caller_id" in warnings[0]
        assert short not in warnings[0].replace(HASH_KEY_VAR, "")

    def test_a_32_byte_key_hashes(self) -> None:
        """Exactly 32 bytes is enough."""
        key = "k" * 32
        out = make_redactor(settings((), ("caller_id",)), {HASH_KEY_VAR: key})(session())
        assert out["caller_id"] == keyed_hash("+15550000001", key.encode())

    def test_rotating_the_key_changes_every_hash(self) -> None:
        """A new key gives new hashes (so rotation needs the re-keying the README describes)."""
        old = make_redactor(settings((), ("caller_id",)), {HASH_KEY_VAR: KEY})(session())
        new = make_redactor(settings((), ("caller_id",)), {HASH_KEY_VAR: KEY[::-1]})(session())
        assert old["caller_id"] != new["caller_id"]
