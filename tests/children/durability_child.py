"""Child processes for tests/test_e2e_durability.py: a process to kill, and one to overload.

``crash``: emit records through an S3Handler with a spool (optionally flushing after the
first ``--settle-first`` of them), print ``READY`` once the last ``emit()`` has returned,
then sleep until the parent kills the process.

``hold``: append records to a bare :class:`Spool`, print ``READY``, and keep the segment
locked until killed.

``diskfull``: emit through a spool whose files may not grow past a few KiB (RLIMIT_FSIZE,
the kernel's EFBIG standing in for ENOSPC), then with the limit lifted; print the counters
and how many spool errors were reported.

``overload``: emit many records at an endpoint that never answers and print one JSON line
with the peak memory growth, the emit cost against a NullHandler, and the counters.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import signal
import sys
import time
from array import array

from s3_log_handler import S3Handler
from s3_log_handler._records import Entry
from s3_log_handler._spool import Spool
from s3_log_handler.counters import balance

MIB = 1024 * 1024


def _logger(name: str, handler: logging.Handler) -> logging.Logger:
    lg = logging.getLogger(name)
    lg.handlers[:] = [handler]
    lg.setLevel(logging.INFO)
    lg.propagate = False
    return lg


def crash(args: argparse.Namespace) -> None:
    handler = S3Handler(args.bucket, endpoint_url=args.endpoint, spool_dir=args.spool_dir,
                        mode=args.mode)
    lg = _logger("analytics.crash", handler)
    for i in range(args.count):
        if i == args.settle_first and i and not handler.flush(30):
            print("FLUSH FAILED", flush=True)
        lg.info("Session analytics data",
                extra={"analytics_data": {"session_id": f"crash-{i}", "turns": i}})
    print("READY", flush=True)
    time.sleep(120)


def hold(args: argparse.Namespace) -> None:
    spool = Spool(args.spool_dir)
    for i in range(args.count):
        spool.append(Entry(b'{"n":%d}\n' % i, time.time(), f"held-{i}", f"k/held-{i}.json"))
    print("READY", flush=True)
    time.sleep(120)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def diskfull(args: argparse.Namespace) -> None:
    collect = _Collect()
    logging.getLogger("s3_log_handler").addHandler(collect)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
    handler = S3Handler(args.bucket, endpoint_url=args.endpoint, spool_dir=args.spool_dir)
    lg = _logger("analytics.diskfull", handler)
    resource.setrlimit(resource.RLIMIT_FSIZE, (args.limit, resource.RLIM_INFINITY))
    for i in range(args.count):
        lg.info("Session analytics data",
                extra={"analytics_data": {"session_id": f"full-{i}", "pad": "d" * 100}})
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    for i in range(args.count, 2 * args.count):
        lg.info("Session analytics data",
                extra={"analytics_data": {"session_id": f"full-{i}", "pad": "d" * 100}})
    flushed = handler.flush(60)
    handler.close()
    print(json.dumps({
        "flushed": flushed,
        "stats": handler.stats(),
        "spool_errors": [m for m in collect.messages if "cannot write to spool" in m],
    }), flush=True)


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _emit_all(lg: logging.Logger, count: int, filler: str, costs: array[float]) -> float:
    start = time.perf_counter()
    for i in range(count):
        t0 = time.perf_counter()
        lg.info("Session analytics data",
                extra={"analytics_data": {"session_id": f"ov-{i}", "transcript": filler}})
        costs[i] = time.perf_counter() - t0
    return time.perf_counter() - start


def overload(args: argparse.Namespace) -> None:
    filler = "x" * args.size
    costs = array("d", bytes(8 * args.count))
    null_total = _emit_all(_logger("analytics.null", logging.NullHandler()), args.count, filler,
                           costs)
    handler = S3Handler("overload-bucket", endpoint_url=args.endpoint,
                        max_queue_bytes=args.max_queue_bytes, close_timeout=0.5)
    lg = _logger("analytics.overload", handler)
    rss_before = _status_kib("VmRSS")
    s3_total = _emit_all(lg, args.count, filler, costs)
    peak_after = _status_kib("VmHWM")
    open_stats = handler.stats()
    handler.close()
    ordered = sorted(costs)
    print(json.dumps({
        "peak_growth_mib": (peak_after - rss_before) / 1024,
        "null_total_s": null_total,
        "s3_total_s": s3_total,
        "emit_ratio": s3_total / null_total,
        "emit_p50_us": ordered[len(ordered) // 2] * 1e6,
        "emit_p99_us": ordered[int(len(ordered) * 0.99)] * 1e6,
        "emit_max_s": ordered[-1],
        "stats_before_close": open_stats,
        "balance_before_close": balance(open_stats),
        "stats_after_close": handler.stats(),
        "balance_after_close": balance(handler.stats()),
    }), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("crash")
    c.add_argument("--spool-dir", required=True)
    c.add_argument("--endpoint", required=True)
    c.add_argument("--bucket", required=True)
    c.add_argument("--count", type=int, default=300)
    c.add_argument("--mode", default="object")
    c.add_argument("--settle-first", type=int, default=0,
                   help="flush after this many records (they must not be sent again)")
    h = sub.add_parser("hold")
    h.add_argument("--spool-dir", required=True)
    h.add_argument("--count", type=int, default=10)
    d = sub.add_parser("diskfull")
    d.add_argument("--spool-dir", required=True)
    d.add_argument("--endpoint", required=True)
    d.add_argument("--bucket", required=True)
    d.add_argument("--count", type=int, default=100)
    d.add_argument("--limit", type=int, default=4096)
    o = sub.add_parser("overload")
    o.add_argument("--endpoint", required=True)
    o.add_argument("--count", type=int, default=50_000)
    o.add_argument("--size", type=int, default=3 * 1024)
    o.add_argument("--max-queue-bytes", type=int, default=16 * MIB)
    args = parser.parse_args()
    {"crash": crash, "hold": hold, "diskfull": diskfull, "overload": overload}[args.command](args)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
