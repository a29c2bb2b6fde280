"""JobQueue: the in-memory line of jobs, tested with plain numbers (no threads, no clock)."""

from __future__ import annotations

from typing import Any

from s3_log_handler._delivery import Delivery
from s3_log_handler._encode import make_codec
from s3_log_handler._jobqueue import IDLE_WAKE, JobQueue
from s3_log_handler._records import RECORD_OVERHEAD, Entry
from s3_log_handler._settings import HandlerConfig
from s3_log_handler._uploader import S3Uploader
from s3_log_handler.counters import Counters

DAY = 1_700_000_000.0  # any fixed UTC instant


def queue(**options: Any) -> JobQueue:
    config = HandlerConfig.from_kwargs(env={}, bucket="b", **options)
    delivery = Delivery(config, S3Uploader(config), Counters(), None, make_codec("gzip"))
    return JobQueue(config, delivery)


def entry(n: int, size: int = 100) -> Entry:
    return Entry(b"x" * (size - 1) + b"\n", DAY, f"id{n}", f"sessions/k{n}.json.gz")


class TestJobQueue:
    def test_memory_counts_each_record_with_its_overhead(self) -> None:
        """Room is judged on body plus per-record overhead; one record always fits."""
        jobs = queue(max_queue_bytes=2 * (100 + RECORD_OVERHEAD))
        assert jobs.has_room(10**9)  # empty: even an oversized record fits
        jobs.put(entry(1), now=0.0)
        jobs.put(entry(2), now=0.0)
        assert jobs.memory_bytes == 2 * (100 + RECORD_OVERHEAD)
        assert not jobs.has_room(100 + RECORD_OVERHEAD)

    def test_object_mode_every_record_is_a_ready_job_in_order(self) -> None:
        """Object mode: each put wakes a thread and makes one job, first in first out."""
        jobs = queue()
        assert jobs.put(entry(1), now=0.0) and jobs.put(entry(2), now=0.0)
        popped = [jobs.pop_ready(now=0.0), jobs.pop_ready(now=0.0), jobs.pop_ready(now=0.0)]
        assert [j.key if j else None for j in popped] == [
            "sessions/k1.json.gz", "sessions/k2.json.gz", None]

    def test_batch_mode_wakes_only_when_a_batch_opens_or_fills(self) -> None:
        """Batch mode: no wake-up per record, only for a new batch or a full one."""
        jobs = queue(mode="batch", max_batch_records=3, max_batch_age=10)
        wakes = [jobs.put(entry(n), now=0.0) for n in range(4)]
        assert wakes == [True, False, True, True]  # opened, -, full, opened again
        assert len(jobs.pop_ready(now=0.0).entries) == 3  # type: ignore[union-attr]
        assert jobs.pop_ready(now=0.0) is None
        assert jobs.idle_wait(now=4.0) == IDLE_WAKE
        assert jobs.idle_wait(now=9.5) == 0.5
        assert len(jobs.pop_ready(now=10.0).entries) == 1  # type: ignore[union-attr]

    def test_a_failed_job_goes_first_and_pauses_every_upload(self) -> None:
        """retry_later: the job is next in line, but only once the pause is over."""
        jobs = queue()
        jobs.put(entry(1), now=0.0)
        jobs.put(entry(2), now=0.0)
        first = jobs.pop_ready(now=0.0)
        assert first is not None
        jobs.retry_later(first, resume_at=5.0)
        assert jobs.pop_ready(now=4.9) is None
        assert jobs.idle_wait(now=4.0) == 1.0
        assert jobs.pop_ready(now=5.0) is first
        assert jobs.pop_ready(now=0.0, ignore_pause=True) is not None

    def test_take_all_includes_open_batches_and_empties_the_queue(self) -> None:
        """At close everything waiting comes out, open batches cut."""
        jobs = queue(mode="batch", max_batch_records=100)
        for n in range(5):
            jobs.put(entry(n), now=0.0)
        taken = jobs.take_all()
        assert sum(len(j.entries) for j in taken) == 5
        assert not jobs.has_ready and jobs.pop_ready(now=100.0) is None
        for job in taken:
            jobs.release(job)
        assert jobs.memory_bytes == 0
