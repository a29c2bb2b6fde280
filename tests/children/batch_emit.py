"""Emits analytics records in batch mode from several threads, with injected record times.

Run as a child process by ``tests/test_e2e_batch.py`` (and imported by it, so both processes
run the same emitting code). As a script it emits, flushes, closes, and prints one JSON line:
``{"pid": ..., "flushed": ..., "stats": {...}}``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
from typing import Any

from s3_log_handler import S3Handler

#: Records are spread over this many seconds either side of ``midnight``.
SPREAD_SECONDS = 60


def record_time(midnight: float, thread: int, index: int) -> float:
    """A scattered time within ``SPREAD_SECONDS`` of ``midnight``: about half fall on each day."""
    tenths = (index * 7919 + thread * 104_729) % (2 * SPREAD_SECONDS * 10)
    return midnight - SPREAD_SECONDS + tenths / 10


def event_id(tag: str, thread: int, index: int) -> str:
    """The unique id of one emitted record."""
    return f"{tag}-{thread}-{index}"


def shares(count: int, threads: int) -> list[int]:
    """How many of ``count`` records each of ``threads`` threads emits (they add up to count)."""
    return [count // threads + (1 if t < count % threads else 0) for t in range(threads)]


def make_handler(endpoint: str, bucket: str, prefix: str, max_batch_records: int) -> S3Handler:
    """The batch-mode handler both processes use (age never triggers: count and flush do)."""
    return S3Handler(bucket, endpoint_url=endpoint, prefix=prefix, mode="batch",
                     max_batch_records=max_batch_records, max_batch_age=3600, close_timeout=60)


def emit_records(logger: logging.Logger, tag: str, count: int, threads: int,
                 midnight: float) -> None:
    """Emit ``count`` records split over ``threads`` threads through ``logger.handle``.

    Each record's ``created`` is injected (see :func:`record_time`) and its payload carries
    its unique ``event_id`` and that same time, so a reader can check its partition.
    """

    def run(thread: int, share: int) -> None:
        for index in range(share):
            created = record_time(midnight, thread, index)
            payload = {"session_id": event_id(tag, thread, index),
                       "event_id": event_id(tag, thread, index), "created": created,
                       "kind": "turn_metrics", "latency_ms": index % 997}
            logger.handle(logging.makeLogRecord({
                "name": logger.name, "levelno": logging.INFO, "levelname": "INFO",
                "msg": "Session analytics data", "created": created,
                "analytics_data": payload}))

    workers = [threading.Thread(target=run, args=(t, n))
               for t, n in enumerate(shares(count, threads))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    for name in ("endpoint", "bucket", "prefix", "tag"):
        parser.add_argument(name)
    parser.add_argument("count", type=int)
    parser.add_argument("threads", type=int)
    parser.add_argument("midnight", type=float)
    parser.add_argument("max_batch_records", type=int)
    args = parser.parse_args(argv)
    handler = make_handler(args.endpoint, args.bucket, args.prefix, args.max_batch_records)
    logger = logging.getLogger(f"analytics.child.{args.tag}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.addHandler(handler)
    emit_records(logger, args.tag, args.count, args.threads, args.midnight)
    flushed = handler.flush(60)
    handler.close()
    report: dict[str, Any] = {"pid": os.getpid(), "flushed": flushed, "stats": handler.stats()}
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
