"""Batch mode over real HTTP: NDJSON objects per partition, triggers, codecs, retries, spool."""

from __future__ import annotations

import calendar
import gzip
import importlib.util
import json
import logging
import os
import re
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import orjson
import pytest
import zstandard
from conftest import wait_until
from servers import FaultProxy, SeenRequest, s3_error

from s3_log_handler import S3Handler
from s3_log_handler._keys import Partition
from s3_log_handler.counters import balance

CHILD = Path(__file__).parent / "children" / "batch_emit.py"
#: 2024-03-01T00:00:00Z: records are stamped either side of it.
MIDNIGHT = float(calendar.timegm((2024, 3, 1, 0, 0, 0)))
#: The default batch key: {prefix}/year=/month=/day=/{host}-{pid}-{seq}-{uuid}{ext}.
KEY = re.compile(r"^(?P<prefix>[^/]+)/year=(?P<year>\d{4})/month=(?P<month>\d{2})/"
                 r"day=(?P<day>\d{2})/(?P<host>[A-Za-z0-9._-]+)-(?P<pid>\d+)-(?P<seq>\d{8})-"
                 r"(?P<uuid>[0-9a-f]{32})(?P<ext>\.ndjson(?:\.gz|\.zst)?)$")


def key_parts(key: str) -> dict[str, str]:
    """The named parts of a batch key; fails the test when the key has another shape."""
    match = KEY.match(key)
    assert match, key
    return match.groupdict()


def _load_child() -> Any:
    spec = importlib.util.spec_from_file_location("batch_emit", CHILD)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


batch_emit = _load_child()


@dataclass
class StoredObject:
    """One object as a reader sees it: key, headers and its NDJSON lines after decoding."""

    key: str
    content_type: str
    content_encoding: str | None
    raw: bytes
    body: bytes

    @property
    def records(self) -> list[dict[str, Any]]:
        return [orjson.loads(line) for line in self.body.splitlines()]


def decode(key: str, raw: bytes) -> bytes:
    """Decompress ``raw`` as its extension says (the reader's view, not the writer's)."""
    if key.endswith(".ndjson.gz"):
        return gzip.decompress(raw)
    if key.endswith(".ndjson.zst"):
        return bytes(zstandard.ZstdDecompressor().decompressobj().decompress(raw))
    assert key.endswith(".ndjson"), key
    return raw


def fetch(s3: Any, bucket: str, prefix: str = "") -> list[StoredObject]:
    """Every object under ``prefix`` with its headers and decoded body, sorted by key."""
    out: list[StoredObject] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            got = s3.get_object(Bucket=bucket, Key=item["Key"])
            raw = got["Body"].read()
            out.append(StoredObject(item["Key"], got["ContentType"],
                                    got.get("ContentEncoding"), raw, decode(item["Key"], raw)))
    return sorted(out, key=lambda o: o.key)


def count_objects(s3: Any, bucket: str) -> int:
    return int(s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0))


def batch_handler(endpoint: str, bucket: str, **options: Any) -> S3Handler:
    """A batch-mode handler whose age trigger stays out of the way unless a test sets it."""
    options.setdefault("max_batch_age", 3600)
    return S3Handler(bucket, endpoint_url=endpoint, prefix="events", mode="batch",
                     retry_base=0.05, retry_cap=0.2, **options)


def emit(logger: logging.Logger, payload: dict[str, Any], created: float = MIDNIGHT + 1) -> None:
    """Log ``payload`` the way user code does, with the record's time injected."""
    logger.handle(logging.makeLogRecord({
        "name": logger.name, "levelno": logging.INFO, "levelname": "INFO",
        "msg": "Session analytics data", "created": created, "analytics_data": payload}))


def close_and_check(handler: S3Handler, delivered: int) -> dict[str, Any]:
    """Close ``handler`` and assert every record was delivered and the counters balance."""
    handler.close()
    stats = handler.stats()
    assert balance(stats) == 0, stats
    assert stats["delivered"] == delivered, stats
    assert (stats["queued"], stats["dropped"], stats["dead_lettered"]) == (0, 0, 0), stats
    return stats


class TestManyWritersAcrossMidnight:
    def test_every_record_lands_exactly_once_in_its_own_day(
        self, moto_endpoint: str, s3: Any, bucket: str, analytics_logger: logging.Logger
    ) -> None:
        """20,000 records from 3 threads in each of 2 processes: each appears once, in its day."""
        per_process, threads, max_records = 10_000, 3, 1000
        child = subprocess.Popen(
            [sys.executable, str(CHILD), moto_endpoint, bucket, "events", "child",
             str(per_process), str(threads), repr(MIDNIGHT), str(max_records)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        handler = batch_emit.make_handler(moto_endpoint, bucket, "events", max_records)
        analytics_logger.addHandler(handler)
        batch_emit.emit_records(analytics_logger, "parent", per_process, threads, MIDNIGHT)
        assert handler.flush(60)
        try:
            out, err = child.communicate(timeout=120)
        finally:
            if child.poll() is None:
                child.kill()
        assert child.returncode == 0, err
        report = json.loads(out.strip().splitlines()[-1])
        assert report["flushed"]
        for stats in (report["stats"], close_and_check(handler, per_process)):
            assert balance(stats) == 0 and stats["delivered"] == per_process, stats

        objects = fetch(s3, bucket, "events/")
        seen: dict[str, int] = {}
        pids: set[str] = set()
        for obj in objects:
            match = key_parts(obj.key)
            pids.add(match["pid"])
            assert match["ext"] == ".ndjson.gz" and obj.content_encoding == "gzip"
            for record in obj.records:
                seen[record["event_id"]] = seen.get(record["event_id"], 0) + 1
                own = Partition.of(record["created"])
                assert (match["year"], match["month"], match["day"]) == (
                    own.year, own.month, own.day), (obj.key, record)
        expected = {batch_emit.event_id(tag, t, i) for tag in ("parent", "child")
                    for t, share in enumerate(batch_emit.shares(per_process, threads))
                    for i in range(share)}
        assert len(expected) == 2 * per_process
        assert set(seen) == expected
        assert all(n == 1 for n in seen.values())
        assert pids == {str(os.getpid()), str(report["pid"])}
        days = {key_parts(o.key)["day"] for o in objects}
        assert days == {"29", "01"}
        assert len(objects) == len({o.key for o in objects})
        assert 20 <= len(objects) <= 40


class TestTriggers:
    def test_count_trigger_cuts_an_object_every_max_batch_records(
        self, moto_endpoint: str, s3: Any, bucket: str, analytics_logger: logging.Logger
    ) -> None:
        """12 records, max_batch_records=5: two objects of 5 appear unprompted, then 2 on flush."""
        handler = batch_handler(moto_endpoint, bucket, max_batch_records=5)
        analytics_logger.addHandler(handler)
        for i in range(12):
            emit(analytics_logger, {"session_id": f"s{i}", "n": i})
        assert wait_until(lambda: count_objects(s3, bucket) == 2, timeout=20)
        assert sorted(len(o.records) for o in fetch(s3, bucket)) == [5, 5]
        assert handler.flush(10)
        objects = fetch(s3, bucket)
        assert sorted(len(o.records) for o in objects) == [2, 5, 5]
        assert sorted(r["n"] for o in objects for r in o.records) == list(range(12))
        close_and_check(handler, 12)

    def test_size_trigger_cuts_an_object_at_max_batch_bytes(
        self, moto_endpoint: str, s3: Any, bucket: str, analytics_logger: logging.Logger
    ) -> None:
        """~300-byte records with max_batch_bytes=1000: the 4th record cuts an object by itself."""
        handler = batch_handler(moto_endpoint, bucket, max_batch_bytes=1000)
        analytics_logger.addHandler(handler)
        for i in range(7):
            emit(analytics_logger, {"session_id": f"s{i}", "pad": "p" * 280})
        assert wait_until(lambda: count_objects(s3, bucket) == 1, timeout=20)
        [first] = fetch(s3, bucket)
        assert len(first.records) == 4
        assert len(first.body) >= 1000
        assert handler.flush(10)
        assert sorted(len(o.records) for o in fetch(s3, bucket)) == [3, 4]
        close_and_check(handler, 7)

    def test_age_trigger_ships_a_quiet_batch_without_flush(
        self, moto_endpoint: str, s3: Any, bucket: str, analytics_logger: logging.Logger
    ) -> None:
        """With max_batch_age=0.3 s a small batch appears on its own, no flush needed."""
        handler = batch_handler(moto_endpoint, bucket, max_batch_age=0.3)
        analytics_logger.addHandler(handler)
        for i in range(3):
            emit(analytics_logger, {"session_id": f"s{i}"})
        assert wait_until(lambda: count_objects(s3, bucket) == 1, timeout=20)
        [obj] = fetch(s3, bucket)
        assert [r["session_id"] for r in obj.records] == ["s0", "s1", "s2"]
        assert wait_until(lambda: handler.stats()["delivered"] == 3, timeout=10)
        close_and_check(handler, 3)

    def test_flush_cuts_open_batches_at_once(
        self, moto_endpoint: str, s3: Any, bucket: str, analytics_logger: logging.Logger
    ) -> None:
        """flush() uploads open batches (one per day) before it returns, whatever their age."""
        handler = batch_handler(moto_endpoint, bucket)
        analytics_logger.addHandler(handler)
        emit(analytics_logger, {"session_id": "late"}, created=MIDNIGHT - 1)
        emit(analytics_logger, {"session_id": "early"}, created=MIDNIGHT + 1)
        assert count_objects(s3, bucket) == 0
        assert handler.flush(10)
        objects = fetch(s3, bucket)
        assert [(key_parts(o.key)["day"], [r["session_id"] for r in o.records])
                for o in objects] == [("29", ["late"]), ("01", ["early"])]
        close_and_check(handler, 2)


    def test_close_delivers_open_batches(
        self, moto_endpoint: str, s3: Any, bucket: str, analytics_logger: logging.Logger
    ) -> None:
        """close() alone (what logging.shutdown() calls at exit) uploads what is still open."""
        handler = batch_handler(moto_endpoint, bucket)
        analytics_logger.addHandler(handler)
        for i in range(3):
            emit(analytics_logger, {"session_id": f"s{i}"})
        close_and_check(handler, 3)
        [obj] = fetch(s3, bucket)
        assert [r["session_id"] for r in obj.records] == ["s0", "s1", "s2"]

    def test_hour_template_cuts_one_object_per_hour(
        self, moto_endpoint: str, s3: Any, bucket: str, analytics_logger: logging.Logger
    ) -> None:
        """With {hour} in the key template, records of three UTC hours become three objects."""
        template = ("{prefix}/year={year}/month={month}/day={day}/hour={hour}/"
                    "{host}-{pid}-{seq}-{uuid}{ext}")
        handler = batch_handler(moto_endpoint, bucket, key_template=template)
        analytics_logger.addHandler(handler)
        for i, offset in enumerate([-1, 1, 3599, 3600, -2, 2]):
            emit(analytics_logger, {"session_id": f"s{i}"}, created=MIDNIGHT + offset)
        assert handler.flush(10)
        hours = {o.key.split("/")[4]: [r["session_id"] for r in o.records]
                 for o in fetch(s3, bucket)}
        assert hours == {"hour=23": ["s0", "s4"], "hour=00": ["s1", "s2", "s5"],
                         "hour=01": ["s3"]}
        close_and_check(handler, 6)


class TestCompression:
    @pytest.mark.parametrize(("compression", "ext", "encoding"), [
        ("gzip", ".ndjson.gz", "gzip"),
        ("zstd", ".ndjson.zst", "zstd"),
        ("none", ".ndjson", None),
    ])
    def test_object_round_trips_to_the_exact_lines(
        self, moto_endpoint: str, s3: Any, bucket: str, analytics_logger: logging.Logger,
        compression: str, ext: str, encoding: str | None
    ) -> None:
        """Extension, Content-Encoding and Content-Type match the codec; lines come back exact."""
        handler = batch_handler(moto_endpoint, bucket, compression=compression)
        analytics_logger.addHandler(handler)
        payloads = [{"session_id": f"s{i}", "text": "héllo ☃ " * i, "n": i} for i in range(50)]
        for payload in payloads:
            emit(analytics_logger, payload)
        assert handler.flush(10)
        [obj] = fetch(s3, bucket)
        assert obj.key.endswith(ext) and key_parts(obj.key)["ext"] == ext
        assert obj.content_encoding == encoding
        assert obj.content_type == "application/x-ndjson"
        assert obj.body == b"".join(orjson.dumps(p) + b"\n" for p in payloads)
        if compression == "none":
            assert obj.raw == obj.body
        else:
            assert len(obj.raw) < len(obj.body)
        close_and_check(handler, 50)

    def test_compress_level_is_honoured(
        self, moto_endpoint: str, s3: Any, bucket: str, analytics_logger: logging.Logger
    ) -> None:
        """zstd at level 19 still round-trips (the level reaches the compressor)."""
        handler = batch_handler(moto_endpoint, bucket, compression="zstd", compress_level=19)
        analytics_logger.addHandler(handler)
        payloads = [{"session_id": f"s{i}", "pad": "abc" * 100} for i in range(20)]
        for payload in payloads:
            emit(analytics_logger, payload)
        assert handler.flush(10)
        [obj] = fetch(s3, bucket)
        assert obj.body == b"".join(orjson.dumps(p) + b"\n" for p in payloads)
        assert obj.raw == zstandard.ZstdCompressor(level=19).compress(obj.body)
        close_and_check(handler, 20)


class TestRetriedBatch:
    @pytest.mark.parametrize("failures", [1, 3])
    def test_retried_batch_reuses_its_key(
        self, moto_endpoint: str, s3: Any, bucket: str, analytics_logger: logging.Logger,
        failures: int
    ) -> None:
        """The first PUTs of the batch get 500 InternalError: it appears once, under one key.

        One failure is retried inside botocore; three exhaust botocore's standard retries, so
        the worker re-queues the batch, which must keep its key.
        """
        lock = threading.Lock()
        put_paths: list[str] = []

        def fail_first_puts(request: SeenRequest) -> tuple[int, bytes] | None:
            if request.method != "PUT" or not request.path.startswith(f"/{bucket}/events/"):
                return None
            with lock:
                put_paths.append(unquote(request.path.split("?")[0]))
                if len(put_paths) <= failures:
                    return 500, s3_error("InternalError", "injected")
            return None

        proxy = FaultProxy(moto_endpoint, inject=fail_first_puts).start()
        try:
            handler = batch_handler(proxy.endpoint, bucket)
            analytics_logger.addHandler(handler)
            for i in range(30):
                emit(analytics_logger, {"session_id": f"s{i}"})
            assert handler.flush(30)
            stats = close_and_check(handler, 30)
        finally:
            proxy.stop()
        [obj] = fetch(s3, bucket)
        assert put_paths == [f"/{bucket}/{obj.key}"] * (failures + 1)
        assert sorted(int(r["session_id"][1:]) for r in obj.records) == list(range(30))
        assert stats["objects_sent"] == 1
        assert (stats["failed"] >= 1 and stats["retries"] >= 1) == (failures == 3)


class TestWithSpool:
    def test_spooled_batches_leave_no_segments_behind(
        self, moto_endpoint: str, s3: Any, bucket: str, analytics_logger: logging.Logger,
        tmp_path: Path
    ) -> None:
        """Batch mode with spool_dir: once delivered, no .seg file is left and counters balance."""
        spool = tmp_path / "spool"
        handler = batch_handler(moto_endpoint, bucket, spool_dir=str(spool), max_batch_records=40)
        analytics_logger.addHandler(handler)
        for i in range(100):
            emit(analytics_logger, {"session_id": f"s{i}"},
                 created=MIDNIGHT + (1 if i % 2 else -1) * (i + 1))
        assert list(spool.glob("*.seg")), "records are written ahead before upload"
        assert handler.flush(20)
        assert list(spool.glob("*.seg")) == []
        objects = fetch(s3, bucket)
        ids = sorted(int(r["session_id"][1:]) for o in objects for r in o.records)
        assert ids == list(range(100))
        assert {key_parts(o.key)["day"] for o in objects} == {"29", "01"}
        stats = close_and_check(handler, 100)
        assert stats["spooled"] == 0
        assert list(spool.glob("*.seg")) == []
        assert list((spool / "dead").iterdir()) == []

    def test_records_spilled_to_disk_are_delivered_by_flush_not_after_max_batch_age(
        self, moto_endpoint: str, s3: Any, bucket: str, analytics_logger: logging.Logger,
        tmp_path: Path
    ) -> None:
        """Memory far smaller than the burst: most records wait on disk, and reloaded ones
        are cut into batches at once, so flush() delivers all of them well before the
        60-second batch age."""
        spool = tmp_path / "spool"
        handler = batch_handler(moto_endpoint, bucket, spool_dir=str(spool),
                                max_queue_bytes=200_000, max_batch_age=60)
        analytics_logger.addHandler(handler)
        for i in range(1500):
            emit(analytics_logger, {"session_id": f"s{i}", "pad": "p" * 1000},
                 created=MIDNIGHT + 3600)
        assert handler.stats()["spooled"] > 0, "the burst must overflow memory"
        assert handler.flush(45)
        ids = sorted(int(r["session_id"][1:]) for o in fetch(s3, bucket) for r in o.records)
        assert ids == list(range(1500))
        stats = close_and_check(handler, 1500)
        assert stats["spooled"] == 0 and list(spool.glob("*.seg")) == []
