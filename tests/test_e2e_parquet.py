"""format: parquet end to end over real HTTP: logging.yaml in, Parquet objects out, read back."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest
from conftest import download

import s3_log_handler
from s3_log_handler import S3Handler
from s3_log_handler._parquet import records

CONFIG = """
version: 1
disable_existing_loggers: false
handlers:
  s3:
    class: s3_log_handler.S3Handler
    bucket: "${BUCKET}"
    endpoint_url: "${ENDPOINT}"
    prefix: events
    mode: batch
    format: parquet
    parquet_compression: "${PARQUET_COMPRESSION:-zstd}"
    max_batch_age: 3600
    key_template: "{prefix}/tier={field:discovered_signals.qualification_tier}/year={year}/\\
month={month}/day={day}/{host}-{pid}-{seq}-{uuid}{ext}"
loggers:
  analytics.parquet:
    level: INFO
    handlers: [s3]
    propagate: false
"""
TIERS = ("qualified", "nurture")


def payload(i: int) -> dict[str, Any]:
    """A session with nested objects, a list of structs and a list of strings."""
    return {"session_id": f"rm_{i:04d}", "duration_seconds": 10.5 * i,
            "discovered_signals": {"team_size": i % 7, "qualification_tier": TIERS[i % 2],
                                   "integrations": ["hubspot", "slack"][: i % 3]},
            "tool_calls": [{"tool": "lookup", "ms": i}, {"tool": "price", "ms": i + 1}],
            "metrics_summary": {"llm": {"model": "m1", "tokens": 1000 + i}}}


def configure(tmp_path: Path, endpoint: str, bucket: str, **env: str) -> S3Handler:
    """Apply :data:`CONFIG` with dictConfig (through ``configure``); return the handler."""
    path = tmp_path / "logging.yaml"
    path.write_text(CONFIG)
    s3_log_handler.configure(path, environ={"BUCKET": bucket, "ENDPOINT": endpoint, **env})
    (handler,) = logging.getLogger("analytics.parquet").handlers
    assert isinstance(handler, S3Handler)
    return handler


class TestParquetBatches:
    def test_records_sent_through_logging_yaml_read_back_exactly(
            self, s3: Any, bucket: str, moto_endpoint: str, tmp_path: Path) -> None:
        """DuckDB (hive partitions) and pyarrow return exactly the records sent, nested
        fields intact; a later batch's new field and changed type land in extra_json."""
        handler = configure(tmp_path, moto_endpoint, bucket)
        log = logging.getLogger("analytics.parquet")
        sent = [payload(i) for i in range(40)]
        for p in sent:
            log.info("Session analytics data", extra={"analytics_data": p})
        assert handler.flush(60)
        drift = [{**payload(100), "channel": "phone"},
                 {**payload(101), "duration_seconds": "n/a"}]
        for p in drift:
            log.info("Session analytics data", extra={"analytics_data": p})
        assert handler.flush(60)
        stats = handler.stats()
        assert stats["delivered"] == 42
        assert (stats["parquet_outside_schema"], stats["parquet_type_mismatches"]) == (1, 1)

        keys = download(s3, bucket, tmp_path / "bucket")
        assert keys and all(k.endswith(".parquet") for k in keys)
        assert {k.split("/")[1] for k in keys} == {"tier=qualified", "tier=nurture"}
        head = s3.head_object(Bucket=bucket, Key=keys[0])
        assert head["ContentType"] == "application/vnd.apache.parquet"

        everything = sent + drift
        by_id = {p["session_id"]: p for p in everything}
        from_arrow = [r for k in keys for r in records(pq.read_table(tmp_path / "bucket" / k))]
        assert sorted(from_arrow, key=lambda r: r["session_id"]) == sorted(
            everything, key=lambda r: r["session_id"])

        rows = duckdb.sql(f"""
            SELECT * EXCLUDE (year, month, day, tier), tier FROM read_parquet(
                '{tmp_path}/bucket/events/*/*/*/*/*.parquet', hive_partitioning=true,
                union_by_name=true)""")
        names = rows.columns
        seen = {}
        for row in rows.fetchall():
            got = dict(zip(names, row, strict=True))
            extra = json.loads(got.pop("extra_json") or "{}")
            tier = got.pop("tier")
            got = {k: v for k, v in got.items() if v is not None} | extra
            assert tier == got["discovered_signals"]["qualification_tier"]
            seen[got["session_id"]] = got
        assert seen == by_id
        ((nested,),) = duckdb.sql(f"""
            SELECT sum(metrics_summary.llm.tokens) FROM read_parquet(
                '{tmp_path}/bucket/events/*/*/*/*/*.parquet', union_by_name=true)""").fetchall()
        assert nested == sum(p["metrics_summary"]["llm"]["tokens"] for p in everything)

    def test_snappy_on_request(self, s3: Any, bucket: str, moto_endpoint: str,
                               tmp_path: Path) -> None:
        """parquet_compression: snappy writes snappy column chunks."""
        handler = configure(tmp_path, moto_endpoint, bucket, PARQUET_COMPRESSION="snappy")
        logging.getLogger("analytics.parquet").info(
            "Session analytics data", extra={"analytics_data": payload(1)})
        assert handler.flush(60)
        (key,) = download(s3, bucket, tmp_path / "bucket")
        meta = pq.ParquetFile(tmp_path / "bucket" / key).metadata
        assert meta.row_group(0).column(0).compression == "SNAPPY"


class TestRefusals:
    def test_parquet_in_object_mode_is_refused_at_construction(self) -> None:
        """Object mode writes one JSON object per record: format='parquet' is a ValueError."""
        with pytest.raises(ValueError, match="mode='batch'"):
            S3Handler("some-bucket", format="parquet")

    def test_without_pyarrow_the_error_names_the_extra(self, monkeypatch: Any) -> None:
        """An ImportError says which extra to install."""
        import builtins

        real_import = builtins.__import__

        def no_pyarrow(name: str, *args: Any, **kwargs: Any) -> Any:
            if name == "pyarrow" or name.startswith("pyarrow."):
                raise ImportError(name)
            return real_import(name, *args, **kwargs)

        monkeypatch.setattr(builtins, "__import__", no_pyarrow)
        with pytest.raises(ImportError, match=r"s3-analytics-handler\[parquet\]"):
            S3Handler("some-bucket", format="parquet", mode="batch")
