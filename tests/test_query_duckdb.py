"""A real engine reads the layout: DuckDB over a downloaded copy of what the handler wrote."""

from __future__ import annotations

import logging
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
from conftest import download

from s3_log_handler import S3Handler
from s3_log_handler._athena import DEFAULT_SESSION_COLUMNS, athena_ddl

#: Three UTC days across a month boundary: zero-padded month and day both change.
DAYS = [datetime(2025, 10, 31, tzinfo=UTC), datetime(2025, 11, 1, tzinfo=UTC),
        datetime(2025, 11, 2, tzinfo=UTC)]
SESSIONS = 60
#: DuckDB leaves zero-padded values such as '02' as VARCHAR unless told the partition types.
HIVE_TYPES = "hive_types={'year': 'INTEGER', 'month': 'INTEGER', 'day': 'INTEGER'}"
#: The plan's example query, for the table `s3-log-handler athena-ddl` creates (README).
PLAN_QUERY = """
SELECT COUNT(*) AS qualified_leads, AVG(duration_seconds) AS avg_duration
FROM session_analytics
WHERE year = 2025 AND month = 11
  AND discovered_signals.qualification_tier = 'qualified'
"""


def session(i: int) -> tuple[float, dict[str, Any]]:
    """Session ``i``: its record time (spread over :data:`DAYS`) and a plan-shaped payload."""
    start = DAYS[i % len(DAYS)] + timedelta(minutes=7 * i)
    team_size, volume = i % 9, (i * 37) % 250
    qualified = team_size >= 5 or volume >= 100
    return start.timestamp(), {
        "session_id": f"rm_{i:04d}",
        "user_email": f"user{i}@example.com",
        "start_time": start.isoformat(),
        "end_time": (start + timedelta(seconds=300)).isoformat(),
        "duration_seconds": 300.0 + i,
        "discovered_signals": {"team_size": team_size, "monthly_volume": volume,
                               "qualification_tier": "qualified" if qualified else "nurture"},
        "tool_calls": [{"tool": "lookup", "timestamp": start.isoformat()}],
        "metrics_summary": {"llm_tokens": 1000.0 + i},
        "cost_summary": {"total_usd": 0.01 * i},
        "conversation_notes": f"note {i}",
    }


def emit_all(handler: S3Handler) -> list[tuple[datetime, dict[str, Any]]]:
    """Pass every session through ``handler.handle`` with its own record time."""
    emitted = []
    for i in range(SESSIONS):
        created, payload = session(i)
        handler.handle(logging.makeLogRecord({
            "name": "analytics", "levelno": logging.INFO, "levelname": "INFO",
            "msg": "Session analytics data", "created": created, "analytics_data": payload}))
        emitted.append((datetime.fromtimestamp(created, UTC), payload))
    return emitted


class TestDuckDbReadsTheLayout:
    @pytest.mark.parametrize(("mode", "ext"), [("object", ".json.gz"), ("batch", ".ndjson.gz")])
    def test_hive_partitioned_counts_and_qualified_leads_match_what_was_emitted(
            self, s3: Any, bucket: str, moto_endpoint: str, tmp_path: Path, mode: str,
            ext: str) -> None:
        """Per-day counts and qualified leads from DuckDB equal those of the emitted sessions."""
        handler = S3Handler(bucket, endpoint_url=moto_endpoint, mode=mode, max_batch_records=8)
        emitted = emit_all(handler)
        assert handler.flush(60)
        keys = download(s3, bucket, tmp_path)
        assert keys and all(k.endswith(ext) for k in keys)

        con = duckdb.connect()
        con.sql(f"""CREATE VIEW session_analytics AS SELECT * FROM read_json(
            '{tmp_path}/sessions/*/*/*/*', format='newline_delimited', hive_partitioning=true,
            {HIVE_TYPES})""")
        per_day = con.sql("SELECT year, month, day, count(*) FROM session_analytics "
                          "GROUP BY ALL ORDER BY ALL").fetchall()
        expected = Counter((t.year, t.month, t.day) for t, _ in emitted)
        assert per_day == sorted((*day, n) for day, n in expected.items())
        assert len(per_day) == 3

        leads = con.sql("SELECT session_id FROM session_analytics "
                        "WHERE discovered_signals.team_size >= 5 "
                        "OR discovered_signals.monthly_volume >= 100").fetchall()
        expected_leads = {p["session_id"] for _, p in emitted
                          if p["discovered_signals"]["team_size"] >= 5
                          or p["discovered_signals"]["monthly_volume"] >= 100}
        assert {row[0] for row in leads} == expected_leads
        assert 0 < len(expected_leads) < SESSIONS

        ((count, avg),) = con.sql(PLAN_QUERY).fetchall()
        november = [p for t, p in emitted if (t.year, t.month) == (2025, 11)
                    and p["discovered_signals"]["qualification_tier"] == "qualified"]
        assert count == len(november)
        assert avg == pytest.approx(sum(p["duration_seconds"] for p in november) / count)

    def test_athena_columns_match_what_duckdb_sees(self, s3: Any, bucket: str,
                                                   moto_endpoint: str, tmp_path: Path) -> None:
        """The documented default columns and a --sample inference name the data's columns."""
        handler = S3Handler(bucket, endpoint_url=moto_endpoint)
        emit_all(handler)
        assert handler.flush(60)
        keys = download(s3, bucket, tmp_path)
        described = duckdb.connect().sql(f"""DESCRIBE SELECT * FROM read_json(
            '{tmp_path}/sessions/*/*/*/*', format='newline_delimited', hive_partitioning=true)
            """).fetchall()
        data_columns = [row[0] for row in described if row[0] not in ("year", "month", "day")]
        assert data_columns == [name for name, _ in DEFAULT_SESSION_COLUMNS]
        sampled = athena_ddl(bucket, sample=tmp_path / keys[0])
        assert all(f"  `{name}` " in sampled for name in data_columns)
