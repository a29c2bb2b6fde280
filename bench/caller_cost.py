"""Section 1: what one ``analytics_logger.info(...)`` costs the caller, per handler.

Each handler gets a fresh logger; after a warm-up, every call is timed on its own with
``perf_counter_ns``. The garbage collector is enabled (and collected first) for every
variant alike. Calls run back to back, so the S3Handler's upload threads are busy (and
compete for the GIL) while the caller is being timed, as they would be under a burst.
"""

from __future__ import annotations

import gc
import gzip
import json
import logging
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson
from common import MESSAGE, Check, Context, Section, new_bucket, percentile
from payloads import Payloads

from s3_log_handler import S3Handler

#: Seconds between calls in the paced (steady-state) rows: 200 sessions/s, below moto's rate.
PACE = 0.005
COLUMNS = ["handler", "calls", "p50 µs", "p99 µs", "mean µs", "p50 x null", "p99 x null", "notes"]


class SyncPutHandler(logging.Handler):
    """The original plan's upload, done inside ``emit()``: indent=2 JSON, gzip, put_object."""

    def __init__(self, endpoint: str, bucket: str) -> None:
        super().__init__()
        import boto3

        self._bucket = bucket
        self._s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")

    def emit(self, record: logging.LogRecord) -> None:
        """Upload ``record.analytics_data`` synchronously, like ``upload_to_s3`` in the plan."""
        data: dict[str, Any] = getattr(record, "analytics_data", {})
        session_id = data.get("session_id", "unknown")
        now = datetime.now()
        key = (f"sessions/year={now.year}/month={now.month:02d}/day={now.day:02d}/"
               f"{session_id}.json.gz")
        body = gzip.compress(json.dumps(data, indent=2, ensure_ascii=False).encode("utf-8"))
        self._s3.put_object(Bucket=self._bucket, Key=key, Body=body,
                            ContentType="application/json", ContentEncoding="gzip",
                            Metadata={"session_id": session_id, "uploaded_at": now.isoformat()})


class SnapshotFloorHandler(logging.Handler):
    """The least any snapshotting handler does: ``orjson.dumps`` the payload (and keep it)."""

    def __init__(self, keep: bool) -> None:
        super().__init__()
        self.kept: list[bytes] = []
        self._keep = keep

    def emit(self, record: logging.LogRecord) -> None:
        """Serialise ``record.analytics_data``; hold on to the bytes, as a queue would."""
        body = orjson.dumps(getattr(record, "analytics_data", None))
        if self._keep:
            self.kept.append(body)


def time_calls(handler: logging.Handler, calls: int, warmup: int,
               pace: float = 0.0) -> list[int]:
    """Nanoseconds of each of ``calls`` timed ``info()`` calls through ``handler``.

    ``pace`` seconds pass between calls (untimed): the steady state of a service that logs
    one session summary now and then, where the queue drains between calls."""
    log = logging.getLogger(f"bench.analytics.{uuid.uuid4().hex[:8]}")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    payloads = Payloads()
    clock = time.perf_counter_ns
    try:
        for i in range(warmup):
            log.info(MESSAGE, extra={"analytics_data": payloads(i)})
        _settle(handler)
        samples = [0] * calls
        gc.collect()
        for i in range(calls):
            payload = payloads(warmup + i)
            if pace:
                time.sleep(pace)
            start = clock()
            log.info(MESSAGE, extra={"analytics_data": payload})
            samples[i] = clock() - start
    finally:
        log.removeHandler(handler)
    return samples


def _settle(handler: logging.Handler) -> None:
    """Deliver the warm-up records, so clients exist and queues are empty before timing."""
    if isinstance(handler, S3Handler):
        handler.flush(60)
    else:
        handler.flush()


def _close_quietly(handler: logging.Handler) -> None:
    """Close without waiting for the burst's backlog: its loss is expected, not news."""
    diagnostics = logging.getLogger("s3_log_handler")
    level = diagnostics.level
    diagnostics.setLevel(logging.CRITICAL)
    try:
        handler.close()
    finally:
        diagnostics.setLevel(level)


def _watchtower_handler(endpoint: str) -> logging.Handler:
    import boto3
    import watchtower
    from pythonjsonlogger.json import JsonFormatter

    logs = boto3.client("logs", endpoint_url=endpoint, region_name="us-east-1")
    group = f"/bench/analytics-{uuid.uuid4().hex[:8]}"
    logs.create_log_group(logGroupName=group)
    # Pre-create the stream: while watchtower creates one itself, its emit() returns at once
    # and silently drops the record, which would time a no-op instead of the real path.
    logs.create_log_stream(logGroupName=group, logStreamName="bench")
    handler = watchtower.CloudWatchLogHandler(log_group_name=group, log_stream_name="bench",
                                              boto3_client=logs, create_log_group=False)
    handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    return handler


def _variants(ctx: Context, spool_dir: str) -> list[tuple[str, Callable[[], logging.Handler]]]:
    def s3(**options: Any) -> Callable[[], logging.Handler]:
        return lambda: S3Handler(bucket=new_bucket(ctx.endpoint, "caller"),
                                 endpoint_url=ctx.endpoint, close_timeout=1.0, **options)

    return [
        ("NullHandler", logging.NullHandler),
        ("floor: orjson.dumps only", lambda: SnapshotFloorHandler(keep=False)),
        ("floor: orjson.dumps, bytes kept", lambda: SnapshotFloorHandler(keep=True)),
        # Room for the whole burst (20,000 x ~3.7 KB): every timed call queues its record,
        # none takes the drop path (the 64 MiB default sheds the burst's last ~1,700).
        ("S3Handler object", s3(max_queue_bytes=256 * 1024 * 1024)),
        ("S3Handler object + spool", s3(spool_dir=spool_dir)),
        ("S3Handler object + spool + HMAC",  # own directory: not the backlog of the row above
         s3(spool_dir=os.path.join(spool_dir, "hmac"), spool_hmac_key="k" * 32)),
        ("S3Handler batch", s3(mode="batch")),
        ("watchtower + JsonFormatter", lambda: _watchtower_handler(ctx.endpoint)),
        ("sync put_object (plan)",
         lambda: SyncPutHandler(ctx.endpoint, new_bucket(ctx.endpoint, "sync"))),
        ("NullHandler (again, at end)", logging.NullHandler),
        (f"NullHandler, paced {PACE * 1e3:.0f} ms", logging.NullHandler),
        (f"S3Handler object, paced {PACE * 1e3:.0f} ms", s3()),
        (f"S3Handler object + spool, paced {PACE * 1e3:.0f} ms", s3(spool_dir=spool_dir)),
    ]


def run(ctx: Context) -> Section:
    """Time the caller path of every handler; ratios are against the first NullHandler run."""
    calls = ctx.n(20_000, 3_000)
    sync_calls = ctx.n(300, 100)
    paced_calls = ctx.n(2_000, 300)
    section = Section("1. Caller cost of one analytics_logger.info() (~3 KB payload)", COLUMNS)
    results: dict[str, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-spool-") as spool_dir:
        for name, make in _variants(ctx, spool_dir):
            sync = name.startswith("sync")
            paced = "paced" in name
            handler = make()
            count = sync_calls if sync else paced_calls if paced else calls
            samples = time_calls(handler, count, 20 if sync else 500, PACE if paced else 0.0)
            note = ""
            if isinstance(handler, S3Handler):
                stats = handler.stats()
                note = f"dropped {stats['dropped']}" if stats["dropped"] else ""
            _close_quietly(handler)
            samples.sort()
            p50, p99 = percentile(samples, 0.5) / 1e3, percentile(samples, 0.99) / 1e3
            results[name] = (p50, p99)
            base = f"NullHandler, paced {PACE * 1e3:.0f} ms" if paced else "NullHandler"
            null50, null99 = results[base]
            section.rows.append({
                "handler": name, "calls": len(samples), "p50 µs": p50, "p99 µs": p99,
                "mean µs": sum(samples) / len(samples) / 1e3,
                "p50 x null": round(p50 / null50, 1), "p99 x null": round(p99 / null99, 1),
                "notes": note,
            })
    section.notes.append(
        f"{calls:,} back-to-back calls per handler after 500 warm-up calls and a flush "
        f"({sync_calls} for the synchronous handler); object-mode upload threads run during "
        "the timing. S3 and CloudWatch Logs are a moto server in another process. Every call "
        "gets a different payload (parts drawn from large pools), so serialising it touches "
        "memory that is not in cache, as a real session summary would. The two floor rows "
        "are a handler that only serialises the payload with orjson (and keeps the bytes, as "
        "any queue must, so fresh memory is touched during a burst). The paced rows "
        f"({paced_calls:,} calls, {PACE * 1e3:.0f} ms apart in time.sleep, untimed) are the "
        "steady state of an I/O-bound service "
        "logging one session summary now and then: the queue drains between calls, uploads "
        "run while the caller sleeps, and every call after a sleep is slower (caches and CPU "
        "wake-up: see the paced NullHandler); their ratios are against the paced NullHandler.")
    section.checks.extend(_checks(results))
    return section


def _checks(results: dict[str, tuple[float, float]]) -> list[Check]:
    null = results["NullHandler"][0]
    floor = results["floor: orjson.dumps, bytes kept"][0]
    watchtower = results["watchtower + JsonFormatter"][0]
    sync = results["sync put_object (plan)"][0]
    checks = []
    for name in ("S3Handler object", "S3Handler batch"):
        p50 = results[name][0]
        checks.append(Check(f"{name}: caller p50 vs NullHandler",
                            f"{p50 / null:.1f}x ({p50:.1f} µs vs {null:.1f} µs)", "<= 3x",
                            p50 <= 3 * null))
        checks.append(Check(f"{name}: caller p50 vs floor (orjson.dumps, bytes kept)",
                            f"{p50 / floor:.1f}x", "none set (reported only)", None))
        checks.append(Check(f"{name}: caller p50 vs watchtower",
                            f"{p50:.1f} µs vs {watchtower:.1f} µs", "below watchtower",
                            p50 < watchtower))
    paced_null = results[f"NullHandler, paced {PACE * 1e3:.0f} ms"][0]
    for name in (f"S3Handler object, paced {PACE * 1e3:.0f} ms",
                 f"S3Handler object + spool, paced {PACE * 1e3:.0f} ms"):
        p50 = results[name][0]
        # Informative only: after a sleep every call runs cold on this VM (orjson.dumps alone
        # takes ~25 µs instead of ~6), so this ratio swings widely from run to run.
        checks.append(Check(f"{name}: caller p50 vs paced NullHandler",
                            f"{p50 / paced_null:.1f}x ({p50:.1f} µs vs {paced_null:.1f} µs)",
                            "none set (reported only)", None))
    ours = results["S3Handler object"][0]
    checks.append(Check("sync put_object handler vs S3Handler object (p50)",
                        f"{sync / ours:,.0f}x slower", "> 100x slower", sync > 100 * ours))
    return checks
