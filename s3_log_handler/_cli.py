"""The ``s3-log-handler`` command: demo, athena-ddl, iam-policy, inspect, snowflake-ddl, replay,
compact."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import date

from ._athena_cli import add_layout_arguments, ddl_from_args
from ._compact_cli import add_compact_arguments, run_compact
from ._inspect import add_inspect_arguments, run_inspect
from ._replay_options import add_replay_arguments, replay_settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="s3-log-handler", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run voice-agent sessions through logging.yaml into "
                                       "an embedded S3 + CloudWatch Logs (moto) and check both")
    demo.add_argument("--sessions", type=int, default=200)
    demo.add_argument("--real", action="store_true",
                      help="use the environment's real AWS settings instead of moto")

    ddl = sub.add_parser("athena-ddl", help="print CREATE EXTERNAL TABLE with partition projection")
    ddl.add_argument("--bucket", required=True)
    ddl.add_argument("--prefix", default="sessions")
    ddl.add_argument("--table", default="session_analytics")
    ddl.add_argument("--database", default=None)
    ddl.add_argument("--mode", choices=("object", "batch"), default="object")
    ddl.add_argument("--sample", default=None, help="a JSON payload file to infer columns from")
    add_layout_arguments(ddl)
    ddl.add_argument("--compact-sql", action="store_true",
                     help="print the INSERT INTO that compacts --date into --parquet-table")
    ddl.add_argument("--date", type=date.fromisoformat, default=None, help="YYYY-MM-DD")
    ddl.add_argument("--parquet-table", default=None, help="default: TABLE_parquet")

    iam = sub.add_parser("iam-policy", help="print the least-privilege IAM policy as JSON")
    iam.add_argument("--bucket", required=True)
    iam.add_argument("--prefix", default="sessions")
    iam.add_argument("--kms-key", default=None)
    iam.add_argument("--reader", action="store_true",
                     help="the read-only policy `inspect` needs instead (List + Get)")
    iam.add_argument("--compactor", action="store_true",
                     help="the policy `compact` needs instead (--dest-prefix as in compact)")
    iam.add_argument("--dest-prefix", default=None)

    inspect = sub.add_parser("inspect", help="partitions, cost estimate and red flags of a "
                                             "prefix (read-only; exit 1 on a red flag)")
    add_inspect_arguments(inspect)

    snow = sub.add_parser("snowflake-ddl", help="print a storage integration (IAM role, no "
                                                "keys), stage, table, COPY INTO and Snowpipe")
    snow.add_argument("--bucket", required=True)
    snow.add_argument("--prefix", default="sessions")
    snow.add_argument("--integration", default="s3_analytics_integration")
    snow.add_argument("--role-arn", default=None, help="the IAM role Snowflake assumes")
    snow.add_argument("--format", choices=("json", "parquet"), default="json")
    snow.add_argument("--table", default="session_analytics")

    replay = sub.add_parser("replay", help="upload what a spool directory holds, print counts",
                            description="Upload what a spool directory holds with the "
                                        "handler's settings (--config, or the flags below; "
                                        "flags win), and print the counts as JSON.")
    add_replay_arguments(replay)

    compact = sub.add_parser("compact", help="rewrite a day's small objects as a few large "
                                             "Parquet/NDJSON objects; print counts and costs")
    add_compact_arguments(compact)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = _parser().parse_args(argv)
    if args.command == "demo":
        from ._demo import run_demo

        return run_demo(sessions=args.sessions, real=args.real)
    if args.command == "athena-ddl" and args.compact_sql:
        return _print_compact_sql(args)
    if args.command == "athena-ddl":
        try:
            ddl = ddl_from_args(args)
        except ValueError as exc:  # a refused name says which value and which rule
            print(f"s3-log-handler athena-ddl: {exc}", file=sys.stderr)
            return 2
        print(ddl)
        return 0
    if args.command == "iam-policy":
        from ._iam import compactor_policy, iam_policy, reader_policy

        try:
            make = reader_policy if args.reader else iam_policy
            policy = (compactor_policy(args.bucket, args.prefix, args.dest_prefix, args.kms_key)
                      if args.compactor else
                      make(bucket=args.bucket, prefix=args.prefix, kms_key=args.kms_key))
        except ValueError as exc:
            print(f"s3-log-handler iam-policy: {exc}", file=sys.stderr)
            return 2
        print(json.dumps(policy, indent=2))
        return 0
    if args.command == "inspect":
        return run_inspect(args)
    if args.command == "compact":
        return run_compact(args)
    if args.command == "snowflake-ddl":
        from ._snowflake import snowflake_ddl

        try:
            sql = snowflake_ddl(args.bucket, args.prefix, integration=args.integration,
                                role=args.role_arn, file_format=args.format, table=args.table)
        except ValueError as exc:
            print(f"s3-log-handler snowflake-ddl: {exc}", file=sys.stderr)
            return 2
        print(sql, end="")
        return 0
    from ._replay import replay

    try:
        spool_dir, options = replay_settings(args)
        stats = replay(spool_dir, retry_dead_letters=args.dead_letters, timeout=args.timeout,
                       **options)
    except (ValueError, TypeError) as exc:  # settings, the config file, a refused spool
        print(f"s3-log-handler replay: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(stats, indent=2, sort_keys=True))
    return 0 if stats["queued"] == 0 and stats["spooled"] == 0 else 1


def _print_compact_sql(args: argparse.Namespace) -> int:
    from ._compact_sql import compact_sql

    try:
        if args.date is None:
            msg = "--compact-sql needs --date YYYY-MM-DD"
            raise ValueError(msg)
        sql = compact_sql(args.date, table=args.table, parquet_table=args.parquet_table,
                          database=args.database, sample=args.sample)
    except ValueError as exc:
        print(f"s3-log-handler athena-ddl: {exc}", file=sys.stderr)
        return 2
    print(sql)
    return 0


if __name__ == "__main__":
    sys.exit(main())
