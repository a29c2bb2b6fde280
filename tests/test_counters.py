"""Counters: the identity ``emitted + recovered == outcomes`` holds at every instant."""

from __future__ import annotations

import logging
import random
import threading
from pathlib import Path
from typing import Any

import pytest
from conftest import StatsSampler

from s3_log_handler import S3Handler
from s3_log_handler._records import Entry
from s3_log_handler._spool import Spool
from s3_log_handler._uploader import FailureKind, S3Uploader, UploadFailure
from s3_log_handler.counters import OUTCOMES, SOURCES, Counters, balance


class TestCounters:
    def test_fresh_counters_balance(self) -> None:
        """Nothing counted yet means nothing unaccounted."""
        stats = Counters().snapshot()
        assert all(stats[name] == 0 for name in SOURCES + OUTCOMES)
        assert balance(stats) == 0

    def test_arrive_counts_the_source_and_the_outcome_together(self) -> None:
        """A record that reaches an outcome at once moves both sides of the identity."""
        counters = Counters()
        counters.arrive("emitted", "dropped", 3, reason="queue_full")
        counters.arrive("recovered", "spooled", 2)
        stats = counters.snapshot()
        assert (stats["emitted"], stats["dropped"]) == (3, 3)
        assert (stats["recovered"], stats["spooled"]) == (2, 2)
        assert stats["dropped_reasons"] == {"queue_full": 3}
        assert balance(stats) == 0

    def test_move_keeps_the_identity_and_records_the_reason(self) -> None:
        """Moving records between outcomes never changes the balance."""
        counters = Counters()
        counters.arrive("emitted", "queued", 5)
        counters.move("queued", "delivered", 2)
        counters.move("queued", "dead_lettered", 1, reason="too_large")
        counters.move("queued", "spooled", 2)
        stats = counters.snapshot()
        assert (stats["queued"], stats["delivered"], stats["spooled"]) == (0, 2, 2)
        assert stats["dead_letter_reasons"] == {"too_large": 1}
        assert balance(stats) == 0

    def test_an_unaccounted_record_shows_in_the_balance(self) -> None:
        """balance() is the number of records with no outcome: nonzero means a leak."""
        counters = Counters()
        counters.add(emitted=2, delivered=1)
        assert balance(counters.snapshot()) == 1

    def test_attempt_counters_are_not_outcomes(self) -> None:
        """Failed attempts and retries do not enter the identity (the record stays queued)."""
        counters = Counters()
        counters.arrive("emitted", "queued")
        counters.add(failed=4, retries=4)
        assert balance(counters.snapshot()) == 0

    def test_snapshot_is_a_copy(self) -> None:
        """Mutating a snapshot changes nothing inside the counters."""
        counters = Counters()
        counters.arrive("emitted", "dropped", reason="closed")
        stats = counters.snapshot()
        stats["emitted"] = 99
        stats["dropped_reasons"]["closed"] = 99
        again = counters.snapshot()
        assert again["emitted"] == 1
        assert again["dropped_reasons"] == {"closed": 1}

    def test_reset_starts_from_zero(self) -> None:
        """A forked child counts only its own records."""
        counters = Counters()
        counters.arrive("emitted", "queued", 7)
        counters.reset()
        assert counters.get("emitted") == 0
        assert counters.snapshot()["dropped_reasons"] == {}

    def test_concurrent_changes_never_show_an_imbalance(self) -> None:
        """Every snapshot taken while threads move records balances to zero."""
        counters = Counters()
        stop = threading.Event()

        def churn(seed: int) -> None:
            rng = random.Random(seed)
            while not stop.is_set():
                counters.arrive("emitted", "queued", 3)
                counters.move("queued", rng.choice(["delivered", "spooled"]))
                counters.move("queued", "dropped", reason="queue_full")
                counters.move("queued", "dead_lettered", reason="too_large")

        threads = [threading.Thread(target=churn, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        try:
            samples = [balance(counters.snapshot()) for _ in range(2000)]
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert samples == [0] * len(samples)
        assert counters.get("emitted") > 0


def flaky_put(failure_rate: float) -> Any:
    """A stand-in for ``S3Uploader.put`` that fails a share of uploads with a transient error."""
    rng = random.Random(7)
    lock = threading.Lock()

    def put(_uploader: S3Uploader, key: str, body: bytes, *, content_encoding: str | None,
            record_id: str) -> UploadFailure | None:
        with lock:
            failed = rng.random() < failure_rate
        return UploadFailure(FailureKind.TRANSIENT, "SlowDown", "fake", "") if failed else None

    return put


class TestHandlerCounters:
    @pytest.mark.parametrize("spool", [False, True], ids=["memory", "spool"])
    def test_stats_balance_on_every_sample_while_threads_emit(
        self, spool: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Emit from four threads with drops, spills and failed uploads; every stats() adds up."""
        monkeypatch.setattr(S3Uploader, "put", flaky_put(0.2))
        # Small enough that records are refused (memory) or spill to disk (spool).
        options: dict[str, Any] = {"max_queue_bytes": 32_768 if spool else 4096,
                                   "retry_base": 0.001, "retry_cap": 0.005,
                                   "close_timeout": 5.0, "max_record_bytes": 100_000}
        if spool:
            options["spool_dir"] = str(tmp_path)
        handler = S3Handler("counting-bucket", **options)
        lg = logging.getLogger("analytics.counters")
        lg.handlers[:] = [handler]
        lg.setLevel(logging.INFO)
        lg.propagate = False
        big = "y" * 600

        def emit(worker: int) -> None:
            for i in range(400):
                data: object = {"session_id": f"w{worker}-{i}", "pad": big}
                if i % 97 == 0:
                    data = {"session_id": f"w{worker}-{i}", "pad": "z" * 200_000}  # too large
                lg.info("Session analytics data", extra={"analytics_data": data})
                if i % 50 == 0:
                    lg.info("no payload here")

        with StatsSampler(handler, interval=0.0005) as sampler:
            threads = [threading.Thread(target=emit, args=(w,)) for w in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            idle = handler.wait_idle(30)
        final = handler.stats()
        handler.close()
        assert idle
        samples = sampler.balances
        assert len(samples) > 10
        assert samples == [0] * len(samples)
        assert balance(final) == 0
        assert final["emitted"] == 4 * (400 + 8)
        assert final["ignored"] == 4 * 8
        assert final["failed"] > 0
        if spool:
            assert sampler.most_spooled > 0
            assert final["dropped"] == 0
            assert final["delivered"] == 4 * (400 - 5)
        else:
            assert final["dropped_reasons"].get("queue_full", 0) > 0
            assert final["delivered"] + final["dropped"] == 4 * (400 - 5)
        assert final["dead_letter_reasons"] == {"too_large": 4 * 5}

    def test_records_found_on_disk_count_as_recovered_not_emitted(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """A new handler's stats show what it found in the spool, torn lines included."""
        monkeypatch.setattr(S3Uploader, "put", flaky_put(0.0))
        owner = Spool(str(tmp_path))
        for n in range(3):
            # No key: the handler makes it from the id and time (a key in a line must be one
            # the handler could have made, or the line is dead-lettered foreign_key).
            owner.append(Entry(b'{"n":%d}\n' % n, 1_700_000_000.0, f"r{n}", None))
        owner.close()
        [segment] = tmp_path.glob("*.seg")
        with segment.open("ab") as f:
            f.write(b'{"k":"sessions/torn.json","i":"torn"')  # cut short by a crash
        handler = S3Handler("counting-bucket", spool_dir=str(tmp_path))
        assert handler.wait_idle(10)
        stats = handler.stats()
        handler.close()
        assert (stats["emitted"], stats["recovered"]) == (0, 4)
        assert (stats["delivered"], stats["dead_letter_reasons"]) == (3, {"torn_write": 1})
        assert balance(stats) == 0
