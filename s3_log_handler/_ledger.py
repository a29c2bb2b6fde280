"""The ledger: the one owner of every record's outcome.

Every record enters through :meth:`Ledger.admit` (or :meth:`Ledger.settle` when ``emit()``
refuses it) and leaves through :meth:`Ledger.settle`, which moves its counters, releases its
spool line (and keeps its dead letter) and wakes ``flush()`` waiters together. A record that
is already settled is never counted again, so a bookkeeping error anywhere cannot make the
counters double-count or go negative.

One lock guards the counters, the flush bookkeeping and the job queue, with one condition
per purpose (OpenTelemetry's and ``queue.Queue``'s shape): ``work`` wakes upload threads,
``room`` wakes producers blocked by ``when_full="block"``, ``settled`` wakes flushers.
The caller's path (:meth:`admit`) takes this lock once and nothing else (the spool append
before it takes the spool's own lock).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from ._diagnostics import Reports
from ._jobqueue import JobQueue
from ._jobs import Job
from ._pending import PendingRecords
from ._policies import QueuePolicy
from ._records import DEAD_LETTERED, DELIVERED, DROPPED, FINAL, NEW, QUEUED, SPOOLED, Entry
from ._spool import Spool
from .counters import Counters


class Ledger:
    """Counters, flush bookkeeping and the in-memory job queue of one handler, under one lock.

    The :class:`QueuePolicy` bounds the memory of queued records; when it is reached a record
    is kept only in the spool (``when_full="spool"``), waits up to ``block_timeout`` for room
    (``"block"``), or is dropped with reason ``queue_full`` (``spool_full`` when it should
    have stayed on disk but the spool reached ``max_spool_bytes``).
    """

    def __init__(self, jobs: JobQueue, spool: Spool | None, reports: Reports,
                 queue: QueuePolicy) -> None:
        self._spool = spool
        self._reports = reports
        self._max_bytes = queue.max_bytes
        self._when_full = queue.when_full
        self._block_timeout = queue.block_timeout
        self.reset(jobs)

    def reset(self, jobs: JobQueue) -> None:
        """Start from nothing with fresh locks (``__init__``, and in a forked child)."""
        self._lock = threading.Lock()
        self.work = threading.Condition(self._lock)
        self._room = threading.Condition(self._lock)
        self._settled = threading.Condition(self._lock)
        self._counters = Counters()
        self._pending = PendingRecords()
        self._jobs = jobs
        self.memory_bytes = 0
        self.closed = False
        #: Upload threads asleep in take(): admit() wakes one only when there is one.
        self._idle = 0

    # -- arrivals (the caller's thread) -----------------------------------------------------
    def admit(self, entry: Entry) -> None:
        """Take a new record: queue it (counted ``queued``) or, when memory is full, keep it
        only in the spool (``spooled``) or drop it (``queue_full``). Never raises for it."""
        with self._lock:
            if not self.closed:
                entry.seq = self._pending.add(time.monotonic())
                cost = entry.memory_cost
                if self._has_room(cost) or self._make_room(cost):
                    self._counters.arrive(entry.source, QUEUED)
                    entry.state = QUEUED
                    self.memory_bytes += cost
                    if self._jobs.put(entry, time.monotonic()) and self._idle:
                        # Only when a thread sleeps: notify() costs the caller even with
                        # no one to wake, and waking per record costs a GIL hand-off.
                        self.work.notify()
                    self._count_cuts()
                    return
                if entry.ref is not None and self._spool is not None and (
                        self._when_full == "spool"):
                    self._counters.arrive(entry.source, SPOOLED)
                    entry.state = SPOOLED
                    self._spool.mark_disk_only(entry.ref, entry.seq)
                    self._pending.spill(entry.seq)
                    return
        reason = "closed" if self.closed else self._full_reason(entry)
        self.settle([entry], DROPPED, reason)
        self._reports.report(f"dropped-{reason}", logging.WARNING,
                             "S3Handler dropped an analytics record (%s); %d dropped so far",
                             reason, self.get("dropped"))

    def count(self, source: str, outcome: str, n: int = 1, reason: str | None = None) -> None:
        """Count ``n`` records that arrive and reach ``outcome`` at once (``ignored``, records
        adopted from a dead owner's spool as ``spooled``, a late ``dropped``)."""
        with self._lock:
            self._counters.arrive(source, outcome, n, reason)

    def add(self, **deltas: int) -> None:
        """Add to the attempt counters (``failed``, ``bytes_sent``, ...)."""
        with self._lock:
            self._counters.add(**deltas)

    def learn(self, job: Job, raw: int, compressed: int) -> None:
        """How well ``job``'s body compressed (no lock: a lost update only delays it)."""
        self._jobs.learn(job, raw, compressed)

    # -- outcomes -------------------------------------------------------------------------
    def settle(self, entries: Sequence[Entry], outcome: str, reason: str | None = None) -> None:
        """Give ``entries`` their final ``outcome`` (with ``reason`` for ``dropped`` and
        ``dead_lettered``): count it, keep dead letters, release spool lines, wake flushers.

        Entries already settled are skipped, so settling twice never counts twice. Never
        raises: disk errors here are reported by the spool and cost no record.
        """
        with self._lock:
            mine = [e for e in entries if e.state not in FINAL]
            for entry in mine:
                if entry.state == NEW:
                    self._counters.arrive(entry.source, outcome, 1, reason)
                    if entry.seq < 0 and entry.source == "emitted":
                        entry.seq = self._pending.add()  # refused at emit: flush reports it
                else:
                    self._counters.move(entry.state, outcome, 1, reason)
                    if entry.state == QUEUED:
                        self.memory_bytes -= entry.memory_cost
                entry.state = outcome
        if self._spool is not None and mine:
            if outcome == DEAD_LETTERED:
                self._spool.keep_letters(mine, reason or "unknown")
            self._spool.release([e.ref for e in mine if e.ref is not None])
        with self._lock:
            self._pending.settle([e.seq for e in mine], lost=outcome != DELIVERED)
            self._settled.notify_all()
            self._room.notify_all()

    def set_aside(self, entries: Sequence[Entry]) -> tuple[int, int]:
        """Records left in memory at close: spooled ones stay on disk (``spooled``, for the
        next owner), the rest are dropped (``shutdown``). Returns ``(kept, dropped)``."""
        kept = [e for e in entries if e.ref is not None and e.state == QUEUED]
        with self._lock:
            for entry in kept:
                self._counters.move(QUEUED, SPOOLED)
                self.memory_bytes -= entry.memory_cost
                entry.state = SPOOLED
        lost = [e for e in entries if e.state not in FINAL and e.state != SPOOLED]
        self.settle(lost, DROPPED, "shutdown")
        return len(kept), len(lost)

    def requeue(self, entries: Sequence[Entry]) -> None:
        """Records read back from the spool (``spooled``) go into memory (``queued``)."""
        with self._lock:
            if self.closed:
                return  # they stay on disk for the next owner
            now = time.monotonic()
            for entry in entries:
                self._counters.move(SPOOLED, QUEUED)
                entry.state = QUEUED
                self.memory_bytes += entry.memory_cost
                self._jobs.put(entry, now)
            self._jobs.cut_batches()  # a backlog is already late: no max_batch_age wait
            self._count_cuts()
            self.work.notify_all()

    # -- upload threads -------------------------------------------------------------------
    def take(self) -> Job | None:
        """The next job to upload, waiting for one; ``None`` once the ledger is closed."""
        with self._lock:
            while not self.closed:
                now = time.monotonic()
                job = self._pop(now)
                if job is not None:
                    return job
                self._idle += 1
                try:
                    self.work.wait(self._jobs.idle_wait(now))
                finally:
                    self._idle -= 1
            return None

    def retry_later(self, job: Job, pause: float) -> bool:
        """Put a failed job back first in line and pause uploads for ``pause`` seconds; False
        when the ledger is closed (the caller then sets the job's records aside)."""
        with self._lock:
            self._counters.add(retries=1)
            if self.closed:
                return False
            self._jobs.retry_later(job, time.monotonic() + pause)
            return True

    # -- flush and close ------------------------------------------------------------------
    def flush(self, deadline: float, deliver_inline: Callable[[Job], None] | None = None) -> bool:
        """Wait until ``deadline`` (monotonic) for every record admitted before the call to
        be settled; True only if all of them were delivered. Open batches are cut at once.
        With ``deliver_inline`` (no upload threads) the caller's thread uploads meanwhile."""
        with self._lock:
            mark, since = self._pending.begin_flush()
            if self._jobs.cut_batches():
                self.work.notify_all()
            while self._pending.pending_upto(mark):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                job = (self._pop(time.monotonic(), ignore_pause=True)
                       if deliver_inline is not None else None)
                if job is None:
                    self._settled.wait(remaining)
                    continue
                self._lock.release()
                try:
                    deliver_inline(job)  # type: ignore[misc]
                except Exception:  # never raises by design; if it did, settle what we know
                    self.settle(job.entries, DROPPED, "internal_error")
                finally:
                    self._lock.acquire()
            drained = not self._pending.pending_upto(mark)
            return self._pending.end_flush(mark, since, drained=drained)

    def cut_batches(self) -> None:
        """Hand every open batch to the upload threads now, whatever its size or age."""
        with self._lock:
            if self._jobs.cut_batches():
                self.work.notify_all()

    def close(self) -> list[Job]:
        """Stop taking records and wake every thread; return the jobs still waiting."""
        with self._lock:
            self.closed = True
            jobs = self._jobs.take_all()
            self.work.notify_all()
            self._room.notify_all()
            self._settled.notify_all()
            return jobs

    # -- reading ---------------------------------------------------------------------------
    def get(self, name: str) -> int:
        """One counter's current value."""
        with self._lock:
            return self._counters.get(name)

    def snapshot(self) -> dict[str, Any]:
        """A consistent copy of every counter (see :mod:`s3_log_handler.counters`), plus
        ``queued_bytes``: the memory queued records hold (bounded by ``max_queue_bytes``)."""
        with self._lock:
            stats = self._counters.snapshot()
            stats["queued_bytes"] = self.memory_bytes
            return stats

    def health(self) -> dict[str, Any]:
        """:meth:`snapshot` plus ``oldest_queued_age``: seconds the oldest record admitted
        here and still without an outcome (in memory or only on disk) has waited, 0.0 when
        none has; one consistent reading, for the health metrics."""
        with self._lock:
            stats = self._counters.snapshot()
            stats["oldest_queued_age"] = self._pending.oldest_age(time.monotonic())
            return stats

    # -- internals (the lock is held) -----------------------------------------------------
    def _count_cuts(self) -> None:
        cuts = self._jobs.take_cuts()  # batches cut early (partition or memory), by reason
        if cuts:
            self._counters.add(**cuts)

    def _pop(self, now: float, *, ignore_pause: bool = False) -> Job | None:
        job = self._jobs.pop_ready(now, ignore_pause=ignore_pause)
        refs = [] if job is None or self._spool is None else [
            e.ref for e in job.entries if e.ref is not None]
        if refs:
            # Marked before the lock is let go: a close() right after must keep these
            # segments locked, or the next owner would send them too.
            self._spool.uploading(refs, now=True)  # type: ignore[union-attr]
        return job

    def _full_reason(self, entry: Entry) -> str:
        """Why a record found no room: ``spool_full`` when it should have been kept on disk
        (``when_full="spool"``) but the spool reached ``max_spool_bytes``."""
        spool = self._spool
        if spool is not None and spool.full and entry.ref is None and self._when_full == "spool":
            return "spool_full"
        return "queue_full"

    def _has_room(self, cost: int) -> bool:
        return self.memory_bytes + cost <= self._max_bytes or self.memory_bytes == 0

    def _make_room(self, cost: int) -> bool:
        if self._jobs.cut_batches():  # open batches hold memory that only an upload frees
            self.work.notify_all()
        if self._when_full != "block":
            return False
        deadline = time.monotonic() + self._block_timeout
        while not self._has_room(cost) and not self.closed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._room.wait(remaining)
        return not self.closed
