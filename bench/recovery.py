"""Section 7: recovery paths: memory and disk in a long outage, refused records' cost.

Outage rows run ``tests/children/outage_child.py`` in a child process each (so RSS is the
child's own): S3 refuses every connection, records of about 1 KB are emitted back to back
through a 1 MiB queue, without a spool, with one capped at 10 MiB, and with the default
cap (every record then stays on disk: ~330 MB for 300,000). RSS is
read after a warm-up that created the boto3 client and saw the first failure; the peak
(VmHWM) is reset there and read at the end.

The dead-letter rows time 100 refused emits (2 KB records over ``max_record_bytes=1 KiB``,
dead-lettered ``too_large`` on the caller's thread) one by one: with a dead-letter area
already full (10,000 letters, the count kept in memory: no listing, no write), with room
(each writes its letter), and a NullHandler for scale.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import BENCH_DIR, MESSAGE, Check, Context, Section, percentile

from s3_log_handler import S3Handler
from s3_log_handler._deadletters import DEAD_LETTER_CAP

CHILD = BENCH_DIR.parent / "tests" / "children" / "outage_child.py"
MIB = 1024 * 1024
COLUMNS = ["case", "records", "RSS growth MiB", "spool on disk MiB", "dropped", "drop reasons",
           "emit µs", "p50 µs", "p99 µs", "max µs"]


def _refused_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def _outage(records: int, spool: str | None, max_spool_bytes: int | None) -> dict[str, Any]:
    command = [sys.executable, str(CHILD), "--endpoint", _refused_endpoint(),
               "--records", str(records), "--queue-bytes", str(MIB)]
    if spool is not None:
        command += ["--spool-dir", spool]
    if max_spool_bytes is not None:
        command += ["--max-spool-bytes", str(max_spool_bytes)]
    out = subprocess.run(command, check=True, capture_output=True, text=True, timeout=900)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _outage_row(case: str, records: int, result: dict[str, Any]) -> dict[str, Any]:
    stats = result["stats"]
    return {"case": case, "records": records, "RSS growth MiB": result["growth_kib"] / 1024,
            "spool on disk MiB": result["most_on_disk"] / MIB, "dropped": stats["dropped"],
            "drop reasons": ", ".join(f"{k} {v:,}" for k, v in stats["dropped_reasons"].items()),
            "emit µs": result["emit_us"]}


def _refused_emits(handler: logging.Handler, calls: int = 100) -> list[float]:
    """Microseconds of each of ``calls`` emits of a 2 KB record through ``handler``."""
    log = logging.getLogger(f"bench.recovery.{id(handler)}")
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.INFO)
    times: list[float] = []
    for n in range(calls + 10):
        payload = {"session_id": f"refused-{n}", "transcript": "t" * 2048}
        start = time.perf_counter_ns()
        log.info(MESSAGE, extra={"analytics_data": payload})
        if n >= 10:  # the first ones warm the path up
            times.append((time.perf_counter_ns() - start) / 1000)
    return sorted(times)


def _letter_rows(endpoint: str) -> tuple[list[dict[str, Any]], float]:
    rows: list[dict[str, Any]] = []
    worst_full = float("nan")
    base = tempfile.mkdtemp(prefix="bench-recovery-")
    try:
        for case, prefill in (("refused emit, dead-letter area full (10,000 letters)",
                               DEAD_LETTER_CAP), ("refused emit, dead-letter area with room", 0)):
            spool = Path(base) / f"spool-{prefill}"
            (spool / "dead").mkdir(parents=True, mode=0o700)
            spool.chmod(0o700)
            for n in range(prefill):
                letter = spool / "dead" / f"{n:013d}-prefill.json"
                letter.write_bytes(b'{"reason":"too_large","body":"{}"}')
                letter.chmod(0o600)
            handler = S3Handler("bench-recovery", endpoint_url=endpoint, spool_dir=str(spool),
                                max_record_bytes=1024)
            times = _refused_emits(handler)
            stats = handler.stats()
            handler.close()
            letters = len(os.listdir(spool / "dead"))
            rows.append({"case": case, "records": len(times), "p50 µs": percentile(times, 0.5),
                         "p99 µs": percentile(times, 0.99), "max µs": times[-1],
                         "drop reasons": f"dead_lettered too_large {stats['dead_lettered']:,};"
                                         f" letters on disk {letters:,}"})
            if prefill:
                worst_full = times[-1]
        null = _refused_emits(logging.NullHandler())
        rows.append({"case": "NullHandler (scale)", "records": len(null),
                     "p50 µs": percentile(null, 0.5), "p99 µs": percentile(null, 0.99),
                     "max µs": null[-1]})
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return rows, worst_full


def run(ctx: Context) -> Section:
    """The outage rows (child processes) and the refused-emit rows (this process)."""
    section = Section("7. Recovery: long outages, refused records", COLUMNS)
    records = ctx.n(300_000, 50_000)
    base = tempfile.mkdtemp(prefix="bench-outage-")
    try:
        plain = _outage(records, None, None)
        section.rows.append(_outage_row("S3 refused, no spool", records, plain))
        spool = os.path.join(base, "spool")
        capped = _outage(records, spool, 10 * MIB)
        section.rows.append(_outage_row("S3 refused, spool, max_spool_bytes=10 MiB", records,
                                        capped))
        shutil.rmtree(spool, ignore_errors=True)
        roomy = _outage(records, spool, None)
        section.rows.append(_outage_row("S3 refused, spool, default max_spool_bytes (1 GiB)",
                                        records, roomy))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    letter_rows, worst_full = _letter_rows(ctx.endpoint)
    section.rows += letter_rows
    section.notes.append(
        "Outage rows: records of ~1 KB, max_queue_bytes=1 MiB, S3 refusing connections; RSS "
        "growth is the child's peak (VmHWM, reset after the warm-up) minus its RSS then. "
        "'spool on disk' is the largest size of the segments seen (sampled every 5,000 "
        "records and at the end).")
    section.notes.append(
        "Refused-emit rows: each call logs a 2 KB record over max_record_bytes=1 KiB, so it "
        "is dead-lettered too_large on the caller's thread; before this release a full area "
        "cost a listdir of dead/ per refused record (4.3 ms with 10,000 letters).")
    growth = max(plain["growth_kib"], capped["growth_kib"], roomy["growth_kib"]) / 1024
    disk = capped["most_on_disk"] / MIB
    section.checks += [
        Check(f"outage RSS growth, {records:,} refused records, 1 MiB queue (worst row)",
              f"+{growth:.1f} MiB", "< 16 MiB", growth < 16),
        Check("outage spool on disk with max_spool_bytes=10 MiB", f"{disk:.1f} MiB",
              "<= 10 MiB + one segment (4 MiB)", disk <= 14),
        Check("refused emit with a full dead-letter area (worst of 100)",
              f"{worst_full:.0f} µs", "< 200 µs each", worst_full < 200),
    ]
    return section
