"""Run the benchmark suite: ``python bench/run.py [--quick] [--only NAME ...]``.

Starts one moto server in a separate process, runs the sections one after another, prints a
markdown table per section plus a summary of the issues' targets, and writes the same text
to ``bench/last-results.md``. Targets are informative: the exit code is 0 either way.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime

import caller_cost
import close_latency
import cpu_per_record
import flush_latency
import parquet
import recovery
import rss
import throughput
from common import BENCH_DIR, Check, Context, Section, markdown_table, moto_server, reset_moto

SECTIONS: dict[str, Callable[[Context], Section]] = {
    "caller": caller_cost.run,
    "cpu": cpu_per_record.run,
    "throughput": throughput.run,
    "close": close_latency.run,
    "rss": rss.run,
    "flushwait": flush_latency.run,
    "recovery": recovery.run,
    "parquet": parquet.run,
}


def render(section: Section) -> str:
    """One section as a markdown heading, table and notes."""
    parts = [f"### {section.title}", "", markdown_table(section.columns, section.rows)]
    parts += ["", *(f"- {note}" for note in section.notes)] if section.notes else []
    return "\n".join(parts)


def summary(checks: list[Check]) -> Section:
    """Every target from the issues with this run's measurement and a PASS/FALL-SHORT label."""
    rows = [{"target": c.name, "measured": c.measured, "goal": c.target, "result": c.label}
            for c in checks]
    return Section("Summary: the issues' targets (informative, not a test)",
                   ["target", "measured", "goal", "result"], rows)


def main(argv: list[str] | None = None) -> int:
    """Run the chosen sections and print/write the tables; always returns 0."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller runs, under a minute")
    parser.add_argument("--only", nargs="+", choices=sorted(SECTIONS), help="run these only")
    args = parser.parse_args(argv)
    names = args.only or list(SECTIONS)
    started = time.monotonic()
    header = (f"Benchmarks ({'quick' if args.quick else 'full'}), "
              f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, Python {platform.python_version()}, "
              f"{platform.machine()}, {os.cpu_count()} CPUs, moto in a separate process on "
              f"127.0.0.1; load average at start {os.getloadavg()[0]:.2f}")
    print(header, flush=True)
    out = [f"## {header}"]
    checks: list[Check] = []
    with moto_server() as endpoint:
        ctx = Context(endpoint=endpoint, quick=args.quick)
        for name in names:
            t0 = time.monotonic()
            section = SECTIONS[name](ctx)
            section.notes.append(f"section wall time {time.monotonic() - t0:.1f} s")
            checks.extend(section.checks)
            text = render(section)
            print("\n" + text, flush=True)
            out.append(text)
            reset_moto(endpoint)
    text = render(summary(checks))
    print("\n" + text)
    out.append(text)
    out.append(f"Total wall time {time.monotonic() - started:.0f} s; load average at end "
               f"{os.getloadavg()[0]:.2f}.")
    print(out[-1])
    (BENCH_DIR / "last-results.md").write_text("\n\n".join(out) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
