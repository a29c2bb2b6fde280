"""Keeper: adoption of abandoned segments, refill of memory from disk, fsync and deletes, each
step's disk errors reported (rate-limited) and retried next round without losing records."""

from __future__ import annotations

import errno
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import has_ready, wait_until

from s3_log_handler import _keeper
from s3_log_handler._diagnostics import Reports
from s3_log_handler._jobqueue import JobQueue
from s3_log_handler._jobs import JobMaker
from s3_log_handler._keeper import Keeper
from s3_log_handler._ledger import Ledger
from s3_log_handler._policies import QueuePolicy
from s3_log_handler._records import DELIVERED, RECORD_OVERHEAD, Entry
from s3_log_handler._segment_lines import encode_line
from s3_log_handler._settings import OBJECT_KEY_TEMPLATE
from s3_log_handler._spool import Spool
from s3_log_handler.counters import OUTCOMES, SOURCES, balance

BODY = 300  # bytes per test record
COST = BODY + RECORD_OVERHEAD
DAY = 1_700_000_000.0


def record(n: int) -> Entry:
    """Record ``n``: a JSON line of exactly BODY bytes under its object-mode key."""
    body = (b'{"n":%d,"pad":"' % n).ljust(BODY - 3, b"p") + b'"}\n'
    return Entry(body, DAY, f"r{n}", f"sessions/r{n}.json")


def abandon(directory: Path, numbers: range, *, torn: bool = False) -> None:
    """Leave a segment holding ``numbers`` (and a torn last line) as a dead owner would."""
    owner = Spool(str(directory))
    refs = [owner.append(record(n)).ref for n in numbers]
    owner.close()
    if torn:
        assert refs[-1] is not None
        with (directory / f"{refs[-1].segment}.seg").open("ab") as f:
            f.write(encode_line(record(999))[:25])  # a write cut short by a crash


@dataclass
class Rig:
    """A keeper over a real spool and ledger; ``woken`` counts on_work calls."""

    keeper: Keeper
    ledger: Ledger
    jobs: JobQueue
    spool: Spool
    woken: list[int] = field(default_factory=list)

    def emit(self, n: int) -> Entry:
        """Spool and admit record ``n`` as the handler does."""
        entry = self.spool.append(record(n))
        self.ledger.admit(entry)
        return entry

    def deliver_ready(self) -> list[str]:
        """Upload (settle delivered) every job ready now; their record ids."""
        sent: list[str] = []
        while has_ready(self.jobs):  # object mode, no pause: take() returns at once
            job = self.ledger.take()
            assert job is not None
            self.ledger.settle(job.entries, DELIVERED)
            sent.extend(e.record_id for e in job.entries)
        return sent

    def stats(self) -> dict[str, Any]:
        return self.ledger.snapshot()


MakeRig = Callable[..., Rig]


@pytest.fixture
def make_rig(tmp_path: Path) -> Iterator[MakeRig]:
    made: list[Rig] = []

    def make(*, refill_bytes: int = 10**9, max_queue_bytes: int = 10**9,
             when_full: str = "spool", **spool_options: Any) -> Rig:
        spool = Spool(str(tmp_path), **spool_options)
        reports = Reports()
        jobs = JobQueue(JobMaker(OBJECT_KEY_TEMPLATE, "sessions", ""), None)
        ledger = Ledger(jobs, spool, reports, QueuePolicy(max_queue_bytes, when_full, 1.0))
        woken: list[int] = []
        keeper = Keeper(ledger, spool, reports, refill_bytes=refill_bytes,
                        on_work=lambda: woken.append(1))
        rig = Rig(keeper, ledger, jobs, spool, woken)
        made.append(rig)
        return rig

    yield make
    for rig in made:
        rig.keeper.stop()
        rig.ledger.close()
        rig.spool.close()


@pytest.fixture
def every_round_adopts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Adoption runs every round instead of every ADOPT_INTERVAL seconds."""
    monkeypatch.setattr(_keeper, "ADOPT_INTERVAL", 0.0)


def assert_consistent(stats: dict[str, Any]) -> None:
    assert all(stats[name] >= 0 for name in SOURCES + OUTCOMES), stats
    assert balance(stats) == 0, stats


def failing(times: int, real: Callable[..., Any],
            error: str = "disk says no") -> Callable[..., Any]:
    """``real``, but raising OSError(EIO) on its first ``times`` calls."""
    calls = [0]

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] <= times:
            raise OSError(errno.EIO, error)
        return real(*args, **kwargs)

    return wrapper


def messages(caplog: pytest.LogCaptureFixture, level: int, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level and text in r.getMessage()]


class TestAdoption:
    def test_run_once_adopts_an_abandoned_segment_and_dead_letters_torn_lines(
        self, make_rig: MakeRig, tmp_path: Path, caplog: pytest.LogCaptureFixture,
    ) -> None:
        """A dead owner's records count as recovered (spooled, then queued by the refill);
        its torn line is dead-lettered torn_write; delivering them removes the segment."""
        abandon(tmp_path, range(3), torn=True)
        rig = make_rig()
        with caplog.at_level(logging.INFO, logger="s3_log_handler"):
            rig.keeper.run_once()
        stats = rig.stats()
        assert stats["recovered"] == 4
        assert stats["dead_letter_reasons"] == {"torn_write": 1}
        assert (stats["spooled"], stats["queued"]) == (0, 3)
        assert_consistent(stats)
        assert rig.woken
        assert messages(caplog, logging.INFO, "found 3 undelivered records")
        [letter] = list((tmp_path / "dead").iterdir())
        assert '"reason":"torn_write"' in letter.read_text()
        assert sorted(rig.deliver_ready()) == ["r0", "r1", "r2"]
        assert list(tmp_path.glob("*.seg")) == []
        assert rig.ledger.flush(0.0) is True  # recovered records are not this flush's business

    def test_adopted_records_are_counted_spooled_until_refilled(
        self, make_rig: MakeRig, tmp_path: Path,
    ) -> None:
        """With no room in memory adopted records wait on disk, counted spooled."""
        abandon(tmp_path, range(4))
        rig = make_rig(refill_bytes=0)
        rig.keeper.run_once()
        stats = rig.stats()
        assert (stats["recovered"], stats["spooled"], stats["queued"]) == (4, 4, 0)
        assert_consistent(stats)

    def test_a_live_owners_segment_is_left_alone(self, make_rig: MakeRig, tmp_path: Path) -> None:
        """Records of a spool still open elsewhere are not adopted."""
        owner = Spool(str(tmp_path))
        owner.append(record(1))
        rig = make_rig()
        rig.keeper.run_once()
        assert rig.stats()["recovered"] == 0
        owner.close()

    def test_the_keeper_thread_adopts_on_its_own_and_stops(
        self, make_rig: MakeRig, tmp_path: Path,
    ) -> None:
        """start() runs rounds on a daemon thread; stop() ends it."""
        abandon(tmp_path, range(2))
        rig = make_rig()
        before = set(threading.enumerate())
        rig.keeper.start()
        [thread] = [t for t in set(threading.enumerate()) - before
                    if t.name == "s3-log-handler-keeper"]
        assert wait_until(lambda: rig.stats()["queued"] == 2, 10, 0.01)
        rig.keeper.stop()
        thread.join(10)
        assert not thread.is_alive()


class TestRefill:
    def test_refill_waits_for_room_and_delivers_every_spilled_record_once(
        self, make_rig: MakeRig, tmp_path: Path,
    ) -> None:
        """Records spilled to disk (when_full=spool) come back only while memory is below
        refill_bytes, and in rounds all of them are delivered, each once."""
        rig = make_rig(max_queue_bytes=2 * COST, refill_bytes=2 * COST)
        for n in range(8):
            rig.emit(n)
        assert (rig.stats()["queued"], rig.stats()["spooled"]) == (2, 6)
        rig.keeper.run_once()
        assert rig.stats()["spooled"] == 6  # memory is full: nothing read back
        assert not rig.woken
        sent: list[str] = []
        for _ in range(20):
            sent += rig.deliver_ready()
            if not rig.stats()["spooled"]:
                break
            rig.keeper.run_once()
        sent += rig.deliver_ready()
        assert sorted(sent) == sorted(f"r{n}" for n in range(8))
        assert rig.woken
        assert_consistent(rig.stats())
        assert rig.stats()["delivered"] == 8
        assert rig.ledger.flush(0.0) is True  # spilled records keep their flush numbers
        assert list(tmp_path.glob("*.seg")) == []

    def test_refill_stays_within_refill_bytes(self, make_rig: MakeRig, tmp_path: Path) -> None:
        """One round reads back at most refill_bytes of memory (plus the record crossing it)."""
        abandon(tmp_path, range(20))
        rig = make_rig(max_queue_bytes=10 * COST, refill_bytes=5 * COST)
        rig.keeper.run_once()
        assert rig.stats()["queued"] > 0
        assert rig.ledger.memory_bytes <= 5 * COST + COST

    def test_nothing_is_refilled_after_the_ledger_closes(
        self, make_rig: MakeRig, tmp_path: Path,
    ) -> None:
        """Once closed, spooled records stay on disk for the next owner."""
        rig = make_rig(max_queue_bytes=COST)
        for n in range(3):
            rig.emit(n)
        rig.ledger.close()
        rig.keeper.run_once()
        assert (rig.stats()["spooled"], rig.stats()["queued"]) == (2, 1)
        assert not rig.woken


class TestUntrustedLines:
    """Issue 14: lines read back that fail their checks are dead-lettered, never queued."""

    @staticmethod
    def only_sessions(entry: Entry) -> bool:
        return entry.key is None or entry.key.startswith("sessions/")

    def test_adopted_lines_with_foreign_keys_or_no_hmac_are_dead_lettered(
        self, make_rig: MakeRig, tmp_path: Path, caplog: pytest.LogCaptureFixture,
    ) -> None:
        """A dead owner's signed records are adopted; a line keyed outside the prefix and an
        unsigned line are counted recovered and dead-lettered with their reasons (one ERROR
        each), in dead/ with their payloads; the counters balance."""
        owner = Spool(str(tmp_path), mac_key=b"k")
        owner.append(record(1))
        owner.append(Entry(record(2).body, DAY, "r2", "elsewhere/r2.json"))
        owner.close()
        [segment] = tmp_path.glob("*.seg")
        with segment.open("ab") as f:
            f.write(encode_line(record(3)))  # no HMAC
        rig = make_rig(mac_key=b"k", key_check=self.only_sessions)
        rig.keeper.run_once()
        stats = rig.stats()
        assert stats["recovered"] == 3
        assert stats["dead_letter_reasons"] == {"foreign_key": 1, "tampered": 1}
        assert_consistent(stats)
        assert rig.deliver_ready() == ["r1"]
        assert sorted(json.loads(p.read_text())["reason"] for p in (tmp_path / "dead").iterdir()
                      ) == ["foreign_key", "tampered"]
        assert len(messages(caplog, logging.ERROR, "not uploaded")) == 2
        assert list(tmp_path.glob("*.seg")) == []

    def test_a_spilled_record_changed_on_disk_is_dead_lettered_and_flush_reports_it(
        self, make_rig: MakeRig, tmp_path: Path,
    ) -> None:
        """A record of this handler spilled to disk, then its line given a foreign key: the
        refill dead-letters it (spooled -> dead_lettered), the others come back, and the
        flush that covers it reports a loss."""
        rig = make_rig(max_queue_bytes=COST, refill_bytes=10 * COST,
                       key_check=self.only_sessions)
        for n in range(3):
            rig.emit(n)
        assert (rig.stats()["queued"], rig.stats()["spooled"]) == (1, 2)
        [segment] = tmp_path.glob("*.seg")
        data = segment.read_bytes()
        segment.write_bytes(data.replace(b'"sessions/r2.json"', b'"elsewhere/r2.json"'))
        sent = rig.deliver_ready()
        rig.keeper.run_once()
        sent += rig.deliver_ready()
        stats = rig.stats()
        assert sorted(sent) == ["r0", "r1"]
        assert stats["dead_letter_reasons"] == {"foreign_key": 1}
        assert (stats["spooled"], stats["queued"], stats["delivered"]) == (0, 0, 2)
        assert_consistent(stats)
        assert rig.ledger.flush(0.0) is False  # r2 was emitted here and is not delivered


class TestErrors:
    def test_an_adoption_error_is_reported_and_retried_next_round_without_losing_records(
        self, make_rig: MakeRig, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch, every_round_adopts: None,
    ) -> None:
        """adopt_abandoned raising OSError: one ERROR, nothing counted; next round every
        record is adopted, and a 'recovered' line says the spool works again."""
        abandon(tmp_path, range(3))
        rig = make_rig()
        monkeypatch.setattr(rig.spool, "adopt_abandoned", failing(1, rig.spool.adopt_abandoned))
        with caplog.at_level(logging.INFO, logger="s3_log_handler"):
            rig.keeper.run_once()
            assert rig.stats()["recovered"] == 0
            assert len(messages(caplog, logging.ERROR, "could not adopt")) == 1
            assert "disk says no" in messages(caplog, logging.ERROR, "could not adopt")[0]
            rig.keeper.run_once()
        assert (rig.stats()["recovered"], rig.stats()["queued"]) == (3, 3)
        assert len(messages(caplog, logging.ERROR, "could not adopt")) == 1
        assert messages(caplog, logging.INFO, "recovered after")
        assert sorted(rig.deliver_ready()) == ["r0", "r1", "r2"]

    def test_a_backlog_read_error_is_reported_and_retried_next_round_without_losing_records(
        self, make_rig: MakeRig, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """load_backlog raising OSError: one ERROR, the records stay spooled; next round
        they are read back, and a 'recovered' line says the spool works again."""
        rig = make_rig(max_queue_bytes=COST, refill_bytes=4 * COST)
        for n in range(4):
            rig.emit(n)  # one in memory, three spilled to disk
        assert rig.deliver_ready() == ["r0"]
        assert rig.stats()["spooled"] == 3
        monkeypatch.setattr(rig.spool, "load_backlog", failing(1, rig.spool.load_backlog))
        with caplog.at_level(logging.INFO, logger="s3_log_handler"):
            rig.keeper.run_once()
            assert rig.stats()["spooled"] == 3
            rig.keeper.run_once()
        assert len(messages(caplog, logging.ERROR, "could not refill")) == 1
        assert messages(caplog, logging.INFO, "recovered after")
        assert (rig.stats()["spooled"], rig.stats()["queued"]) == (0, 3)
        assert sorted(rig.deliver_ready()) == ["r1", "r2", "r3"]
        assert rig.ledger.flush(0.0) is True

    @pytest.mark.parametrize("step, method", [
        ("adopt", "adopt_abandoned"), ("refill", "load_backlog"),
        ("fsync", "sync_if_due"), ("delete", "retry_deletes"),
    ])
    def test_an_error_in_any_step_is_reported_and_never_raises(
        self, make_rig: MakeRig, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch, step: str, method: str,
    ) -> None:
        """Whatever step fails, run_once reports it by name and the other steps still run."""
        rig = make_rig(max_queue_bytes=COST)
        for n in range(3):
            rig.emit(n)  # one in memory, two spilled to disk for the refill
        monkeypatch.setattr(rig.spool, method, failing(99, getattr(rig.spool, method)))
        with caplog.at_level(logging.ERROR, logger="s3_log_handler"):
            rig.keeper.run_once()
        assert len(messages(caplog, logging.ERROR, f"could not {step} in spool")) == 1
        assert rig.stats()["spooled"] == (2 if step == "refill" else 0)

    @pytest.mark.parametrize("method", ["adopt_abandoned", "load_backlog"])
    def test_a_persisting_error_is_reported_once_and_recovery_claimed_only_when_it_works(
        self, make_rig: MakeRig, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch, every_round_adopts: None, method: str,
    ) -> None:
        """Three failing rounds log one ERROR and no 'recovered'; the working round then
        logs one 'recovered' line counting the three failed attempts."""
        rig = make_rig(max_queue_bytes=COST)
        if method == "adopt_abandoned":
            abandon(tmp_path, range(2))
        else:
            for n in range(3):
                rig.emit(n)  # one in memory, two spilled to disk for the refill
            assert rig.deliver_ready() == ["r0"]
        monkeypatch.setattr(rig.spool, method, failing(3, getattr(rig.spool, method)))
        with caplog.at_level(logging.INFO, logger="s3_log_handler"):
            for _ in range(3):
                rig.keeper.run_once()
            assert len(messages(caplog, logging.ERROR, "could not")) == 1
            assert messages(caplog, logging.INFO, "recovered") == []
            rig.keeper.run_once()
        [line] = messages(caplog, logging.INFO, "recovered")
        assert "after 3 failed attempts" in line
        assert rig.stats()["queued"] == 2

    def test_a_read_error_midway_through_adoption_loses_no_segment(
        self, make_rig: MakeRig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        every_round_adopts: None,
    ) -> None:
        """Two abandoned segments, the second unreadable once: after the next round all six
        records are counted recovered and in memory."""
        abandon(tmp_path, range(0, 3))
        abandon(tmp_path, range(3, 6))
        rig = make_rig()
        real = rig.spool._read
        reads = [0]

        def second_read_fails(segment: Any) -> Any:
            reads[0] += 1
            if reads[0] == 2:
                raise OSError(errno.EIO, "bad sector")
            return real(segment)

        monkeypatch.setattr(rig.spool, "_read", second_read_fails)
        rig.keeper.run_once()
        rig.keeper.run_once()
        stats = rig.stats()
        assert (stats["recovered"], stats["queued"]) == (6, 6)

    def test_a_failed_delete_is_retried_by_the_next_round(
        self, make_rig: MakeRig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """A delivered segment whose unlink failed is deleted by the keeper's next round."""
        rig = make_rig()
        entry = rig.emit(1)
        real_unlink = os.unlink
        refused: list[str] = []

        def unlink(path: Any, *args: Any, **kwargs: Any) -> None:
            if str(path).endswith(".seg") and not refused:
                refused.append(str(path))
                raise OSError(errno.EBUSY, "busy")
            real_unlink(path, *args, **kwargs)

        monkeypatch.setattr(os, "unlink", unlink)
        rig.ledger.settle([entry], DELIVERED)
        assert refused and list(tmp_path.glob("*.seg"))
        rig.keeper.run_once()
        assert list(tmp_path.glob("*.seg")) == []
