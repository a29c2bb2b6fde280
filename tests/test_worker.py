"""DeliveryWorker with a fake uploader: retries and backoff, when_full, flush, close, counters."""

from __future__ import annotations

import itertools
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from s3_log_handler._delivery import Delivery
from s3_log_handler._encode import make_codec
from s3_log_handler._records import RECORD_OVERHEAD, Entry
from s3_log_handler._settings import HandlerConfig
from s3_log_handler._spool import Spool
from s3_log_handler._uploader import Backoff, FailureKind, UploadFailure
from s3_log_handler._worker import DeliveryWorker
from s3_log_handler.counters import Counters, balance

BODY = 300  # bytes per test record
#: What one such record counts against max_queue_bytes (body plus per-record overhead).
COST = BODY + RECORD_OVERHEAD


def failure(kind: FailureKind, code: str = "SlowDown") -> UploadFailure:
    return UploadFailure(kind, code, "injected", "a hint")


class FakeUploader:
    """Records each ``put``; answers with scripted failures, then success.

    While ``gate`` is clear, uploads hang (an endpoint that never answers).
    """

    def __init__(self, outcomes: list[UploadFailure | None] | None = None) -> None:
        self.outcomes: deque[UploadFailure | None] = deque(outcomes or [])
        self.gate = threading.Event()
        self.gate.set()
        self.started: list[str] = []
        self.calls: list[tuple[float, str, bytes]] = []
        self.lock = threading.Lock()

    def put(self, key: str, body: bytes, *, content_encoding: str | None, record_id: str) -> (
        UploadFailure | None
    ):
        with self.lock:
            self.started.append(key)
        self.gate.wait(60)
        with self.lock:
            self.calls.append((time.monotonic(), key, body))
            return self.outcomes.popleft() if self.outcomes else None

    def delivered_keys(self) -> list[str]:
        with self.lock:
            return [key for _, key, _ in self.calls]


@dataclass
class Rig:
    """A worker wired to a fake uploader, with the handler's share of the bookkeeping."""

    worker: DeliveryWorker
    uploader: FakeUploader
    counters: Counters
    spool: Spool | None
    refused: list[str] = field(default_factory=list)

    def submit(self, n: int, size: int = BODY) -> str | None:
        """Emit record ``n`` as S3Handler does: spool first, then submit; count a refusal."""
        body = (b'{"n":%d,"pad":"' % n).ljust(size - 3, b"p") + b'"}\n'
        entry = Entry(body, time.time(), f"r{n}", f"sessions/r{n}.json", seq=-1)
        if self.spool is not None:
            entry = self.spool.append(entry)
        reason = self.worker.submit(entry)
        if reason is not None:
            if entry.ref is not None and self.spool is not None:
                self.spool.resolve(entry.ref)
            self.counters.arrive("emitted", "dropped", reason=reason)
            self.refused.append(reason)
        return reason

    def stats(self) -> dict[str, Any]:
        return self.counters.snapshot()


@pytest.fixture
def rigs() -> Iterator[list[Rig]]:
    made: list[Rig] = []
    yield made
    for rig in made:
        rig.uploader.gate.set()
        rig.worker.close(1.0)
        if rig.spool is not None:
            rig.spool.close()


@pytest.fixture
def make_rig(rigs: list[Rig], tmp_path: Path) -> Any:
    def make(uploader: FakeUploader | None = None, *, spool: bool = False, **options: Any) -> Rig:
        if spool:
            options["spool_dir"] = str(tmp_path)
        options.setdefault("retry_base", 0.01)
        options.setdefault("retry_cap", 0.05)
        config = HandlerConfig.from_kwargs(env={}, bucket="worker-bucket", **options)
        counters = Counters()
        store = Spool(str(tmp_path)) if spool else None
        fake = uploader or FakeUploader()
        delivery = Delivery(config, fake, counters, store, make_codec("none"))  # type: ignore[arg-type]
        rig = Rig(DeliveryWorker(config, delivery, counters, store), fake, counters, store)
        rigs.append(rig)
        return rig

    return make


def wait_until(predicate: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return bool(predicate())


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


class TestRetries:
    def test_transient_failures_are_retried_with_growing_pauses(self, make_rig: Any) -> None:
        """Three failures, then delivery; the pauses respect the backoff's lower bounds."""
        fake = FakeUploader([failure(FailureKind.TRANSIENT)] * 3)
        rig = make_rig(fake, retry_base=0.04, retry_cap=0.08)
        rig.submit(1)
        assert rig.worker.flush(10)
        times = [t for t, _, _ in fake.calls]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert len(times) == 4
        for gap, bound in zip(gaps, [0.04, 0.08, 0.08], strict=True):
            assert gap >= bound / 2 * 0.95
        stats = rig.stats()
        assert (stats["delivered"], stats["failed"], stats["retries"]) == (1, 3, 3)
        assert balance(stats) == 0

    def test_a_failure_pauses_every_upload_thread(self, make_rig: Any) -> None:
        """During the backoff no other record is attempted either (no hammering a sick S3)."""
        fake = FakeUploader([failure(FailureKind.TRANSIENT)])
        rig = make_rig(fake, workers=4, retry_base=0.4, retry_cap=0.4)
        rig.submit(0)
        assert wait_until(lambda: len(fake.calls) == 1)
        failed_at = fake.calls[0][0]
        for n in range(1, 4):
            rig.submit(n)
        assert rig.worker.flush(10)
        assert min(t for t, _, _ in fake.calls[1:]) >= failed_at + 0.2 * 0.95

    def test_configuration_errors_wait_config_error_retry_and_are_reported_once(
        self, make_rig: Any, caplog: pytest.LogCaptureFixture,
    ) -> None:
        """AccessDenied keeps the record, retries after config_error_retry, logs one hint."""
        fake = FakeUploader([failure(FailureKind.CONFIG, "AccessDenied")] * 2)
        rig = make_rig(fake, config_error_retry=0.3)
        with caplog.at_level(logging.ERROR, logger="s3_log_handler"):
            rig.submit(1)
            assert rig.worker.flush(10)
        times = [t for t, _, _ in fake.calls]
        assert len(times) == 3
        assert times[1] - times[0] >= 0.3 * 0.95
        assert times[2] - times[1] >= 0.3 * 0.95
        reports = [r.getMessage() for r in caplog.records if "AccessDenied" in r.getMessage()]
        assert len(reports) == 1
        assert "Hint: a hint" in reports[0]
        assert rig.stats()["delivered"] == 1

    def test_a_rejected_upload_is_dead_lettered_not_retried(
        self, make_rig: Any, tmp_path: Path,
    ) -> None:
        """S3 refusing the object itself ends in dead/, and flush says it was not delivered."""
        fake = FakeUploader([failure(FailureKind.REJECTED, "EntityTooLarge")])
        rig = make_rig(fake, spool=True)
        rig.submit(1)
        assert not rig.worker.flush(10)
        assert len(fake.calls) == 1
        stats = rig.stats()
        assert stats["dead_letter_reasons"] == {"EntityTooLarge": 1}
        assert balance(stats) == 0
        assert len(list((tmp_path / "dead").iterdir())) == 1
        assert list(tmp_path.glob("*.seg")) == []


class TestWhenFull:
    def test_drop_refuses_at_once_when_memory_is_full(self, make_rig: Any) -> None:
        """Memory counts in-flight records too; past max_queue_bytes submit says queue_full."""
        rig = make_rig(workers=1, max_queue_bytes=3 * COST + 10, when_full="drop")
        rig.uploader.gate.clear()
        assert rig.submit(0) is None
        assert wait_until(lambda: len(rig.uploader.started) == 1)
        assert [rig.submit(n) for n in range(1, 5)] == [None, None, "queue_full", "queue_full"]
        rig.uploader.gate.set()
        assert not rig.worker.flush(10)  # two records were lost since the last flush
        assert rig.worker.flush(10)
        stats = rig.stats()
        assert (stats["delivered"], stats["dropped"]) == (3, 2)
        assert balance(stats) == 0

    def test_block_waits_block_timeout_then_refuses(self, make_rig: Any) -> None:
        """With when_full=block the caller waits for room, but never past block_timeout."""
        rig = make_rig(workers=1, max_queue_bytes=COST + 10, when_full="block",
                       block_timeout=0.3)
        rig.uploader.gate.clear()
        rig.submit(0)
        started = time.monotonic()
        assert rig.submit(1) == "queue_full"
        assert time.monotonic() - started >= 0.3 * 0.95

    def test_block_takes_the_record_as_soon_as_room_frees(self, make_rig: Any) -> None:
        """A blocked caller continues once an upload completes, well before block_timeout."""
        rig = make_rig(workers=1, max_queue_bytes=COST + 10, when_full="block",
                       block_timeout=60)
        rig.uploader.gate.clear()
        rig.submit(0)
        result: list[str | None] = []
        caller = threading.Thread(target=lambda: result.append(rig.submit(1)))
        caller.start()
        caller.join(0.2)
        assert caller.is_alive()
        rig.uploader.gate.set()
        caller.join(30)
        assert result == [None]
        assert rig.worker.flush(10)
        assert rig.stats()["delivered"] == 2

    def test_spool_keeps_the_record_on_disk_when_memory_is_full(
        self, make_rig: Any, tmp_path: Path,
    ) -> None:
        """when_full=spool: nothing is refused; spilled records are reloaded and delivered."""
        rig = make_rig(workers=1, spool=True, max_queue_bytes=2 * COST + 10)
        rig.uploader.gate.clear()
        assert [rig.submit(n) for n in range(6)] == [None] * 6
        assert rig.stats()["spooled"] == 4
        rig.uploader.gate.set()
        assert rig.worker.flush(30)
        assert sorted(rig.uploader.delivered_keys()) == sorted(
            f"sessions/r{n}.json" for n in range(6))
        stats = rig.stats()
        assert (stats["delivered"], stats["spooled"], stats["dropped"]) == (6, 0, 0)
        assert list(tmp_path.glob("*.seg")) == []


class TestFlush:
    def test_flush_is_true_once_everything_is_delivered(self, make_rig: Any) -> None:
        """After flush returns True every record emitted before it is in S3."""
        rig = make_rig()
        for n in range(20):
            rig.submit(n)
        assert rig.worker.flush(10)
        assert len(rig.uploader.calls) == 20

    def test_flush_times_out_false_and_keeps_the_records(self, make_rig: Any) -> None:
        """A flush that cannot finish returns False; the records stay queued and go later."""
        rig = make_rig()
        rig.uploader.gate.clear()
        for n in range(3):
            rig.submit(n)
        assert not rig.worker.flush(0.2)
        assert rig.stats()["queued"] == 3
        rig.uploader.gate.set()
        assert rig.worker.flush(10)
        assert rig.stats()["delivered"] == 3

    def test_flush_cuts_open_batches(self, make_rig: Any) -> None:
        """In batch mode flush uploads the open batch now, not after max_batch_age."""
        rig = make_rig(mode="batch", max_batch_age=3600)
        for n in range(3):
            rig.submit(n)
        assert rig.worker.flush(10)
        [(_, _, body)] = rig.uploader.calls
        assert len(body.splitlines()) == 3


class TestClose:
    def test_memory_only_leftovers_are_dropped_with_reason_shutdown(
        self, make_rig: Any, caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Without a spool, what close cannot deliver is counted and reported, not hidden."""
        rig = make_rig(workers=1)
        rig.uploader.gate.clear()
        for n in range(3):
            rig.submit(n)
        assert wait_until(lambda: len(rig.uploader.started) == 1)
        with caplog.at_level(logging.ERROR, logger="s3_log_handler"):
            rig.worker.close(0.1)
        stats = rig.stats()
        assert stats["dropped_reasons"] == {"shutdown": 2}
        assert stats["queued"] == 1  # the upload in flight still has its chance
        assert any("2 dropped" in r.getMessage() and "1 uploads in flight" in r.getMessage()
                   for r in caplog.records)
        rig.uploader.gate.set()
        assert wait_until(lambda: rig.stats()["delivered"] == 1)
        assert balance(rig.stats()) == 0

    def test_spooled_leftovers_stay_on_disk_for_the_next_start(
        self, make_rig: Any, tmp_path: Path,
    ) -> None:
        """With a spool, undelivered records are counted spooled and adopted by a new spool
        once the upload still in flight at close has ended: that one is never sent twice."""
        rig = make_rig(workers=1, spool=True)
        rig.uploader.gate.clear()
        for n in range(3):
            rig.submit(n)
        assert wait_until(lambda: len(rig.uploader.started) == 1)
        rig.worker.close(0.1)
        rig.spool.close()
        stats = rig.stats()
        assert (stats["spooled"], stats["queued"], stats["dropped"]) == (2, 1, 0)
        successor = Spool(str(tmp_path))
        # While an upload of it is in flight the segment stays locked: nobody may re-send it.
        assert successor.adopt_abandoned()[0] == 0
        rig.uploader.gate.set()
        assert wait_until(lambda: rig.stats()["delivered"] == 1)
        assert wait_until(lambda: successor.adopt_abandoned()[0] == 2)  # the other two only
        successor.close()

    def test_close_is_idempotent_and_later_submits_are_refused(self, make_rig: Any) -> None:
        """A second close does nothing; a record after close is refused as ``closed``."""
        rig = make_rig()
        rig.submit(0)
        rig.worker.close(5)
        rig.worker.close(5)
        assert rig.submit(1) == "closed"
        stats = rig.stats()
        assert (stats["delivered"], stats["dropped_reasons"]) == (1, {"closed": 1})


class TestCountersUnderConcurrency:
    def test_every_sample_balances_while_threads_submit_and_uploads_fail(
        self, make_rig: Any,
    ) -> None:
        """Refusals, retries and deliveries interleave; the identity never breaks."""
        rng = random.Random(11)
        outcomes = [failure(FailureKind.TRANSIENT) if rng.random() < 0.3 else None
                    for _ in range(3000)]
        rig = make_rig(FakeUploader(outcomes), workers=4, max_queue_bytes=8 * COST,
                       retry_base=0.001, retry_cap=0.002)
        samples: list[int] = []
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                samples.append(balance(rig.stats()))
                time.sleep(0.0005)

        sampler = threading.Thread(target=sample)
        sampler.start()
        emitters = [threading.Thread(target=lambda b=b: [rig.submit(b * 1000 + n)
                                                         for n in range(300)])
                    for b in range(4)]
        for t in emitters:
            t.start()
        for t in emitters:
            t.join()
        rig.worker.flush(30)
        # On a loaded machine the run can be over before the sampler woke ten times.
        assert wait_until(lambda: len(samples) > 10, 10)
        done.set()
        sampler.join()
        stats = rig.stats()
        assert len(samples) > 10
        assert samples == [0] * len(samples)
        assert stats["emitted"] == 1200
        assert stats["delivered"] + stats["dropped"] == 1200
        assert stats["queued"] == 0
        assert len(rig.uploader.delivered_keys()) - stats["failed"] == stats["delivered"]
