"""JobQueue: the in-memory line of jobs, tested with plain numbers (no threads, no clock)."""

from __future__ import annotations

from conftest import has_ready

from s3_log_handler._batch import BatchAccumulator
from s3_log_handler._jobqueue import IDLE_WAKE, JobQueue
from s3_log_handler._jobs import Job, JobMaker
from s3_log_handler._policies import BatchPolicy
from s3_log_handler._records import Entry
from s3_log_handler._settings import BATCH_KEY_TEMPLATE, OBJECT_KEY_TEMPLATE

DAY = 1_700_000_000.0  # 2023-11-14T22:13:20Z, any fixed UTC instant


def entry(n: int, size: int = 100) -> Entry:
    """Record ``n`` with a body of exactly ``size`` bytes and its object-mode key."""
    return Entry(b"x" * (size - 1) + b"\n", DAY, f"id{n}", f"sessions/k{n}.json.gz")


def object_queue() -> JobQueue:
    """Object mode: every record is its own job."""
    return JobQueue(JobMaker(OBJECT_KEY_TEMPLATE, "sessions", ".gz"), None)


def batch_queue(max_records: int = 1000, max_bytes: int = 1 << 30,
                max_age: float = 10.0) -> JobQueue:
    """Batch mode with the given triggers."""
    batches = BatchAccumulator(BatchPolicy(max_records, max_bytes, max_age, False))
    return JobQueue(JobMaker(BATCH_KEY_TEMPLATE, "sessions", ".gz"), batches)


def ids(job: Job | None) -> list[str]:
    assert job is not None
    return [e.record_id for e in job.entries]


class TestObjectMode:
    def test_every_record_is_a_ready_job_in_order(self) -> None:
        """Each put wakes a thread and makes one job under the record's key, first in first out."""
        jobs = object_queue()
        assert jobs.put(entry(1), now=0.0) and jobs.put(entry(2), now=0.0)
        assert has_ready(jobs)
        popped = [jobs.pop_ready(now=0.0), jobs.pop_ready(now=0.0), jobs.pop_ready(now=0.0)]
        assert [j.key if j else None for j in popped] == [
            "sessions/k1.json.gz", "sessions/k2.json.gz", None]
        assert [j.record_id for j in popped if j] == ["id1", "id2"]
        assert not has_ready(jobs)

    def test_a_record_without_a_key_gets_its_object_key_from_its_time_and_id(self) -> None:
        """A record spooled by a batch-mode handler (no key) is named like an object record."""
        jobs = object_queue()
        jobs.put(Entry(b"{}\n", DAY, "abc", None), now=0.0)
        job = jobs.pop_ready(now=0.0)
        assert job is not None
        assert job.key == "sessions/year=2023/month=11/day=14/abc.json.gz"

    def test_cut_batches_has_nothing_to_cut(self) -> None:
        """Without batching there are no open batches: cut_batches says so."""
        jobs = object_queue()
        jobs.put(entry(1), now=0.0)
        assert jobs.cut_batches() is False

    def test_idle_wait_is_the_idle_wake_when_nothing_waits(self) -> None:
        """An idle thread sleeps IDLE_WAKE; a ready job means no sleep at all."""
        jobs = object_queue()
        assert jobs.idle_wait(now=0.0) == IDLE_WAKE
        jobs.put(entry(1), now=0.0)
        assert jobs.idle_wait(now=0.0) == 0.001


class TestBatchMode:
    def test_wakes_only_when_a_batch_opens_or_fills(self) -> None:
        """No wake-up per record: only for a new batch or a full one."""
        jobs = batch_queue(max_records=3)
        wakes = [jobs.put(entry(n), now=0.0) for n in range(4)]
        assert wakes == [True, False, True, True]  # opened, -, full, opened again
        assert ids(jobs.pop_ready(now=0.0)) == ["id0", "id1", "id2"]
        assert jobs.pop_ready(now=0.0) is None

    def test_a_batch_is_due_by_records(self) -> None:
        """Reaching max_batch_records makes the batch a ready job at once."""
        jobs = batch_queue(max_records=2)
        jobs.put(entry(1), now=0.0)
        assert jobs.pop_ready(now=0.0) is None
        jobs.put(entry(2), now=0.0)
        assert ids(jobs.pop_ready(now=0.0)) == ["id1", "id2"]

    def test_a_batch_is_due_by_bytes(self) -> None:
        """Reaching max_batch_bytes (uncompressed) makes the batch a ready job at once."""
        jobs = batch_queue(max_bytes=250)
        jobs.put(entry(1, size=100), now=0.0)
        jobs.put(entry(2, size=100), now=0.0)
        assert jobs.pop_ready(now=0.0) is None
        assert jobs.put(entry(3, size=100), now=0.0)
        assert ids(jobs.pop_ready(now=0.0)) == ["id1", "id2", "id3"]

    def test_a_batch_is_due_by_age(self) -> None:
        """An open batch becomes a job once its first record is max_batch_age old."""
        jobs = batch_queue(max_age=10.0)
        jobs.put(entry(1), now=100.0)
        jobs.put(entry(2), now=105.0)
        assert jobs.pop_ready(now=109.9) is None
        assert ids(jobs.pop_ready(now=110.0)) == ["id1", "id2"]
        assert jobs.pop_ready(now=200.0) is None

    def test_idle_wait_follows_the_oldest_open_batch(self) -> None:
        """A sleeping thread wakes when the next batch is due, never later than IDLE_WAKE."""
        jobs = batch_queue(max_age=10.0)
        jobs.put(entry(1), now=0.0)
        assert jobs.idle_wait(now=4.0) == IDLE_WAKE
        assert jobs.idle_wait(now=9.5) == 0.5
        assert jobs.idle_wait(now=12.0) == 0.001

    def test_each_batch_job_gets_a_new_key(self) -> None:
        """Batches are numbered 1, 2, ... into their keys, ending in .ndjson plus the suffix."""
        jobs = batch_queue(max_records=1)
        jobs.put(entry(1), now=0.0)
        jobs.put(entry(2), now=0.0)
        first, second = jobs.pop_ready(now=0.0), jobs.pop_ready(now=0.0)
        assert first is not None and second is not None
        assert first.key != second.key
        assert first.key.endswith(".ndjson.gz") and second.key.endswith(".ndjson.gz")
        assert first.record_id == second.record_id == ""

    def test_cut_batches_makes_every_open_batch_ready_now(self) -> None:
        """cut_batches hands out open batches whatever their size or age; True if any."""
        jobs = batch_queue(max_age=3600.0)
        for n in range(3):
            jobs.put(entry(n), now=0.0)
        assert jobs.cut_batches() is True
        assert ids(jobs.pop_ready(now=0.0)) == ["id0", "id1", "id2"]
        assert jobs.cut_batches() is False


class TestRetryLater:
    def test_a_failed_job_goes_first_and_pauses_every_upload(self) -> None:
        """retry_later: the job is next in line, but only once the pause is over."""
        jobs = object_queue()
        jobs.put(entry(1), now=0.0)
        jobs.put(entry(2), now=0.0)
        first = jobs.pop_ready(now=0.0)
        assert first is not None
        jobs.retry_later(first, resume_at=5.0)
        assert jobs.pop_ready(now=4.9) is None
        assert jobs.idle_wait(now=4.0) == 1.0
        assert jobs.idle_wait(now=4.5) == 0.5
        assert jobs.pop_ready(now=5.0) is first
        assert ids(jobs.pop_ready(now=5.0)) == ["id2"]

    def test_ignore_pause_hands_out_a_paused_job(self) -> None:
        """flush on the caller's thread (no upload threads) does not wait out a pause."""
        jobs = object_queue()
        jobs.put(entry(1), now=0.0)
        job = jobs.pop_ready(now=0.0)
        assert job is not None
        jobs.retry_later(job, resume_at=60.0)
        assert jobs.pop_ready(now=0.0) is None
        assert jobs.pop_ready(now=0.0, ignore_pause=True) is job

    def test_a_shorter_pause_never_shortens_a_longer_one(self) -> None:
        """Two failures: uploads resume at the later of the two pauses."""
        jobs = object_queue()
        jobs.put(entry(1), now=0.0)
        jobs.put(entry(2), now=0.0)
        a, b = jobs.pop_ready(now=0.0), jobs.pop_ready(now=0.0)
        assert a is not None and b is not None
        jobs.retry_later(a, resume_at=30.0)
        jobs.retry_later(b, resume_at=2.0)
        assert jobs.paused_until == 30.0
        assert jobs.pop_ready(now=29.0) is None
        assert jobs.pop_ready(now=30.0) is b


class TestTakeAll:
    def test_take_all_includes_open_batches_and_empties_the_queue(self) -> None:
        """At close everything waiting comes out, open batches cut."""
        jobs = batch_queue(max_records=100)
        for n in range(5):
            jobs.put(entry(n), now=0.0)
        taken = jobs.take_all()
        assert sum(len(j.entries) for j in taken) == 5
        assert not has_ready(jobs)
        assert jobs.pop_ready(now=100.0) is None

    def test_take_all_includes_paused_jobs(self) -> None:
        """A job waiting out a failure pause is handed back too."""
        jobs = object_queue()
        jobs.put(entry(1), now=0.0)
        jobs.put(entry(2), now=0.0)
        job = jobs.pop_ready(now=0.0)
        assert job is not None
        jobs.retry_later(job, resume_at=60.0)
        assert [ids(j) for j in jobs.take_all()] == [["id1"], ["id2"]]
        assert jobs.take_all() == []
