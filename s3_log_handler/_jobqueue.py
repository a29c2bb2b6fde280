"""What waits in memory for an upload thread: ready jobs, open batches, the failure pause.

Plain data with no lock and no clock of its own: the ledger calls it under its lock and
passes ``now`` in, so it is tested with plain numbers.
"""

from __future__ import annotations

from collections import deque

from ._batch import BatchAccumulator
from ._jobs import Job, JobMaker
from ._records import Entry

#: Longest an idle upload thread sleeps before it looks at open batches again.
IDLE_WAKE = 1.0


class JobQueue:
    """Jobs ready to upload, open batches (batch mode, when ``batches`` is given), and the
    pause every upload thread keeps after a failure."""

    def __init__(self, jobs: JobMaker, batches: BatchAccumulator | None) -> None:
        self._jobs = jobs
        self._batches = batches
        #: Object mode queues the entry itself: its job (and key) is made on the upload
        #: thread that takes it, not on the caller's thread.
        self._ready: deque[Job | Entry] = deque()
        self.paused_until = 0.0

    def put(self, entry: Entry, now: float) -> bool:
        """Queue ``entry``; True when an upload thread should wake (a job is ready, or a new
        batch opened whose age deadline sleeping threads do not know yet)."""
        if self._batches is None:
            self._ready.append(entry)
            return True
        opened = self._batches.open_batches
        ready = self._batches.add(entry, now, self._jobs.fields_of(entry))
        for batch in ready:
            self._ready.append(self._jobs.batch_job(batch))
        return bool(ready) or self._batches.open_batches > opened

    def take_cuts(self) -> dict[str, int] | None:
        """Batches cut early since the last call, by reason (``partition_cuts``,
        ``memory_cuts``), or ``None``: the ledger adds them to its counters."""
        if self._batches is None or not self._batches.cuts:
            return None
        cuts, self._batches.cuts = self._batches.cuts, {}
        return cuts

    def learn(self, job: Job, raw: int, compressed: int) -> None:
        """Tell batching how well ``job``'s records compressed (object sizing learns it)."""
        if self._batches is not None:
            self._batches.learn(job.fields, raw, compressed)

    def cut_batches(self) -> bool:
        """Make every open batch a ready job now, whatever its size or age; True if any."""
        if self._batches is None or not self._batches.open_batches:
            return False
        for batch in self._batches.drain():
            self._ready.append(self._jobs.batch_job(batch))
        return True

    def pop_ready(self, now: float, *, ignore_pause: bool = False) -> Job | None:
        """The next job to upload, unless none is ready or a failure pause is still on."""
        if self._batches is not None:
            for batch in self._batches.due(now):
                self._ready.append(self._jobs.batch_job(batch))
        if self._ready and (ignore_pause or now >= self.paused_until):
            return self._job(self._ready.popleft())
        return None

    def idle_wait(self, now: float) -> float:
        """Seconds an idle upload thread may sleep before something becomes due."""
        wait = IDLE_WAKE
        if self._ready:
            wait = min(wait, self.paused_until - now)
        if self._batches is not None:
            due = self._batches.seconds_until_due(now)
            wait = wait if due is None else min(wait, due)
        return max(wait, 0.001)

    def retry_later(self, job: Job, resume_at: float) -> None:
        """Put a failed job first in line and pause every upload until ``resume_at``."""
        self._ready.appendleft(job)
        self.paused_until = max(self.paused_until, resume_at)

    def take_all(self) -> list[Job]:
        """Remove and return everything still waiting (open batches included), for close."""
        self.cut_batches()
        jobs = [self._job(item) for item in self._ready]
        self._ready.clear()
        return jobs

    def _job(self, item: Job | Entry) -> Job:
        return self._jobs.object_job(item) if isinstance(item, Entry) else item
