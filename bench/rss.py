"""Section 5: peak RSS while 100,000 records flow through batch mode.

Each variant runs in a fresh child Python (``rss.py --child``) so peaks do not mix:
``ru_maxrss`` is read after imports, set-up and a warm-up that created the boto3 client,
then again after N records were emitted and flushed. A NullHandler child is the baseline.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import MESSAGE, Check, Context, Section, new_bucket
from payloads import Payloads

COLUMNS = ["variant", "records", "RSS before MiB", "peak RSS MiB", "growth MiB",
           "RSS after flush MiB", "ru_maxrss MiB", "delivered", "dropped", "wall s"]
VARIANTS: dict[str, dict[str, Any]] = {
    "NullHandler (baseline)": {},
    "S3Handler batch, defaults (when_full=drop)": {"mode": "batch"},
    "S3Handler batch, when_full=block": {"mode": "batch", "when_full": "block",
                                         "block_timeout": 60.0},
    "S3Handler batch, max_queue_bytes=64 MiB, block": {
        "mode": "batch", "when_full": "block", "block_timeout": 60.0,
        "max_queue_bytes": 64 * 1024 * 1024},
}


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False if the kernel refuses."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def child(variant: str, endpoint: str, count: int) -> dict[str, Any]:
    """Run one variant in this (child) process and return its measurements."""
    from s3_log_handler import S3Handler

    options = VARIANTS[variant]
    payloads = Payloads()
    handler: logging.Handler
    if options:
        handler = S3Handler(bucket=new_bucket(endpoint, "rss"), endpoint_url=endpoint,
                            close_timeout=30.0, **options)
    else:
        handler = logging.NullHandler()
    log = logging.getLogger("bench.rss")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    for i in range(100):
        log.info(MESSAGE, extra={"analytics_data": payloads(i)})
    handler.flush()
    before = _status_mib("VmRSS")
    reset = _reset_peak()
    start = time.perf_counter()
    for i in range(100, 100 + count):
        log.info(MESSAGE, extra={"analytics_data": payloads(i)})
    if isinstance(handler, S3Handler):
        handler.flush(300)
    wall = time.perf_counter() - start
    stats = handler.stats() if isinstance(handler, S3Handler) else {}
    result = {"before": before, "after": _status_mib("VmHWM"), "current": _status_mib("VmRSS"),
              "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
              "reset": reset, "wall": wall,
              "delivered": stats.get("delivered", 0) - (100 if stats else 0),
              "dropped": stats.get("dropped", 0)}
    handler.close()
    return result


def run(ctx: Context) -> Section:
    """Run every variant in its own child process and tabulate the peaks."""
    section = Section("5. Peak RSS while records flow (batch mode, child processes)", COLUMNS)
    count = ctx.n(100_000, 20_000)
    growth: dict[str, float] = {}
    for variant in VARIANTS:
        out = subprocess.run(
            [sys.executable, __file__, "--child", variant, ctx.endpoint, str(count)],
            check=True, capture_output=True, text=True, timeout=600)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        growth[variant] = r["after"] - r["before"]
        section.rows.append({
            "variant": variant, "records": count, "RSS before MiB": r["before"],
            "peak RSS MiB": r["after"], "growth MiB": growth[variant],
            "RSS after flush MiB": r["current"], "ru_maxrss MiB": r["maxrss"],
            "delivered": r["delivered"] if VARIANTS[variant] else "",
            "dropped": r["dropped"] if VARIANTS[variant] else "", "wall s": round(r["wall"], 2)})
    section.notes.append(
        "Records are emitted back to back from one thread; max_queue_bytes (batch mode's "
        "default 256 MiB, room for 16 MiB objects) bounds what waits in memory, so the default "
        "when_full='drop' sheds load under a burst that outruns uploads while 'block' makes "
        "the writer wait; the peak adds the batches being joined and compressed (up to "
        "'workers' at a time) and what the allocator keeps. The 64 MiB row is the knob for "
        "memory-tight services (objects then cut near 32 MB raw). 'RSS before' is taken "
        "after imports, set-up and a 100-record warm-up (boto3 client created); the peak "
        "(VmHWM) is reset there through /proc/self/clear_refs and read after flush(). "
        "ru_maxrss is shown too, but on Linux it keeps the parent's peak across fork+exec, "
        "so it overstates a child's.")
    worst = max(v for k, v in growth.items() if VARIANTS[k])
    section.checks.append(Check(f"peak RSS growth while {count:,} records flow (worst variant)",
                                f"+{worst:.0f} MiB", "none set (reported only)", None))
    return section


def main() -> None:
    """Child entry point: ``rss.py --child VARIANT ENDPOINT COUNT`` prints one JSON line."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", nargs=3, metavar=("VARIANT", "ENDPOINT", "COUNT"),
                        required=True)
    variant, endpoint, count = parser.parse_args().child
    print(json.dumps(child(variant, endpoint, int(count))))


if __name__ == "__main__":
    main()
