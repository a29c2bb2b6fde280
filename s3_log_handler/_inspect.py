"""``s3-log-handler inspect``: what a prefix holds, what it costs, and the plan's red flags.

Read-only: it calls only ``ListObjectsV2`` and ``GetObject`` (``iam-policy --reader`` prints
exactly that policy). It lists every object under the prefix, counts objects and bytes per
date partition, estimates the monthly storage and PUT cost, and checks every key plus the
bodies of a random sample (see :mod:`._inspect_checks`). Exit status: 0 when no red flag was
found, 1 when one was (so it can run in cron or CI), 2 for a refused argument or a bucket it
cannot read.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from . import _inspect_checks as checks
from . import _names as names

#: S3 Standard list prices in us-east-1 (what the estimates use; not a bill). A GB-month is
#: billed per 2**30 bytes stored for a month.
PRICE_PER_GB_MONTH = 0.023
PRICE_PER_1000_PUTS = 0.005
GB = 2**30
DAYS_PER_MONTH = 30
DEFAULT_SAMPLE = 20


@dataclass
class Report:
    """What ``inspect`` found; :meth:`as_json` is the ``--json`` document."""

    bucket: str
    prefix: str
    days: int | None
    partitions: dict[date, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    stored_objects: int = 0
    stored_bytes: int = 0
    sampled: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    red_flags: list[dict[str, str]] = field(default_factory=list)

    def estimates(self) -> dict[str, Any]:
        """Monthly storage cost of what is stored now, and PUTs at the observed daily rate."""
        in_window = sum(n for n, _ in self.partitions.values())
        per_day = in_window / len(self.partitions) if self.partitions else 0.0
        puts = per_day * DAYS_PER_MONTH
        return {
            "storage_usd_per_month": round(self.stored_bytes / GB * PRICE_PER_GB_MONTH, 6),
            "puts_per_month": round(puts),
            "put_usd_per_month": round(puts / 1000 * PRICE_PER_1000_PUTS, 6),
            "prices": {"storage_usd_per_gb_month": PRICE_PER_GB_MONTH,
                       "put_usd_per_1000": PRICE_PER_1000_PUTS,
                       "basis": "S3 Standard, us-east-1 list prices; estimates, not a bill"},
            "put_rate_basis": (f"{per_day:.1f} objects/day averaged over {len(self.partitions)} "
                               f"day(s) with objects, x {DAYS_PER_MONTH}"),
        }

    def as_json(self) -> dict[str, Any]:
        """The report as plain JSON data (one document)."""
        rows = [{"year": d.year, "month": d.month, "day": d.day, "objects": n, "bytes": b}
                for d, (n, b) in sorted(self.partitions.items())]
        return {
            "bucket": self.bucket, "prefix": self.prefix, "days": self.days,
            "partitions": rows,
            "stored": {"objects": self.stored_objects, "bytes": self.stored_bytes},
            "estimates": self.estimates(),
            "sample": {"checked": len(self.sampled), "keys": self.sampled,
                       "skipped": self.skipped},
            "red_flags": self.red_flags,
            "ok": not self.red_flags,
        }


def inspect_prefix(client: Any, bucket: str, prefix: str, *, days: int | None = None,
                   sample: int = DEFAULT_SAMPLE, today: date | None = None,
                   rng: random.Random | None = None) -> Report:
    """List ``s3://bucket/prefix/``, check every key, read a sample of ``sample`` objects.

    ``days`` keeps only partitions dated within the last ``days`` UTC days (today included)
    in the per-partition counts and the sample. The key checks (hidden, outside any
    partition) cover every listed object whatever ``days`` says, as does the storage cost.
    """
    report = Report(bucket, prefix, days)
    since = None
    if days is not None:
        since = (today or datetime.now(UTC).date()) - timedelta(days=days - 1)
    candidates: list[str] = []
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=f"{prefix}/" if prefix else ""):
        for item in page.get("Contents", []):
            key, size = item["Key"], int(item["Size"])
            report.stored_objects += 1
            report.stored_bytes += size
            if key.endswith("/") and size == 0:  # a console "folder": no data, no table row
                continue
            flags = checks.key_flags(key, prefix)
            report.red_flags += [_flag(key, f, d) for f, d in flags]
            when = checks.partition_date(key, prefix)
            if when is not None and since is not None and when < since:
                continue
            if when is not None:
                report.partitions[when][0] += 1
                report.partitions[when][1] += size
            candidates.append(key)
    chosen = candidates if sample >= len(candidates) else (rng or random.Random()).sample(
        candidates, sample)
    for key in sorted(chosen):
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        try:
            report.red_flags += [_flag(key, f, d) for f, d in checks.body_flags(key, body)]
        except checks.Unreadable as exc:
            report.skipped.append({"key": key, "reason": str(exc)})
            continue
        report.sampled.append(key)
    report.red_flags.sort(key=lambda f: (f["key"], f["flag"]))
    return report


def render_text(report: Report) -> str:
    """The report for a terminal: partitions table, estimates, red flags by object."""
    where = f"s3://{report.bucket}/{report.prefix + '/' if report.prefix else ''}"
    window = f", last {report.days} day(s)" if report.days is not None else ""
    lines = [f"{where}: {report.stored_objects} objects, {report.stored_bytes} bytes stored"
             f"{window}", "", f"{'partition':<32} {'objects':>9} {'bytes':>14}"]
    for d, (n, b) in sorted(report.partitions.items()):
        lines.append(f"{f'year={d.year}/month={d.month:02d}/day={d.day:02d}':<32} {n:>9} {b:>14}")
    est = report.estimates()
    lines += ["", "estimated monthly cost (S3 Standard us-east-1 list prices: "
              f"${PRICE_PER_GB_MONTH} per GB-month, ${PRICE_PER_1000_PUTS} per 1,000 PUTs; "
              "estimates, not a bill):",
              f"  storage  {_usd(est['storage_usd_per_month'])} for what is stored now",
              f"  PUTs     {_usd(est['put_usd_per_month'])} for ~{est['puts_per_month']} PUTs "
              f"({est['put_rate_basis']})", "",
              f"sample: {len(report.sampled)} object(s) checked"]
    lines += [f"  not checked: {s['key']}: {s['reason']}" for s in report.skipped]
    if report.red_flags:
        lines += ["", f"RED FLAGS: {len(report.red_flags)}"]
        lines += [f"  s3://{report.bucket}/{f['key']}: {f['flag']}: {f['detail']}"
                  for f in report.red_flags]
    else:
        lines += ["", "no red flags"]
    return "\n".join(lines)


def add_inspect_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``inspect`` subcommand's flags."""
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--prefix", default="sessions", help="default: sessions ('' = bucket)")
    parser.add_argument("--days", type=int, default=None,
                        help="only partitions of the last N UTC days (default: all)")
    parser.add_argument("--sample", type=int, default=DEFAULT_SAMPLE,
                        help=f"how many objects to read and check (default {DEFAULT_SAMPLE})")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--endpoint-url", default=None, help="an S3-compatible endpoint")


def run_inspect(args: argparse.Namespace) -> int:
    """Run ``inspect`` for parsed arguments; print the report; return the exit status."""
    try:
        names.bucket(args.bucket)
        if args.prefix:
            names.prefix(args.prefix)
        if args.days is not None and args.days < 1:
            raise names.refuse("--days", "a whole number of days >= 1", args.days)
        if args.sample < 0:
            raise names.refuse("--sample", "a number of objects >= 0", args.sample)
    except ValueError as exc:
        print(f"s3-log-handler inspect: {exc}", file=sys.stderr)
        return 2
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    region = os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or None
    client = boto3.session.Session(region_name=region).client(
        "s3", endpoint_url=args.endpoint_url)
    try:
        report = inspect_prefix(client, args.bucket, args.prefix, days=args.days,
                                sample=args.sample)
    except (BotoCoreError, ClientError) as exc:
        print(f"s3-log-handler inspect: cannot read s3://{args.bucket}: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report.as_json(), indent=2) if args.json else render_text(report))
    return 1 if report.red_flags else 0


def _flag(key: str, flag: str, detail: str) -> dict[str, str]:
    return {"key": key, "flag": flag, "detail": detail}


def _usd(amount: float) -> str:
    return "<$0.0001" if 0 < amount < 0.0001 else f"${amount:.4f}"
