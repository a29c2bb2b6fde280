"""One delivery attempt and its bookkeeping: compress, put, then count and release the records.

No threads and no scheduling here (that is :mod:`worker`); every function may run on any
thread and never raises for a record it was given.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from ._batch import Batch
from ._diagnostics import ReportOnce, logger
from ._encode import Codec
from ._keys import Partition, render_key
from ._records import Entry
from ._settings import HandlerConfig
from ._spool import Spool
from ._uploader import FailureKind, S3Uploader, UploadFailure
from .counters import SOURCES, Counters


@dataclass(slots=True)
class Job:
    """One object to upload: its records, its key (fixed, so a retry overwrites) and body."""

    entries: list[Entry]
    key: str
    record_id: str
    body: bytes | None = None

    @property
    def memory_cost(self) -> int:
        """What the records in this job count against ``max_queue_bytes``."""
        return sum(e.memory_cost for e in self.entries)


class Delivery:
    """Turns entries into jobs and jobs into objects in S3, keeping the counters exact."""

    def __init__(self, config: HandlerConfig, uploader: S3Uploader, counters: Counters,
                 spool: Spool | None, codec: Codec) -> None:
        self._config = config
        self._uploader = uploader
        self._counters = counters
        self._spool = spool
        self._codec = codec
        self._reports = ReportOnce()
        self._batch_seq = itertools.count(1)

    def object_job(self, entry: Entry) -> Job:
        """The job that uploads one record under the key it got at emit time.

        A record spooled by a batch-mode handler has no key: it gets its object-mode key now.
        """
        key = entry.key or render_key(
            self._config.key_template, prefix=self._config.prefix, ext=".json" + self._codec.suffix,
            partition=Partition.of(entry.created), record_id=entry.record_id)
        return Job([entry], key, entry.record_id)

    def batch_job(self, batch: Batch) -> Job:
        """The job that uploads one batch as an NDJSON object under a new unique key.

        ``{seq}`` numbers this handler's batches 1, 2, 3, ...
        """
        seq = next(self._batch_seq)  # atomic under the GIL: no lock needed
        key = render_key(self._config.key_template, prefix=self._config.prefix,
                         partition=batch.partition, ext=".ndjson" + self._codec.suffix, seq=seq)
        return Job(batch.entries, key, "")

    def attempt(self, job: Job) -> UploadFailure | None:
        """Try to upload ``job`` once (botocore retries inside).

        On success the records count as delivered and leave the spool; when S3 rejects
        the object itself they are dead-lettered. Returns ``None`` on success, else the
        failure: ``REJECTED`` ones are already dead-lettered (final, not delivered), any other
        kind means the job should be retried later (its records stay queued).
        """
        if job.body is None:
            job.body = self._codec.compress(b"".join(e.body for e in job.entries))
        failure = self._uploader.put(job.key, job.body, record_id=job.record_id,
                                     content_encoding=self._codec.content_encoding)
        if failure is None:
            self._counters.move("queued", "delivered", len(job.entries))
            self._counters.add(bytes_sent=len(job.body), objects_sent=1)
            self._release(job.entries)
            return None
        self._counters.add(failed=1)
        self._reports.report(
            failure.code, logging.ERROR,
            "S3 upload to s3://%s/%s failed: %s: %s. Hint: %s.", self._config.bucket,
            job.key, failure.code, failure.message, failure.hint)
        if failure.kind is FailureKind.REJECTED:
            self.dead_letter(job.entries, failure.code, source="queued")
        return failure

    def recover_abandoned(self) -> int:
        """Adopt the spool segments nobody owns any more; count their records ``recovered``
        (held ``spooled`` until loaded) and dead-letter torn lines. Returns how many."""
        if self._spool is None:
            return 0
        adopted, torn = self._spool.adopt_abandoned()
        if torn:
            self.dead_letter(torn, "torn_write", source="recovered")
        if adopted:
            self._counters.arrive("recovered", "spooled", adopted)
            logger.info("S3Handler found %d undelivered records in %s; delivering them",
                        adopted, self._spool.directory)
        return adopted

    def dead_letter(self, entries: Sequence[Entry], reason: str, *, source: str) -> None:
        """Give ``entries`` their final outcome ``dead_lettered`` with ``reason``.

        ``source`` is ``"queued"`` for records that were waiting in memory, ``"emitted"`` for
        records refused at emit time, ``"recovered"`` for unreadable records found on disk.
        With a spool they are kept in ``dead/``.
        """
        if source in SOURCES:
            self._counters.arrive(source, "dead_lettered", len(entries), reason)
        else:
            self._counters.move(source, "dead_lettered", len(entries), reason)
        if self._spool is None:
            return
        for entry in entries:
            if not self._spool.dead_letter(entry, reason):
                self._reports.report("dead-letter-full", logging.ERROR,
                                     "dead-letter area %s is full or unwritable; record kept "
                                     "only in the counters", self._spool.dead_dir)

    def _release(self, entries: Sequence[Entry]) -> None:
        if self._spool is None:
            return
        for entry in entries:
            if entry.ref is not None:
                self._spool.resolve(entry.ref)
