"""Background delivery: a byte-bounded queue, upload threads, backoff, flush and close.

The only module that starts threads. Threads start lazily on the first record, remember
the pid that started them, and are daemons: exit is driven by ``logging.shutdown()`` calling
``flush()``/``close()``, which wait to one overall deadline and never longer.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from ._delivery import Delivery, Job
from ._diagnostics import ReportOnce, logger, mark_internal_thread
from ._jobqueue import JobQueue
from ._pending import PendingRecords
from ._records import Entry
from ._settings import HandlerConfig
from ._spool import FSYNC_INTERVAL, Spool
from ._uploader import Backoff, FailureKind, UploadFailure
from .counters import Counters

#: How often a running handler looks for segments abandoned by dead processes or handlers.
_ADOPT_INTERVAL = 5.0
#: A flush that timed out this recently makes close() stop without waiting again.
_JUST_GAVE_UP = 1.0


class DeliveryWorker:
    """Owns every record between ``submit()`` and its outcome.

    Guarantees: ``submit`` never waits on the network (with ``when_full="block"`` it waits
    at most ``block_timeout`` for memory); a failed upload is retried with capped,
    jittered backoff until it succeeds or the worker closes; counters move atomically.
    """

    def __init__(self, config: HandlerConfig, delivery: Delivery, counters: Counters,
                 spool: Spool | None) -> None:
        self._config = config
        self._delivery = delivery
        self._counters = counters
        self._spool = spool
        self.reset_after_fork()

    def reset_after_fork(self) -> None:
        """Start from nothing: fresh lock, queue and threads (also used by ``__init__``).

        In a forked child the parent's queue belongs to the parent, which delivers it.
        """
        c = self._config
        self._cond = threading.Condition()
        self._queue = JobQueue(c, self._delivery)
        self._pending = PendingRecords()
        self._flush_gave_up_at = -1e9
        self._next_adoption = 0.0
        self._backoff = Backoff(c.retry_base, c.retry_cap)
        self._threads: list[threading.Thread] = []
        self._inline = False
        self._closed = False
        self._pid = os.getpid()
        self._reports = ReportOnce()

    # -- caller side ---------------------------------------------------------------------
    def submit(self, entry: Entry) -> str | None:
        """Take ``entry`` and count it ``queued`` (or ``spooled``); else say why not.

        When memory is full, a record already in the spool stays there (``when_full="spool"``)
        and is reloaded later. Returns ``None`` when taken, else ``"queue_full"`` or
        ``"closed"``: the caller then owns the record's outcome (it is not counted here).
        """
        with self._cond:
            if self._closed:
                return "closed"
            self._start_threads()
            entry.seq = self._pending.add()
            cost = entry.memory_cost
            if not self._queue.has_room(cost):
                self._cut_batches()  # open batches hold memory that only an upload frees
            if self._queue.has_room(cost) or self._wait_for_room(cost):
                self._counters.arrive("emitted", "queued")
                if self._queue.put(entry, time.monotonic()):
                    # Waking a thread per record would cost every caller a GIL hand-off.
                    self._cond.notify()
                return None
            if entry.ref is not None and self._spool is not None and (
                    self._config.when_full == "spool"):
                self._spool.mark_disk_only(entry.ref, entry.seq)
                self._counters.arrive("emitted", "spooled")
                return None
            self._pending.settle([entry.seq], lost=True)
            return "queue_full"

    def adopt_abandoned(self) -> None:
        """Take over spool segments whose owner is gone (a dead process, a closed handler)
        and deliver them. Runs at start and every few seconds; with a spool the threads run
        from the start, so leftovers of a handler closed later are still picked up."""
        self._next_adoption = time.monotonic() + _ADOPT_INTERVAL
        if self._delivery.recover_abandoned() or self._spool is not None:
            with self._cond:
                self._start_threads()
                self._cond.notify_all()

    def count_refused(self) -> None:
        """A record refused at emit (dead-lettered there): ``flush()`` must report the loss."""
        with self._cond:
            self._pending.settle([self._pending.add()], lost=True)

    # -- flush and close -----------------------------------------------------------------
    def flush(self, timeout: float, *, at_shutdown: bool = False) -> bool:
        """Wait up to ``timeout`` seconds until every record submitted before the call is
        settled; True only if all of them were delivered. Open batches are cut at once.

        ``at_shutdown`` marks the argument-less flush that ``logging.shutdown()`` makes just
        before ``close()``: if it times out, that close does not wait a second time. After
        close nothing more can settle, so a flush then does not wait.
        """
        deadline = time.monotonic() + (0.0 if self._closed else timeout)
        with self._cond:
            mark, since = self._pending.begin_flush()
            self._cut_batches()
            while self._pending.pending_upto(mark):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                if self._inline and self._queue.has_ready:
                    self._deliver_inline()
                else:
                    self._cond.wait(remaining)
            drained = not self._pending.pending_upto(mark)
            if not drained and at_shutdown and timeout > 0:
                self._flush_gave_up_at = time.monotonic()
            return self._pending.end_flush(mark, since, drained=drained)

    def cut_batches(self) -> None:
        """Hand every open batch to the upload threads now, whatever its size or age."""
        with self._cond:
            self._cut_batches()

    def close(self, timeout: float) -> None:
        """Flush up to ``timeout``, then stop; report loudly whatever is left. Idempotent.

        ``logging.shutdown()`` calls ``flush()`` and then ``close()``: when that flush has just
        timed out, close does not wait a second time, so exit takes ``close_timeout`` at most.
        """
        if self._closed:
            return
        if time.monotonic() - self._flush_gave_up_at < _JUST_GAVE_UP:
            timeout = 0.0
        self.flush(timeout)
        with self._cond:
            if self._closed:
                return
            self._closed = True
            leftovers = self._queue.take_all()
            self._cond.notify_all()
        kept, lost = self._abandon(leftovers)
        in_flight = self._counters.get("queued")
        if lost or kept or in_flight:
            logger.error(
                "S3Handler closed with undelivered records (close_timeout=%.1fs): %d dropped, "
                "%d kept in the spool for the next start or `s3-log-handler replay`, %d uploads "
                "in flight (lost if the process exits now, unless spooled); %d in total",
                self._config.close_timeout, lost, kept, in_flight, lost + kept + in_flight)

    # -- worker threads ------------------------------------------------------------------
    def _start_threads(self) -> None:
        if self._threads or self._inline or self._closed:
            return
        for index in range(self._config.workers):
            thread = threading.Thread(target=self._run, args=(index == 0,), daemon=True,
                                      name=f"s3-log-handler-{index}")
            try:
                thread.start()
            except RuntimeError:
                # Interpreter shutdown forbids new threads: flush() delivers on its caller.
                self._inline = True
                return
            self._threads.append(thread)
        if self._spool is not None and self._config.spool_fsync == "interval":
            # Its own thread: upload threads can hang in the network for many seconds.
            syncer = threading.Thread(target=self._sync_spool, daemon=True,
                                      name="s3-log-handler-fsync")
            syncer.start()
            self._threads.append(syncer)

    def _run(self, refills: bool) -> None:
        mark_internal_thread()
        while not self._closed:
            if refills and self._spool is not None:
                self._housekeep()
            job = self._take()
            if job is not None:
                self._work(job)

    def _housekeep(self) -> None:
        try:
            if time.monotonic() >= self._next_adoption:
                self.adopt_abandoned()
            self._refill_from_spool()
        except Exception:  # a disk error must not kill the thread: retried next round
            self._next_adoption = time.monotonic() + _ADOPT_INTERVAL
            self._reports.report("housekeeping", logging.ERROR,
                                 "S3Handler could not read its spool %s; will retry",
                                 self._spool.directory if self._spool else "")

    def _sync_spool(self) -> None:
        mark_internal_thread()
        assert self._spool is not None
        while not self._closed:
            time.sleep(FSYNC_INTERVAL)
            self._spool.sync_if_due()

    def _take(self) -> Job | None:
        with self._cond:
            job = self._queue.pop_ready(time.monotonic())
            if job is None and not self._closed:
                self._cond.wait(self._queue.idle_wait(time.monotonic()))
                job = self._queue.pop_ready(time.monotonic())
            return job

    def _work(self, job: Job) -> None:
        refs = [e.ref for e in job.entries if e.ref is not None]
        if refs and self._spool is not None:
            self._spool.uploading(refs, now=True)
        try:
            failure = self._delivery.attempt(job)
        except Exception as exc:  # a bug must not kill the thread nor lose the records
            logger.exception("S3Handler delivery failed unexpectedly; records kept for retry")
            failure = UploadFailure(FailureKind.TRANSIENT, type(exc).__name__, str(exc), "")
        if failure is not None and refs and self._spool is not None:
            self._spool.uploading(refs, now=False)
        with self._cond:
            if failure is None or failure.kind is FailureKind.REJECTED:
                self._queue.release(job)
                self._pending.settle([e.seq for e in job.entries], lost=failure is not None)
                if failure is None:
                    self._backoff.reset()
                self._cond.notify_all()
                return
            if not self._closed:
                self._counters.add(retries=1)
                pause = (self._config.config_error_retry if failure.kind is FailureKind.CONFIG
                         else self._backoff.delay())
                self._queue.retry_later(job, time.monotonic() + pause)
                return
        self._abandon([job])

    def _deliver_inline(self) -> None:
        job = self._queue.pop_ready(time.monotonic(), ignore_pause=True)
        if job is None:
            return
        self._cond.release()
        try:
            self._work(job)
        finally:
            self._cond.acquire()

    # -- bookkeeping (callers hold self._cond) ----------------------------------------------
    def _cut_batches(self) -> None:
        self._queue.cut_batches()
        self._cond.notify_all()

    def _wait_for_room(self, size: int) -> bool:
        if self._config.when_full != "block":
            return False
        deadline = time.monotonic() + self._config.block_timeout
        while not self._queue.has_room(size):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._cond.wait(remaining)
        return True

    def _abandon(self, jobs: list[Job]) -> tuple[int, int]:
        """Records left at close: spooled ones stay on disk, the rest are counted dropped.

        Returns ``(kept, dropped)``."""
        entries = [e for job in jobs for e in job.entries]
        kept = sum(1 for e in entries if e.ref is not None)
        if kept:
            self._counters.move("queued", "spooled", kept)
        if len(entries) > kept:
            self._counters.move("queued", "dropped", len(entries) - kept, reason="shutdown")
        return kept, len(entries) - kept

    def _refill_from_spool(self) -> None:
        if self._counters.get("spooled") == 0:
            return
        with self._cond:
            room = self._config.max_queue_bytes // 2 - self._queue.memory_bytes
        if room <= 0:
            return
        assert self._spool is not None
        entries = self._spool.load_backlog(room)
        if not entries:
            return
        with self._cond:
            if self._closed:  # they stay on disk for the next owner
                return
            for entry in entries:
                self._queue.put(entry, time.monotonic())
            self._counters.move("spooled", "queued", len(entries))
            # A backlog is already late: do not let it wait max_batch_age in an open batch.
            self._cut_batches()
            self._cond.notify_all()

