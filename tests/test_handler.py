"""S3Handler's caller side with a fake uploader: snapshot, keys, ignored records, close, limits."""

from __future__ import annotations

import calendar
import dataclasses
import gzip
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from conftest import wait_until

from s3_log_handler import S3Handler
from s3_log_handler import _handler as handler_module
from s3_log_handler._diagnostics import mark_internal_thread
from s3_log_handler._policies import ClientPolicy, PutPolicy
from s3_log_handler._uploader import UploadFailure
from s3_log_handler.counters import balance

NEW_YEARS_EVE = float(calendar.timegm((2021, 12, 31, 23, 30, 0)))
PARTITION = "sessions/year=2021/month=12/day=31/"
_NO_PAYLOAD = object()


@dataclass
class Put:
    """One upload the fake saw."""

    key: str
    json: bytes
    record_id: str
    content_encoding: str | None
    thread: str


@dataclass
class FakeUploader:
    """Stands in for S3Uploader: records every put; ``gate`` holds uploads until it is set."""

    put_policy: PutPolicy
    puts: list[Put] = field(default_factory=list)
    gate: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.gate.set()

    def put(self, key: str, body: bytes, *, content_encoding: str | None, record_id: str) -> (
        UploadFailure | None
    ):
        self.gate.wait(60)
        self.puts.append(Put(key, gzip.decompress(body), record_id, content_encoding,
                             threading.current_thread().name))
        return None

    def reset_after_fork(self) -> None:
        pass


MakeHandler = Callable[..., tuple[S3Handler, FakeUploader]]


@pytest.fixture
def make_handler(monkeypatch: pytest.MonkeyPatch) -> Iterator[MakeHandler]:
    """Build S3Handlers whose uploads go to a FakeUploader; closed after the test."""
    made: list[tuple[S3Handler, FakeUploader]] = []
    fakes: list[FakeUploader] = []

    def fake_factory(put: PutPolicy, client: ClientPolicy) -> FakeUploader:
        fakes.append(FakeUploader(put))
        return fakes[-1]

    monkeypatch.setattr(handler_module, "S3Uploader", fake_factory)

    def make(bucket: str | None = "bucket", **options: Any) -> tuple[S3Handler, FakeUploader]:
        handler = S3Handler(bucket, **options)
        made.append((handler, fakes[-1]))
        return made[-1]

    yield make
    for handler, fake in made:
        fake.gate.set()
        handler.close()


def record(payload: object = _NO_PAYLOAD, *, name: str = "analytics",
           created: float | None = None, **extra: object) -> logging.LogRecord:
    """A record as ``logging`` would build it, with ``analytics_data`` when given."""
    attrs: dict[str, object] = {"name": name, "msg": "Session analytics data",
                                "levelno": logging.INFO, "levelname": "INFO", **extra}
    if payload is not _NO_PAYLOAD:
        attrs["analytics_data"] = payload
    if created is not None:
        attrs["created"] = created
    return logging.makeLogRecord(attrs)


def delivered(handler: S3Handler, count: int) -> bool:
    """Wait (bounded) until ``count`` records are delivered."""
    return wait_until(lambda: handler.stats()["delivered"] >= count, timeout=30)


class TestEmit:
    def test_emit_returns_while_uploads_are_held(self, make_handler: MakeHandler) -> None:
        """Records are queued and emit returns even though no upload can finish."""
        handler, fake = make_handler()
        fake.gate.clear()
        for i in range(5):
            handler.handle(record({"session_id": f"s{i}"}))
        assert handler.stats()["queued"] == 5
        assert handler.flush(timeout=0.1) is False
        fake.gate.set()
        assert handler.flush(timeout=30) is True
        assert handler.stats()["delivered"] == 5

    def test_uploads_run_off_the_callers_thread(self, make_handler: MakeHandler) -> None:
        """Network work happens on the handler's worker threads, never in emit()."""
        handler, fake = make_handler()
        handler.handle(record({"session_id": "s"}))
        assert handler.flush(timeout=30)
        [put] = fake.puts
        assert put.thread != threading.current_thread().name
        assert put.thread.startswith("s3-log-handler")

    def test_mutation_after_emit_changes_nothing(self, make_handler: MakeHandler) -> None:
        """The uploaded body is the payload as it was at the log call."""
        handler, fake = make_handler()
        fake.gate.clear()
        payload: dict[str, Any] = {"session_id": "m", "events": [{"n": 1}], "score": 1}
        expected = orjson.dumps(payload) + b"\n"
        handler.handle(record(payload))
        payload["events"][0]["n"] = 99
        payload["score"] = 2
        payload["session_id"] = "other"
        fake.gate.set()
        assert handler.flush(timeout=30)
        [put] = fake.puts
        assert (put.key.rsplit("/", 1)[1], put.json) == ("m.json.gz", expected)

    def test_body_is_one_gzip_json_line_with_its_id(self, make_handler: MakeHandler) -> None:
        """The object body is gzip of ``orjson.dumps(payload) + b"\\n"``; metadata gets the id."""
        handler, fake = make_handler()
        payload = {"session_id": "abc", "text": "line\nbreak", "n": [1, 2]}
        handler.handle(record(payload, created=NEW_YEARS_EVE))
        assert handler.flush(timeout=30)
        [put] = fake.puts
        assert put.json == orjson.dumps(payload) + b"\n"
        assert (put.key, put.record_id, put.content_encoding) == (
            PARTITION + "abc.json.gz", "abc", "gzip")

    def test_key_date_is_the_records_utc_creation_day(
        self, make_handler: MakeHandler, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Partitions come from record.created in UTC, not local time or upload time."""
        monkeypatch.setenv("TZ", "XST-14")
        time.tzset()
        try:
            handler, fake = make_handler()
            handler.handle(record({"session_id": "late"}, created=NEW_YEARS_EVE))
            assert handler.flush(timeout=30)
        finally:
            monkeypatch.undo()
            time.tzset()
        assert [p.key for p in fake.puts] == [PARTITION + "late.json.gz"]

    def test_attribute_and_id_field_are_configurable(self, make_handler: MakeHandler) -> None:
        """attribute/id_field/prefix name where the payload and its id live."""
        handler, fake = make_handler(attribute="payload", id_field="sid", prefix="events")
        handler.handle(logging.makeLogRecord({"name": "a", "created": NEW_YEARS_EVE,
                                              "payload": {"sid": "x1"}}))
        handler.handle(record({"sid": "ignored"}))
        assert handler.flush(timeout=30)
        assert [p.key for p in fake.puts] == ["events/year=2021/month=12/day=31/x1.json.gz"]
        assert handler.stats()["ignored"] == 1

    def test_missing_and_odd_ids_get_distinct_generated_ids(
        self, make_handler: MakeHandler
    ) -> None:
        """No id, None, '' or a number each get their own generated key."""
        handler, fake = make_handler()
        payloads: list[object] = [{}, {"session_id": None}, {"session_id": ""},
                                  {"session_id": 7}]
        for payload in payloads:
            handler.handle(record(payload, created=NEW_YEARS_EVE))
        assert handler.flush(timeout=30)
        keys = [p.key for p in fake.puts]
        assert len(set(keys)) == len(payloads)
        assert all(k.startswith(PARTITION) and k.count("/") == 4 for k in keys)

    def test_a_payload_that_is_not_an_object_is_dead_lettered_with_one_warning(
        self, make_handler: MakeHandler, caplog: pytest.LogCaptureFixture,
    ) -> None:
        """A string, list or number never reaches the table (Athena fails on such a line):
        each is dead-lettered ``not_an_object``, and the logger is named once."""
        handler, fake = make_handler()
        caplog.set_level(logging.WARNING, logger="s3_log_handler")
        for payload in ["just a string", [1, 2], 42, {"session_id": "ok"}]:
            handler.handle(record(payload, name="analytics.voice"))
        assert not handler.flush(timeout=30)  # three records were not delivered
        stats = handler.stats()
        assert [p.key.rsplit("/", 1)[1] for p in fake.puts] == ["ok.json.gz"]
        assert stats["dead_letter_reasons"] == {"not_an_object": 3}
        assert (stats["emitted"], stats["delivered"], stats["dead_lettered"]) == (4, 1, 3)
        warnings = [r.getMessage() for r in caplog.records if "not_an_object" in r.getMessage()]
        assert len(warnings) == 1 and "'analytics.voice'" in warnings[0]

    def test_dataclass_and_model_dump_payloads_are_objects_with_their_id(
        self, make_handler: MakeHandler,
    ) -> None:
        """A dataclass payload (and one with model_dump()) is written as a JSON object; a
        dataclass's session_id names its key."""
        handler, fake = make_handler()

        @dataclasses.dataclass
        class Session:
            session_id: str
            duration_seconds: float

        class Model:
            def model_dump(self, mode: str = "python") -> dict[str, object]:
                return {"session_id": "m-1", "kind": "pydantic-like"}

        handler.handle(record(Session("dc-1", 1.5)))
        handler.handle(record(Model()))
        assert handler.flush(timeout=30)
        bodies = {p.key.rsplit("/", 1)[1]: p.json for p in fake.puts}
        assert orjson.loads(bodies["dc-1.json.gz"]) == {"session_id": "dc-1",
                                                        "duration_seconds": 1.5}
        assert [orjson.loads(b) for k, b in bodies.items() if k != "dc-1.json.gz"] == [
            {"session_id": "m-1", "kind": "pydantic-like"}]

    def test_many_threads_emit_safely(self, make_handler: MakeHandler) -> None:
        """Concurrent emitters lose nothing and the counters add up."""
        handler, fake = make_handler()

        def emit_many(t: int) -> None:
            for i in range(50):
                handler.handle(record({"session_id": f"t{t}-{i}"}))

        threads = [threading.Thread(target=emit_many, args=(t,)) for t in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert handler.flush(timeout=60)
        assert len({p.key for p in fake.puts}) == 600
        stats = handler.stats()
        assert (stats["emitted"], stats["delivered"], balance(stats)) == (600, 600, 0)


class TestIgnoredRecords:
    def test_record_without_payload_is_counted_ignored(self, make_handler: MakeHandler) -> None:
        """A record with no analytics_data attribute is ignored and counted, never uploaded."""
        handler, fake = make_handler()
        handler.handle(record())
        assert handler.flush(timeout=5)
        stats = handler.stats()
        assert (stats["emitted"], stats["ignored"], fake.puts) == (1, 1, [])

    @pytest.mark.parametrize("name", ["botocore", "botocore.endpoint", "boto3.resources",
                                      "urllib3.connectionpool", "s3transfer", "s3_log_handler",
                                      "s3_log_handler._worker"])
    def test_internal_records_are_neither_shipped_nor_counted(
        self, make_handler: MakeHandler, name: str
    ) -> None:
        """The AWS stack's and our own records return early, even when they carry a payload."""
        handler, fake = make_handler()
        handler.handle(record({"session_id": "x"}, name=name))
        handler.handle(record(name=name))
        assert handler.flush(timeout=5)
        assert handler.stats()["emitted"] == 0
        assert fake.puts == []

    def test_lookalike_logger_names_are_not_internal(self, make_handler: MakeHandler) -> None:
        """Only the named loggers and their children are internal, not names that share a stem."""
        handler, _ = make_handler()
        handler.handle(record({"session_id": "a"}, name="botocorex"))
        handler.handle(record({"session_id": "b"}, name="my_s3_log_handler"))
        assert handler.flush(timeout=30)
        assert handler.stats()["delivered"] == 2

    def test_records_from_a_handler_thread_are_not_counted(
        self, make_handler: MakeHandler
    ) -> None:
        """Anything logged on a thread marked internal (our workers) never re-enters."""
        handler, fake = make_handler()

        def on_worker() -> None:
            mark_internal_thread()
            handler.handle(record({"session_id": "loop"}, name="app"))

        thread = threading.Thread(target=on_worker)
        thread.start()
        thread.join()
        assert handler.stats()["emitted"] == 0
        assert fake.puts == []


class TestDisabled:
    def test_no_bucket_ignores_everything_quietly(
        self, make_handler: MakeHandler, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Without a bucket: one INFO line, emits counted ignored, no threads, flush() True."""
        before = set(threading.enumerate())
        with caplog.at_level(logging.INFO, logger="s3_log_handler"):
            handler, fake = make_handler(bucket=None)
            for i in range(3):
                handler.handle(record({"session_id": f"s{i}"}))
            handler.handle(record())
        assert handler.flush() is True
        assert handler.flush(timeout=0) is True
        lines = [r for r in caplog.records if "ANALYTICS_S3_BUCKET" in r.getMessage()]
        assert [(r.name, r.levelno, r.getMessage()) for r in lines] == [(
            "s3_log_handler", logging.INFO,
            "ANALYTICS_S3_BUCKET not configured - skipping S3 export")]
        stats = handler.stats()
        assert (stats["emitted"], stats["ignored"], stats["queued"], balance(stats)) == (4, 4, 0, 0)
        started = [t.name for t in set(threading.enumerate()) - before]
        assert not [n for n in started if n.startswith("s3-log-handler")]
        handler.close()
        handler.close()
        assert fake.puts == []


class TestEncodeFailures:
    def test_cyclic_payload_is_reported_and_dead_lettered(
        self, make_handler: MakeHandler, capfd: pytest.CaptureFixture[str]
    ) -> None:
        """A cycle never raises into the caller: handleError reports it, it is counted."""
        handler, fake = make_handler()
        cyclic: dict[str, Any] = {"session_id": "cyc"}
        cyclic["self"] = cyclic
        handler.handle(record(cyclic))
        handler.handle(record({"session_id": "fine"}))
        assert handler.flush(timeout=30) is False  # the cyclic record was not delivered
        assert "--- Logging error ---" in capfd.readouterr().err
        stats = handler.stats()
        assert stats["dead_lettered"] == 1
        assert stats["dead_letter_reasons"] == {"encode_error": 1}
        assert [p.record_id for p in fake.puts] == ["fine"]
        assert balance(stats) == 0

    def test_a_payload_that_cannot_even_be_shown_is_still_counted(
        self, make_handler: MakeHandler, capfd: pytest.CaptureFixture[str]
    ) -> None:
        """A cyclic payload holding an object whose str() and repr() raise: dead-lettered as
        encode_error all the same, so the counters still add up."""

        class Hostile:
            def __str__(self) -> str:
                raise RuntimeError("no str")

            def __repr__(self) -> str:
                raise RuntimeError("no repr")

        cyclic: list[Any] = [Hostile()]
        cyclic.append(cyclic)
        handler, fake = make_handler()
        handler.handle(record({"session_id": "h", "x": cyclic}))
        assert handler.flush(timeout=30) is False
        assert "--- Logging error ---" in capfd.readouterr().err
        stats = handler.stats()
        assert stats["dead_letter_reasons"] == {"encode_error": 1}
        assert fake.puts == []
        assert balance(stats) == 0

    def test_str_fallbacks_are_counted_in_stats(self, make_handler: MakeHandler) -> None:
        """Values written via str() show up in stats()['fallbacks']."""
        handler, fake = make_handler()
        handler.handle(record({"session_id": "f", "a": object(), "b": [object()]}))
        assert handler.flush(timeout=30)
        assert handler.stats()["fallbacks"] == 2
        assert orjson.loads(fake.puts[0].json)["a"].startswith("<object object")


class TestClose:
    def test_late_emit_is_dropped_counted_and_warned_once(
        self, make_handler: MakeHandler, caplog: pytest.LogCaptureFixture
    ) -> None:
        """After close a record is dropped with reason 'closed', one warning, nothing raised."""
        handler, fake = make_handler()
        handler.close()
        with caplog.at_level(logging.WARNING, logger="s3_log_handler"):
            for i in range(3):
                handler.handle(record({"session_id": f"late{i}"}))
        handler.close()
        stats = handler.stats()
        assert (stats["dropped"], stats["dropped_reasons"]) == (3, {"closed": 3})
        warnings = [r for r in caplog.records if "S3Handler is closed" in r.getMessage()]
        assert [(r.name, r.levelno) for r in warnings] == [("s3_log_handler", logging.WARNING)]
        assert fake.puts == []
        assert balance(stats) == 0

    def test_close_delivers_what_is_pending(self, make_handler: MakeHandler) -> None:
        """close() waits (up to close_timeout) for queued records to be delivered."""
        handler, fake = make_handler(close_timeout=30)
        fake.gate.clear()
        for i in range(3):
            handler.handle(record({"session_id": f"p{i}"}))
        threading.Timer(0.2, fake.gate.set).start()
        handler.close()
        assert handler.stats()["delivered"] == 3

    def test_flush_and_close_never_wait_past_close_timeout(
        self, make_handler: MakeHandler, caplog: pytest.LogCaptureFixture
    ) -> None:
        """With uploads stuck, flush() returns False and close() reports what is left."""
        handler, fake = make_handler(close_timeout=0.2, workers=1)
        fake.gate.clear()
        for i in range(4):
            handler.handle(record({"session_id": f"stuck{i}"}))
        results: list[bool] = []
        waiter = threading.Thread(target=lambda: results.append(handler.flush()))
        waiter.start()
        waiter.join(timeout=30)
        assert results == [False]
        with caplog.at_level(logging.ERROR, logger="s3_log_handler"):
            closer = threading.Thread(target=handler.close)
            closer.start()
            closer.join(timeout=30)
        assert not closer.is_alive()
        [report] = [r for r in caplog.records if "undelivered records" in r.getMessage()]
        assert "3 dropped" in report.getMessage()
        assert "1 uploads in flight" in report.getMessage()
        stats = handler.stats()
        assert stats["dropped_reasons"] == {"shutdown": 3}
        assert balance(stats) == 0


class TestLimits:
    def test_full_queue_drops_instead_of_blocking(
        self, make_handler: MakeHandler, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Past max_queue_bytes a record is dropped with reason 'queue_full' and warned about."""
        handler, fake = make_handler(max_queue_bytes=100, workers=1)
        fake.gate.clear()
        with caplog.at_level(logging.WARNING, logger="s3_log_handler"):
            for i in range(3):
                handler.handle(record({"session_id": f"q{i}", "pad": "x" * 40}))
        stats = handler.stats()
        assert stats["dropped_reasons"] == {"queue_full": 2}
        assert any("queue_full" in r.getMessage() for r in caplog.records)
        fake.gate.set()
        assert handler.flush(timeout=30) is False  # some records were lost
        assert handler.stats()["delivered"] == 1
        assert balance(handler.stats()) == 0

    def test_oversized_record_is_dead_lettered(self, make_handler: MakeHandler) -> None:
        """A record over max_record_bytes is dead-lettered with reason 'too_large'."""
        handler, fake = make_handler(max_record_bytes=50)
        handler.handle(record({"session_id": "big", "pad": "x" * 100}))
        stats = handler.stats()
        assert stats["dead_letter_reasons"] == {"too_large": 1}
        assert fake.puts == []
        assert balance(stats) == 0

    def test_flush_reports_a_record_dead_lettered_at_emit(self, make_handler: MakeHandler) -> None:
        """flush() is True only if all were delivered: a record refused by emit() counts."""
        handler, fake = make_handler(max_record_bytes=50)
        handler.handle(record({"session_id": "ok"}))
        handler.handle(record({"session_id": "big", "pad": "x" * 100}))
        assert handler.flush(timeout=30) is False
        assert [p.record_id for p in fake.puts] == ["ok"]
        handler.handle(record({"session_id": "later"}))
        assert handler.flush(timeout=30) is True  # the loss was reported once

    @pytest.mark.parametrize("mode", ["object", "batch"])
    def test_a_prefix_too_long_for_s3_keys_fails_at_construction(
        self, make_handler: MakeHandler, mode: str
    ) -> None:
        """S3 keys stop at 1,024 bytes: an overlong prefix is refused up front in both modes,
        not per record or when a batch is cut."""
        with pytest.raises(ValueError, match="1024 bytes"):
            make_handler(prefix="p" * 1000, mode=mode)

    @pytest.mark.parametrize("mode", ["object", "batch"])
    def test_a_record_with_a_non_finite_time_still_gets_a_partition(
        self, make_handler: MakeHandler, mode: str
    ) -> None:
        """A filter may set any created: one with no UTC partition (infinite, NaN, 1e20,
        -1e20) is filed under the current time and counted in fallbacks, never lost."""
        handler, fake = make_handler(mode=mode)
        for n, created in enumerate([float("inf"), float("nan"), 1e20, -1e20]):
            broken = record({"session_id": f"t{n}"})
            broken.created = created
            handler.handle(broken)
        assert handler.flush(timeout=30) is True
        stats = handler.stats()
        assert (stats["emitted"], stats["delivered"], stats["fallbacks"]) == (4, 4, 4)
        this_year = time.strftime("year=%Y", time.gmtime())
        assert fake.puts and all(this_year in p.key for p in fake.puts)
        assert balance(stats) == 0

    def test_flush_after_close_does_not_wait(self, make_handler: MakeHandler) -> None:
        """Once closed nothing more can settle: a flush answers at once (no second wait)."""
        handler, fake = make_handler(close_timeout=0.3)
        fake.gate.clear()
        handler.handle(record({"session_id": "stuck"}))
        handler.close()
        started = time.monotonic()
        assert handler.flush(timeout=30) is False
        assert time.monotonic() - started < 5  # far below the 30 s asked for
        fake.gate.set()

    def test_stats_has_the_documented_counters(self, make_handler: MakeHandler) -> None:
        """stats() returns at least the counters the issue names, as a plain dict copy."""
        handler, _ = make_handler()
        stats = handler.stats()
        assert {"emitted", "delivered", "failed", "dropped", "ignored", "queued", "bytes_sent",
                "spooled", "dead_lettered"} <= set(stats)
        stats["emitted"] = 99
        assert handler.stats()["emitted"] == 0
