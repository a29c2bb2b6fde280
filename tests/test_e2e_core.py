"""The core over real HTTP (moto on 127.0.0.1): keys, bodies, headers, failures, fork, exit."""

from __future__ import annotations

import asyncio
import calendar
import dataclasses
import datetime as dt
import decimal
import enum
import gzip
import logging
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import orjson
import pytest
from conftest import wait_until
from servers import BlackholeServer, FaultProxy, SeenRequest, s3_error

from s3_log_handler import S3Handler
from s3_log_handler._keys import Partition
from s3_log_handler.counters import balance

NEW_YEARS_EVE = float(calendar.timegm((2021, 12, 31, 23, 30, 0)))
PARTITION = "sessions/year=2021/month=12/day=31/"
CHILDREN = Path(__file__).parent / "children"


# -- helpers --------------------------------------------------------------------------------
def ship(logger: logging.Logger, payload: object) -> None:
    """Log one analytics record exactly as application code does."""
    logger.info("Session analytics data", extra={"analytics_data": payload})


def record_at(created: float, payload: object, name: str = "analytics") -> logging.LogRecord:
    """An INFO analytics record created at ``created`` (epoch seconds)."""
    return logging.makeLogRecord({"name": name, "levelno": logging.INFO, "levelname": "INFO",
                                  "msg": "Session analytics data", "created": created,
                                  "analytics_data": payload})


def key_for(session_id: str, created: float) -> str:
    """The object key the issue specifies for a record."""
    p = Partition.of(created)
    return f"sessions/year={p.year}/month={p.month}/day={p.day}/{session_id}.json.gz"


def list_keys(s3: Any, bucket: str, prefix: str = "") -> list[str]:
    """Every key in ``bucket`` under ``prefix``."""
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def gunzipped(s3: Any, bucket: str, key: str) -> bytes:
    """The object's body, which must be gzip."""
    return gzip.decompress(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def session(thread: int, index: int) -> dict[str, Any]:
    """A realistic session payload."""
    return {
        "session_id": f"sess-{thread}-{index:02d}",
        "started_at": "2024-05-01T12:00:00Z",
        "duration_s": 12.5 + index,
        "discovered_signals": {"intent": "pricing", "score": index / 7,
                               "contact": {"email": f"u{thread}@example.com"}},
        "turns": [{"role": "user", "text": f"héllo {i} \"quoted\"\nnext"} for i in range(3)],
        "tags": ["a", "ü", "日本"],
    }


class CreatedTimes(logging.Handler):
    """Remembers each analytics record's ``created`` by its session id."""

    def __init__(self) -> None:
        super().__init__()
        self.created: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        self.created[record.__dict__["analytics_data"]["session_id"]] = record.created


def put_counts(proxy: FaultProxy) -> dict[str, int]:
    """How many PUTs the proxy forwarded per object key."""
    counts: dict[str, int] = {}
    for seen in proxy.seen:
        if seen.method == "PUT":
            key = unquote(urlsplit(seen.path).path).split("/", 2)[2]
            counts[key] = counts.get(key, 0) + 1
    return counts


@pytest.fixture
def proxy(moto_endpoint: str) -> Iterator[FaultProxy]:
    """A recording, fault-injecting proxy in front of the moto server."""
    running = FaultProxy(moto_endpoint).start()
    yield running
    running.stop()


@pytest.fixture
def blackhole() -> Iterator[BlackholeServer]:
    """An endpoint that accepts connections and never answers."""
    server = BlackholeServer()
    yield server
    server.stop()


def attach(logger: logging.Logger, bucket: str | None, endpoint: str,
           **options: Any) -> S3Handler:
    """A new S3Handler on ``logger``."""
    handler = S3Handler(bucket, endpoint_url=endpoint, **options)
    logger.addHandler(handler)
    return handler


# -- tests ----------------------------------------------------------------------------------
class TestDelivery:
    def test_200_sessions_from_8_threads_land_under_their_keys(
        self, moto_endpoint: str, s3: Any, bucket: str, analytics_logger: logging.Logger
    ) -> None:
        """Each session becomes one gzip JSON line at its UTC-day key, with headers and metadata."""
        handler = attach(analytics_logger, bucket, moto_endpoint)
        times = CreatedTimes()
        analytics_logger.addHandler(times)
        payloads = {f"sess-{t}-{i:02d}": session(t, i) for t in range(8) for i in range(25)}
        started = dt.datetime.now(dt.UTC).replace(microsecond=0)

        def emit_thread(t: int) -> None:
            for i in range(25):
                ship(analytics_logger, payloads[f"sess-{t}-{i:02d}"])

        threads = [threading.Thread(target=emit_thread, args=(t,)) for t in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert handler.flush(timeout=120)
        finished = dt.datetime.now(dt.UTC)

        expected = {key_for(sid, times.created[sid]): sid for sid in payloads}
        assert sorted(list_keys(s3, bucket)) == sorted(expected)
        for key, sid in expected.items():
            assert gunzipped(s3, bucket, key) == orjson.dumps(payloads[sid]) + b"\n"
            head = s3.head_object(Bucket=bucket, Key=key)
            assert (head["ContentType"], head["ContentEncoding"]) == ("application/json", "gzip")
            assert head["Metadata"]["session_id"] == sid
            uploaded_at = dt.datetime.fromisoformat(head["Metadata"]["uploaded_at"])
            assert uploaded_at.utcoffset() == dt.timedelta(0)
            assert started <= uploaded_at <= finished
        stats = handler.stats()
        assert (stats["emitted"], stats["delivered"], stats["failed"], stats["queued"]) == (
            200, 200, 0, 0)
        assert stats["bytes_sent"] > 0
        assert balance(stats) == 0

    def test_mutation_after_emit_changes_nothing(
        self, moto_endpoint: str, s3: Any, bucket: str, analytics_logger: logging.Logger
    ) -> None:
        """The stored object is the payload as it was at the log call."""
        handler = attach(analytics_logger, bucket, moto_endpoint)
        payload: dict[str, Any] = {"session_id": "mutant", "events": [{"n": 1}], "status": "open"}
        expected = orjson.dumps(payload) + b"\n"
        ship(analytics_logger, payload)
        payload["events"][0]["n"] = 2
        payload["events"].append({"n": 3})
        payload["status"] = "closed"
        payload["session_id"] = "renamed"
        assert handler.flush(timeout=60)
        [key] = list_keys(s3, bucket)
        assert key.endswith("/mutant.json.gz")
        assert gunzipped(s3, bucket, key) == expected
        assert balance(handler.stats()) == 0

    def test_missing_and_hostile_ids_stay_inside_the_partition(
        self, moto_endpoint: str, s3: Any, bucket: str, analytics_logger: logging.Logger
    ) -> None:
        """Traversal, separators, NUL, non-ASCII, long, empty, None, int ids: distinct safe keys."""
        handler = attach(analytics_logger, bucket, moto_endpoint)
        ids: list[object] = ["../../x", "a/b", "\x00", "é-ü-日本", "x" * 2000, "", None, 42,
                             "..", "_SUCCESS", ".hidden"]
        payloads: list[dict[str, Any]] = [{"session_id": sid, "n": n} for n, sid in enumerate(ids)]
        payloads.append({"n": len(ids)})  # no id at all
        for payload in payloads:
            analytics_logger.handle(record_at(NEW_YEARS_EVE, payload))
        assert handler.flush(timeout=60)

        keys = list_keys(s3, bucket)
        assert len(keys) == len(payloads)
        seen_n = set()
        for key in keys:
            assert key.startswith(PARTITION)
            assert key.count("/") == 4
            assert ".." not in key.split("/")
            name = key.rsplit("/", 1)[1]
            assert name[0] not in "._"
            assert len(key.encode("utf-8")) <= 1024
            body = orjson.loads(gunzipped(s3, bucket, key))
            seen_n.add(body["n"])
            assert body == payloads[body["n"]]
            metadata_id = s3.head_object(Bucket=bucket, Key=key)["Metadata"]["session_id"]
            assert metadata_id.isascii()
            assert name == f"{metadata_id}.json.gz"
        assert seen_n == set(range(len(payloads)))
        assert balance(handler.stats()) == 0

    def test_same_id_same_day_overwrites_and_another_day_does_not(
        self, moto_endpoint: str, s3: Any, bucket: str, analytics_logger: logging.Logger
    ) -> None:
        """A re-sent id replaces its object that day (one worker: last wins); next day is new."""
        handler = attach(analytics_logger, bucket, moto_endpoint, workers=1)
        for created, version in [(NEW_YEARS_EVE, 1), (NEW_YEARS_EVE + 60, 2),
                                 (NEW_YEARS_EVE + 3600, 3)]:
            analytics_logger.handle(record_at(created, {"session_id": "dup", "version": version}))
        assert handler.flush(timeout=60)
        objects = {k: orjson.loads(gunzipped(s3, bucket, k))["version"]
                   for k in list_keys(s3, bucket)}
        assert objects == {PARTITION + "dup.json.gz": 2,
                           "sessions/year=2022/month=01/day=01/dup.json.gz": 3}
        assert handler.stats()["delivered"] == 3
        assert balance(handler.stats()) == 0


class Tier(enum.Enum):
    GOLD = "gold"


@dataclasses.dataclass
class Address:
    city: str


class Profile:
    def model_dump(self, mode: str = "python") -> dict[str, Any]:
        return {"plan": "pro", "mode": mode}


class Opaque:
    def __str__(self) -> str:
        return "opaque-value"


class TestValues:
    def test_non_json_values_are_stored_in_their_json_form(
        self, moto_endpoint: str, s3: Any, bucket: str, analytics_logger: logging.Logger
    ) -> None:
        """datetime, Decimal, UUID, Enum, sets, bytes, dataclasses, model_dump() and str()."""
        handler = attach(analytics_logger, bucket, moto_endpoint)
        when = dt.datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=dt.UTC)
        ship(analytics_logger, {
            "session_id": "types", "at": when, "day": when.date(),
            "amount": decimal.Decimal("19.99"), "uid": uuid.UUID(int=5), "tier": Tier.GOLD,
            "tags": {"b", "a"}, "frozen": frozenset({3, 1}), "raw": b"\x00\x01",
            "address": Address("Oslo"), "profile": Profile(), "other": Opaque(),
        })
        assert handler.flush(timeout=60)
        [key] = list_keys(s3, bucket)
        assert orjson.loads(gunzipped(s3, bucket, key)) == {
            "session_id": "types", "at": "2024-05-01T12:30:15.123456+00:00", "day": "2024-05-01",
            "amount": 19.99, "uid": "00000000-0000-0000-0000-000000000005", "tier": "gold",
            "tags": ["a", "b"], "frozen": [1, 3], "raw": "AAE=", "address": {"city": "Oslo"},
            "profile": {"plan": "pro", "mode": "json"}, "other": "opaque-value",
        }
        stats = handler.stats()
        assert stats["fallbacks"] == 1
        assert balance(stats) == 0

    def test_cyclic_payload_is_reported_not_raised(
        self, moto_endpoint: str, s3: Any, bucket: str, analytics_logger: logging.Logger,
        capfd: pytest.CaptureFixture[str]
    ) -> None:
        """A cycle goes to handleError ('--- Logging error ---'), is dead-lettered; others ship."""
        handler = attach(analytics_logger, bucket, moto_endpoint)
        cyclic: dict[str, Any] = {"session_id": "cycle"}
        cyclic["me"] = cyclic
        ship(analytics_logger, cyclic)
        ship(analytics_logger, {"session_id": "fine"})
        assert handler.flush(timeout=60) is False  # one of them was not delivered
        assert "--- Logging error ---" in capfd.readouterr().err
        assert [k.rsplit("/", 1)[1] for k in list_keys(s3, bucket)] == ["fine.json.gz"]
        stats = handler.stats()
        assert (stats["dead_lettered"], stats["dead_letter_reasons"]) == (1, {"encode_error": 1})
        assert balance(stats) == 0


class TestIgnored:
    def test_disabled_handler_sends_nothing(
        self, proxy: FaultProxy, analytics_logger: logging.Logger,
        caplog: pytest.LogCaptureFixture
    ) -> None:
        """No bucket: one INFO line, emits counted ignored, no threads, no request, flush() True."""
        before = {t.name for t in threading.enumerate()}
        with caplog.at_level(logging.INFO, logger="s3_log_handler"):
            handler = attach(analytics_logger, None, proxy.endpoint)
            for i in range(5):
                ship(analytics_logger, {"session_id": f"d{i}"})
        assert handler.flush() is True
        assert [(r.name, r.getMessage()) for r in caplog.records
                if "ANALYTICS_S3_BUCKET" in r.getMessage()] == [
            ("s3_log_handler", "ANALYTICS_S3_BUCKET not configured - skipping S3 export")]
        after = {t.name for t in threading.enumerate()}
        assert not [n for n in after - before if n.startswith("s3-log-handler")]
        assert proxy.seen == []
        stats = handler.stats()
        assert (stats["emitted"], stats["ignored"]) == (5, 5)
        assert balance(stats) == 0

    def test_records_without_the_attribute_are_ignored_and_counted(
        self, moto_endpoint: str, s3: Any, bucket: str, analytics_logger: logging.Logger
    ) -> None:
        """Ordinary log lines on the analytics logger are counted 'ignored', not uploaded."""
        handler = attach(analytics_logger, bucket, moto_endpoint)
        analytics_logger.info("user signed in")
        analytics_logger.info("with other extra", extra={"user": "u1"})
        ship(analytics_logger, {"session_id": "real"})
        assert handler.flush(timeout=60)
        assert len(list_keys(s3, bucket)) == 1
        stats = handler.stats()
        assert (stats["emitted"], stats["ignored"], stats["delivered"]) == (3, 2, 1)
        assert balance(stats) == 0

    def test_recursion_guard_on_the_root_logger(
        self, moto_endpoint: str, s3: Any, bucket: str, analytics_logger: logging.Logger
    ) -> None:
        """A root S3Handler never ships or counts botocore/urllib3/s3_log_handler records."""
        internal_seen: list[str] = []

        class Spy(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                if record.name.split(".")[0] in {"botocore", "urllib3", "s3_log_handler"}:
                    internal_seen.append(record.name)

        root = logging.getLogger()
        root_handler = attach(root, bucket, moto_endpoint, prefix="root")
        root.addHandler(Spy())
        for name in ("botocore", "urllib3"):
            logging.getLogger(name).setLevel(logging.DEBUG)
        handler = attach(analytics_logger, bucket, moto_endpoint)
        for i in range(5):
            ship(analytics_logger, {"session_id": f"a{i}"})
        logging.getLogger("s3_log_handler.test").warning(
            "internal", extra={"analytics_data": {"session_id": "internal"}})
        logging.getLogger("botocore.test").warning(
            "internal", extra={"analytics_data": {"session_id": "boto"}})
        app_logger = logging.getLogger("app.elsewhere")
        app_logger.setLevel(logging.INFO)
        ship(app_logger, {"session_id": "app"})
        assert handler.flush(timeout=60)
        assert root_handler.flush(timeout=60)

        assert any(n.startswith("botocore") for n in internal_seen)
        assert any(n.startswith("urllib3") for n in internal_seen)
        [root_key] = list_keys(s3, bucket, "root/")
        assert root_key.endswith("/app.json.gz")
        assert len(list_keys(s3, bucket, "sessions/")) == 5
        root_stats = root_handler.stats()
        assert (root_stats["emitted"], root_stats["delivered"], root_stats["ignored"]) == (1, 1, 0)
        assert balance(root_stats) == 0
        assert balance(handler.stats()) == 0


class TestFailures:
    def test_access_denied_is_reported_once_with_an_iam_hint(
        self, proxy: FaultProxy, bucket: str, s3: Any, analytics_logger: logging.Logger,
        caplog: pytest.LogCaptureFixture
    ) -> None:
        """403 AccessDenied: one report naming s3:PutObject on the prefix ARN, no secrets."""
        denied = threading.Event()
        denied.set()

        def deny_puts(request: SeenRequest) -> tuple[int, bytes] | None:
            if request.method == "PUT" and denied.is_set():
                return 403, s3_error("AccessDenied", "Access Denied")
            return None

        proxy.inject = deny_puts
        handler = attach(analytics_logger, bucket, proxy.endpoint, config_error_retry=0.2)
        with caplog.at_level(logging.INFO, logger="s3_log_handler"):
            for i in range(3):
                ship(analytics_logger, {"session_id": f"denied{i}"})
            assert wait_until(lambda: handler.stats()["failed"] >= 3, timeout=60)
            denied.clear()
            assert handler.flush(timeout=60)

        messages = [r.getMessage() for r in caplog.records if r.name == "s3_log_handler"]
        reports = [m for m in messages if "AccessDenied" in m]
        assert len(reports) == 1
        assert "s3:PutObject" in reports[0]
        assert f"arn:aws:s3:::{bucket}/sessions/*" in reports[0]
        sent_auth = [r.headers.get("authorization", "") for r in proxy.seen]
        assert any("Credential=testing/" in a for a in sent_auth)  # credentials were in play
        for message in messages:
            assert "testing-secret" not in message
            assert "Credential=" not in message
            assert "Signature=" not in message
        assert len(list_keys(s3, bucket)) == 3
        stats = handler.stats()
        assert stats["delivered"] == 3
        assert stats["failed"] >= 3
        assert balance(stats) == 0


class TestNonBlocking:
    def test_emit_and_close_do_not_wait_for_a_silent_endpoint(
        self, blackhole: BlackholeServer, analytics_logger: logging.Logger
    ) -> None:
        """Against an endpoint that never answers, emits cost a small multiple of NullHandler's,
        and close() returns within close_timeout plus one second."""
        close_timeout = 2.0
        handler = attach(analytics_logger, "silent-bucket", blackhole.endpoint,
                         close_timeout=close_timeout)
        for i in range(handler.config.workers):
            ship(analytics_logger, {"session_id": f"warm{i}"})
        # Every worker is now stuck in the network, so nothing competes with the callers.
        assert wait_until(lambda: len(blackhole._held) >= handler.config.workers, timeout=60)

        null_logger = logging.getLogger(f"null.{uuid.uuid4().hex[:8]}")
        null_logger.setLevel(logging.INFO)
        null_logger.propagate = False
        null_logger.addHandler(logging.NullHandler())
        payloads = [session(9, i % 100) | {"session_id": f"nb-{i}"} for i in range(1500)]

        def time_500(logger: logging.Logger, start: int) -> float:
            began = time.perf_counter()
            for payload in payloads[start:start + 500]:
                ship(logger, payload)
            return time.perf_counter() - began

        null_cost = min(time_500(null_logger, r * 500) for r in range(3))
        s3_cost = min(time_500(analytics_logger, r * 500) for r in range(3))
        assert s3_cost < 50 * null_cost, f"S3Handler {s3_cost:.4f}s vs NullHandler {null_cost:.4f}s"
        stats = handler.stats()
        assert stats["queued"] == 1500 + handler.config.workers
        assert stats["dropped"] == 0

        began = time.monotonic()
        handler.close()
        assert time.monotonic() - began < close_timeout + 1
        stats = handler.stats()
        assert stats["dropped_reasons"] == {"shutdown": 1500}
        assert stats["queued"] == handler.config.workers  # still stuck in the network
        assert balance(stats) == 0

    def test_emit_from_asyncio_code_keeps_the_loop_running(
        self, moto_endpoint: str, s3: Any, bucket: str, analytics_logger: logging.Logger
    ) -> None:
        """Coroutines can log analytics records; a ticker task keeps ticking between them."""
        handler = attach(analytics_logger, bucket, moto_endpoint)

        async def scenario() -> tuple[int, bool]:
            ticks = 0
            done = asyncio.Event()

            async def ticker() -> None:
                nonlocal ticks
                while not done.is_set():
                    ticks += 1
                    await asyncio.sleep(0)

            async def emitter(task: int) -> None:
                for i in range(25):
                    ship(analytics_logger, {"session_id": f"async-{task}-{i}"})
                    await asyncio.sleep(0)

            ticking = asyncio.create_task(ticker())
            await asyncio.gather(*(emitter(t) for t in range(4)))
            emitted_ticks = ticks
            flushed = await asyncio.to_thread(handler.flush, 60)
            done.set()
            await ticking
            return emitted_ticks, flushed

        ticks, flushed = asyncio.run(asyncio.wait_for(scenario(), timeout=120))
        assert ticks >= 25
        assert flushed
        assert len(list_keys(s3, bucket)) == 100
        assert balance(handler.stats()) == 0


class TestLifecycle:
    def test_late_emit_after_close_is_dropped_and_warned_once(
        self, moto_endpoint: str, s3: Any, bucket: str, analytics_logger: logging.Logger,
        caplog: pytest.LogCaptureFixture
    ) -> None:
        """After close(): emits never raise, count dropped/closed, warn once; close twice: fine."""
        handler = attach(analytics_logger, bucket, moto_endpoint)
        ship(analytics_logger, {"session_id": "before"})
        handler.close()
        with caplog.at_level(logging.WARNING, logger="s3_log_handler"):
            for i in range(3):
                ship(analytics_logger, {"session_id": f"after{i}"})
            handler.close()
        assert [k.rsplit("/", 1)[1] for k in list_keys(s3, bucket)] == ["before.json.gz"]
        warnings = [r for r in caplog.records if "S3Handler is closed" in r.getMessage()]
        assert [(r.name, r.levelno) for r in warnings] == [("s3_log_handler", logging.WARNING)]
        stats = handler.stats()
        assert (stats["delivered"], stats["dropped"], stats["dropped_reasons"]) == (
            1, 3, {"closed": 3})
        assert balance(stats) == 0

    def test_forked_child_delivers_its_own_records_and_parent_is_unaffected(
        self, proxy: FaultProxy, s3: Any, bucket: str, analytics_logger: logging.Logger
    ) -> None:
        """After os.fork() parent and child each deliver their own records exactly once."""
        handler = attach(analytics_logger, bucket, proxy.endpoint, close_timeout=30)
        ship(analytics_logger, {"session_id": "parent-warm"})
        assert handler.flush(timeout=60)
        for i in range(10):
            ship(analytics_logger, {"session_id": f"parent-{i}"})
        pid = os.fork()
        if pid == 0:  # the child: never return into pytest
            status = 1
            try:
                for i in range(10):
                    ship(analytics_logger, {"session_id": f"child-{i}"})
                flushed = handler.flush(timeout=30)
                stats = handler.stats()
                handler.close()
                status = 0 if (flushed and stats["emitted"] == 10 and stats["delivered"] == 10
                               and balance(stats) == 0) else 2
            finally:
                os._exit(status)
        deadline = time.monotonic() + 90
        waited = 0, 0
        while time.monotonic() < deadline:
            waited = os.waitpid(pid, os.WNOHANG)
            if waited[0]:
                break
            time.sleep(0.05)
        else:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("forked child did not finish within 90 s")
        assert os.waitstatus_to_exitcode(waited[1]) == 0

        assert handler.flush(timeout=60)
        stats = handler.stats()
        assert (stats["emitted"], stats["delivered"]) == (11, 11)
        assert balance(stats) == 0
        names = sorted(k.rsplit("/", 1)[1].removesuffix(".json.gz") for k in list_keys(s3, bucket))
        assert names == sorted([f"parent-{i}" for i in range(10)] + ["parent-warm"]
                               + [f"child-{i}" for i in range(10)])
        assert set(put_counts(proxy).values()) == {1}
        assert len(put_counts(proxy)) == 21


def child_stats(stdout: str) -> dict[str, Any]:
    """The counters the exit child printed after ``logging.shutdown()``."""
    [line] = [ln for ln in stdout.splitlines() if ln.startswith("stats ")]
    stats: dict[str, Any] = orjson.loads(line.removeprefix("stats "))
    return stats


class TestInterpreterExit:
    def run_child(self, endpoint: str, bucket: str, count: int,
                  close_timeout: float) -> tuple[subprocess.CompletedProcess[str], float]:
        """Run ``children/exit_child.py``; also return how long its exit took (seconds from
        its last log call until the process was gone)."""
        done = subprocess.run(
            [sys.executable, str(CHILDREN / "exit_child.py"), endpoint, bucket, str(count),
             str(close_timeout)],
            capture_output=True, text=True, timeout=120, env=dict(os.environ), check=False)
        ended = time.time()
        emitted_at = float(done.stdout.split()[2]) if done.stdout.startswith("emitted") else 0
        return done, ended - emitted_at

    def test_exit_without_flush_delivers_pending_records(
        self, moto_endpoint: str, s3: Any, bucket: str
    ) -> None:
        """A process that logs and exits without flush() still delivers every record."""
        done, _ = self.run_child(moto_endpoint, bucket, 50, close_timeout=30)
        assert done.returncode == 0, done.stderr
        assert done.stdout.split()[:2] == ["emitted", "50"]
        keys = list_keys(s3, bucket)
        assert sorted(k.rsplit("/", 1)[1] for k in keys) == sorted(
            f"exit-{i}.json.gz" for i in range(50))
        assert "undelivered" not in done.stderr
        stats = child_stats(done.stdout)
        assert (stats["emitted"], stats["delivered"], stats["queued"], stats["balance"]) == (
            50, 50, 0, 0)

    def test_exit_with_a_silent_endpoint_is_bounded_and_loud(
        self, blackhole: BlackholeServer
    ) -> None:
        """Exit waits about close_timeout (flush, then close without a second wait) and then
        reports how many records were not delivered."""
        close_timeout = 2.0
        done, exit_took = self.run_child(blackhole.endpoint, "silent", 10, close_timeout)
        assert done.returncode == 0, done.stderr
        assert exit_took < close_timeout + 2, f"exit took {exit_took:.2f}s"
        match = re.search(r"undelivered records.*?(\d+) dropped, (\d+) kept.*?(\d+) uploads in "
                          r"flight", done.stderr)
        assert match, done.stderr
        dropped, kept, in_flight = (int(n) for n in match.groups())
        assert dropped + kept + in_flight == 10
        stats = child_stats(done.stdout)
        assert (stats["emitted"], stats["delivered"], stats["balance"]) == (10, 0, 0)
        assert stats["dropped_reasons"] == {"shutdown": dropped}
        assert stats["queued"] == in_flight
