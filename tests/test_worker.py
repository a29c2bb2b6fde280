"""Uploaders with a fake uploader over a real Ledger, JobQueue and JobMaker: one attempt per
job (compress + PUT), retries and pauses, dead letters, recovery lines, threads that survive."""

from __future__ import annotations

import itertools
import logging
import random
import re
import threading
import time
import types
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_until

from s3_log_handler import _worker
from s3_log_handler._batch import BatchAccumulator
from s3_log_handler._diagnostics import Reports
from s3_log_handler._encode import Codec, make_codec
from s3_log_handler._jobqueue import JobQueue
from s3_log_handler._jobs import JobMaker
from s3_log_handler._ledger import Ledger
from s3_log_handler._policies import BatchPolicy, QueuePolicy, RetryPolicy
from s3_log_handler._records import DELIVERED, RECORD_OVERHEAD, Entry
from s3_log_handler._settings import BATCH_KEY_TEMPLATE, OBJECT_KEY_TEMPLATE
from s3_log_handler._spool import Spool
from s3_log_handler._uploader import Backoff, FailureKind, UploadFailure
from s3_log_handler._worker import MAX_INTERNAL_FAILURES, Uploaders
from s3_log_handler.counters import OUTCOMES, SOURCES, balance

BODY = 300  # bytes per test record
COST = BODY + RECORD_OVERHEAD
DAY = 1_700_000_000.0
#: Pauses short enough that every retry happens within a test, and a config pause to match.
FAST = RetryPolicy(0.01, 0.02, 0.02)
UPLOAD_THREAD = re.compile(r"s3-log-handler-\d+$")


def failure(kind: FailureKind, code: str = "SlowDown") -> UploadFailure:
    return UploadFailure(kind, code, "injected", "a hint")


Outcome = UploadFailure | BaseException | None


class FakeUploader:
    """Records each ``put`` (thread, key, body, content encoding); answers with scripted
    outcomes (a failure, or an exception to raise), then success. While ``gate`` is clear,
    uploads hang (an endpoint that never answers)."""

    def __init__(self, outcomes: list[Outcome] | None = None) -> None:
        self.outcomes: deque[Outcome] = deque(outcomes or [])
        self.gate = threading.Event()
        self.gate.set()
        self.started: list[str] = []
        self.calls: list[tuple[int, str, bytes, str | None]] = []
        self.lock = threading.Lock()

    def put(self, key: str, body: bytes, *, content_encoding: str | None,
            record_id: str) -> UploadFailure | None:
        with self.lock:
            self.started.append(key)
        self.gate.wait(30)
        with self.lock:
            self.calls.append((threading.get_ident(), key, body, content_encoding))
            outcome = self.outcomes.popleft() if self.outcomes else None
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def reset_after_fork(self) -> None:
        pass

    def keys(self) -> list[str]:
        with self.lock:
            return [key for _, key, _, _ in self.calls]


@dataclass
class Rig:
    """Upload threads wired to a fake uploader, with the handler's share of the work."""

    ledger: Ledger
    jobs: JobQueue
    uploaders: Uploaders
    fake: FakeUploader
    spool: Spool | None

    def emit(self, n: int) -> Entry:
        """Emit record ``n`` as S3Handler does: spool it, start the threads, admit it."""
        body = (b'{"n":%d,"pad":"' % n).ljust(BODY - 3, b"p") + b'"}\n'
        entry = Entry(body, DAY, f"r{n}", f"sessions/r{n}.json")
        if self.spool is not None:
            entry = self.spool.append(entry)
        self.uploaders.ensure_running()
        self.ledger.admit(entry)
        return entry

    def flush(self, timeout: float = 10.0) -> bool:
        """The handler's flush: inline delivery when no thread can run."""
        inline = self.uploaders.deliver if self.uploaders.inline else None
        return self.ledger.flush(time.monotonic() + timeout, inline)

    def close(self) -> tuple[int, int]:
        """The handler's close without the flush: stop and set leftovers aside."""
        leftovers = self.ledger.close()
        return self.ledger.set_aside([e for job in leftovers for e in job.entries])

    def stats(self) -> dict[str, Any]:
        return self.ledger.snapshot()


MakeRig = Callable[..., Rig]


@pytest.fixture
def make_rig(tmp_path: Path) -> Iterator[MakeRig]:
    before = set(threading.enumerate())
    made: list[Rig] = []

    def make(fake: FakeUploader | None = None, *, workers: int = 1, spool: bool = False,
             batch: bool = False, codec: Codec | None = None, retry: RetryPolicy = FAST,
             max_queue_bytes: int = 10**9, when_full: str = "drop") -> Rig:
        store = Spool(str(tmp_path)) if spool else None
        reports = Reports()
        template = BATCH_KEY_TEMPLATE if batch else OBJECT_KEY_TEMPLATE
        batches = BatchAccumulator(BatchPolicy(10_000, 1 << 30, 3600.0, False)) if batch else None
        jobs = JobQueue(JobMaker(template, "sessions", ""), batches)
        ledger = Ledger(jobs, store, reports, QueuePolicy(max_queue_bytes, when_full, 1.0))
        fake = fake or FakeUploader()
        uploaders = Uploaders(workers, ledger, fake, codec or make_codec("none"),  # type: ignore[arg-type]
                              store, retry, reports, "s3://worker-bucket")
        rig = Rig(ledger, jobs, uploaders, fake, store)
        made.append(rig)
        return rig

    yield make
    for rig in made:
        rig.fake.gate.set()
        rig.close()
    for thread in set(threading.enumerate()) - before:
        if UPLOAD_THREAD.match(thread.name):
            thread.join(10)
    for rig in made:
        if rig.spool is not None:
            rig.spool.close()


def upload_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if UPLOAD_THREAD.match(t.name)}


def assert_consistent(stats: dict[str, Any]) -> None:
    assert all(stats[name] >= 0 for name in SOURCES + OUTCOMES), stats
    assert balance(stats) == 0, stats


class TestBackoff:
    def test_delays_double_from_base_up_to_cap_with_jitter(self) -> None:
        """Each pause lies in [b/2, b] with b = min(cap, base * 2**failures)."""
        random.seed(3)
        backoff = Backoff(0.5, 4.0)
        for failures in range(12):
            bound = min(4.0, 0.5 * 2**failures)
            assert bound / 2 <= backoff.delay() <= bound

    def test_reset_starts_again_from_base(self) -> None:
        """After a success the next failure waits about ``base`` again."""
        backoff = Backoff(0.5, 4.0)
        for _ in range(10):
            backoff.delay()
        backoff.reset()
        assert 0.25 <= backoff.delay() <= 0.5


class TestSuccess:
    def test_a_delivered_job_settles_and_counts_bytes_and_objects(
        self, make_rig: MakeRig, tmp_path: Path,
    ) -> None:
        """Each record is put once under its key, compressed; bytes and objects are counted
        and its spool line released."""
        rig = make_rig(spool=True, codec=make_codec("gzip"), workers=2)
        for n in range(3):
            rig.emit(n)
        assert rig.flush()
        assert sorted(rig.fake.keys()) == ["sessions/r0.json", "sessions/r1.json",
                                           "sessions/r2.json"]
        assert {encoding for _, _, _, encoding in rig.fake.calls} == {"gzip"}
        stats = rig.stats()
        assert (stats["delivered"], stats["objects_sent"], stats["failed"]) == (3, 3, 0)
        assert stats["bytes_sent"] == sum(len(body) for _, _, body, _ in rig.fake.calls)
        assert_consistent(stats)
        assert list(tmp_path.glob("*.seg")) == []

    def test_uploads_run_off_the_callers_thread(self, make_rig: MakeRig) -> None:
        """The emitting thread never calls put: an upload thread does."""
        rig = make_rig()
        rig.emit(1)
        assert rig.flush()
        [(ident, _, _, _)] = rig.fake.calls
        assert ident != threading.get_ident()

    def test_a_batch_is_one_object_of_its_lines(self, make_rig: MakeRig) -> None:
        """Batch mode: the flush cuts the open batch and its records go as one NDJSON object."""
        rig = make_rig(batch=True)
        for n in range(3):
            rig.emit(n)
        assert rig.flush()
        [(_, key, body, _)] = rig.fake.calls
        assert key.endswith(".ndjson")
        assert len(body.splitlines()) == 3
        assert (rig.stats()["delivered"], rig.stats()["objects_sent"]) == (3, 1)


class TestFailures:
    def test_transient_failures_are_retried_with_backoff_then_delivered(
        self, make_rig: MakeRig,
    ) -> None:
        """Three TRANSIENT failures, then success: four puts of the same key, failed and
        retries counted, one delivery (the backoff, not the config pause, is waited)."""
        fake = FakeUploader([failure(FailureKind.TRANSIENT)] * 3)
        rig = make_rig(fake, retry=RetryPolicy(0.01, 0.02, 3600.0))
        rig.emit(1)
        assert rig.flush()
        assert fake.keys() == ["sessions/r1.json"] * 4
        stats = rig.stats()
        assert (stats["delivered"], stats["failed"], stats["retries"]) == (1, 3, 3)
        assert_consistent(stats)

    def test_a_configuration_error_pauses_every_upload_for_the_config_pause(
        self, make_rig: MakeRig,
    ) -> None:
        """After AccessDenied no thread tries any record until config_pause is over; the
        records are kept, not dropped."""
        fake = FakeUploader([failure(FailureKind.CONFIG, "AccessDenied")])
        rig = make_rig(fake, workers=4, retry=RetryPolicy(0.01, 0.02, 3600.0))
        rig.emit(0)
        assert wait_until(lambda: rig.stats()["retries"] == 1, 10, 0.005)
        assert rig.jobs.paused_until - time.monotonic() > 60
        for n in range(1, 4):
            rig.emit(n)
        assert not rig.flush(0.3)
        assert fake.keys() == ["sessions/r0.json"]
        stats = rig.stats()
        assert (stats["queued"], stats["failed"], stats["dead_lettered"]) == (4, 1, 0)

    def test_configuration_errors_are_retried_and_reported_once_with_the_hint(
        self, make_rig: MakeRig, caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Two AccessDenied answers, then success: one ERROR line with the hint, delivery."""
        fake = FakeUploader([failure(FailureKind.CONFIG, "AccessDenied")] * 2)
        rig = make_rig(fake)
        with caplog.at_level(logging.INFO, logger="s3_log_handler"):
            rig.emit(1)
            assert rig.flush()
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1
        assert "AccessDenied" in errors[0] and "Hint: a hint" in errors[0]
        stats = rig.stats()
        assert (stats["delivered"], stats["failed"], stats["retries"]) == (1, 2, 2)

    def test_a_rejected_upload_is_dead_lettered_with_its_code_not_retried(
        self, make_rig: MakeRig, tmp_path: Path,
    ) -> None:
        """S3 refusing the object itself ends in dead/ with the code as reason; flush is False."""
        fake = FakeUploader([failure(FailureKind.REJECTED, "EntityTooLarge")])
        rig = make_rig(fake, spool=True)
        rig.emit(1)
        assert not rig.flush()
        assert len(fake.calls) == 1
        stats = rig.stats()
        assert stats["dead_letter_reasons"] == {"EntityTooLarge": 1}
        assert (stats["failed"], stats["retries"]) == (1, 0)
        assert_consistent(stats)
        [letter] = list((tmp_path / "dead").iterdir())
        assert '"reason":"EntityTooLarge"' in letter.read_text()
        assert list(tmp_path.glob("*.seg")) == []

    def test_a_compression_error_is_retried(self, make_rig: MakeRig) -> None:
        """Our own code failing to build the body is a failed attempt: retried, then sent."""
        attempts = itertools.count()

        def flaky(body: bytes) -> bytes:
            if next(attempts) < 2:
                raise ValueError("compressor bug")
            return body

        rig = make_rig(codec=Codec("flaky", flaky, "", None))
        rig.emit(1)
        assert rig.flush()
        assert rig.fake.keys() == ["sessions/r1.json"]
        stats = rig.stats()
        assert (stats["delivered"], stats["failed"], stats["retries"]) == (1, 2, 2)

    def test_a_body_that_never_builds_is_dead_lettered_internal_error(
        self, make_rig: MakeRig, tmp_path: Path, caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Past MAX_INTERNAL_FAILURES attempts the records are dead-lettered (internal_error),
        nothing is put, and the error is reported once."""

        def broken(body: bytes) -> bytes:
            raise ValueError("compressor bug")

        rig = make_rig(spool=True, codec=Codec("broken", broken, "", None))
        with caplog.at_level(logging.ERROR, logger="s3_log_handler"):
            rig.emit(1)
            assert not rig.flush()
        assert rig.fake.calls == []
        stats = rig.stats()
        assert stats["dead_letter_reasons"] == {"internal_error": 1}
        assert stats["failed"] == MAX_INTERNAL_FAILURES
        assert_consistent(stats)
        assert len([r for r in caplog.records if "compressor bug" in r.getMessage()]) == 1
        assert len(list((tmp_path / "dead").iterdir())) == 1

    def test_recovery_is_logged_once_with_the_number_of_failed_attempts(
        self, make_rig: MakeRig, caplog: pytest.LogCaptureFixture,
    ) -> None:
        """After failures a success logs one INFO 'recovered' line counting the failures."""
        fake = FakeUploader([failure(FailureKind.TRANSIENT)] * 2)
        rig = make_rig(fake)
        with caplog.at_level(logging.INFO, logger="s3_log_handler"):
            rig.emit(1)
            assert rig.flush()
            rig.emit(2)
            assert rig.flush()
        recovered = [r for r in caplog.records if "recovered" in r.getMessage()]
        assert len(recovered) == 1
        assert recovered[0].levelno == logging.INFO
        assert recovered[0].name == "s3_log_handler"
        assert "s3://worker-bucket" in recovered[0].getMessage()
        assert "after 2 failed attempts" in recovered[0].getMessage()

    def test_no_recovery_line_without_a_failure(
        self, make_rig: MakeRig, caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Plain successes say nothing."""
        rig = make_rig()
        with caplog.at_level(logging.INFO, logger="s3_log_handler"):
            rig.emit(1)
            assert rig.flush()
        assert caplog.records == []


class TestFailureBoundary:
    def test_a_bookkeeping_error_after_a_successful_put_never_resends_the_job(
        self, make_rig: MakeRig, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """The ledger raising after a PUT succeeded: the job is not sent again, the error is
        reported, and the same thread delivers the next job."""
        rig = make_rig(workers=1)
        settle = rig.ledger.settle
        raised: list[bool] = []

        def buggy_settle(entries: Any, outcome: str, reason: str | None = None) -> None:
            if outcome == DELIVERED and not raised:
                raised.append(True)
                raise RuntimeError("ledger bug")
            settle(entries, outcome, reason)

        monkeypatch.setattr(rig.ledger, "settle", buggy_settle)
        with caplog.at_level(logging.ERROR, logger="s3_log_handler"):
            rig.emit(1)
            assert wait_until(lambda: bool(raised), 10, 0.005)
            rig.emit(2)
            # One upload thread takes jobs in order, and a retried job would go first:
            # once record 2 is delivered, record 1 would have been sent again already.
            assert wait_until(lambda: rig.stats()["delivered"] == 1, 10, 0.005)
        assert rig.fake.keys() == ["sessions/r1.json", "sessions/r2.json"]
        assert len({ident for ident, _, _, _ in rig.fake.calls}) == 1  # the thread survived
        assert any("ledger bug" in r.getMessage() for r in caplog.records)
        assert rig.stats()["failed"] == 0

    @pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
    def test_a_thread_that_dies_is_replaced_by_ensure_running(self, make_rig: MakeRig) -> None:
        """Something the loop cannot catch ends a thread; the next emit starts a new one."""
        others = upload_threads()
        rig = make_rig(FakeUploader([SystemExit()]), workers=1)
        rig.emit(1)
        [first] = upload_threads() - others
        assert wait_until(lambda: len(rig.fake.calls) == 1, 10, 0.005)
        first.join(10)
        assert not first.is_alive()
        rig.emit(2)  # ensure_running starts a replacement
        assert wait_until(lambda: rig.stats()["delivered"] == 1, 10, 0.005)
        assert rig.fake.keys() == ["sessions/r1.json", "sessions/r2.json"]
        [replacement] = upload_threads() - others
        assert replacement is not first

    def test_ensure_running_starts_each_thread_once(self, make_rig: MakeRig) -> None:
        """Many emits start exactly ``workers`` threads."""
        others = upload_threads()
        rig = make_rig(workers=3)
        for n in range(10):
            rig.emit(n)
        assert rig.flush()
        assert len(upload_threads() - others) == 3

    def test_without_threads_flush_uploads_inline(
        self, make_rig: MakeRig, monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """When threads cannot start (interpreter shutdown) uploads happen in flush(), on
        the caller's thread, retries included."""

        class Refused(threading.Thread):
            def start(self) -> None:
                raise RuntimeError("can't create new thread at interpreter shutdown")

        monkeypatch.setattr(_worker, "threading",
                            types.SimpleNamespace(Thread=Refused, Lock=threading.Lock))
        fake = FakeUploader([failure(FailureKind.TRANSIENT)])
        rig = make_rig(fake, workers=2)
        rig.emit(1)
        rig.emit(2)
        assert rig.uploaders.inline
        assert fake.calls == []
        assert rig.flush()
        assert {ident for ident, _, _, _ in fake.calls} == {threading.get_ident()}
        assert sorted(fake.keys()) == ["sessions/r1.json", "sessions/r1.json",
                                       "sessions/r2.json"]
        assert rig.stats()["delivered"] == 2


class TestClose:
    def test_memory_only_leftovers_are_dropped_while_the_upload_in_flight_finishes(
        self, make_rig: MakeRig,
    ) -> None:
        """Without a spool, what close cannot deliver is dropped (shutdown); the upload in
        flight still has its chance and is delivered afterwards."""
        rig = make_rig(workers=1)
        rig.fake.gate.clear()
        for n in range(3):
            rig.emit(n)
        assert wait_until(lambda: len(rig.fake.started) == 1, 10, 0.005)
        assert rig.close() == (0, 2)
        stats = rig.stats()
        assert (stats["dropped_reasons"], stats["queued"]) == ({"shutdown": 2}, 1)
        rig.fake.gate.set()
        assert wait_until(lambda: rig.stats()["delivered"] == 1, 10, 0.005)
        assert_consistent(rig.stats())

    def test_spooled_leftovers_stay_on_disk_and_the_upload_in_flight_is_never_resent(
        self, make_rig: MakeRig, tmp_path: Path,
    ) -> None:
        """With a spool, leftovers are kept (spooled); a new owner adopts them only once the
        upload still in flight at close has ended, and never that one."""
        rig = make_rig(workers=1, spool=True)
        rig.fake.gate.clear()
        for n in range(3):
            rig.emit(n)
        assert wait_until(lambda: len(rig.fake.started) == 1, 10, 0.005)
        assert rig.close() == (2, 0)
        assert rig.spool is not None
        rig.spool.close()
        stats = rig.stats()
        assert (stats["spooled"], stats["queued"], stats["dropped"]) == (2, 1, 0)
        successor = Spool(str(tmp_path))
        assert successor.adopt_abandoned()[0] == 0  # still locked: its upload is in flight
        rig.fake.gate.set()
        assert wait_until(lambda: rig.stats()["delivered"] == 1, 10, 0.005)
        assert wait_until(lambda: successor.adopt_abandoned()[0] == 2, 10, 0.005)
        assert sorted(e.record_id for e in successor.load_backlog(10**6)) == ["r1", "r2"]
        successor.close()

    def test_a_job_taken_just_before_close_is_not_handed_on(
        self, make_rig: MakeRig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """An upload thread descheduled between take() and its first step: the record it
        holds must not be adopted by the next owner as well."""
        rig = make_rig(workers=1, spool=True)
        assert rig.spool is not None
        real = rig.spool.uploading
        holding, resume = threading.Event(), threading.Event()

        def descheduled(refs: Any, *, now: bool) -> None:
            if now and not holding.is_set():
                holding.set()
                resume.wait(10)
            real(refs, now=now)

        monkeypatch.setattr(rig.spool, "uploading", descheduled)
        rig.emit(1)
        assert holding.wait(10)
        assert rig.close() == (0, 0)  # the job is the thread's: nothing left to set aside
        rig.spool.close()
        successor = Spool(str(tmp_path))
        adopted = successor.adopt_abandoned()[0]
        resume.set()
        assert wait_until(lambda: rig.stats()["delivered"] == 1, 10, 0.005)
        successor.close()
        assert adopted == 0

    def test_a_job_that_fails_after_close_is_set_aside(self, make_rig: MakeRig) -> None:
        """A failure once the ledger is closed is not retried: the record stays spooled."""
        rig = make_rig(FakeUploader([failure(FailureKind.TRANSIENT)]), workers=1, spool=True)
        rig.fake.gate.clear()
        rig.emit(1)
        assert wait_until(lambda: len(rig.fake.started) == 1, 10, 0.005)
        assert rig.close() == (0, 0)
        rig.fake.gate.set()
        assert wait_until(lambda: rig.stats()["spooled"] == 1, 10, 0.005)
        stats = rig.stats()
        assert (stats["queued"], stats["failed"], stats["delivered"]) == (0, 1, 0)
        assert_consistent(stats)


class TestCountersUnderConcurrency:
    def test_every_sample_balances_while_threads_emit_and_uploads_fail(
        self, make_rig: MakeRig,
    ) -> None:
        """Refusals, retries and deliveries interleave; the identity never breaks."""
        rng = random.Random(11)
        outcomes: list[Outcome] = [failure(FailureKind.TRANSIENT) if rng.random() < 0.3
                                   else None for _ in range(2000)]
        rig = make_rig(FakeUploader(outcomes), workers=4, max_queue_bytes=8 * COST,
                       retry=RetryPolicy(0.001, 0.002, 0.002))
        samples: list[int] = []
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                samples.append(balance(rig.stats()))
                time.sleep(0.0005)

        sampler = threading.Thread(target=sample)
        sampler.start()
        emitters = [threading.Thread(target=lambda b=b: [rig.emit(b * 1000 + n)
                                                         for n in range(150)])
                    for b in range(4)]
        for t in emitters:
            t.start()
        for t in emitters:
            t.join()
        rig.flush(30)
        assert wait_until(lambda: len(samples) > 10, 10)
        done.set()
        sampler.join()
        stats = rig.stats()
        assert samples == [0] * len(samples)
        assert stats["emitted"] == 600
        assert stats["delivered"] + stats["dropped"] == 600
        assert stats["queued"] == 0
        assert len(rig.fake.keys()) - stats["failed"] == stats["delivered"]
