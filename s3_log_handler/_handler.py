"""S3Handler: the ``logging.Handler`` that snapshots analytics records and hands them off.

The caller's path, in full (``handle`` -> ``emit`` -> ``_ship``): skip internal records; run
the filters; read the payload; redact it (only when fields are configured); serialise it with
orjson into one JSON line (a snapshot: later mutation changes nothing); with a spool, append
that line to the active segment under the spool's lock; then ``Ledger.admit`` under the
ledger's lock, which counts it, queues it and wakes an upload thread only if one sleeps.
That is one lock without a spool and two (one after the other, never nested) with one. The
handler lock that ``logging.Handler.handle`` would take is not taken, keys and jobs are made
on the upload threads, and nothing on this path touches the network or raises.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import weakref
from typing import Any

from ._aio import run_off_loop
from ._batch import BatchAccumulator
from ._diagnostics import Reports, is_internal_record, logger
from ._exit import LOGGING_MODULE_LOCK, exit_started, inside_logging_config
from ._jobqueue import JobQueue
from ._jobs import JobMaker
from ._keeper import Keeper
from ._ledger import Ledger
from ._parquet_codec import codec_for
from ._policies import BatchPolicy, ClientPolicy, PutPolicy, QueuePolicy, RetryPolicy
from ._records import DROPPED, Entry
from ._redact import identity, make_redactor
from ._settings import HandlerConfig
from ._snapshot import Snapshotter, check_key_template
from ._spool_setup import open_spool
from ._uploader import S3Uploader
from ._worker import Uploaders

_LIVE_HANDLERS: weakref.WeakSet[S3Handler] = weakref.WeakSet()


class S3Handler(logging.Handler):
    """Ships the payload each record carries in ``record.<attribute>`` to S3, off-thread.

    ``emit()`` serialises the payload on the caller's thread (a snapshot: later mutation
    changes nothing), writes it to the spool when one is set, and enqueues it. It never does
    network I/O and never raises; background threads batch, compress and upload.

    Keyword arguments are all optional and usable from ``dictConfig``; the README's
    "Configuration reference" lists each with its default. The main ones: ``bucket``
    (default ``$ANALYTICS_S3_BUCKET``; without one the handler is disabled and records are
    counted ``ignored``), ``prefix``, ``attribute``, ``id_field``, ``key_template``,
    ``mode="object"|"batch"``, ``format``, ``compression``, ``workers``, ``close_timeout``,
    ``spool_dir``, ``max_queue_bytes``, ``when_full``, the put settings (``sse``, ...) and
    the PII controls (``redact_fields``, ``hash_fields``).

    Raises ``ValueError``/``TypeError`` at construction for invalid or unknown arguments.
    """

    def __init__(self, bucket: str | None = None, *, level: int | str = logging.NOTSET,
                 **options: Any) -> None:
        # Settings first: a refused handler must not be registered with logging at all.
        self.config = c = HandlerConfig.from_kwargs(bucket=bucket, **options)
        self._codec = codec = codec_for(c)
        check_key_template(c, codec.suffix)
        super().__init__(level)
        self._reports = Reports()
        self._closing = False
        self._closed = False
        self._close_lock = threading.Lock()
        # Read on every record: kept as plain attributes (no property or settings lookup).
        self._enabled = c.enabled
        self._attribute = c.attribute
        redactor = make_redactor(c)
        self._redact = None if redactor is identity else redactor
        self._spool = open_spool(c, codec.suffix, self._reports)
        self._jobs = JobMaker(c.key_template, c.prefix, codec.suffix)
        self._ledger = Ledger(self._job_queue(), self._spool, self._reports, QueuePolicy.of(c))
        self._snapshot = Snapshotter(c, codec.suffix, self._ledger, self._reports)
        self._uploader = S3Uploader(PutPolicy.of(c), ClientPolicy.of(c))
        self._uploaders = Uploaders(c.workers, self._ledger, self._uploader, codec, self._spool,
                                    RetryPolicy.of(c), self._reports, f"s3://{c.bucket}")
        # Spool housekeeping and health metrics; None when there is neither.
        self._keeper = Keeper.for_handler(c, self._ledger, self._spool, self._reports,
                                          on_work=self._uploaders.ensure_running)
        _LIVE_HANDLERS.add(self)

    def _job_queue(self) -> JobQueue:
        c, compress = self.config, self._codec.compress
        batches = (BatchAccumulator(BatchPolicy.of(c), lambda b: len(compress(b)))
                   if c.mode == "batch" else None)
        return JobQueue(self._jobs, batches)

    # -- logging.Handler -------------------------------------------------------------------
    def handle(self, record: logging.LogRecord) -> Any:
        """Filter and emit ``record`` without the handler lock (``emit`` is thread-safe: the
        ledger has its own), skipping the handler's own and the AWS stack's records.

        Not taking the lock also keeps exit safe: ``logging.shutdown()`` holds it while
        ``flush()`` waits for the very threads that log (botocore's "Found credentials", our
        failure reports).
        """
        if is_internal_record(record):
            return False
        passed = self.filter(record)
        if passed:
            # Python 3.12+: a filter may return a replacement record.
            self.emit(passed if isinstance(passed, logging.LogRecord) else record)
        return passed

    def emit(self, record: logging.LogRecord) -> None:
        """Snapshot and enqueue ``record``'s payload. Never blocks on I/O, never raises."""
        try:
            self._ship(record)
        except Exception:
            self.handleError(record)

    def flush(self, timeout: float | None = None) -> bool:  # type: ignore[override]
        """Wait until every record emitted before the call has an outcome.

        Waits at most ``timeout`` seconds; ``None`` means ``close_timeout``, or at interpreter
        exit what is left of the one exit deadline that this flush and the ``close()`` after
        it share. Returns True only if all of those records were delivered.
        """
        if not self.config.enabled:
            return True
        if inside_logging_config():
            timeout = 0.0  # waiting could only stall: see _close_when_config_done
        deadline = self._deadline() if timeout is None else time.monotonic() + timeout
        if self._closed:
            deadline = 0.0  # nothing more can settle
        return self._ledger.flush(
            deadline, self._uploaders.deliver if self._uploaders.inline else None)

    async def aflush(self, timeout: float | None = None) -> bool:
        """:meth:`flush` for ``async`` code: same wait, same result, but the event loop keeps
        running. The wait runs on a daemon thread of its own (not the loop's default
        executor, which may already be shut down during lifespan shutdown)."""
        return await run_off_loop(lambda: self.flush(timeout))

    def wait_idle(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until nothing is queued or spooled, recovered records
        included; True when idle. (``flush`` only waits for records emitted before it.)
        """
        deadline = time.monotonic() + timeout
        while self.config.enabled:
            self._ledger.cut_batches()
            stats = self._ledger.snapshot()
            if stats["queued"] == 0 and stats["spooled"] == 0:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def close(self) -> None:
        """Flush until ``close_timeout`` (or the exit deadline), stop, release the spool.
        Safe to call twice.

        Called by ``dictConfig()`` (which holds logging's module lock), the handler keeps
        accepting and delivering records and closes as soon as that configuration is done.
        """
        with self._close_lock:
            if self._closing:
                return
            self._closing = True
        if inside_logging_config() and self._close_later():
            return
        self._close_now()

    def _close_later(self) -> bool:
        try:
            # Not a daemon: dictConfig took this handler off logging's exit list, so exit
            # must wait (at most close_timeout) for this close, or what it holds is lost.
            threading.Thread(target=self._close_when_config_done, daemon=False,
                             name="s3-log-handler-close").start()
        except RuntimeError:  # interpreter shutdown: no new threads
            return False
        return True

    def _close_when_config_done(self) -> None:
        # botocore takes logging's module lock mid-upload (logger caches that dictConfig's
        # setLevel cleared), so uploads stall while dictConfig holds it: waiting inside
        # close() would stall the reload for close_timeout and deliver nothing.
        with LOGGING_MODULE_LOCK:
            pass
        self._close_now()

    def _close_now(self) -> None:
        try:
            if self.config.enabled:
                self._ledger.flush(self._deadline(),
                                   self._uploaders.deliver if self._uploaders.inline else None)
                leftovers = self._ledger.close()
                kept, lost = self._ledger.set_aside([e for j in leftovers for e in j.entries])
                in_flight = self._ledger.get("queued")
                if lost or kept or in_flight:
                    logger.error(
                        "S3Handler closed with undelivered records (close_timeout=%.1fs): %d "
                        "dropped, %d kept in the spool for the next start or `s3-log-handler "
                        "replay`, %d uploads in flight (lost if the process exits now, unless "
                        "spooled); %d in total", self.config.close_timeout, lost, kept,
                        in_flight, lost + kept + in_flight)
            if self._keeper is not None:
                self._keeper.stop()
            if self._spool is not None:
                self._spool.close()
        finally:
            self._closed = True
            _LIVE_HANDLERS.discard(self)
            super().close()

    def _deadline(self) -> float:
        """When flush-without-argument and close stop waiting: ``close_timeout`` from now, or
        from the start of interpreter exit once that has begun (one deadline for both)."""
        started = exit_started()
        start = started if started is not None else time.monotonic()
        return start + self.config.close_timeout

    def stats(self) -> dict[str, Any]:
        """A copy of the counters; see :mod:`s3_log_handler.counters` for the identity."""
        return self._ledger.snapshot()

    def __repr__(self) -> str:
        where = f"s3://{self.config.bucket}/{self.config.prefix}" if self.config.enabled else "off"
        return f"<S3Handler {where} ({logging.getLevelName(self.level)})>"

    # -- the emit path -------------------------------------------------------------------
    def _ship(self, record: logging.LogRecord, letter: str | None = None) -> Entry | None:
        """The caller's path; returns the record's entry once admitted (``None`` when it
        was not: ignored, dropped after close, dead-lettered). ``letter`` names the dead
        letter ``replay`` re-emits it from."""
        # Internal records never get here: handle() drops them before taking the lock.
        payload = getattr(record, self._attribute, None)
        if payload is None or not self._enabled:
            self._ledger.count("emitted", "ignored")
            if payload is not None:
                # At first use, not in __init__: dictConfig builds handlers before it sets
                # the levels that decide whether this line is shown.
                self._reports.report("disabled", logging.INFO,
                                     "ANALYTICS_S3_BUCKET not configured - skipping S3 export")
            return None
        if self._closed:
            self._ledger.count("emitted", DROPPED, 1, "closed")
            self._reports.report("closed", logging.WARNING,
                                 "S3Handler is closed; dropped a record from logger %r",
                                 record.name)
            return None
        if self._redact is not None:
            # Converted to plain JSON types, then redacted: the id in the key and metadata,
            # the object and any dead letter all come from that, never from raw PII.
            entry = self._snapshot.take_redacted(record, payload, self._redact, letter)
        else:
            entry = self._snapshot.take(record, payload, letter)
        if entry is None:
            return None
        if self._spool is not None:
            entry = self._spool.append(entry)
        self._uploaders.ensure_running()
        self._ledger.admit(entry)
        return entry

    def _prepare_client(self) -> None:
        """Make the S3 client now instead of at the first upload (``@flush_on_return`` does,
        in Lambda's init phase). Never raises: the first upload reports what failed here."""
        if self._enabled and not self._closing:
            with contextlib.suppress(Exception):
                self._uploader.client()

    # -- fork ---------------------------------------------------------------------------
    def _after_fork_in_child(self) -> None:
        self._uploader.reset_after_fork()
        if self._spool is not None:
            self._spool.forget_after_fork()
        self._ledger.reset(self._job_queue())
        self._uploaders.reset_after_fork()
        self._close_lock = threading.Lock()
        if self._keeper is not None and not self._closing:
            self._keeper.start()


def _reset_handlers_after_fork() -> None:
    for handler in list(_LIVE_HANDLERS):
        handler._after_fork_in_child()


os.register_at_fork(after_in_child=_reset_handlers_after_fork)
