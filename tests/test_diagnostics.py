"""Reports: limited per key, never silenced for good, and an outage's end is reported."""

from __future__ import annotations

import logging

import pytest

from s3_log_handler._diagnostics import Reports


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def said(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What the library logged, as messages (a live view)."""
    caplog.set_level(logging.DEBUG, logger="s3_log_handler")

    class View(list[str]):
        def __iter__(self):  # type: ignore[no-untyped-def]
            return iter([r.getMessage() for r in caplog.records])

        def __len__(self) -> int:
            return len(caplog.records)

    return View()


class TestReports:
    def test_a_key_is_logged_once_per_interval_with_the_count_held_back(
        self, said: list[str],
    ) -> None:
        """Repeats inside the interval are counted; the next line after it says how many."""
        clock = Clock()
        reports = Reports(interval=300, clock=clock)
        for _ in range(4):
            reports.report("k", logging.ERROR, "disk %s failed", "sda")
        clock.now += 301
        reports.report("k", logging.ERROR, "disk %s failed", "sda")
        assert list(said) == ["disk sda failed",
                              "disk sda failed (3 similar reports held back in the last 300 s)"]

    def test_keys_are_limited_independently(self, said: list[str]) -> None:
        """One noisy key does not hide another."""
        reports = Reports(clock=Clock())
        reports.report("a", logging.ERROR, "a")
        reports.report("b", logging.ERROR, "b")
        reports.report("a", logging.ERROR, "a")
        assert list(said) == ["a", "b"]

    def test_recovery_is_one_line_with_attempts_and_duration_then_reports_come_back(
        self, said: list[str],
    ) -> None:
        """After "recovered", the next failure of the same key is logged at once."""
        clock = Clock()
        reports = Reports(clock=clock)
        for _ in range(3):
            reports.report("SlowDown", logging.ERROR, "upload failed", outage="upload")
            clock.now += 2
        assert reports.failing("upload")
        reports.recovered("upload", "S3 uploads")
        assert not reports.failing("upload")
        reports.recovered("upload", "S3 uploads")  # nothing to say twice
        reports.report("SlowDown", logging.ERROR, "upload failed", outage="upload")
        assert list(said) == ["upload failed",
                              "S3 uploads recovered after 3 failed attempts in 6.0 s",
                              "upload failed"]

    def test_an_attempt_started_before_the_recovery_does_not_open_a_new_outage(
        self, said: list[str],
    ) -> None:
        """A slow request sent during the outage and answered after another succeeded is
        not a new outage (no ERROR, no second "recovered"); one started later is."""
        clock = Clock()
        reports = Reports(clock=clock)
        slow = reports.now()
        reports.report("SlowDown", logging.ERROR, "upload failed", outage="upload")
        clock.now += 1
        reports.recovered("upload", "S3 uploads")
        reports.report("SlowDown", logging.ERROR, "late answer", outage="upload", started=slow)
        assert not reports.failing("upload")
        reports.recovered("upload", "S3 uploads")
        reports.report("SlowDown", logging.ERROR, "new outage", outage="upload",
                       started=reports.now())
        assert list(said) == ["upload failed",
                              "S3 uploads recovered after 1 failed attempts in 1.0 s",
                              "new outage"]

    def test_a_message_that_cannot_be_formatted_is_still_reported(
        self, said: list[str],
    ) -> None:
        """A bad format string never hides the report (nor raises)."""
        Reports(clock=Clock()).report("k", logging.ERROR, "%d items", "not-a-number")
        assert list(said) == ["%d items ('not-a-number',)"]
