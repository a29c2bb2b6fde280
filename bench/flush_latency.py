"""Section 6: does a waiting ``flush()`` delay new uploads? (object mode, moto over HTTP)

Measures, per record, the time from ``analytics_logger.info(...)`` to the moment an upload
thread calls ``put_object`` for it, while one of two upload threads is held by a PUT that S3
is holding: first with nothing else going on, then while another thread waits in
``flush()`` for that PUT. With one condition for every purpose, a waiting flusher could
take the wake-up meant for an upload thread and leave the record for the 1 s idle poll.
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
import uuid
from typing import Any

import boto3
from common import MESSAGE, Check, Context, Section, new_bucket, percentile

from s3_log_handler import S3Handler

COLUMNS = ["case", "records", "p50 µs", "p99 µs", "max µs", "p50 x alone"]


class _TimedSession:
    """A boto3 session whose S3 client notes when each ``put_object`` starts and holds the
    one for session id ``slow`` until released."""

    def __init__(self) -> None:
        self._session = boto3.session.Session()
        self.started: dict[str, float] = {}
        self.seen: dict[str, threading.Event] = {}
        self.release = threading.Event()

    def client(self, service_name: str, **kwargs: Any) -> Any:
        client = self._session.client(service_name, **kwargs)
        real_put = client.put_object

        def put_object(**args: Any) -> Any:
            name = str(args["Key"]).rsplit("/", 1)[-1].split(".")[0]
            self.started[name] = time.perf_counter()
            if name in self.seen:
                self.seen[name].set()
            if name == "slow":
                self.release.wait(60)
            return real_put(**args)

        client.put_object = put_object
        return client


def _latencies(log: logging.Logger, handler: S3Handler, session: _TimedSession, tag: str,
               n: int) -> list[float]:
    """One record at a time: each is emitted only once the previous one is delivered, so the
    free upload thread is idle and the figure is the wake-up alone, not a queue."""
    out = []
    for i in range(n):
        name = f"{tag}-{i}"
        seen = session.seen[name] = threading.Event()
        delivered = handler.stats()["delivered"]
        start = time.perf_counter()
        log.info(MESSAGE, extra={"analytics_data": {"session_id": name, "n": i}})
        seen.wait(10)
        out.append((session.started.get(name, time.perf_counter()) - start) * 1e6)
        deadline = time.monotonic() + 10
        while handler.stats()["delivered"] <= delivered and time.monotonic() < deadline:
            time.sleep(0.0005)
        time.sleep(0.002)  # a pause, as between two sessions
    return sorted(out)


def run(ctx: Context) -> Section:
    """Emit→upload-start latency alone and while a flush() waits, with their ratio."""
    section = Section("6. Upload start while another thread waits in flush() (object mode)",
                      COLUMNS)
    n = ctx.n(300, 60)
    session = _TimedSession()
    handler = S3Handler(bucket=new_bucket(ctx.endpoint, "flushwait"), endpoint_url=ctx.endpoint,
                        workers=2, boto3_session=session, close_timeout=10)
    log = logging.getLogger(f"bench.flushwait.{uuid.uuid4().hex[:8]}")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    _latencies(log, handler, session, "warm", 20)
    log.info(MESSAGE, extra={"analytics_data": {"session_id": "slow"}})
    while "slow" not in session.started:
        time.sleep(0.001)
    # Both cases run with one upload thread held by the slow PUT; only the flusher differs.
    alone = _latencies(log, handler, session, "alone", n)
    flusher = threading.Thread(target=handler.flush, args=(60,))
    flusher.start()
    during = _latencies(log, handler, session, "during", n)
    session.release.set()
    flusher.join()
    handler.close()
    base = statistics.median(alone)
    for case, values in (("alone", alone), ("while flush() waits", during)):
        section.rows.append({"case": case, "records": len(values),
                             "p50 µs": statistics.median(values),
                             "p99 µs": percentile(values, 0.99), "max µs": max(values),
                             "p50 x alone": statistics.median(values) / base})
    ratio = statistics.median(during) / base
    section.notes.append("time from the logging call until an upload thread calls put_object "
                         "(an Event set in put_object, no polling); each record is logged "
                         "once the previous one is delivered, then 2 ms later; 2 upload "
                         "threads, one held by the slow PUT.")
    section.checks.append(Check("upload start while flush() waits vs alone (p50)",
                                f"{ratio:.2f}x", "<= 1.5x", ratio <= 1.5))
    return section
