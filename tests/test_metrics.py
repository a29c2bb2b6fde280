"""Health metrics as CloudWatch Embedded Metric Format: the document, its interval deltas,
the oldest-queued age, and real lines from a handler over HTTP and through logging.yaml."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import Collect, collecting, free_port, point_shipped_config_at_moto, wait_until

from s3_log_handler import S3Handler, configure
from s3_log_handler._metrics import (
    DELTAS,
    DROP_REASONS,
    GAUGES,
    MAX_METRICS,
    NAMESPACE,
    HealthMetrics,
    dimension_values,
    emf_document,
)
from s3_log_handler._pending import MARK_EVERY, PendingRecords
from s3_log_handler.counters import balance

REPO_YAML = Path(__file__).resolve().parents[1] / "logging.yaml"
#: CloudWatch's metric units (MetricDatum.Unit), which EMF accepts.
UNITS = frozenset({
    "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes",
    "Terabytes", "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count",
    "Bytes/Second", "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second",
    "Terabytes/Second", "Bits/Second", "Kilobits/Second", "Megabits/Second",
    "Gigabits/Second", "Terabits/Second", "Count/Second", "None"})
DIMS = dimension_values("bucket-a", "sessions", "object")


def valid_emf(message: str, *, after_ms: int, before_ms: int) -> dict[str, Any]:
    """``message`` parsed, after checking it is an EMF document as the specification says:
    a bare JSON object; ``_aws`` with only ``Timestamp`` (integer milliseconds, here between
    ``after_ms`` and ``before_ms``) and ``CloudWatchMetrics``; each directive with only
    ``Namespace``, ``Dimensions`` (sets of at most 30 names) and ``Metrics`` (at most 100,
    each a ``Name`` and a known ``Unit``); and a top-level value for every dimension (a
    non-empty string) and every metric (a number)."""
    document = orjson.loads(message)
    assert isinstance(document, dict)
    aws = document["_aws"]
    assert set(aws) == {"Timestamp", "CloudWatchMetrics"}
    stamp = aws["Timestamp"]
    assert type(stamp) is int and after_ms <= stamp <= before_ms
    assert isinstance(aws["CloudWatchMetrics"], list) and aws["CloudWatchMetrics"]
    for directive in aws["CloudWatchMetrics"]:
        assert set(directive) == {"Namespace", "Dimensions", "Metrics"}
        assert directive["Namespace"] == NAMESPACE
        for dimension_set in directive["Dimensions"]:
            assert 1 <= len(dimension_set) <= 30
            for name in dimension_set:
                assert isinstance(document[name], str) and document[name]
        assert 1 <= len(directive["Metrics"]) <= MAX_METRICS
        names = [m["Name"] for m in directive["Metrics"]]
        assert len(set(names)) == len(names)
        for metric in directive["Metrics"]:
            assert set(metric) <= {"Name", "Unit", "StorageResolution"}
            assert isinstance(metric["Name"], str) and 1 <= len(metric["Name"]) <= 255
            assert metric["Unit"] in UNITS
            value = document[metric["Name"]]
            assert type(value) in (int, float) and math.isfinite(value)
    return document


def totals(lines: list[dict[str, Any]]) -> dict[str, Any]:
    """What the lines add up to: every counter summed, every gauge from the last line, in
    the names of ``stats()`` (``failed_attempts`` is ``failed``)."""
    out: dict[str, Any] = {counter: sum(line[name] for line in lines)
                           for name, counter, _ in DELTAS}
    out.update({key: lines[-1][name] for name, key, _ in GAUGES})
    return out


def reading(**values: Any) -> dict[str, Any]:
    """A health reading (``Ledger.health()``) with zeros for everything not given."""
    base: dict[str, Any] = {c: 0 for _, c, _ in DELTAS}
    base.update({k: 0 for _, k, _ in GAUGES})
    base["dropped_reasons"] = {}
    base.update(values)
    return base


class TestDocument:
    def test_first_line_reports_the_counters_and_gauges(self) -> None:
        """Without an earlier line the counters are reported from zero, gauges as they are,
        and every known drop reason has a value (0 when none)."""
        now = reading(emitted=10, delivered=7, queued=2, dropped=1, failed=3, bytes_sent=900,
                      dropped_reasons={"queue_full": 1}, oldest_queued_age=1.5)
        doc = emf_document(now, None, dimensions=DIMS, timestamp_ms=1_700_000_000_000)
        valid_emf(orjson.dumps(doc).decode(), after_ms=0, before_ms=2**62)
        assert (doc["emitted"], doc["delivered"], doc["dropped"]) == (10, 7, 1)
        assert (doc["failed_attempts"], doc["bytes_sent"]) == (3, 900)
        assert (doc["queued"], doc["oldest_queued_age"]) == (2, 1.5)
        assert doc["dropped_queue_full"] == 1
        assert all(doc[f"dropped_{r}"] == 0 for r in DROP_REASONS if r != "queue_full")
        assert (doc["bucket"], doc["prefix"], doc["mode"]) == ("bucket-a", "sessions", "object")
        assert doc["_aws"]["Timestamp"] == 1_700_000_000_000

    def test_counters_are_deltas_since_the_previous_line_and_gauges_are_current(self) -> None:
        """The second line carries only what happened since the first."""
        before = reading(emitted=10, delivered=7, queued=3, dropped=1,
                         dropped_reasons={"queue_full": 1})
        now = reading(emitted=25, delivered=20, queued=1, dropped=5,
                      dropped_reasons={"queue_full": 2, "shutdown": 3})
        doc = emf_document(now, before, dimensions=DIMS, timestamp_ms=1)
        assert (doc["emitted"], doc["delivered"], doc["dropped"]) == (15, 13, 4)
        assert (doc["dropped_queue_full"], doc["dropped_shutdown"]) == (1, 3)
        assert doc["queued"] == 1

    def test_dead_letters_are_reported_by_reason_once_they_occur(self) -> None:
        """dead_lettered_<reason> appears for each reason seen, as a delta like the rest."""
        before = reading(dead_lettered=1, dead_letter_reasons={"too_large": 1})
        now = reading(dead_lettered=4, dead_letter_reasons={"too_large": 2, "AccessDenied": 2})
        doc = emf_document(now, before, dimensions=DIMS, timestamp_ms=1)
        valid_emf(orjson.dumps(doc).decode(), after_ms=0, before_ms=2**62)
        assert (doc["dead_lettered"], doc["dead_lettered_too_large"],
                doc["dead_lettered_AccessDenied"]) == (3, 1, 2)
        assert "dead_lettered_not_an_object" not in doc

    def test_a_counter_that_went_down_restarts_the_count_from_zero(self) -> None:
        """A forked child's counters start again at zero: its line never goes negative."""
        before = reading(emitted=100, delivered=100)
        doc = emf_document(reading(emitted=2, delivered=1, queued=1), before,
                           dimensions=DIMS, timestamp_ms=1)
        assert (doc["emitted"], doc["delivered"]) == (2, 1)

    def test_other_drop_reasons_become_safe_metric_names_within_the_limit(self) -> None:
        """An unknown reason gets its own metric; names keep to [A-Za-z0-9_.-], and however
        many reasons there are, the directive stays within EMF's 100 metrics."""
        reasons = {"odd reason/x": 1, **{f"r{i}": 1 for i in range(200)}}
        doc = emf_document(reading(dropped=201, dropped_reasons=reasons), None,
                           dimensions=DIMS, timestamp_ms=1)
        valid_emf(orjson.dumps(doc).decode(), after_ms=0, before_ms=2**62)
        assert doc["dropped_odd_reason_x"] == 1
        assert len(doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]) == MAX_METRICS

    def test_an_empty_prefix_is_a_non_empty_dimension_value(self) -> None:
        """CloudWatch refuses empty dimension values."""
        assert dimension_values("b", "", "batch") == {"bucket": "b", "prefix": "(none)",
                                                       "mode": "batch"}


class TestOldestAge:
    def test_age_of_the_oldest_pending_record_to_within_a_mark(self) -> None:
        """The age follows the oldest record still pending, never under-stated, and is 0
        once nothing is pending."""
        pending = PendingRecords()
        first = pending.add(10.0)
        second = pending.add(10.0 + MARK_EVERY / 2)  # shares the first record's mark
        third = pending.add(10.5)
        assert pending.oldest_age(11.0) == pytest.approx(1.0)
        pending.settle([first], lost=False)
        assert pending.oldest_age(11.0) == pytest.approx(1.0)  # upper bound for `second`
        pending.settle([second], lost=False)
        assert pending.oldest_age(11.0) == pytest.approx(0.5)
        pending.settle([third], lost=False)
        assert pending.oldest_age(11.0) == 0.0

    def test_records_held_only_on_disk_count(self) -> None:
        """A spilled record is still waiting: its age is reported."""
        pending = PendingRecords()
        spilled = pending.add(5.0)
        pending.add(8.0)
        pending.spill(spilled)
        assert pending.oldest_age(9.0) == pytest.approx(4.0)

    def test_marks_stay_bounded_in_a_long_outage(self) -> None:
        """A million records pending for a long time keep a few thousand marks, and the
        oldest one's age stays exact."""
        pending = PendingRecords()
        for i in range(1_000_000):
            pending.add(i * 0.01)
        assert len(pending._marks) <= 4096
        assert pending.oldest_age(20_000.0) == pytest.approx(20_000.0)


class TestHealthMetrics:
    def test_reports_when_due_and_nothing_after_the_final_line(self,
                                                              emf_lines: Collect) -> None:
        """One line when due, one final line, then silence; the lines' counters add up."""
        values = iter([reading(emitted=3, delivered=3), reading(emitted=5, delivered=4,
                                                                queued=1)])
        collect = emf_lines
        metrics = HealthMetrics(lambda: next(values), DIMS, 60.0)
        metrics.report_if_due(metrics.next_due - 1)
        assert collect.records == []
        metrics.report_if_due(metrics.next_due)
        metrics.report_final()
        metrics.report_final()
        metrics.report_if_due(metrics.next_due)
        lines = [orjson.loads(r.getMessage()) for r in collect.records]
        assert [line["emitted"] for line in lines] == [3, 2]
        assert totals(lines)["delivered"] == 4 and totals(lines)["queued"] == 1


@pytest.fixture
def emf_lines() -> Iterator[Collect]:
    """The records of the metrics logger during the test."""
    with collecting("s3_log_handler.metrics", logging.INFO) as collect:
        yield collect


def parsed(collect: Collect, after_ms: int) -> list[dict[str, Any]]:
    before_ms = int(time.time() * 1000) + 1
    return [valid_emf(r.getMessage(), after_ms=after_ms, before_ms=before_ms)
            for r in collect.records]


class TestFromAHandler:
    def test_lines_over_http_add_up_to_the_handlers_counters(
        self, moto_endpoint: str, bucket: str, analytics_logger: logging.Logger,
        emf_lines: Collect,
    ) -> None:
        """Against moto over HTTP: valid EMF lines whose deltas sum to the handler's own
        totals (delivered, bytes sent), and those totals balance."""
        start_ms = int(time.time() * 1000)
        handler = S3Handler(bucket, endpoint_url=moto_endpoint, metrics_interval=0.05)
        analytics_logger.addHandler(handler)
        for i in range(30):
            analytics_logger.info("x", extra={"analytics_data": {"session_id": f"s{i}"}})
        assert handler.flush(30)
        assert wait_until(lambda: len(emf_lines.records) >= 2, 30)
        handler.close()
        lines = parsed(emf_lines, start_ms)
        assert all((line["bucket"], line["prefix"], line["mode"]) ==
                   (bucket, "sessions", "object") for line in lines)
        added = totals(lines)
        stats = handler.stats()
        assert added == {k: stats.get(k, 0.0) for k in added}  # age: 0.0, none waits
        assert added["delivered"] == 30 and added["bytes_sent"] > 0
        assert balance(added) == 0

    def test_an_outage_shows_in_drops_by_reason_queue_and_age(
        self, analytics_logger: logging.Logger, emf_lines: Collect,
    ) -> None:
        """S3 unreachable and a small queue: lines show records queued, their age growing,
        queue_full drops and failed attempts; the last line (at close) counts the records
        dropped at shutdown, and everything still balances."""
        start_ms = int(time.time() * 1000)
        handler = S3Handler("outage-bucket", endpoint_url=f"http://127.0.0.1:{free_port()}",
                            metrics_interval=0.05, max_queue_bytes=4096, close_timeout=0.2,
                            workers=1, retry_base=0.05, retry_cap=0.1)
        analytics_logger.addHandler(handler)
        for i in range(20):
            analytics_logger.info("x", extra={"analytics_data": {"session_id": f"s{i}",
                                                                "pad": "p" * 500}})
        assert wait_until(lambda: any(
            orjson.loads(r.getMessage())["oldest_queued_age"] > 0
            and orjson.loads(r.getMessage())["failed_attempts"] > 0
            for r in emf_lines.records), 30)
        handler.close()
        lines = parsed(emf_lines, start_ms)
        assert any(line["queued"] > 0 for line in lines)
        added = totals(lines)
        assert added["emitted"] == 20 and added["delivered"] == 0
        assert sum(line["dropped_queue_full"] for line in lines) > 0
        assert sum(line["dropped_shutdown"] for line in lines) > 0
        assert added["dropped"] == sum(line["dropped_queue_full"] + line["dropped_shutdown"]
                                       for line in lines)
        assert balance(added) == 0  # an upload still in flight at close stays queued

    def test_metrics_records_never_reach_an_s3_handler(self, emf_lines: Collect) -> None:
        """Even an S3Handler attached to the metrics logger itself ships none of its lines."""
        shipping = S3Handler("never-contacted", endpoint_url=f"http://127.0.0.1:{free_port()}")
        logging.getLogger("s3_log_handler.metrics").addHandler(shipping)
        reporting = S3Handler("never-contacted", metrics_interval=0.05)
        assert wait_until(lambda: len(emf_lines.records) >= 2, 30)
        reporting.close()
        assert shipping.stats()["emitted"] == 0
        shipping.close()

    def test_off_by_default(self, bucket: str, moto_endpoint: str,
                            emf_lines: Collect) -> None:
        """Without metrics_interval (or with 0) no line is ever logged, not even at close."""
        for options in ({}, {"metrics_interval": 0}):
            handler = S3Handler(bucket, endpoint_url=moto_endpoint, **options)
            handler.close()
        assert emf_lines.records == []


class TestThroughLoggingYaml:
    def test_lines_arrive_in_the_log_group_as_bare_emf(
        self, moto_endpoint: str, bucket: str, s3: Any, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """The shipped logging.yaml routes the metrics to the CloudWatch log group (moto,
        over HTTP) on their own stream, each event's message a bare EMF document, and the
        events add up to the S3 handler's counters."""
        group, logs = point_shipped_config_at_moto(monkeypatch, moto_endpoint, bucket,
                                                   tmp_path / "spool", "/e2e-metrics")
        monkeypatch.setenv("ANALYTICS_METRICS_INTERVAL", "0.1")
        start_ms = int(time.time() * 1000)
        configure(REPO_YAML)
        analytics = logging.getLogger("analytics")
        s3_handler = next(h for h in analytics.handlers if isinstance(h, S3Handler))
        assert s3_handler.config.metrics_interval == 0.1
        for i in range(12):
            analytics.info("Session analytics data",
                           extra={"analytics_data": {"session_id": f"m{i}"}})
        assert s3_handler.flush(30)
        s3_handler.close()  # logs the last line
        for handler in analytics.handlers:
            handler.flush()
        sink = logging.getLogger("s3_log_handler.metrics").handlers
        assert [type(h).__name__ for h in sink] == ["CloudWatchLogHandler"]
        sink[0].flush()

        def events() -> list[dict[str, Any]]:
            pages = logs.get_paginator("filter_log_events").paginate(logGroupName=group)
            return [dict(e) for page in pages for e in page["events"]]

        def metric_events() -> list[dict[str, Any]]:
            return [e for e in events() if e["message"].startswith('{"_aws"')]

        before_ms = int(time.time() * 1000) + 1
        assert wait_until(lambda: sum(orjson.loads(e["message"])["delivered"]
                                      for e in metric_events()) == 12, 30)
        sink[0].close()
        found = metric_events()
        lines = [valid_emf(e["message"], after_ms=start_ms, before_ms=before_ms)
                 for e in found]
        assert all(e["logStreamName"].endswith("-metrics") for e in found)
        assert all(line["bucket"] == bucket for line in lines)
        added = totals(sorted(lines, key=lambda line: line["_aws"]["Timestamp"]))
        stats = s3_handler.stats()
        assert {k: added[k] for k in ("emitted", "delivered", "bytes_sent")} == {
            k: stats[k] for k in ("emitted", "delivered", "bytes_sent")}
        assert balance(added) == 0
