"""Ledger: admission, when_full, settling each record once, set_aside, flush, take and close."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import has_ready, wait_until

from s3_log_handler import _jobqueue
from s3_log_handler._batch import BatchAccumulator
from s3_log_handler._diagnostics import Reports
from s3_log_handler._jobqueue import JobQueue
from s3_log_handler._jobs import Job, JobMaker
from s3_log_handler._ledger import Ledger
from s3_log_handler._policies import BatchPolicy, QueuePolicy
from s3_log_handler._records import (
    DEAD_LETTERED,
    DELIVERED,
    DROPPED,
    QUEUED,
    RECORD_OVERHEAD,
    SPOOLED,
    Entry,
)
from s3_log_handler._settings import BATCH_KEY_TEMPLATE, OBJECT_KEY_TEMPLATE
from s3_log_handler._spool import Spool
from s3_log_handler.counters import OUTCOMES, SOURCES, balance

BODY = 300  # bytes per test record
#: What one such record counts against max_queue_bytes (body plus per-record overhead).
COST = BODY + RECORD_OVERHEAD
DAY = 1_700_000_000.0


def record(n: int, *, source: str = "emitted") -> Entry:
    """Record ``n``: a JSON line of exactly BODY bytes under its object-mode key."""
    body = (b'{"n":%d,"pad":"' % n).ljust(BODY - 3, b"p") + b'"}\n'
    return Entry(body, DAY, f"r{n}", f"sessions/r{n}.json", source=source)


def make_ledger(spool: Spool | None = None, *, batch: bool = False,
                max_queue_bytes: int = 10**9, when_full: str = "drop",
                block_timeout: float = 1.0) -> tuple[Ledger, JobQueue]:
    """A ledger over a real job queue (object mode, or batch mode with a one-hour age)."""
    template = BATCH_KEY_TEMPLATE if batch else OBJECT_KEY_TEMPLATE
    batches = BatchAccumulator(BatchPolicy(10_000, 1 << 30, 3600.0, False)) if batch else None
    jobs = JobQueue(JobMaker(template, "sessions", ""), batches)
    ledger = Ledger(jobs, spool, Reports(),
                    QueuePolicy(max_queue_bytes, when_full, block_timeout))
    return ledger, jobs


def waiters(condition: threading.Condition) -> int:
    """How many threads wait on ``condition`` right now (CPython keeps them in ``_waiters``).

    Used to know a thread is parked in take() or flush() before the step under test; the
    ledger's flush condition is private (``_settled``), read here for that reason only."""
    return len(condition._waiters)  # type: ignore[attr-defined]


def in_thread(target: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    """Run ``target`` on a daemon thread; its return value lands in the list."""
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(target()), daemon=True)
    thread.start()
    return thread, result


def assert_consistent(ledger: Ledger) -> dict[str, Any]:
    """No counter is negative and sources equal outcomes; returns the snapshot."""
    stats = ledger.snapshot()
    assert all(stats[name] >= 0 for name in SOURCES + OUTCOMES), stats
    assert balance(stats) == 0, stats
    return stats


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    store = Spool(str(tmp_path))
    yield store
    store.close()


class TestAdmit:
    def test_a_record_is_counted_emitted_and_queued_with_its_memory(self) -> None:
        """admit counts emitted + queued and adds the record's body plus overhead to memory."""
        ledger, _ = make_ledger()
        for n in range(3):
            ledger.admit(record(n))
        stats = assert_consistent(ledger)
        assert (stats["emitted"], stats["queued"]) == (3, 3)
        assert ledger.memory_bytes == 3 * COST
        job = ledger.take()
        assert job is not None
        assert (job.key, job.record_id) == ("sessions/r0.json", "r0")

    def test_a_record_counts_the_source_it_arrived_through(self) -> None:
        """A record read back from another owner's spool counts as recovered, not emitted."""
        ledger, _ = make_ledger()
        ledger.admit(record(1, source="recovered"))
        stats = assert_consistent(ledger)
        assert (stats["emitted"], stats["recovered"], stats["queued"]) == (0, 1, 1)

    def test_one_record_always_fits_an_empty_queue(self) -> None:
        """A record larger than max_queue_bytes is still taken when nothing else is queued."""
        ledger, _ = make_ledger(max_queue_bytes=10)
        ledger.admit(record(1))
        assert ledger.get("queued") == 1
        ledger.admit(record(2))
        assert ledger.snapshot()["dropped_reasons"] == {"queue_full": 1}

    def test_queue_full_keeps_a_spooled_record_on_disk_when_when_full_is_spool(
        self, spool: Spool,
    ) -> None:
        """when_full=spool: a record that does not fit stays only in the spool, to reload."""
        ledger, _ = make_ledger(spool, max_queue_bytes=COST, when_full="spool")
        first = spool.append(record(1))
        ledger.admit(first)
        second = spool.append(record(2))
        ledger.admit(second)
        stats = assert_consistent(ledger)
        assert (stats["emitted"], stats["queued"], stats["spooled"], stats["dropped"]) == (
            2, 1, 1, 0)
        assert (first.state, second.state) == (QUEUED, SPOOLED)
        assert ledger.memory_bytes == COST
        [reloaded] = spool.load_backlog(10**6)
        assert (reloaded.record_id, reloaded.seq, reloaded.ref) == ("r2", second.seq, second.ref)

    def test_queue_full_drops_otherwise_and_releases_the_spool_line(
        self, spool: Spool, tmp_path: Path, caplog: pytest.LogCaptureFixture,
    ) -> None:
        """when_full=drop: the record is dropped (queue_full), warned about, and its spool
        line released so nobody sends it later."""
        ledger, _ = make_ledger(spool, max_queue_bytes=COST, when_full="drop")
        ledger.admit(record(1))  # memory only: fills the queue
        dropped = spool.append(record(2))
        assert list(tmp_path.glob("*.seg"))
        with caplog.at_level(logging.WARNING, logger="s3_log_handler"):
            ledger.admit(dropped)
        stats = assert_consistent(ledger)
        assert (stats["queued"], stats["dropped_reasons"]) == (1, {"queue_full": 1})
        assert dropped.state == DROPPED
        assert list(tmp_path.glob("*.seg")) == []  # its only line was released
        assert any("queue_full" in r.getMessage() for r in caplog.records)

    def test_when_full_spool_drops_a_record_the_spool_could_not_write(self, spool: Spool) -> None:
        """A record without a spool line (the disk failed) cannot be kept on disk: dropped."""
        ledger, _ = make_ledger(spool, max_queue_bytes=COST, when_full="spool")
        ledger.admit(record(1))
        ledger.admit(record(2))  # no ref: never reached the spool
        stats = assert_consistent(ledger)
        assert (stats["spooled"], stats["dropped_reasons"]) == (0, {"queue_full": 1})

    def test_a_full_queue_hands_open_batches_to_the_upload_threads(self) -> None:
        """Open batches hold memory only an upload frees: a full queue cuts them at once."""
        ledger, jobs = make_ledger(batch=True, max_queue_bytes=2 * COST)
        ledger.admit(record(1))
        ledger.admit(record(2))
        assert not has_ready(jobs)  # an open batch, due in an hour
        ledger.admit(record(3))
        assert has_ready(jobs)
        job = ledger.take()
        assert job is not None
        assert [e.record_id for e in job.entries] == ["r1", "r2"]

    def test_block_waits_for_room_up_to_block_timeout_then_drops(self) -> None:
        """when_full=block: the caller waits for room, and past block_timeout drops the record."""
        ledger, _ = make_ledger(max_queue_bytes=COST, when_full="block", block_timeout=0.2)
        ledger.admit(record(1))
        started = time.monotonic()
        ledger.admit(record(2))
        assert time.monotonic() - started >= 0.2
        stats = assert_consistent(ledger)
        assert (stats["queued"], stats["dropped_reasons"]) == (1, {"queue_full": 1})

    def test_block_is_woken_by_a_settle(self) -> None:
        """A blocked caller takes the record as soon as a settle frees room."""
        ledger, _ = make_ledger(max_queue_bytes=COST, when_full="block", block_timeout=60)
        first, second = record(1), record(2)
        ledger.admit(first)
        caller, _ = in_thread(lambda: ledger.admit(second))
        # The caller numbers the record and waits for room under one hold of the lock, so
        # once the number is visible the settle below can only run while it waits.
        assert wait_until(lambda: second.seq >= 0, 10, 0.001)
        ledger.settle([first], DELIVERED)
        caller.join(10)
        assert not caller.is_alive()
        stats = assert_consistent(ledger)
        assert (stats["delivered"], stats["queued"], stats["dropped"]) == (1, 1, 0)
        assert second.state == QUEUED

    def test_block_gives_up_when_the_ledger_closes(self) -> None:
        """close wakes a blocked caller; its record is dropped as closed."""
        ledger, _ = make_ledger(max_queue_bytes=COST, when_full="block", block_timeout=60)
        second = record(2)
        ledger.admit(record(1))
        caller, _ = in_thread(lambda: ledger.admit(second))
        assert wait_until(lambda: second.seq >= 0, 10, 0.001)
        ledger.close()
        caller.join(10)
        assert not caller.is_alive()
        assert ledger.snapshot()["dropped_reasons"] == {"closed": 1}
        assert second.state == DROPPED

    def test_a_record_after_close_is_dropped_as_closed(self) -> None:
        """After close nothing is queued: the record is dropped (closed) and flush says so."""
        ledger, _ = make_ledger()
        ledger.close()
        ledger.admit(record(1))
        stats = assert_consistent(ledger)
        assert (stats["queued"], stats["dropped_reasons"]) == (0, {"closed": 1})
        assert ledger.flush(time.monotonic() + 5) is False


class TestSettle:
    def test_settling_twice_changes_nothing_the_second_time(
        self, spool: Spool, tmp_path: Path,
    ) -> None:
        """Delivered then dropped (then dead-lettered): only the first outcome counts."""
        ledger, _ = make_ledger(spool)
        entry = spool.append(record(1))
        ledger.admit(entry)
        ledger.settle([entry], DELIVERED)
        first = assert_consistent(ledger)
        ledger.settle([entry], DROPPED, "shutdown")
        ledger.settle([entry], DEAD_LETTERED, "internal_error")
        assert assert_consistent(ledger) == first
        assert (first["delivered"], first["queued"], first["dropped"]) == (1, 0, 0)
        assert ledger.memory_bytes == 0
        assert entry.state == DELIVERED
        assert list((tmp_path / "dead").iterdir()) == []  # no letter for a delivered record
        assert ledger.flush(time.monotonic() + 5) is True

    def test_racing_settles_of_the_same_records_count_each_once(self) -> None:
        """Threads settling the same records with different outcomes: one outcome each."""
        ledger, _ = make_ledger()
        entries = [record(n) for n in range(200)]
        for entry in entries:
            ledger.admit(entry)
        outcomes = [(DELIVERED, None), (DROPPED, "shutdown"), (DEAD_LETTERED, "x")] * 2
        threads = [threading.Thread(target=ledger.settle, args=(entries, *o)) for o in outcomes]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stats = assert_consistent(ledger)
        assert stats["delivered"] + stats["dropped"] + stats["dead_lettered"] == 200
        assert (stats["queued"], ledger.memory_bytes) == (0, 0)

    def test_settling_a_new_entry_counts_its_source(self) -> None:
        """A record refused before admit (NEW) arrives and settles in one step, per source."""
        ledger, _ = make_ledger()
        ledger.settle([record(1)], DEAD_LETTERED, "encode_error")
        ledger.settle([record(2, source="recovered")], DEAD_LETTERED, "torn_write")
        ledger.settle([record(3)], DROPPED, "closed")
        stats = assert_consistent(ledger)
        assert (stats["emitted"], stats["recovered"]) == (2, 1)
        assert stats["dead_letter_reasons"] == {"encode_error": 1, "torn_write": 1}
        assert stats["dropped_reasons"] == {"closed": 1}

    def test_flush_reports_a_record_refused_at_emit_as_not_delivered(self) -> None:
        """A record dead-lettered at emit makes the next flush False, and only that one."""
        ledger, _ = make_ledger()
        ledger.settle([record(1)], DEAD_LETTERED, "too_large")
        assert ledger.flush(time.monotonic() + 5) is False
        assert ledger.flush(time.monotonic() + 5) is True

    def test_a_recovered_record_refused_is_no_flush_loss(self) -> None:
        """Records from another owner's spool are not this process's flush's business."""
        ledger, _ = make_ledger()
        ledger.settle([record(1, source="recovered")], DEAD_LETTERED, "torn_write")
        assert ledger.flush(time.monotonic() + 5) is True

    def test_dead_lettering_keeps_the_letter_and_releases_the_line(
        self, spool: Spool, tmp_path: Path,
    ) -> None:
        """A dead-lettered record lands in dead/ with its reason; its segment goes away."""
        ledger, _ = make_ledger(spool)
        entry = spool.append(record(1))
        ledger.admit(entry)
        ledger.settle([entry], DEAD_LETTERED, "EntityTooLarge")
        [letter] = list((tmp_path / "dead").iterdir())
        assert '"reason":"EntityTooLarge"' in letter.read_text()
        assert list(tmp_path.glob("*.seg")) == []
        assert ledger.snapshot()["dead_letter_reasons"] == {"EntityTooLarge": 1}


class TestSetAside:
    def test_spooled_entries_stay_and_the_rest_are_dropped_with_reason_shutdown(
        self, tmp_path: Path,
    ) -> None:
        """At close, records with a spool line wait on disk (spooled) for the next owner;
        memory-only ones are dropped (shutdown); settled ones are left alone."""
        store = Spool(str(tmp_path))
        ledger, _ = make_ledger(store)
        on_disk, in_memory, done = store.append(record(1)), record(2), store.append(record(3))
        for entry in (on_disk, in_memory, done):
            ledger.admit(entry)
        ledger.settle([done], DELIVERED)
        ledger.close()
        assert ledger.set_aside([on_disk, in_memory, done]) == (1, 1)
        stats = assert_consistent(ledger)
        assert (stats["spooled"], stats["queued"], stats["delivered"]) == (1, 0, 1)
        assert stats["dropped_reasons"] == {"shutdown": 1}
        assert ledger.memory_bytes == 0
        store.close()
        successor = Spool(str(tmp_path))
        assert successor.adopt_abandoned() == (1, [])  # only the record set aside
        [entry] = successor.load_backlog(10**6)
        assert entry.record_id == "r1"
        successor.close()


class TestRequeue:
    def test_records_read_back_from_disk_are_queued_and_batches_cut(self) -> None:
        """requeue moves spooled records into memory and makes their batch ready at once."""
        ledger, jobs = make_ledger(batch=True)
        ledger.count("recovered", SPOOLED, 2)
        ledger.requeue([record(1), record(2)])
        stats = assert_consistent(ledger)
        assert (stats["recovered"], stats["spooled"], stats["queued"]) == (2, 0, 2)
        assert ledger.memory_bytes == 2 * COST
        assert has_ready(jobs)  # a backlog is already late: no max_batch_age wait

    def test_nothing_is_requeued_after_close(self) -> None:
        """After close records read back stay counted spooled, on disk for the next owner."""
        ledger, jobs = make_ledger()
        ledger.count("recovered", SPOOLED, 1)
        ledger.close()
        ledger.requeue([record(1)])
        assert (ledger.get("spooled"), ledger.get("queued"), has_ready(jobs)) == (1, 0, False)


class TestTakeAndClose:
    def test_take_returns_none_after_close(self) -> None:
        """close wakes a thread waiting in take(), which gets None, and so does every later take."""
        ledger, _ = make_ledger()
        taker, result = in_thread(ledger.take)
        assert wait_until(lambda: waiters(ledger.work) == 1, 10, 0.001)
        ledger.close()
        taker.join(10)
        assert result == [None]
        assert ledger.take() is None

    def test_close_returns_the_jobs_still_waiting(self) -> None:
        """close hands back every queued job, open batches cut, paused ones included."""
        ledger, _ = make_ledger(batch=True)
        for n in range(3):
            ledger.admit(record(n))
        [job] = ledger.close()
        assert [e.record_id for e in job.entries] == ["r0", "r1", "r2"]

    def test_retry_later_counts_a_retry_and_refuses_after_close(self) -> None:
        """A failed job goes back first in line; once closed retry_later says False."""
        ledger, jobs = make_ledger()
        ledger.admit(record(1))
        ledger.admit(record(2))
        job = ledger.take()
        assert job is not None
        assert ledger.retry_later(job, 0.0) is True
        assert ledger.take() is job
        assert ledger.get("retries") == 1
        ledger.close()
        assert ledger.retry_later(job, 0.0) is False
        assert ledger.get("retries") == 2
        assert not has_ready(jobs)


class TestFlush:
    def test_flush_is_true_once_everything_up_to_the_mark_is_delivered(self) -> None:
        """A flush waits while records are in flight and is True once all are delivered."""
        ledger, _ = make_ledger()
        for n in range(3):
            ledger.admit(record(n))

        def upload_all() -> None:
            for _ in range(3):
                job = ledger.take()
                assert job is not None
                ledger.settle(job.entries, DELIVERED)

        uploader, _ = in_thread(upload_all)
        assert ledger.flush(time.monotonic() + 10) is True
        uploader.join(10)
        assert ledger.get("delivered") == 3

    def test_flush_times_out_false_and_keeps_the_records(self) -> None:
        """A flush that cannot finish returns False; the records stay queued for later."""
        ledger, _ = make_ledger()
        entry = record(1)
        ledger.admit(entry)
        assert ledger.flush(time.monotonic() + 0.05) is False
        assert ledger.get("queued") == 1
        ledger.settle([entry], DELIVERED)
        assert ledger.flush(time.monotonic() + 5) is True

    def test_a_loss_is_reported_by_one_flush_only(self) -> None:
        """One record dropped among delivered ones: the next flush is False, the one after True."""
        ledger, _ = make_ledger()
        kept, lost = record(1), record(2)
        ledger.admit(kept)
        ledger.admit(lost)
        ledger.settle([kept], DELIVERED)
        ledger.settle([lost], DROPPED, "shutdown")
        assert ledger.flush(time.monotonic() + 5) is False
        assert ledger.flush(time.monotonic() + 5) is True

    def test_records_after_the_mark_do_not_hold_a_flush(self) -> None:
        """A flush waits only for records admitted before it began."""
        ledger, _ = make_ledger()
        before = record(1)
        ledger.admit(before)
        flusher, result = in_thread(lambda: ledger.flush(time.monotonic() + 30))
        assert wait_until(lambda: waiters(ledger._settled) == 1, 10, 0.001)
        ledger.admit(record(2))  # after the mark, never settled
        ledger.settle([before], DELIVERED)
        flusher.join(10)
        assert result == [True]

    def test_flush_with_deliver_inline_uploads_on_the_callers_thread(self) -> None:
        """Without upload threads the flushing thread itself uploads, a paused job included."""
        ledger, _ = make_ledger()
        for n in range(2):
            ledger.admit(record(n))
        paused = ledger.take()
        assert paused is not None
        ledger.retry_later(paused, 3600.0)  # a flush on the caller does not wait it out
        seen: list[tuple[int, str]] = []

        def deliver(job: Job) -> None:
            seen.append((threading.get_ident(), job.key))
            ledger.settle(job.entries, DELIVERED)

        assert ledger.flush(time.monotonic() + 10, deliver) is True
        assert seen == [(threading.get_ident(), "sessions/r0.json"),
                        (threading.get_ident(), "sessions/r1.json")]

    def test_flush_cuts_open_batches(self) -> None:
        """In batch mode flush uploads the open batch now, not after max_batch_age."""
        ledger, _ = make_ledger(batch=True)
        for n in range(3):
            ledger.admit(record(n))
        seen: list[list[str]] = []

        def deliver(job: Job) -> None:
            seen.append([e.record_id for e in job.entries])
            ledger.settle(job.entries, DELIVERED)

        assert ledger.flush(time.monotonic() + 10, deliver) is True
        assert seen == [["r0", "r1", "r2"]]

    def test_a_waiting_flusher_does_not_delay_take(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """With a thread blocked in flush() and one in take(), admitting a record wakes the
        taker, not the flusher: it gets the job at once instead of at its next idle wake."""
        monkeypatch.setattr(_jobqueue, "IDLE_WAKE", 3600.0)  # no idle wake can rescue it
        ledger, _ = make_ledger()
        in_flight = record(1)
        ledger.admit(in_flight)
        assert ledger.take() is not None  # the flush below waits for this one
        flusher, flushed = in_thread(lambda: ledger.flush(time.monotonic() + 30))
        taker, taken = in_thread(ledger.take)
        assert wait_until(lambda: waiters(ledger._settled) == 1 and waiters(ledger.work) == 1,
                          10, 0.001)
        fresh = record(2)
        ledger.admit(fresh)
        assert wait_until(lambda: bool(taken), 5, 0.001), "the taker was not woken"
        assert taken[0].entries == [fresh]
        assert flusher.is_alive()
        ledger.settle([in_flight], DELIVERED)
        flusher.join(10)
        assert flushed == [True]
        taker.join(10)
        ledger.close()
