"""PII controls that cannot be bypassed, over real HTTP (moto): every payload type through the
shipped logging.yaml into S3 and CloudWatch Logs, dead letters, bad times and lone surrogates.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import orjson
import pytest
from conftest import point_shipped_config_at_moto, read_objects, wait_until

from s3_log_handler import AnalyticsJsonFormatter, S3Handler, configure
from s3_log_handler._redact import HASH_KEY_VAR, keyed_hash

REPO_YAML = Path(__file__).resolve().parents[1] / "logging.yaml"
KEY = "e2e-hash-key-" + "0123456789abcdef" * 2  # 45 bytes
EMAIL, OTHER_EMAIL = "alice@example.com", "bob@example.org"
PHONE, CALLER = "+1-555-0100", "+1-555-0199"
#: Removed: user_email and contact.email. Hashed: caller_id and contact.phone.
REDACT, HASHED = "user_email,contact.email", "caller_id,contact.phone"
SECRETS = (EMAIL, OTHER_EMAIL, PHONE, CALLER)
analytics_logger = logging.getLogger("analytics")


@dataclasses.dataclass
class Contact:
    email: str
    phone: str


@dataclasses.dataclass
class Session:
    session_id: str
    user_email: str
    caller_id: str
    contact: Contact
    duration_seconds: float = 12.5


class SessionRow(NamedTuple):
    session_id: str
    user_email: str
    caller_id: str
    contact: dict[str, str]


class LikeModel:
    """Quacks like a pydantic v2 model: attributes plus model_dump(mode=...)."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id

    def model_dump(self, mode: str = "python") -> dict[str, Any]:
        return {"session_id": self.session_id, "user_email": EMAIL, "caller_id": CALLER,
                "contact": {"email": OTHER_EMAIL, "phone": PHONE}, "duration_seconds": 3.0}


class Field(enum.Enum):
    SESSION_ID = "session_id"
    EMAIL = "user_email"
    CALLER = "caller_id"


def pydantic_model(session_id: str) -> Any:
    pydantic = pytest.importorskip("pydantic")

    class ContactModel(pydantic.BaseModel):  # type: ignore[misc, name-defined]
        email: str
        phone: str

    class SessionModel(pydantic.BaseModel):  # type: ignore[misc, name-defined]
        session_id: str
        user_email: str
        caller_id: str
        contact: ContactModel

    return SessionModel(session_id=session_id, user_email=EMAIL, caller_id=CALLER,
                        contact=ContactModel(email=OTHER_EMAIL, phone=PHONE))


#: Each payload type the issue lists: a builder taking the session id.
PAYLOADS: dict[str, Callable[[str], Any]] = {
    "dict": lambda sid: {"session_id": sid, "user_email": EMAIL, "caller_id": CALLER,
                         "contact": {"email": OTHER_EMAIL, "phone": PHONE}, "n": 1},
    "dataclass": lambda sid: Session(sid, EMAIL, CALLER, Contact(OTHER_EMAIL, PHONE)),
    "nested_dataclass": lambda sid: {"session_id": sid, "user_email": EMAIL,
                                     "caller_id": CALLER, "contact": Contact(OTHER_EMAIL, PHONE)},
    "model_dump": LikeModel,
    "pydantic": pydantic_model,
    "namedtuple": lambda sid: SessionRow(sid, EMAIL, CALLER,
                                         {"email": OTHER_EMAIL, "phone": PHONE}),
    "enum_and_int_keys": lambda sid: {Field.SESSION_ID: sid, Field.EMAIL: EMAIL,
                                      Field.CALLER: CALLER, 7: "seven",
                                      "contact": {"email": OTHER_EMAIL, "phone": PHONE}},
    "mixed_case_keys": lambda sid: {"session_id": sid, "User_Email": EMAIL, "CALLER_ID": CALLER,
                                    "Contact": {"EMAIL": OTHER_EMAIL, "Phone": PHONE},
                                    "USER_EMAIL": EMAIL},
    "literal_dotted_keys": lambda sid: {"session_id": sid, "user_email": EMAIL,
                                        "caller_id": CALLER, "contact.email": OTHER_EMAIL,
                                        "Contact.Phone": PHONE},
}


def leaks(text: str) -> list[str]:
    """The raw PII values (removed or meant to be hashed) that appear in ``text``."""
    return [secret for secret in SECRETS if secret in text]


def hashed_values(document: Any) -> set[str]:
    """Every string in ``document`` that is the keyed hash of one of the hashed values."""
    wanted = {keyed_hash(CALLER, KEY.encode()), keyed_hash(PHONE, KEY.encode())}
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
        elif node in wanted:
            found.add(node)

    walk(document)
    return found


@dataclasses.dataclass
class Sinks:
    bucket: str
    group: str
    spool: Path
    s3: Any
    logs: Any

    def events(self) -> list[dict[str, Any]]:
        pages = self.logs.get_paginator("filter_log_events").paginate(logGroupName=self.group)
        return [orjson.loads(e["message"]) for page in pages for e in page["events"]
                if not e["logStreamName"].endswith("-metrics")]  # not the health metrics

    def raw_events(self) -> list[str]:
        pages = self.logs.get_paginator("filter_log_events").paginate(logGroupName=self.group)
        return [e["message"] for page in pages for e in page["events"]]

    def dead_letters(self) -> list[dict[str, Any]]:
        return [orjson.loads(p.read_bytes()) for p in sorted(self.spool.rglob("dead/*.json"))]


@pytest.fixture
def sinks(moto_endpoint: str, s3: Any, bucket: str, tmp_path: Path,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[Sinks]:
    """The shipped logging.yaml pointed at moto, with PII controls set as an operator would."""
    group, logs = point_shipped_config_at_moto(monkeypatch, moto_endpoint, bucket,
                                               tmp_path / "spool", "/e2e-pii")
    monkeypatch.setenv("ANALYTICS_REDACT_FIELDS", REDACT)
    monkeypatch.setenv("ANALYTICS_HASH_FIELDS", HASHED)
    monkeypatch.setenv(HASH_KEY_VAR, KEY)
    yield Sinks(bucket, group, tmp_path / "spool", s3, logs)


def drain() -> S3Handler:
    """Flush and close both analytics handlers, as logging.shutdown() would; the S3 one."""
    handlers = list(analytics_logger.handlers)
    s3_handler = next(h for h in handlers if isinstance(h, S3Handler))
    for handler in handlers:
        if isinstance(handler, S3Handler):
            handler.flush(60.0)
        else:
            handler.flush()
        handler.close()
    return s3_handler


class TestEveryPayloadType:
    @pytest.mark.parametrize("kind", list(PAYLOADS))
    def test_no_sink_and_no_dead_letter_holds_a_redacted_or_unhashed_value(
            self, kind: str, sinks: Sinks) -> None:
        """Through logging.yaml: the S3 object (keyed by the payload's own session_id), the
        CloudWatch event and the dead letter of the same payload sent as a list (not an
        object) hold no removed value and no hashed value in clear; hashed fields carry the
        same HMAC in both sinks."""
        session_id = f"pii-{kind}"
        payload = PAYLOADS[kind](session_id)
        configure(REPO_YAML)
        analytics_logger.info("Session analytics data", extra={"analytics_data": payload})
        analytics_logger.info("Session analytics data", extra={"analytics_data": [payload]})
        stats = drain().stats()
        assert (stats["delivered"], stats["dead_letter_reasons"]) == (1, {"not_an_object": 1})

        (key, body), = read_objects(sinks.s3, sinks.bucket, "sessions/").items()
        assert key.endswith(f"/{session_id}.json.gz")
        stored = orjson.loads(body)
        assert leaks(body.decode("utf-8")) == []
        assert stored["session_id"] == session_id
        assert hashed_values(stored) == {keyed_hash(CALLER, KEY.encode()),
                                         keyed_hash(PHONE, KEY.encode())}

        assert wait_until(lambda: len(sinks.raw_events()) == 2, 30)
        raw = sinks.raw_events()
        assert [leaks(text) for text in raw] == [[], []]
        event = next(e for e in sinks.events() if e.get("_session_id") == session_id)
        assert {k: event[k] for k in stored} == stored  # the same view as S3
        assert hashed_values(event) == hashed_values(stored)

        (letter,) = sinks.dead_letters()
        assert letter["reason"] == "not_an_object"
        assert leaks(json.dumps(letter)) == []
        assert hashed_values(orjson.loads(letter["body"])) == hashed_values(stored)

    @pytest.mark.parametrize("kind", list(PAYLOADS))
    def test_a_too_large_dead_letter_is_redacted_too(
            self, kind: str, s3: Any, bucket: str, moto_endpoint: str, tmp_path: Path,
            analytics_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch) -> None:
        """A record over max_record_bytes is dead-lettered as its redacted line, with the
        id from the converted payload."""
        monkeypatch.setenv(HASH_KEY_VAR, KEY)
        handler = S3Handler(bucket, endpoint_url=moto_endpoint, spool_dir=str(tmp_path),
                            max_record_bytes=64, redact_fields=REDACT, hash_fields=HASHED)
        analytics_logger.addHandler(handler)
        analytics_logger.info("x", extra={"analytics_data": PAYLOADS[kind](f"big-{kind}")})
        assert handler.flush(30) is False  # True only when everything was delivered
        assert handler.stats()["dead_letter_reasons"] == {"too_large": 1}
        (path,) = tmp_path.rglob("dead/*.json")
        letter = orjson.loads(path.read_bytes())
        assert leaks(json.dumps(letter)) == [] and letter["record_id"] == f"big-{kind}"
        assert read_objects(s3, bucket) == {}


class TestBadTimesAndCharacters:
    def test_a_record_created_at_1e20_is_counted_and_delivered(
            self, s3: Any, bucket: str, moto_endpoint: str,
            analytics_logger: logging.Logger) -> None:
        """created=1e20 has no UTC partition: filed under now, counted in fallbacks, never
        lost (emitted 1, delivered 1)."""
        def far_future(record: logging.LogRecord) -> bool:
            record.created = 1e20
            return True

        handler = S3Handler(bucket, endpoint_url=moto_endpoint)
        handler.addFilter(far_future)
        analytics_logger.addHandler(handler)
        analytics_logger.info("x", extra={"analytics_data": {"session_id": "far-future"}})
        assert handler.flush(30)
        stats = handler.stats()
        assert (stats["emitted"], stats["delivered"], stats["fallbacks"]) == (1, 1, 1)
        (key,) = read_objects(s3, bucket)
        assert key.startswith("sessions/year=20") and key.endswith("/far-future.json.gz")

    @pytest.mark.parametrize("mode", ["object", "batch"])
    def test_a_lone_surrogate_gives_valid_utf8_in_s3(
            self, mode: str, s3: Any, bucket: str, moto_endpoint: str,
            analytics_logger: logging.Logger) -> None:
        """Every object decodes as strict UTF-8 (a batch's other lines survive), the
        surrogate is U+FFFD and counted, with and without redaction."""
        handler = S3Handler(bucket, endpoint_url=moto_endpoint, mode=mode, max_batch_age=0.2)
        redacting = S3Handler(bucket, endpoint_url=moto_endpoint, mode=mode, prefix="redacted",
                              max_batch_age=0.2, redact_fields="user_email")
        for h in (handler, redacting):
            analytics_logger.addHandler(h)
        for n, note in enumerate(["ok", "bad \ud800 text", "pair \ud83d\ude00 ok"]):
            analytics_logger.info("x", extra={"analytics_data": {
                "session_id": f"s{n}", "note": note, "user_email": EMAIL}})
        for h in (handler, redacting):
            assert h.flush(30)
            assert h.stats()["fallbacks"] == 1 and h.stats()["delivered"] == 3
        lines = [line for body in read_objects(s3, bucket).values()
                 for line in body.decode("utf-8", "strict").splitlines()]
        notes = sorted(orjson.loads(line)["note"] for line in lines)
        assert notes == sorted(["ok", "bad \ufffd text", "pair \U0001f600 ok"] * 2)

    def test_a_lone_surrogate_event_arrives_in_cloudwatch(self, sinks: Sinks) -> None:
        """Through logging.yaml the CloudWatch event is sent (not lost to an exception) with
        U+FFFD, and the formatter counts it."""
        configure(REPO_YAML)
        formatter = next(h.formatter for h in analytics_logger.handlers
                         if isinstance(h.formatter, AnalyticsJsonFormatter))
        assert isinstance(formatter, AnalyticsJsonFormatter)
        analytics_logger.info("Session analytics data \udcff", extra={"analytics_data": {
            "session_id": "sur", "note": "a\ud800b", "user_email": EMAIL}})
        drain()
        assert wait_until(lambda: len(sinks.events()) == 1, 30)
        (event,) = sinks.events()
        assert (event["_session_id"], event["note"]) == ("sur", "a\ufffdb")
        assert event["message"] == "Session analytics data \ufffd"
        assert "user_email" not in event
        assert formatter.fallbacks == 2
        (body,) = read_objects(sinks.s3, sinks.bucket).values()
        assert orjson.loads(body.decode("utf-8", "strict"))["note"] == "a\ufffdb"
