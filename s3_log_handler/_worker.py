"""Upload threads: take a job from the ledger, try it once, hand the outcome back.

The failure boundary is exactly one attempt: compressing the body (our code) and the PUT
(botocore retries inside, :mod:`_uploader` classifies what it gives up on). Only a failed
attempt is retried. What follows a successful PUT is the ledger's bookkeeping, which can
never send the job again. No exception ends an upload thread: the loop reports it and takes
the next job, and a thread that dies anyway is replaced by the next emit.
"""

from __future__ import annotations

import logging
import threading
import time

from ._diagnostics import Reports, mark_internal_thread
from ._encode import Codec
from ._jobs import Job
from ._ledger import Ledger
from ._oplines import uploaded
from ._policies import RetryPolicy
from ._records import DEAD_LETTERED, DELIVERED, DROPPED, SpoolRef
from ._spool import Spool
from ._uploader import Backoff, FailureKind, S3Uploader, UploadFailure

#: A job whose body our own code fails to build this many times is dead-lettered
#: (``internal_error``) instead of retried forever.
MAX_INTERNAL_FAILURES = 10


class Uploaders:
    """``workers`` upload threads, started on the first record, and the attempt they run."""

    def __init__(self, workers: int, ledger: Ledger, uploader: S3Uploader, codec: Codec,
                 spool: Spool | None, retry: RetryPolicy, reports: Reports,
                 target: str) -> None:
        self._workers = workers
        self._ledger = ledger
        self._uploader = uploader
        self._codec = codec
        self._spool = spool
        self._retry = retry
        self._reports = reports
        self._target = target
        self.reset_after_fork()

    def reset_after_fork(self) -> None:
        """No threads yet (also ``__init__``): a forked child starts its own."""
        self._start_lock = threading.Lock()
        self._running = 0
        self._backoff = Backoff(self._retry.base, self._retry.cap)
        #: True once threads cannot start (interpreter shutdown): flush() uploads itself.
        self.inline = False

    def ensure_running(self) -> None:
        """Start the missing upload threads (all of them at first; one that died, later).
        Costs one comparison when all are running."""
        if self._running >= self._workers or self.inline:
            return
        with self._start_lock:
            while self._running < self._workers and not self._ledger.closed:
                thread = threading.Thread(target=self._run, daemon=True,
                                          name=f"s3-log-handler-{self._running}")
                try:
                    thread.start()
                except RuntimeError:  # interpreter shutdown forbids new threads
                    self.inline = True
                    return
                self._running += 1

    def _run(self) -> None:
        mark_internal_thread()
        try:
            while True:
                try:
                    job = self._ledger.take()
                except Exception as exc:  # a bug must not end the thread
                    self._reports.report("upload-take", logging.ERROR,
                                         "S3Handler upload thread could not take a job (%s: "
                                         "%s); it carries on", type(exc).__name__, exc)
                    time.sleep(0.05)  # no hot loop on a persisting error
                    continue
                if job is None:
                    return
                try:
                    self.deliver(job)
                except Exception as exc:  # a bug must not end the thread nor hide a record
                    self._reports.report("upload-thread", logging.ERROR,
                                         "S3Handler upload thread hit an unexpected error (%s: "
                                         "%s); its records are counted internal_error",
                                         type(exc).__name__, exc)
                    self._ledger.settle(job.entries, DROPPED, "internal_error")
        finally:
            with self._start_lock:
                self._running -= 1

    def deliver(self, job: Job) -> None:
        """Try ``job`` once (the ledger marked its spool lines in flight when it handed it
        out) and settle or reschedule its records."""
        refs = [e.ref for e in job.entries if e.ref is not None]
        try:
            if job.body is None:
                raw = b"".join(e.body for e in job.entries)
                if self._codec.for_key is None:
                    job.body = self._codec.compress(raw)
                else:
                    job.body, counts = self._codec.for_key(job.key, raw)
                    self._ledger.add(**counts)
                self._ledger.learn(job, len(raw), len(job.body))
                del raw  # up to max_batch_bytes: not held during the PUT
        except Exception as exc:
            self._failed(job, refs, None, exc)
            return
        started = self._reports.now()
        failure = self._uploader.put(job.key, job.body, record_id=job.record_id,
                                     content_encoding=self._codec.content_encoding)
        if failure is None:
            self._ledger.settle(job.entries, DELIVERED)
            self._ledger.add(bytes_sent=len(job.body), objects_sent=1)
            uploaded(self._target, job.key, len(job.entries), len(job.body))
            self._backoff.reset()
            self._reports.recovered("upload", f"S3 uploads to {self._target}")
            return
        self._failed(job, refs, failure, None, started)

    def _failed(self, job: Job, refs: list[SpoolRef], failure: UploadFailure | None,
                error: Exception | None, started: float | None = None) -> None:
        self._ledger.add(failed=1)
        if self._spool is not None and refs:
            self._spool.uploading(refs, now=False)
        if failure is None:
            job.internal_failures += 1
            self._reports.report("internal-" + type(error).__name__, logging.ERROR,
                                 "S3Handler could not build an object for %s (%s: %s); will "
                                 "retry", self._target, type(error).__name__, error,
                                 outage="upload")
            if job.internal_failures >= MAX_INTERNAL_FAILURES:
                self._ledger.settle(job.entries, DEAD_LETTERED, "internal_error")
                return
            pause = self._backoff.delay()
        else:
            self._reports.report(failure.code, logging.ERROR,
                                 "S3 upload to %s/%s failed: %s: %s. Hint: %s.", self._target,
                                 job.key, failure.code, failure.message, failure.hint,
                                 outage="upload", started=started)
            if failure.kind is FailureKind.REJECTED:
                self._ledger.settle(job.entries, DEAD_LETTERED, failure.code)
                return
            pause = (self._retry.config_pause if failure.kind is FailureKind.CONFIG
                     else self._backoff.delay())
        if not self._ledger.retry_later(job, pause):
            self._ledger.set_aside(job.entries)  # closed meanwhile: spool keeps what it has

