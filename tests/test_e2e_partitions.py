"""High-volume batch mode over real HTTP: partitions from record fields, time_field, the
open-partition cap and objects sized by compressed bytes."""

from __future__ import annotations

import gzip
import logging
import re
import textwrap
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest
import sqlglot
from conftest import StatsSampler

from s3_log_handler import S3Handler, configure
from s3_log_handler._athena import athena_ddl
from s3_log_handler._demo_payloads import make_sessions
from s3_log_handler._fields import DEFAULT_VALUE
from s3_log_handler.counters import balance

TEMPLATE = ("{prefix}/event_type={field:event_type}/year={year}/month={month}/day={day}/"
            "{host}-{pid}-{seq}-{uuid}{ext}")
KEY = re.compile(r"^events/event_type=(?P<field>[^/]+)/year=(?P<year>\d{4})/month=(?P<month>\d{2})"
                 r"/day=(?P<day>\d{2})/[A-Za-z0-9._-]+\.ndjson\.gz$")
DAYS = (datetime(2026, 11, 28, 23, 30, tzinfo=UTC), datetime(2026, 11, 29, 0, 30, tzinfo=UTC))
EVENT_TYPES = {"session_end": 5, "turn_metrics": 11, "tool_call": 7}


def objects(s3: Any, bucket: str) -> dict[str, bytes]:
    """Every object of ``bucket`` as its raw (compressed) bytes."""
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            out[item["Key"]] = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
    return out


def lines(body: bytes) -> list[dict[str, Any]]:
    """The JSON lines of one gzip object."""
    return [orjson.loads(line) for line in gzip.decompress(body).splitlines()]


def emit_events(log: logging.Logger) -> Counter[tuple[str, str]]:
    """3 event types x 2 UTC days, each record's end_time on its day; the log time (now)
    is neither day, so only time_field can place them. Returns the count per partition."""
    sent: Counter[tuple[str, str]] = Counter()
    for day_index, day in enumerate(DAYS):
        for kind, count in EVENT_TYPES.items():
            for i in range(count * (day_index + 1)):
                end = day + timedelta(seconds=i)
                log.info("Session analytics data", extra={"analytics_data": {
                    "session_id": f"{kind}-{day_index}-{i}", "event_type": kind,
                    "end_time": end.isoformat().replace("+00:00", "Z"),
                    "duration_seconds": float(i)}})
                sent[kind, end.strftime("%Y-%m-%d")] += 1
    return sent


class TestFieldPartitionsEndToEnd:
    def test_three_event_types_over_two_days_land_in_their_partitions(
            self, s3: Any, bucket: str, moto_endpoint: str, tmp_path: Path) -> None:
        """Through a logging.yaml applied by configure(): every object sits in its
        event_type/day partition, DuckDB's hive_partitioning counts match exactly, and the
        Athena DDL for that template parses and projects event_type."""
        config = tmp_path / "logging.yaml"
        config.write_text(textwrap.dedent("""\
            version: 1
            disable_existing_loggers: false
            handlers:
              s3:
                class: s3_log_handler.S3Handler
                bucket: "${BUCKET}"
                prefix: events
                endpoint_url: "${ENDPOINT}"
                mode: batch
                key_template: "${TEMPLATE}"
                time_field: end_time
            loggers:
              analytics.partitions:
                level: INFO
                handlers: [s3]
                propagate: false
            """))
        configure(config, environ={"BUCKET": bucket, "ENDPOINT": moto_endpoint,
                                   "TEMPLATE": TEMPLATE})
        log = logging.getLogger("analytics.partitions")
        handler = log.handlers[0]
        assert isinstance(handler, S3Handler)
        sent = emit_events(log)
        assert handler.flush(30)
        stats = handler.stats()
        assert stats["delivered"] == sum(sent.values()) and balance(stats) == 0
        assert stats["time_fallbacks"] == 0 and stats["field_defaults"] == 0

        stored = objects(s3, bucket)
        placed: Counter[tuple[str, str]] = Counter()
        for key, body in stored.items():
            match = KEY.match(key)
            assert match, key
            day = f"{match['year']}-{match['month']}-{match['day']}"
            for row in lines(body):
                assert row["event_type"] == match["field"]
                assert row["end_time"][:10] == day
                placed[match["field"], day] += 1
        assert placed == sent
        assert len({k.rsplit("/", 1)[0] for k in stored}) == 6

        for key, body in stored.items():
            path = tmp_path / "bucket" / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(body)
        rows = duckdb.connect().sql(f"""
            SELECT event_type, year, month, day, count(*) FROM read_json(
                '{tmp_path}/bucket/events/*/*/*/*/*.ndjson.gz', format='newline_delimited',
                hive_partitioning=true, hive_types_autocast=false)
            GROUP BY ALL ORDER BY ALL""").fetchall()
        assert {(kind, f"{y}-{m}-{d}"): n for kind, y, m, d, n in rows} == dict(sent)

        ddl = athena_ddl(bucket, prefix="events", mode="batch", key_template=TEMPLATE)
        assert sqlglot.parse_one(ddl, read="athena") is not None
        assert "'projection.event_type.type'='injected'" in ddl
        location = "s3://" + bucket + "/events/event_type=${event_type}/year=${year}/"
        assert f"'storage.location.template'='{location}month=${{month}}/day=${{day}}/'" in ddl
        enum = athena_ddl(bucket, prefix="events", mode="batch", key_template=TEMPLATE,
                          partition_values={"event_type": list(EVENT_TYPES)})
        assert sqlglot.parse_one(enum, read="athena") is not None
        assert "'projection.event_type.values'='session_end,turn_metrics,tool_call'" in enum

    def test_an_unparsable_time_field_falls_back_to_the_log_time_and_is_counted(
            self, s3: Any, bucket: str, moto_endpoint: str,
            analytics_logger: logging.Logger) -> None:
        """end_time 'soon' and a missing end_time: the record is placed by its log time."""
        handler = S3Handler(bucket, endpoint_url=moto_endpoint, mode="batch", prefix="events",
                            key_template=TEMPLATE, time_field="end_time")
        analytics_logger.addHandler(handler)
        for payload in ({"event_type": "a", "end_time": "soon"}, {"event_type": "a"}):
            analytics_logger.info("x", extra={"analytics_data": payload})
        assert handler.flush(10)
        stats = handler.stats()
        assert stats["time_fallbacks"] == 2 and stats["delivered"] == 2
        today = datetime.now(UTC).strftime("year=%Y/month=%m/day=%d")
        assert all(f"event_type=a/{today}/" in k for k in objects(s3, bucket))
        handler.close()


class TestObjectModeFieldPartitions:
    def test_object_keys_take_the_same_placeholders(
            self, s3: Any, bucket: str, moto_endpoint: str,
            analytics_logger: logging.Logger) -> None:
        """One object per record, under its tier directory and its end_time's day."""
        template = ("{prefix}/tier={field:signals.tier}/year={year}/month={month}/day={day}/"
                    "{id}{ext}")
        handler = S3Handler(bucket, endpoint_url=moto_endpoint, key_template=template,
                            time_field="end_time")
        analytics_logger.addHandler(handler)
        for i, tier in enumerate(["enterprise", "self_serve", None]):
            analytics_logger.info("x", extra={"analytics_data": {
                "session_id": f"s{i}", "signals": {"tier": tier}, "end_time": 1764410400 + i}})
        assert handler.flush(10)
        stats = handler.stats()
        handler.close()
        assert stats["delivered"] == 3 and stats["field_defaults"] == 1
        assert sorted(objects(s3, bucket)) == sorted(
            f"sessions/tier={tier}/year=2025/month=11/day=29/s{i}.json.gz"
            for i, tier in enumerate(["enterprise", "self_serve", DEFAULT_VALUE]))


HOSTILE: list[object] = ["../x", "a/b", "\x00", "_hidden", ".dot", "y" * 2000, "café", "cafe",
                         "日本", {"nested": "dict"}, None, "", DEFAULT_VALUE, "a_b"]


class TestHostileFieldValues:
    def test_every_object_stays_in_a_visible_partition_and_values_stay_apart(
            self, s3: Any, bucket: str, moto_endpoint: str,
            analytics_logger: logging.Logger) -> None:
        """Path tricks, control characters, Hive-hidden names, 2,000 characters, non-ASCII
        and a dict: each key stays under the prefix in a partition no reader hides, distinct
        values get distinct partitions, the non-scalars share the default (counted)."""
        handler = S3Handler(bucket, endpoint_url=moto_endpoint, mode="batch", prefix="events",
                            key_template=TEMPLATE)
        analytics_logger.addHandler(handler)
        for i, value in enumerate(HOSTILE):
            analytics_logger.info("x", extra={"analytics_data": {
                "session_id": f"s{i}", "event_type": value}})
        assert handler.flush(10)
        stats = handler.stats()
        handler.close()
        assert stats["delivered"] == len(HOSTILE) and balance(stats) == 0
        assert stats["field_defaults"] == 3  # the dict, None and ""

        where: dict[str, str] = {}
        for key, body in objects(s3, bucket).items():
            assert key.startswith("events/event_type=") and ".." not in key.split("/")
            segments = key.split("/")
            assert all(s and s[0] not in "._" for s in segments), key
            assert len(key.encode()) <= 1024 and "\x00" not in key
            value = segments[1].removeprefix("event_type=")
            assert re.fullmatch(r"[A-Za-z0-9._-]{1,64}", value), value
            for row in lines(body):
                where[row["session_id"]] = value
        assert len(where) == len(HOSTILE)
        scalars = {f"s{i}": where[f"s{i}"] for i, v in enumerate(HOSTILE)
                   if isinstance(v, str) and v}
        assert len(set(scalars.values())) == len(scalars)  # distinct values stay distinct
        defaults = {where[f"s{i}"] for i, v in enumerate(HOSTILE)
                    if not isinstance(v, str) or not v}
        assert defaults == {DEFAULT_VALUE}
        assert where["s7"] == "cafe" and where["s13"] == "a_b"  # safe values are kept as is


class TestOpenPartitionCap:
    def test_a_thousand_values_with_a_cap_of_fifty_cut_batches_and_lose_nothing(
            self, s3: Any, bucket: str, moto_endpoint: str,
            analytics_logger: logging.Logger) -> None:
        """1,000 distinct values, 2 records each, max_open_partitions=50: every record
        arrives, the oldest batch is cut (counted) for each new partition past 50,
        queued memory stays under max_queue_bytes and the counters add up in every sample."""
        handler = S3Handler(bucket, endpoint_url=moto_endpoint, mode="batch", prefix="events",
                            key_template=TEMPLATE, max_open_partitions=50,
                            max_queue_bytes=4 * 1024 * 1024, when_full="block",
                            block_timeout=30)
        analytics_logger.addHandler(handler)
        most_queued = 0
        with StatsSampler(handler) as sampler:
            for value in range(1000):
                for round_ in range(2):
                    analytics_logger.info("x", extra={"analytics_data": {
                        "session_id": f"v{value}-{round_}", "event_type": f"t{value}"}})
                most_queued = max(most_queued, handler.stats()["queued_bytes"])
            assert handler.flush(60)
        stats = handler.stats()
        handler.close()
        assert stats["delivered"] == 2000 and stats["dropped"] == 0
        assert all(b == 0 for b in sampler.balances) and balance(stats) == 0
        assert stats["partition_cuts"] == 1000 - 50
        assert most_queued <= 4 * 1024 * 1024
        per_value: Counter[str] = Counter()
        for key, body in objects(s3, bucket).items():
            value = key.split("/")[1].removeprefix("event_type=")
            rows = lines(body)
            assert {r["event_type"] for r in rows} == {value}
            per_value[value] += len(rows)
        assert per_value == {f"t{v}": 2 for v in range(1000)}


class TestTargetObjectBytes:
    def test_objects_come_out_near_a_one_mib_compressed_target(
            self, s3: Any, bucket: str, moto_endpoint: str,
            analytics_logger: logging.Logger) -> None:
        """Realistic session records, target_object_bytes=1 MiB: every object but the last
        (cut by flush) is between 0.8 and 1.1 MiB of gzip, whatever the raw size."""
        target = 1024 * 1024
        handler = S3Handler(bucket, endpoint_url=moto_endpoint, mode="batch",
                            target_object_bytes=target, when_full="block", block_timeout=30)
        analytics_logger.addHandler(handler)
        for payload in make_sessions(45_000, seed=3):
            analytics_logger.info("Session analytics data",
                                  extra={"analytics_data": payload})
        assert handler.flush(60)
        stats = handler.stats()
        handler.close()
        assert stats["delivered"] == 45_000 and balance(stats) == 0
        listed = s3.list_objects_v2(Bucket=bucket)["Contents"]
        by_seq = sorted(listed, key=lambda o: o["Key"].rsplit("/", 1)[1].split("-")[-2])
        sizes = [o["Size"] / target for o in by_seq]
        print("object sizes (MiB):", [round(s, 3) for s in sizes])
        assert len(sizes) >= 4
        assert all(0.8 <= s <= 1.1 for s in sizes[:-1]), sizes
        assert sizes[-1] <= 1.1


@pytest.fixture
def analytics_logger(analytics_logger: logging.Logger) -> logging.Logger:
    """The analytics logger with only the handler a test adds (pytest's capture handlers
    would otherwise keep every record)."""
    analytics_logger.handlers[:] = []
    return analytics_logger
