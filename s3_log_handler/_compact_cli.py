"""The ``compact`` sub-command: its arguments, the run, and the printed report with costs.

Costs are estimates from S3 Standard list prices in us-east-1 (storage $0.023 per GB-month,
GET $0.0004 and PUT/COPY/POST/LIST $0.005 per 1,000 requests; aws.amazon.com/s3/pricing):
per-request savings grow with the number of objects, storage savings with the bytes
(and only once the sources are deleted).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict
from datetime import date
from typing import Any

from ._compact import DEFAULT_TARGET_BYTES, FORMATS, CompactError, CompactOptions, compact

STORAGE_USD_PER_GB_MONTH = 0.023
GET_USD_PER_1000 = 0.0004
PUT_USD_PER_1000 = 0.005
#: GET requests an engine makes per Parquet part when it reads a day: footer + column ranges.
GETS_PER_PARQUET_PART = 3
_GB = 1e9


def add_compact_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``compact`` options."""
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--prefix", default="sessions")
    parser.add_argument("--date", required=True, type=date.fromisoformat,
                        help="the UTC day to compact, YYYY-MM-DD")
    parser.add_argument("--to", choices=FORMATS, default="parquet")
    parser.add_argument("--dest-prefix", default=None,
                        help="where parts go (default: PREFIX-compacted, a sibling prefix)")
    parser.add_argument("--delete-sources", action="store_true",
                        help="delete the sources once the parts read back with their rows")
    parser.add_argument("--dry-run", action="store_true",
                        help="read and encode locally, report; write and delete nothing")
    parser.add_argument("--target-bytes", type=int, default=DEFAULT_TARGET_BYTES,
                        help="about this many bytes per part (default 128 MiB)")
    parser.add_argument("--scans-per-month", type=int, default=30,
                        help="full reads of the day per month, for the request estimate")
    parser.add_argument("--endpoint-url", default=None)


def run_compact(args: argparse.Namespace, s3: Any = None) -> int:
    """Run ``compact`` and print its report as JSON: 0 done, 1 failed check/S3 error, 2 usage."""
    try:
        options = CompactOptions(bucket=args.bucket, prefix=args.prefix, day=args.date,
                                 to=args.to, dest_prefix=args.dest_prefix,
                                 delete_sources=args.delete_sources, dry_run=args.dry_run,
                                 target_bytes=args.target_bytes).checked()
    except ValueError as exc:
        print(f"s3-log-handler compact: {exc}", file=sys.stderr)
        return 2
    if s3 is None:
        import boto3

        s3 = boto3.client("s3", endpoint_url=args.endpoint_url)
    try:
        report = compact(s3, options)
    except CompactError as exc:
        print(f"s3-log-handler compact: check failed, no source deleted there: {exc}",
              file=sys.stderr)
        return 1
    except Exception as exc:  # botocore's errors: the run stops, checked folders stay done
        print(f"s3-log-handler compact: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    out = asdict(report)
    out["estimate"] = estimate(report.sources, report.parts, report.bytes_before,
                               report.bytes_after, report.to, args.scans_per_month)
    print(json.dumps(out, indent=2, sort_keys=True))
    return 0


def estimate(objects_before: int, objects_after: int, bytes_before: int, bytes_after: int,
             fmt: str, scans_per_month: int) -> dict[str, Any]:
    """Monthly storage and request costs before and after, in USD (see the module docstring).

    A full read of the day costs one LIST per 1,000 keys and one GET per object (about
    :data:`GETS_PER_PARQUET_PART` per Parquet part); ``scans_per_month`` such reads a month.
    """
    gets_after = objects_after * (GETS_PER_PARQUET_PART if fmt == "parquet" else 1)
    lists_before, lists_after = math.ceil(objects_before / 1000), math.ceil(objects_after / 1000)

    def monthly(objects_gets: int, lists: int, size: int) -> dict[str, float]:
        return {"storage_usd": round(size / _GB * STORAGE_USD_PER_GB_MONTH, 6),
                "get_usd": round(objects_gets * scans_per_month * GET_USD_PER_1000 / 1000, 6),
                "list_usd": round(lists * scans_per_month * PUT_USD_PER_1000 / 1000, 6)}

    before = monthly(objects_before, lists_before, bytes_before)
    after = monthly(gets_after, lists_after, bytes_after)
    return {
        "assumes": f"{scans_per_month} full reads of the day a month, S3 Standard us-east-1 "
                   "list prices; storage saving only once sources are deleted",
        "monthly_before": before, "monthly_after": after,
        "monthly_saving_usd": round(sum(before.values()) - sum(after.values()), 6),
        "get_requests_per_read": {"before": objects_before, "after": gets_after},
        "per_object_requests_saved": objects_before - objects_after,
        "one_off_cost_usd": round(objects_before * GET_USD_PER_1000 / 1000
                                  + objects_after * (PUT_USD_PER_1000 + GET_USD_PER_1000)
                                  / 1000, 6),
    }
