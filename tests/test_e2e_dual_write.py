"""The drop-in dual write over real HTTP: logging.yaml -> S3 and CloudWatch Logs (moto)."""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import watchtower
from conftest import point_shipped_config_at_moto, read_objects, wait_until

from s3_log_handler import S3Handler, configure
from s3_log_handler._demo import run_demo
from s3_log_handler._demo_payloads import make_sessions
from s3_log_handler._keys import Partition
from s3_log_handler.counters import balance

REPO_YAML = Path(__file__).resolve().parents[1] / "logging.yaml"
METADATA = {"timestamp", "level", "logger", "message", "_event_type", "_session_id"}
analytics_logger = logging.getLogger("analytics")


def send_to_analytics_queue(data: dict[str, Any]) -> None:
    """The application's call site from the plan, unchanged."""
    analytics_logger.info("Session analytics data", extra={"analytics_data": data})


@dataclass
class Sinks:
    bucket: str
    group: str
    s3: Any
    logs: Any

    def objects(self) -> dict[str, bytes]:
        return read_objects(self.s3, self.bucket, "sessions/")

    def events(self) -> list[dict[str, Any]]:
        """Every analytics event in the group: its message parsed, plus CloudWatch's
        @timestamp (not the S3 handler's health metrics, on their own stream)."""
        pages = self.logs.get_paginator("filter_log_events").paginate(logGroupName=self.group)
        return [{**orjson.loads(e["message"]), "@timestamp": e["timestamp"]}
                for page in pages for e in page["events"]
                if not e["logStreamName"].endswith("-metrics")]


@pytest.fixture
def sinks(moto_endpoint: str, s3: Any, bucket: str, tmp_path: Path,
          monkeypatch: pytest.MonkeyPatch) -> Sinks:
    """Environment that points the shipped logging.yaml at moto, as a deployment would."""
    group, logs = point_shipped_config_at_moto(monkeypatch, moto_endpoint, bucket,
                                               tmp_path / "spool", "/e2e")
    return Sinks(bucket, group, s3, logs)


def drain(handlers: list[logging.Handler]) -> None:
    """What logging.shutdown() does at exit (flush, then close), with a generous S3 bound."""
    for handler in handlers:
        if isinstance(handler, S3Handler):
            assert handler.flush(60.0)
        else:
            handler.flush()
        handler.close()


def canonical(document: dict[str, Any]) -> bytes:
    return orjson.dumps(document, option=orjson.OPT_SORT_KEYS)


def event_payloads(events: list[dict[str, Any]]) -> Counter[bytes]:
    return Counter(canonical({k: v for k, v in e.items() if k not in METADATA | {"@timestamp"}})
                   for e in events)


class TestDualWrite:
    def test_every_session_reaches_s3_and_cloudwatch(self, sinks: Sinks) -> None:
        """100 sessions through the unchanged call site land in both sinks, exactly."""
        configure(REPO_YAML)
        handlers = list(analytics_logger.handlers)
        assert sorted(type(h).__name__ for h in handlers) == ["CloudWatchLogHandler",
                                                              "S3Handler"]
        payloads = make_sessions(100)
        anonymous = [p for p in payloads if "session_id" not in p]
        assert anonymous, "the sample should include sessions without an id"
        before = time.time()
        for payload in payloads:
            send_to_analytics_queue(payload)
        after = time.time()
        drain(handlers)

        objects = sinks.objects()
        assert len(objects) == len(payloads)
        days = {Partition.of(before), Partition.of(after)}
        for payload in payloads:
            if "session_id" in payload:
                keys = {f"sessions/year={d.year}/month={d.month}/day={d.day}/"
                        f"{payload['session_id']}.json.gz" for d in days}
                assert [objects[k] for k in keys if k in objects] == [
                    orjson.dumps(payload) + b"\n"]
        generated = Counter(body for key, body in objects.items() if "/gen-" in key)
        assert generated == Counter(orjson.dumps(p) + b"\n" for p in anonymous)

        events = sinks.events()
        assert len(events) == len(payloads)
        assert event_payloads(events) == Counter(canonical(p) for p in payloads)
        for event in events:
            assert event["_event_type"] == "session_analytics"
            assert event["_session_id"] == event.get("session_id")
            assert before * 1000 - 1 <= event["@timestamp"] <= after * 1000 + 1

    def test_plan_insights_queries_answer_from_the_events(self, sinks: Sinks) -> None:
        """The plan's two Insights queries, evaluated on each event's JSON, return the
        emitted sessions (moto does not run Insights filters, so the test applies them)."""
        configure(REPO_YAML)
        handlers = list(analytics_logger.handlers)
        payloads = make_sessions(40, seed=7)
        for payload in payloads:
            send_to_analytics_queue(payload)
        drain(handlers)
        events = sinks.events()
        # fields @timestamp, _session_id, duration_seconds, discovered_signals
        # | filter _event_type = "session_analytics" | sort @timestamp desc
        rows = sorted((e["_session_id"] or "", e["duration_seconds"],
                        canonical(e["discovered_signals"])) for e in events
                       if e.get("_event_type") == "session_analytics")
        assert rows == sorted((p.get("session_id") or "", p["duration_seconds"],
                               canonical(p["discovered_signals"])) for p in payloads)
        # fields _session_id, discovered_signals.team_size | filter _event_type = ...
        # | filter discovered_signals.team_size >= 5
        leads = Counter((e["_session_id"], e["discovered_signals"]["team_size"]) for e in events
                        if e.get("_event_type") == "session_analytics"
                        and e["discovered_signals"]["team_size"] >= 5)
        expected = Counter((p.get("session_id"), p["discovered_signals"]["team_size"])
                           for p in payloads if p["discovered_signals"]["team_size"] >= 5)
        assert leads == expected and leads


class TestReload:
    def test_reload_with_records_queued_delivers_each_exactly_once(
        self, sinks: Sinks, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """configure() again while records are queued: every record before and after the
        reload arrives once in each sink, and none reaches a closed handler."""
        close_timeout = 30.0
        monkeypatch.setenv("ANALYTICS_CLOSE_TIMEOUT", str(close_timeout))
        configure(REPO_YAML)
        old = list(analytics_logger.handlers)
        old_s3 = next(h for h in old if isinstance(h, S3Handler))
        first, second = make_sessions(60, seed=1), make_sessions(60, seed=2)
        for payload in first:
            send_to_analytics_queue(payload)
        assert old_s3.stats()["queued"] > 0, "the reload must happen with records in flight"

        begin = time.monotonic()
        configure(REPO_YAML)
        reload_seconds = time.monotonic() - begin
        new = list(analytics_logger.handlers)
        assert not set(new) & set(old)
        for payload in second:
            send_to_analytics_queue(payload)
        drain(new)

        assert wait_until(lambda: balance(old_s3.stats()) == 0
                          and old_s3.stats()["queued"] == 0, 30.0)
        stats = old_s3.stats()
        assert stats["emitted"] == len(first)
        assert stats["dropped"] == 0 and stats["dropped_reasons"].get("closed", 0) == 0
        new_s3 = next(h for h in new if isinstance(h, S3Handler))
        assert new_s3.stats()["emitted"] == len(second)

        both = first + second
        assert Counter(sinks.objects().values()) == Counter(orjson.dumps(p) + b"\n"
                                                            for p in both)
        assert event_payloads(sinks.events()) == Counter(canonical(p) for p in both)
        assert any(isinstance(h, watchtower.CloudWatchLogHandler) for h in old)
        # Old handlers were flushed before dictConfig took logging's lock, not waited out.
        assert reload_seconds < close_timeout


class TestDemo:
    def test_embedded_demo_exits_zero_from_any_directory(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`s3-log-handler demo` finds its packaged logging.yaml and checks both sinks."""
        monkeypatch.chdir(tmp_path)
        assert run_demo(sessions=30, real=False) == 0
        out = capsys.readouterr().out
        assert "30/30 sessions found with their exact payload bytes" in out
        assert "OK: all 30 sessions are in S3 and in CloudWatch Logs" in out

    def test_demo_fails_when_a_sink_is_missing(self, sinks: Sinks,
                                               monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
        """With CloudWatch switched off the sessions are missing there: exit status 1."""
        monkeypatch.delenv("ANALYTICS_LOG_GROUP")
        assert run_demo(sessions=5, real=True) == 1
        assert "FAILED: 0 sessions missing from S3, 5 from CloudWatch" in capsys.readouterr().out
