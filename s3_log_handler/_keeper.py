"""The keeper: spool housekeeping on its own thread, so upload threads only upload.

Every round it adopts segments whose owner is gone (every few seconds), reads records held
only on disk back into memory when there is room, fsyncs the active segment
(``spool_fsync="interval"``), retries deletions that failed and, while the dead-letter area
looks full, counts it again now and then (someone may have cleaned it up). Lines read back that fail
their checks (a key this handler could not have made, a missing or wrong HMAC) are
dead-lettered through the ledger with their reason, never uploaded. Each step reports its
own errors (rate-limited) and is tried again next round: a disk error never ends the thread.

With ``metrics_interval`` set it also logs the health metrics (:mod:`_metrics`) when due, and
a last line at :meth:`Keeper.stop`; a handler with metrics but no spool has a keeper for
that alone.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable

from ._diagnostics import Reports, logger, mark_internal_thread
from ._ledger import Ledger
from ._metrics import HealthMetrics, dimension_values
from ._records import DEAD_LETTERED, SPOOLED
from ._settings import HandlerConfig
from ._spool import FSYNC_INTERVAL, Spool

#: How often the keeper looks for segments abandoned by dead processes or closed handlers.
ADOPT_INTERVAL = 5.0
#: A round while records wait on disk (refill promptly), and otherwise.
_BUSY_ROUND = 0.1
_IDLE_ROUND = FSYNC_INTERVAL


class Keeper:
    """Runs :meth:`run_once` on a daemon thread until :meth:`stop`.

    ``refill_bytes`` is how much memory the spooled backlog may fill (half the queue, so
    new records keep room); ``on_work`` is called when records were put in memory. Without
    a ``spool`` only the ``metrics`` are kept.
    """

    def __init__(self, ledger: Ledger, spool: Spool | None, reports: Reports, *,
                 refill_bytes: int, on_work: Callable[[], None],
                 metrics: HealthMetrics | None = None) -> None:
        self._ledger = ledger
        self._spool = spool
        self._reports = reports
        self._refill_bytes = refill_bytes
        self._on_work = on_work
        self._metrics = metrics
        self._stopped = threading.Event()
        self._next_adoption = 0.0

    @classmethod
    def for_handler(cls, c: HandlerConfig, ledger: Ledger, spool: Spool | None,
                    reports: Reports, *, on_work: Callable[[], None]) -> Keeper | None:
        """The keeper of a handler with settings ``c``: ``None`` when it has neither a spool
        nor ``metrics_interval``; otherwise run once (what earlier processes left counts
        from the start) and started."""
        metrics = None
        if c.metrics_interval and c.bucket is not None:
            metrics = HealthMetrics(ledger.health, dimension_values(c.bucket, c.prefix, c.mode),
                                    c.metrics_interval)
        if spool is None and metrics is None:
            return None
        keeper = cls(ledger, spool, reports, refill_bytes=c.max_queue_bytes // 2,
                     on_work=on_work, metrics=metrics)
        keeper.run_once()
        keeper.start()
        return keeper

    def start(self) -> None:
        """Start the thread (again, in a forked child). Without threads (interpreter
        shutdown) the spool is simply left for the next owner."""
        self._stopped = threading.Event()
        self._next_adoption = 0.0
        if self._metrics is not None:
            self._metrics.restart()
        with contextlib.suppress(RuntimeError):
            threading.Thread(target=self._run, daemon=True, name="s3-log-handler-keeper").start()

    def stop(self) -> None:
        """End the thread after its current round; log the last metrics line (the partial
        interval up to now, so the lines add up to the handler's totals)."""
        self._stopped.set()
        if self._metrics is not None:
            self._report_metrics(self._metrics.report_final)

    def _run(self) -> None:
        mark_internal_thread()
        stopped = self._stopped
        while not stopped.is_set():
            self.run_once()
            pause = _BUSY_ROUND if self._ledger.get(SPOOLED) else _IDLE_ROUND
            if self._metrics is not None:
                pause = min(pause, self._metrics.seconds_until_due(time.monotonic()))
            stopped.wait(pause)

    def run_once(self) -> None:
        """One round of housekeeping; never raises."""
        if self._metrics is not None:
            metrics = self._metrics
            self._report_metrics(lambda: metrics.report_if_due(time.monotonic()))
        if self._spool is not None:
            self._spool_round(self._spool)

    def _report_metrics(self, action: Callable[[], None]) -> None:
        try:
            action()
        except Exception as exc:
            self._reports.report("metrics", logging.ERROR, "S3Handler could not log its "
                                 "health metrics (%s: %s); will retry", type(exc).__name__,
                                 exc, outage="metrics")
        else:
            self._reports.recovered("metrics", "health metrics")

    def _spool_round(self, spool: Spool) -> None:
        if time.monotonic() >= self._next_adoption:
            self._next_adoption = time.monotonic() + ADOPT_INTERVAL
            self._guard(spool, "adopt", lambda: self._adopt(spool))
        self._guard(spool, "refill", lambda: self._refill(spool))
        self._guard(spool, "fsync", spool.sync_if_due)
        self._guard(spool, "delete", spool.retry_deletes)
        self._guard(spool, "count dead letters", spool.letters.recount_if_full)

    def _guard(self, spool: Spool, step: str, action: Callable[[], None]) -> None:
        outage = f"keeper-{step}"
        try:
            action()
        except Exception as exc:
            self._reports.report(outage, logging.ERROR,
                                 "S3Handler could not %s in spool %s (%s); will retry", step,
                                 spool.directory, exc, outage=outage)
        else:
            self._reports.recovered(outage, f"spool {spool.directory} ({step})")

    def _adopt(self, spool: Spool) -> None:
        adopted, torn = spool.adopt_abandoned()
        if torn:
            self._ledger.settle(torn, DEAD_LETTERED, "torn_write")
        self._dead_letter_rejected(spool)
        if adopted:
            self._ledger.count("recovered", SPOOLED, adopted)
            logger.info("S3Handler found %d undelivered records in %s; delivering them",
                        adopted, spool.directory)
            self._on_work()

    def _refill(self, spool: Spool) -> None:
        while self._ledger.get(SPOOLED) and not self._ledger.closed:
            room = self._refill_bytes - self._ledger.memory_bytes
            if room <= 0:
                return
            try:
                entries = spool.load_backlog(room)
            finally:
                self._dead_letter_rejected(spool)
            if not entries:
                return
            self._on_work()
            self._ledger.requeue(entries)

    def _dead_letter_rejected(self, spool: Spool) -> None:
        for reason, entries in spool.rejected.take().items():
            self._ledger.settle(entries, DEAD_LETTERED, reason)
            self._reports.report(f"spool-{reason}", logging.ERROR,
                                 "S3Handler dead-lettered %d record(s) read back from spool %s "
                                 "as %s%s; not uploaded (see %s)", len(entries),
                                 spool.directory, reason, _WHY.get(reason, ""),
                                 spool.dead_dir)


#: What each reason a line read back is refused for means, for the report.
_WHY = {
    "foreign_key": " (a key or id this handler could not have made: outside its prefix, "
                   "or not the shape of its key_template)",
    "tampered": " (its HMAC is missing or wrong: changed or written without spool_hmac_key)",
    "torn_write": " (a line that became unreadable after adoption)",
}
