"""Nothing lost, over real HTTP: outage, crash, overload, throttling, dead letters, reload.

Outage tests start their own moto server on a port chosen up front, so S3 can be "down"
(nothing listening: connections refused) and then come up on that same port. moto keeps
its state per process, so a bucket is (re)created once the server is up.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import orjson
import pytest
from conftest import StatsSampler, free_port, read_objects, wait_until
from moto.server import ThreadedMotoServer
from servers import BlackholeServer, FaultProxy, SeenRequest, s3_error

from s3_log_handler import S3Handler
from s3_log_handler.counters import balance

CHILD = Path(__file__).parent / "children" / "durability_child.py"
MIB = 1024 * 1024


@contextlib.contextmanager
def moto_on(port: int) -> Iterator[str]:
    """A moto server on 127.0.0.1:``port`` for the duration of the block, then fully closed."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
        # stop() leaves the socket listening (connections would hang, not be refused).
        server._server.server_close()  # type: ignore[union-attr]


def client(endpoint: str) -> Any:
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")


def new_bucket_name() -> str:
    return f"durable-{uuid.uuid4().hex[:12]}"


def analytics(handler: S3Handler) -> logging.Logger:
    lg = logging.getLogger(f"analytics.durability.{uuid.uuid4().hex[:8]}")
    lg.handlers[:] = [handler]
    lg.setLevel(logging.INFO)
    lg.propagate = False
    return lg


def emit(lg: logging.Logger, ids: list[str], **extra: object) -> None:
    for record_id in ids:
        lg.info("Session analytics data",
                extra={"analytics_data": {"session_id": record_id, **extra}})


def object_keys(s3: Any, bucket: str) -> list[str]:
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys.extend(item["Key"] for item in page.get("Contents", []))
    return keys


def ids_in(objects: dict[str, bytes]) -> list[str]:
    """Session ids of every record in every object (NDJSON or single JSON)."""
    return [orjson.loads(line)["session_id"] for body in objects.values()
            for line in body.splitlines() if line]


def spool_segments(spool_dir: Path) -> list[Path]:
    return sorted(spool_dir.glob("*.seg"))


def attempts_ended(handler: S3Handler) -> bool:
    """Wait until a closed handler's last upload attempts have ended: until then it keeps
    their segments locked (so the next owner cannot send them twice), and a ``replay``
    started meanwhile would find nothing it may take."""
    return wait_until(lambda: handler.stats()["queued"] == 0, 30)


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "s3_log_handler._cli", *args], env=env,
                          capture_output=True, text=True, timeout=120, check=False)


class TestOutage:
    def test_records_emitted_while_s3_refuses_connections_arrive_when_it_returns(
        self, record_property: Any,
    ) -> None:
        """500 records, S3 down (connection refused), then up: all arrive with no more calls."""
        port = free_port()
        bucket = new_bucket_name()
        handler = S3Handler(bucket, endpoint_url=f"http://127.0.0.1:{port}", close_timeout=1)
        ids = [f"outage-{n}" for n in range(500)]
        emit(analytics(handler), ids)
        assert handler.flush(2) is False
        down = handler.stats()
        assert down["queued"] == 500
        assert down["failed"] > 0
        with moto_on(port) as endpoint:
            s3 = client(endpoint)
            s3.create_bucket(Bucket=bucket)
            up_at = time.monotonic()
            arrived = wait_until(lambda: len(object_keys(s3, bucket)) == 500, 60, 0.25)
            took = time.monotonic() - up_at
            record_property("outage_recovery_seconds", round(took, 1))
            print(f"\noutage: all 500 delivered {took:.1f}s after S3 came back")
            assert arrived
            keys = object_keys(s3, bucket)
            assert sorted(k.rsplit("/", 1)[1] for k in keys) == sorted(f"{i}.json.gz" for i in ids)
            stats = handler.stats()
            handler.close()
        assert (stats["delivered"], stats["queued"], stats["dropped"]) == (500, 0, 0)
        assert balance(stats) == 0

    def test_a_new_handler_on_the_same_spool_delivers_what_a_closed_one_left(
        self, tmp_path: Path,
    ) -> None:
        """Reload while S3 is down: A closes with records on disk, B adopts and delivers them."""
        port = free_port()
        bucket = new_bucket_name()
        endpoint = f"http://127.0.0.1:{port}"
        first = S3Handler(bucket, endpoint_url=endpoint, spool_dir=str(tmp_path),
                          close_timeout=0.5)
        ids = [f"reload-{n}" for n in range(50)]
        emit(analytics(first), ids)
        first.close()
        # An attempt still in flight could otherwise succeed once S3 is up on that port.
        assert attempts_ended(first)
        left = first.stats()
        assert left["spooled"] == 50
        assert spool_segments(tmp_path)
        with moto_on(port) as live:
            s3 = client(live)
            s3.create_bucket(Bucket=bucket)
            second = S3Handler(bucket, endpoint_url=endpoint, spool_dir=str(tmp_path))
            assert second.stats()["recovered"] == 50  # adopted at start: nothing holds it
            assert second.wait_idle(60)
            stats = second.stats()
            second.close()
            objects = read_objects(s3, bucket)
        assert (stats["recovered"], stats["delivered"]) == (50, 50)
        assert sorted(ids_in(objects)) == sorted(ids)
        assert spool_segments(tmp_path) == []


    def test_a_handler_built_before_the_old_one_closed_still_adopts_its_leftovers(
        self, tmp_path: Path, moto_endpoint: str, s3: Any, bucket: str,
    ) -> None:
        """dictConfig's order: the new handler exists while the old one still locks its
        segments; once the old one closes, the new one picks them up within seconds."""
        dead = f"http://127.0.0.1:{free_port()}"
        old = S3Handler(bucket, endpoint_url=dead, spool_dir=str(tmp_path), close_timeout=0.5)
        ids = [f"handover-{n}" for n in range(20)]
        emit(analytics(old), ids)
        new = S3Handler(bucket, endpoint_url=moto_endpoint, spool_dir=str(tmp_path))
        assert new.stats()["recovered"] == 0  # still locked by the old handler
        old.close()
        assert wait_until(lambda: len(object_keys(s3, bucket)) == len(ids), 30)
        assert new.wait_idle(30)
        stats = new.stats()
        new.close()
        assert (stats["recovered"], stats["delivered"]) == (len(ids), len(ids))
        assert sorted(ids_in(read_objects(s3, bucket))) == sorted(ids)
        assert balance(stats) == 0 and spool_segments(tmp_path) == []


    def test_uploads_in_flight_at_close_are_not_sent_again_by_the_next_owner(
        self, tmp_path: Path, moto_endpoint: str, s3: Any, bucket: str,
    ) -> None:
        """Batch mode, a slow S3 and a short close_timeout: the batch in flight at close
        still lands, and the next handler on the spool does not send it a second time."""

        def slow(request: SeenRequest) -> None:
            if request.method == "PUT" and ".ndjson" in request.path:
                time.sleep(1.5)
            return None

        proxy = FaultProxy(moto_endpoint, inject=slow).start()
        try:
            first = S3Handler(bucket, endpoint_url=proxy.endpoint, spool_dir=str(tmp_path),
                              mode="batch", close_timeout=0.3)
            ids = [f"inflight-{n}" for n in range(10)]
            emit(analytics(first), ids)
            first.close()  # gives up while the batch upload is still in flight
            assert wait_until(lambda: len(object_keys(s3, bucket)) == 1, 30)
            second = S3Handler(bucket, endpoint_url=moto_endpoint, spool_dir=str(tmp_path),
                               mode="batch")
            assert second.wait_idle(30)
            second.close()
        finally:
            proxy.stop()
        lines = ids_in(read_objects(s3, bucket))
        assert sorted(lines) == sorted(ids)  # each exactly once
        assert second.stats()["recovered"] == 0
        assert spool_segments(tmp_path) == []


class TestCrash:
    @pytest.mark.parametrize(("child_target", "mode"), [
        ("blackhole", "object"), ("blackhole", "batch"), ("live", "object"),
    ])
    def test_records_survive_sigkill_and_a_new_handler_delivers_each_once(
        self, child_target: str, mode: str, tmp_path: Path, moto_endpoint: str, s3: Any,
        bucket: str,
    ) -> None:
        """A child emits 300 records and is SIGKILLed; a new handler delivers what is missing.

        Against a black hole nothing is delivered before the kill. Against live S3 the child
        flushes its first 150 records, which leave the spool and are never sent again.
        """
        blackhole = BlackholeServer()
        child_proxy = FaultProxy(moto_endpoint).start()
        live = child_target == "live"
        child = subprocess.Popen(
            [sys.executable, str(CHILD), "crash", "--spool-dir", str(tmp_path), "--endpoint",
             child_proxy.endpoint if live else blackhole.endpoint, "--bucket", bucket,
             "--count", "300", "--mode", mode, "--settle-first", "150" if live else "0"],
            stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "READY"
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(30)
            blackhole.stop()
            child_proxy.stop()
        assert child.returncode == -signal.SIGKILL

        proxy = FaultProxy(moto_endpoint).start()
        try:
            handler = S3Handler(bucket, endpoint_url=proxy.endpoint, spool_dir=str(tmp_path),
                                mode=mode)
            assert handler.wait_idle(60)
            stats = handler.stats()
            handler.close()
        finally:
            proxy.stop()
        by_child = Counter(r.path for r in child_proxy.seen if r.method == "PUT")
        by_heir = Counter(r.path for r in proxy.seen if r.method == "PUT")
        print(f"\ncrash[{child_target}-{mode}]: child PUT {len(by_child)} keys, new handler "
              f"recovered {stats['recovered']} records, {len(set(by_child) & set(by_heir))} "
              f"keys sent by both")
        assert (stats["delivered"], balance(stats)) == (stats["recovered"], 0)
        assert sorted(ids_in(read_objects(s3, bucket))) == sorted(
            f"crash-{n}" for n in range(300))  # every record, none twice
        assert set(by_heir.values()) == {1}
        if live:
            assert len(by_child) >= 150
            assert stats["recovered"] <= 150
            assert not {p for p in by_heir if any(f"/crash-{n}." in p for n in range(150))}
        else:
            assert stats["recovered"] == 300
        assert spool_segments(tmp_path) == []
        assert list((tmp_path / "dead").iterdir()) == []


class TestOverload:
    @pytest.mark.parametrize(("count", "size", "max_queue"), [
        (50_000, 3 * 1024, 16 * MIB),
        # Small records: each once pinned a 4 KiB orjson buffer, 20x what the budget counted.
        (60_000, 150, 4 * MIB),
    ], ids=["3KB-16MiB", "150B-4MiB"])
    def test_an_endpoint_that_never_answers_bounds_memory_and_never_blocks_the_caller(
        self, count: int, size: int, max_queue: int, record_property: Any,
    ) -> None:
        """Records at a black hole with a bounded queue: drops are counted, memory stays bounded."""
        blackhole = BlackholeServer()
        try:
            run = subprocess.run(
                [sys.executable, str(CHILD), "overload", "--endpoint", blackhole.endpoint,
                 "--count", str(count), "--size", str(size), "--max-queue-bytes", str(max_queue)],
                capture_output=True, text=True, timeout=120, check=True)
        finally:
            blackhole.stop()
        result = json.loads(run.stdout.strip().splitlines()[-1])
        for name in ("peak_growth_mib", "emit_ratio", "emit_p50_us", "emit_p99_us",
                     "emit_max_s"):
            record_property(name, round(result[name], 3))
        print(f"\noverload: {json.dumps({k: v for k, v in result.items() if 'stats' not in k})}")
        assert result["peak_growth_mib"] < 64
        # Blocking on the network would cost seconds per record; 10x covers a loaded box.
        assert result["emit_ratio"] < 10
        open_stats = result["stats_before_close"]
        assert open_stats["emitted"] == count
        assert open_stats["dropped_reasons"]["queue_full"] > 0
        assert open_stats["queued"] * size <= max_queue
        assert result["balance_before_close"] == 0
        assert result["balance_after_close"] == 0


class TestThrottling:
    def test_slowdown_for_the_first_seconds_then_every_key_arrives_exactly_once(
        self, moto_endpoint: str, s3: Any, bucket: str,
    ) -> None:
        """A proxy answers 503 SlowDown for 3 s; then each of 200 keys is written exactly once."""
        lock = threading.Lock()
        forwarded: Counter[str] = Counter()
        throttled_until = time.monotonic() + 3.0

        def slow_down(request: SeenRequest) -> tuple[int, bytes] | None:
            if request.method != "PUT":
                return None
            if time.monotonic() < throttled_until:
                return 503, s3_error("SlowDown", "Please reduce your request rate.")
            with lock:
                forwarded[request.path] += 1
            return None

        proxy = FaultProxy(moto_endpoint, inject=slow_down).start()
        try:
            handler = S3Handler(bucket, endpoint_url=proxy.endpoint)
            ids = [f"throttled-{n}" for n in range(200)]
            emit(analytics(handler), ids)
            assert handler.flush(60)
            stats = handler.stats()
            handler.close()
        finally:
            proxy.stop()
        throttled = sum(1 for r in proxy.seen if r.method == "PUT") - sum(forwarded.values())
        assert throttled > 0
        assert stats["failed"] > 0 and stats["retries"] > 0
        assert (stats["delivered"], stats["dropped"]) == (200, 0)
        assert len(forwarded) == 200
        assert set(forwarded.values()) == {1}
        assert sorted(ids_in(read_objects(s3, bucket))) == sorted(ids)


class TestDeadLetters:
    def test_oversize_and_cyclic_records_go_to_dead_and_replay_delivers(
        self, tmp_path: Path, moto_endpoint: str, s3: Any, bucket: str,
    ) -> None:
        """Dead letters carry their reason; `replay` uploads leftovers, then retries letters."""
        handler = S3Handler(bucket, endpoint_url=f"http://127.0.0.1:{free_port()}",
                            spool_dir=str(tmp_path), max_record_bytes=1024, close_timeout=0.5)
        lg = analytics(handler)
        ids = [f"left-{n}" for n in range(5)]
        emit(lg, ids)
        emit(lg, ["oversize-1"], transcript="t" * 2048)
        cyclic: dict[str, object] = {"session_id": "cyclic-1"}
        cyclic["self"] = cyclic
        lg.info("Session analytics data", extra={"analytics_data": cyclic})
        handler.close()
        assert attempts_ended(handler)
        stats = handler.stats()
        assert stats["dead_letter_reasons"] == {"too_large": 1, "encode_error": 1}
        assert balance(stats) == 0
        letters = {orjson.loads(p.read_bytes())["reason"]: orjson.loads(p.read_bytes())
                   for p in (tmp_path / "dead").iterdir()}
        assert set(letters) == {"too_large", "encode_error"}
        assert letters["too_large"]["record_id"] == "oversize-1"
        assert letters["encode_error"]["record_id"] == "cyclic-1"
        assert spool_segments(tmp_path)

        env = {**os.environ, "AWS_ENDPOINT_URL_S3": moto_endpoint}
        first = cli("replay", str(tmp_path), "--bucket", bucket, env=env)
        assert first.returncode == 0, first.stderr
        counts = json.loads(first.stdout)
        assert (counts["recovered"], counts["delivered"]) == (5, 5)
        assert (counts["dead_letters_retried"], counts["dead_letters_left"]) == (0, 2)
        assert sorted(ids_in(read_objects(s3, bucket))) == sorted(ids)
        assert spool_segments(tmp_path) == []

        second = cli("replay", str(tmp_path), "--dead-letters", "--bucket", bucket, env=env)
        assert second.returncode == 0, second.stderr
        counts = json.loads(second.stdout)
        # Replay's handler allows 5 MiB records, so the oversize one goes through now; the
        # cyclic one was kept as its repr (not JSON) and stays a dead letter.
        assert (counts["dead_letters_retried"], counts["dead_letters_left"]) == (1, 1)
        assert counts["delivered"] == 1
        objects = read_objects(s3, bucket)
        assert sorted(ids_in(objects)) == sorted([*ids, "oversize-1"])
        [oversize] = [orjson.loads(b) for k, b in objects.items() if "oversize-1" in k]
        assert oversize["transcript"] == "t" * 2048
        [left] = [orjson.loads(p.read_bytes()) for p in (tmp_path / "dead").iterdir()]
        assert left["reason"] == "encode_error"


class TestReplay:
    def test_replay_refuses_a_missing_directory_and_a_missing_bucket(
        self, tmp_path: Path
    ) -> None:
        """A disabled handler would upload nothing and claim success: replay says why, exit 2."""
        env = {k: v for k, v in os.environ.items() if k != "ANALYTICS_S3_BUCKET"}
        missing = cli("replay", str(tmp_path / "nope"), "--bucket", "b", env=env)
        no_bucket = cli("replay", str(tmp_path), env=env)
        assert (missing.returncode, no_bucket.returncode) == (2, 2)
        assert "does not exist" in missing.stderr
        assert "no bucket" in no_bucket.stderr

    def test_replay_in_object_mode_delivers_a_spool_written_in_batch_mode(
        self, tmp_path: Path, moto_endpoint: str, s3: Any, bucket: str,
    ) -> None:
        """Batch-mode records carry no key; replay's default object mode still names them."""
        handler = S3Handler(bucket, endpoint_url=f"http://127.0.0.1:{free_port()}",
                            spool_dir=str(tmp_path), mode="batch", close_timeout=0.2)
        ids = [f"batched-{n}" for n in range(5)]
        emit(analytics(handler), ids)
        handler.close()
        assert attempts_ended(handler)
        env = {**os.environ, "AWS_ENDPOINT_URL_S3": moto_endpoint}
        run = cli("replay", str(tmp_path), "--bucket", bucket, "--timeout", "20", env=env)
        assert run.returncode == 0, run.stdout + run.stderr
        assert json.loads(run.stdout)["delivered"] == 5
        objects = read_objects(s3, bucket)
        assert sorted(ids_in(objects)) == sorted(ids)
        assert all(k.endswith(("/batched-0.json.gz", "/batched-1.json.gz", "/batched-2.json.gz",
                               "/batched-3.json.gz", "/batched-4.json.gz")) for k in objects)


class TestDiskFull:
    def test_spool_write_failures_fall_back_to_memory_with_one_error(
        self, tmp_path: Path, moto_endpoint: str, s3: Any, bucket: str,
    ) -> None:
        """Spool files that cannot grow: records still go to S3, one error says why."""
        run = subprocess.run(
            [sys.executable, str(CHILD), "diskfull", "--spool-dir", str(tmp_path), "--endpoint",
             moto_endpoint, "--bucket", bucket, "--count", "100", "--limit", "4096"],
            capture_output=True, text=True, timeout=120, check=True)
        result = json.loads(run.stdout.strip().splitlines()[-1])
        stats = result["stats"]
        assert result["flushed"]
        assert len(result["spool_errors"]) == 1
        assert (stats["delivered"], stats["dropped"], stats["spooled"]) == (200, 0, 0)
        assert sorted(ids_in(read_objects(s3, bucket))) == sorted(
            f"full-{n}" for n in range(200))
        assert spool_segments(tmp_path) == []


class TestCountersOverHttp:
    def test_stats_balance_on_every_sample_while_threads_emit_to_s3(
        self, tmp_path: Path, moto_endpoint: str, s3: Any, bucket: str,
    ) -> None:
        """Four threads emit 1,000 records through a spool with little memory; all add up."""
        handler = S3Handler(bucket, endpoint_url=moto_endpoint, spool_dir=str(tmp_path),
                            max_queue_bytes=64 * 1024)
        lg = analytics(handler)
        with StatsSampler(handler) as sampler:
            emitters = [threading.Thread(target=emit, args=(lg, [f"t{t}-{n}" for n in range(250)]),
                                         kwargs={"pad": "q" * 1000}) for t in range(4)]
            for t in emitters:
                t.start()
            for t in emitters:
                t.join()
            idle = handler.wait_idle(60)
        stats = handler.stats()
        handler.close()
        assert idle
        samples = sampler.balances
        assert len(samples) > 10 and samples == [0] * len(samples)
        assert sampler.most_spooled > 0
        assert (stats["emitted"], stats["delivered"]) == (1000, 1000)
        assert len(object_keys(s3, bucket)) == 1000
