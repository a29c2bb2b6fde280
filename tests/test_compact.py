"""`s3-log-handler compact` over real HTTP (moto): same query results, idempotent, safe deletes."""

from __future__ import annotations

import calendar
import contextlib
import io
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlglot
from servers import FaultProxy, SeenRequest, s3_error

from s3_log_handler import S3Handler
from s3_log_handler._cli import main
from s3_log_handler._compact_sql import compact_sql

DAY = "2025-11-01"
START = float(calendar.timegm((2025, 11, 1, 0, 0, 0)))
FOLDER = "year=2025/month=11/day=01"
TIERS = ("qualified", "nurture", "unqualified")


def payload(i: int) -> dict[str, Any]:
    """Session ``i``: nested signals, a list of tool calls, a duration to sum."""
    return {"session_id": f"rm_{i:05d}", "duration_seconds": 60.25 + i % 700,
            "discovered_signals": {"team_size": i % 13, "qualification_tier": TIERS[i % 3]},
            "tool_calls": [{"tool": "lookup", "ms": i % 90}] * (i % 3),
            "conversation_notes": f"note {i} " * (i % 5)}


def emit(logger: logging.Logger, i: int) -> None:
    """Log session ``i`` the way application code does, stamped on :data:`DAY`."""
    logger.handle(logging.makeLogRecord({
        "name": logger.name, "levelno": logging.INFO, "levelname": "INFO",
        "msg": "Session analytics data", "created": START + 60 * (i % 1400),
        "analytics_data": payload(i)}))


def write_day(endpoint: str, bucket: str, logger: logging.Logger, sessions: int = 1000,
              batched: int = 150, prefix: str = "sessions") -> None:
    """``sessions`` object-mode objects and ``batched`` records in 3 batch objects."""
    objects = S3Handler(bucket, endpoint_url=endpoint, prefix=prefix, workers=4)
    logger.addHandler(objects)
    for i in range(sessions):
        emit(logger, i)
    assert objects.flush(120)
    logger.removeHandler(objects)
    objects.close()
    batches = S3Handler(bucket, endpoint_url=endpoint, prefix=prefix, mode="batch",
                        max_batch_records=batched // 3, max_batch_age=3600)
    logger.addHandler(batches)
    for i in range(sessions, sessions + batched):
        emit(logger, i)
    assert batches.flush(60)
    logger.removeHandler(batches)
    batches.close()


def download(s3: Any, bucket: str, prefix: str, root: Path) -> dict[str, tuple[str, str]]:
    """Copy every object under ``prefix`` to ``root``; return key -> (ETag, LastModified)."""
    seen = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            path = root / item["Key"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())
            seen[item["Key"]] = (item["ETag"], str(item["LastModified"]))
    return seen


def answers(relation: str) -> tuple[Any, ...]:
    """The three queries: count, sum of durations, count per qualification tier."""
    con = duckdb.connect()
    con.sql(f"CREATE VIEW t AS SELECT * FROM {relation}")
    return (con.sql("SELECT count(*) FROM t").fetchall()[0],
            con.sql("SELECT sum(duration_seconds) FROM t").fetchall()[0],
            con.sql("SELECT discovered_signals.qualification_tier, count(*) FROM t "
                    "GROUP BY ALL ORDER BY ALL").fetchall())


def json_relation(root: Path) -> str:
    return (f"read_json('{root}/sessions/{FOLDER}/*', format='newline_delimited', "
            "hive_partitioning=true)")


def parquet_relation(root: Path, dest: str = "sessions-compacted") -> str:
    return (f"read_parquet('{root}/{dest}/*/*/*/*.parquet', hive_partitioning=true, "
            "hive_types={'year': 'INTEGER', 'month': 'INTEGER', 'day': 'INTEGER'})")


def run(*argv: str) -> tuple[int, dict[str, Any]]:
    """Run the command line; return its exit code and the JSON it printed (if any)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(argv))
    return code, (json.loads(out.getvalue()) if out.getvalue().strip() else {})


def compact_args(endpoint: str, bucket: str, *more: str) -> list[str]:
    return ["compact", "--bucket", bucket, "--prefix", "sessions", "--date", DAY,
            "--endpoint-url", endpoint, *more]



def compact_through(moto_endpoint: str, bucket: str,
                    inject: Callable[[SeenRequest], tuple[int, bytes] | None]) -> tuple[
                        int, FaultProxy]:
    """Run ``compact --delete-sources`` through a proxy that answers with ``inject``: the
    exit code, and the (stopped) proxy with the requests it saw."""
    proxy = FaultProxy(moto_endpoint, inject=inject).start()
    try:
        code, _ = run(*compact_args(proxy.endpoint, bucket, "--delete-sources"))
    finally:
        proxy.stop()
    return code, proxy

class TestCompact:
    def test_a_day_of_objects_and_batches_becomes_parquet_with_the_same_answers(
            self, s3: Any, bucket: str, moto_endpoint: str, analytics_logger: logging.Logger,
            tmp_path: Path) -> None:
        """1,000 sessions + 3 batch objects -> a few Parquet parts; DuckDB answers agree,
        a second run changes nothing, and only a checked run deletes the sources."""
        write_day(moto_endpoint, bucket, analytics_logger)
        sources = download(s3, bucket, "sessions/", tmp_path / "before")
        assert len(sources) == 1003
        assert sum(k.endswith(".ndjson.gz") for k in sources) == 3
        before = answers(json_relation(tmp_path / "before"))
        assert before[0] == (1150,)

        code, report = run(*compact_args(moto_endpoint, bucket, "--target-bytes", "4096"))
        assert code == 0, report
        assert (report["sources"], report["rows"], report["folders"]) == (1003, 1150, 1), report
        assert 1 < report["parts"] < 20 and report["parts_written"] == report["parts"]
        assert report["bytes_after"] < report["bytes_before"]
        assert report["estimate"]["get_requests_per_read"]["before"] == 1003
        assert report["estimate"]["monthly_saving_usd"] > 0
        parts = download(s3, bucket, "sessions-compacted/", tmp_path / "after")
        assert all(k.startswith(f"sessions-compacted/{FOLDER}/{DAY}-g0001-part-")
                   for k in parts if k.endswith(".parquet"))
        assert answers(parquet_relation(tmp_path / "after")) == before
        days = duckdb.sql(f"SELECT DISTINCT year, month, day FROM "
                          f"{parquet_relation(tmp_path / 'after')}").fetchall()
        assert days == [(2025, 11, 1)]

        code, again = run(*compact_args(moto_endpoint, bucket, "--target-bytes", "4096"))
        assert code == 0 and again["unchanged_folders"] == 1 and again["parts_written"] == 0
        assert download(s3, bucket, "sessions-compacted/", tmp_path / "again") == parts

        code, deleted = run(*compact_args(moto_endpoint, bucket, "--delete-sources"))
        assert code == 0 and deleted["deleted_sources"] == 1003
        assert s3.list_objects_v2(Bucket=bucket, Prefix="sessions/")["KeyCount"] == 0
        download(s3, bucket, "sessions-compacted/", tmp_path / "last")
        assert answers(parquet_relation(tmp_path / "last")) == before

    def test_late_records_after_a_delete_are_added_to_the_parts_not_instead(
            self, s3: Any, bucket: str, moto_endpoint: str, analytics_logger: logging.Logger,
            tmp_path: Path) -> None:
        """A source that arrives after --delete-sources is compacted with the old rows."""
        write_day(moto_endpoint, bucket, analytics_logger, sessions=40, batched=30)
        assert run(*compact_args(moto_endpoint, bucket, "--delete-sources"))[0] == 0
        write_day(moto_endpoint, bucket, analytics_logger, sessions=0, batched=3)
        code, report = run(*compact_args(moto_endpoint, bucket))
        assert code == 0 and report["rows"] == 73
        download(s3, bucket, "sessions-compacted/", tmp_path)
        ((count,),) = duckdb.sql(f"SELECT count(*) FROM {parquet_relation(tmp_path)}").fetchall()
        assert count == 73
        assert all("-g0002-" in k for k in s3_keys(s3, bucket, "sessions-compacted/")
                   if k.endswith(".parquet"))

    def test_dry_run_changes_nothing(self, s3: Any, bucket: str, moto_endpoint: str,
                                     analytics_logger: logging.Logger) -> None:
        """--dry-run reports the parts it would write and writes or deletes nothing."""
        write_day(moto_endpoint, bucket, analytics_logger, sessions=30, batched=30)
        keys = s3_keys(s3, bucket, "")
        code, report = run(*compact_args(moto_endpoint, bucket, "--dry-run",
                                         "--delete-sources", "--to", "ndjson"))
        assert code == 0 and report["dry_run"] and report["parts"] == 1
        assert report["rows"] == 60 and report["bytes_after"] > 0
        assert s3_keys(s3, bucket, "") == keys


class TestDeletesOnlyAfterTheCheck:
    def test_a_part_that_reads_back_wrong_stops_the_delete(
            self, s3: Any, bucket: str, moto_endpoint: str,
            analytics_logger: logging.Logger) -> None:
        """When the re-read part has other rows, exit 1 and every source is still there."""
        write_day(moto_endpoint, bucket, analytics_logger, sessions=50, batched=30)
        assert run(*compact_args(moto_endpoint, bucket))[0] == 0
        sources = s3_keys(s3, bucket, "sessions/")
        short = io.BytesIO()
        pq.write_table(pa.table({"session_id": ["only one row"]}), short)

        def short_part(request: SeenRequest) -> tuple[int, bytes] | None:
            if request.method == "GET" and request.path.split("?")[0].endswith(".parquet"):
                return 200, short.getvalue()
            return None

        code, proxy = compact_through(moto_endpoint, bucket, short_part)
        assert code == 1
        assert s3_keys(s3, bucket, "sessions/") == sources
        assert not any(r.method == "POST" and "delete" in r.path for r in proxy.seen)

    def test_a_failed_put_stops_the_delete(self, s3: Any, bucket: str, moto_endpoint: str,
                                           analytics_logger: logging.Logger) -> None:
        """When a part cannot be written, exit 1, no manifest, every source still there."""
        write_day(moto_endpoint, bucket, analytics_logger, sessions=50, batched=30)
        sources = s3_keys(s3, bucket, "sessions/")

        def refuse_parts(request: SeenRequest) -> tuple[int, bytes] | None:
            if request.method == "PUT" and ".parquet" in request.path:
                return 403, s3_error("AccessDenied")
            return None

        code, _proxy = compact_through(moto_endpoint, bucket, refuse_parts)
        assert code == 1
        assert s3_keys(s3, bucket, "sessions/") == sources
        assert s3_keys(s3, bucket, "sessions-compacted/") == []


class TestLayouts:
    def test_extra_partition_segments_keep_their_folders(
            self, s3: Any, bucket: str, moto_endpoint: str,
            analytics_logger: logging.Logger) -> None:
        """name=value folders before year= are compacted folder by folder, kept in the key."""
        write_day(moto_endpoint, bucket, analytics_logger, sessions=10, batched=6,
                  prefix="sessions/tenant=acme")
        write_day(moto_endpoint, bucket, analytics_logger, sessions=5, batched=3,
                  prefix="sessions/tenant=globex")
        code, report = run(*compact_args(moto_endpoint, bucket, "--to", "ndjson"))
        assert code == 0 and report["folders"] == 2 and report["rows"] == 24
        keys = [k for k in s3_keys(s3, bucket, "sessions-compacted/") if k.endswith(".gz")]
        assert [k.split("/")[1] for k in keys] == ["tenant=acme", "tenant=globex"]

    def test_zstd_and_uncompressed_batches_mix_with_objects(
            self, s3: Any, bucket: str, moto_endpoint: str,
            analytics_logger: logging.Logger, tmp_path: Path) -> None:
        """.json.gz objects, .ndjson.zst and plain .ndjson batches of one day: every row."""
        write_day(moto_endpoint, bucket, analytics_logger, sessions=7, batched=3)
        for n, compression in enumerate(("zstd", "none")):
            handler = S3Handler(bucket, endpoint_url=moto_endpoint, mode="batch",
                                compression=compression, max_batch_age=3600)
            analytics_logger.addHandler(handler)
            for i in range(100 + 10 * n, 105 + 10 * n):
                emit(analytics_logger, i)
            assert handler.flush(60)
            analytics_logger.removeHandler(handler)
            handler.close()
        names = s3_keys(s3, bucket, "sessions/")
        assert {k.rsplit(".", 1)[-1] for k in names} == {"gz", "zst", "ndjson"}
        code, report = run(*compact_args(moto_endpoint, bucket))
        assert code == 0 and (report["sources"], report["rows"]) == (12, 20)
        download(s3, bucket, "sessions-compacted/", tmp_path)
        ids = duckdb.sql(f"SELECT session_id FROM {parquet_relation(tmp_path)} ORDER BY 1")
        assert [r[0] for r in ids.fetchall()] == sorted(
            payload(i)["session_id"] for i in [*range(10), *range(100, 105), *range(110, 115)])

    def test_an_overlapping_destination_is_refused(self, bucket: str,
                                                   moto_endpoint: str) -> None:
        """A destination inside the source prefix would be counted twice: exit 2."""
        code, _ = run(*compact_args(moto_endpoint, bucket, "--dest-prefix", "sessions/compact"))
        assert code == 2


class TestPolicyAndSql:
    def test_compactor_policy_grants_reads_writes_and_deletes_where_needed(self) -> None:
        """List/Get on both prefixes, Put/Delete on parts, Delete on sources on its own."""
        code, policy = run("iam-policy", "--bucket", "my-bucket", "--compactor")
        assert code == 0
        by_sid = {s["Sid"]: s for s in policy["Statement"]}
        assert by_sid["WriteParts"]["Resource"] == "arn:aws:s3:::my-bucket/sessions-compacted/*"
        assert by_sid["DeleteCompactedSources"]["Resource"] == "arn:aws:s3:::my-bucket/sessions/*"
        assert set(by_sid) == {"ListSourcesAndParts", "ReadSourcesAndParts", "WriteParts",
                               "DeleteCompactedSources"}

    @pytest.mark.parametrize("dialect", ["athena", "trino"])
    def test_compact_sql_parses_and_filters_the_day(self, dialect: str) -> None:
        """The INSERT INTO ... SELECT parses and filters year, month and day."""
        from datetime import date

        sql = compact_sql(date(2025, 11, 1), database="analytics")
        tree = sqlglot.parse_one(sql, read=dialect)
        assert isinstance(tree, sqlglot.exp.Insert)
        where = tree.find(sqlglot.exp.Where)
        assert where is not None
        assert where.sql(dialect) == 'WHERE "year" = 2025 AND "month" = 11 AND "day" = 1'


def s3_keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))
