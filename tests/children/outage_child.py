"""A long S3 outage in a process of its own, measured (tests/test_e2e_recovery.py, bench).

S3 refuses every connection (nothing listens on the endpoint's port). After a warm-up (one
record, until its upload failed: the boto3 client exists and the failure was reported), the
RSS is read and the peak reset (``/proc/self/clear_refs``, when the kernel allows), then
``--records`` records of about 1 KB are emitted back to back through an S3Handler with a
``--queue-bytes`` memory queue, with or without a spool (``--spool-dir``,
``--max-spool-bytes``). Prints one JSON line: RSS before, the peak after (VmHWM, or the RSS
at the end when the peak could not be reset), the largest spool size seen on disk (sampled
every 5,000 records and at the end), the emit cost, and the counters.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

from s3_log_handler import S3Handler
from s3_log_handler.counters import balance

KIB = 1024


def status_kib(field: str) -> int:
    """A ``/proc/self/status`` field in KiB (VmRSS, VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return -1


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False if the kernel refuses."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def spool_bytes(directory: str | None) -> int:
    """Bytes of the segments in ``directory`` right now."""
    if directory is None:
        return 0
    with os.scandir(directory) as found:
        return sum(e.stat().st_size for e in found if e.name.endswith(".seg"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--queue-bytes", type=int, default=1024 * KIB)
    parser.add_argument("--spool-dir", default=None)
    parser.add_argument("--max-spool-bytes", type=int, default=None)
    args = parser.parse_args()
    handler = S3Handler("outage-bucket", endpoint_url=args.endpoint,
                        max_queue_bytes=args.queue_bytes, spool_dir=args.spool_dir,
                        max_spool_bytes=args.max_spool_bytes, close_timeout=0.5)
    lg = logging.getLogger("analytics.outage")
    lg.handlers[:] = [handler]
    lg.setLevel(logging.INFO)
    lg.propagate = False
    notes = "n" * 900
    lg.info("Session analytics data", extra={"analytics_data": {"session_id": "warm-up"}})
    deadline = time.monotonic() + 60
    while handler.stats()["failed"] < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    before = status_kib("VmRSS")
    reset = reset_peak()
    most_on_disk = spool_bytes(args.spool_dir)
    started = time.perf_counter()
    for n in range(args.records):
        lg.info("Session analytics data", extra={"analytics_data": {
            "session_id": f"outage-{n}", "duration_seconds": n / 10, "notes": notes}})
        if n % 5_000 == 0:
            most_on_disk = max(most_on_disk, spool_bytes(args.spool_dir))
    emit_seconds = time.perf_counter() - started
    most_on_disk = max(most_on_disk, spool_bytes(args.spool_dir))
    after = status_kib("VmHWM") if reset else status_kib("VmRSS")
    stats = handler.stats()
    handler.close()
    print(json.dumps({
        "rss_before_kib": before, "rss_peak_kib": after, "peak_reset": reset,
        "growth_kib": after - before, "most_on_disk": most_on_disk,
        "emit_us": emit_seconds / args.records * 1e6, "balance": balance(stats),
        "stats": stats,
    }))


if __name__ == "__main__":
    main()
