"""Write-ahead spool: records reach disk before ``emit()`` returns and leave it once delivered.

Layout of ``spool_dir`` (directories ``0700``, files ``0600``, owned by this euid)::

    <ms>-<pid>-<rand>.seg    segments: a settings line, then one record per line,
                             ``<header json>\\t<body json>\\n``
    dead/<ms>-<rand>.json    dead letters: one record that can never be uploaded, with its reason

The segments held stay within ``max_bytes`` (``max_spool_bytes``): past it ``append``
reports it and leaves the record in memory only (the ledger's ``when_full`` then decides,
and its drops are counted ``spool_full``). Which segment holds what is kept as runs per
segment (:mod:`._segment_table`), so records held only on disk cost no memory per record.
A segment whose settings line records security settings this spool's uploads would not keep
(:mod:`._spool_meta`) is not adopted.

The directory and ``dead/`` are checked at start and before every adoption
(:mod:`._spool_dir`); a line read back is checked before it may be uploaded
(:mod:`._spool_trust`).

A live process holds an exclusive ``flock`` on each segment it owns, so another process (or a
later handler in the same process) adopts only segments whose owner is gone. A segment is
deleted once every record in it is delivered or dead-lettered.

The spool reports its own disk errors (rate-limited, with a line when the disk works again)
and never raises into the record path: ``append`` that cannot write leaves the record in
memory only, a deletion that fails is retried by :meth:`Spool.retry_deletes`. Only the
keeper's reads (:meth:`Spool.adopt_abandoned`, :meth:`Spool.load_backlog`,
:meth:`Spool.sync_if_due`) raise ``OSError``, for the keeper to report and retry.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping

from ._diagnostics import Reports
from ._letter_area import LetterArea
from ._records import Entry, SpoolRef
from ._segment_files import create_locked, fsync_directory, read_segment, segment_path
from ._segment_lines import Line, encode_line, settings_line
from ._segment_table import Segment, SegmentTable
from ._settings import DEFAULT_MAX_DEAD_LETTER_BYTES, DEFAULT_MAX_SPOOL_BYTES
from ._spool_dir import prepare_spool_dir
from ._spool_recovery import SpoolRecovery
from ._spool_trust import Rejected, vet

#: A segment is sealed (and a new one started) past this size.
SEGMENT_BYTES = 4 * 1024 * 1024
FSYNC_INTERVAL = 1.0


class Spool(SpoolRecovery):
    """A directory of write-ahead segments owned by one handler in one process.

    Raises ``OSError`` only at construction (the directory cannot be created, or is not
    ours: :class:`~._spool_dir.UnsafeSpoolDir`) and from the keeper's reads; every method a
    record passes through reports and carries on. ``mac_key`` makes every line carry an
    HMAC; ``key_check`` says whether a line read back may be uploaded under its key;
    ``put`` are the put settings recorded in each new segment and dead letter (and required
    of segments adopted); ``max_bytes`` bounds the segments, ``max_dead_letter_bytes`` the
    dead letters.
    """

    def __init__(self, directory: str, fsync: str = "never", reports: Reports | None = None,
                 *, mac_key: bytes | None = None,
                 key_check: Callable[[Entry], bool] | None = None,
                 max_bytes: int = DEFAULT_MAX_SPOOL_BYTES,
                 max_dead_letter_bytes: int = DEFAULT_MAX_DEAD_LETTER_BYTES,
                 put: Mapping[str, str] | None = None) -> None:
        self.directory = directory
        self.dead_dir = prepare_spool_dir(directory)
        self.letters = LetterArea(self.dead_dir, max_dead_letter_bytes, put)
        self.max_bytes = max_bytes
        self._put = dict(put or {})
        self._settings_line = settings_line(self._put)
        self._mac_key = mac_key
        self._key_check = key_check
        #: Why the spool switched itself off (its directory is no longer ours), else None.
        self._off: str | None = None
        #: True while appends are refused because the segments reached ``max_bytes``.
        self.full = False
        #: Lines read back that must not be uploaded, for the keeper to dead-letter.
        self.rejected = Rejected()
        self._fsync = fsync
        self._reports = reports or Reports()
        self._lock = threading.Lock()
        self._table = SegmentTable(directory, fsync, self._reports)
        self._not_adopted: set[str] = set()
        self._last_sync = time.monotonic()

    @property
    def disk_bytes(self) -> int:
        """Bytes of the segments this spool holds (what ``max_bytes`` bounds)."""
        return self._table.bytes

    # -- writing -------------------------------------------------------------------------
    def append(self, entry: Entry) -> Entry:
        """Write ``entry`` to the active segment and set its :class:`SpoolRef`; when the disk
        fails, the spool is full or off, report it and return ``entry`` without one (held
        in memory only)."""
        if self._off is not None:
            return entry
        line = encode_line(entry, self._mac_key)
        with self._lock:
            full = self._table.bytes + len(line) > self.max_bytes
            self.full = full
            try:
                if not full:
                    segment = self._writable_segment()
                    self._write(segment, line)
            except Exception as exc:  # disk full, permissions, a bug: kept in memory only
                self._reports.report("spool-write", logging.ERROR,
                                     "cannot write to spool %s (%s); records are held in "
                                     "memory only until it works again", self.directory, exc,
                                     outage="spool")
                return entry
            if not full:
                entry.ref = SpoolRef(segment.name, segment.total)
                segment.total += 1
                self._table.wrote(segment, len(line))
                if self._fsync == "always":
                    self._table.sync(segment)
                if segment.size >= SEGMENT_BYTES:
                    self._table.seal(segment)
        if full:
            self._reports.report("spool-full", logging.WARNING,
                                 "spool %s is full (max_spool_bytes=%d); new records are held "
                                 "in memory only while the queue has room, else dropped "
                                 "(spool_full)", self.directory, self.max_bytes, outage="spool")
        elif self._reports.failing("spool"):
            self._reports.recovered("spool", f"spool {self.directory}")
        return entry

    def _write(self, segment: Segment, line: bytes) -> None:
        written = os.write(segment.fd, line)  # when this raises, nothing was written
        if written != len(line):
            try:  # cut the half line off, or the next record would join it
                os.ftruncate(segment.fd, segment.size)
            except Exception:
                self._table.seal(segment)  # nothing more may land behind a half line
            raise OSError(errno.ENOSPC, "short write to spool segment", segment.name)

    def _writable_segment(self) -> Segment:
        if self._table.active is None:
            name = f"{int(time.time() * 1000):013d}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            fd = create_locked(self.directory, name, self._settings_line)
            self._table.add(Segment(name, fd, size=len(self._settings_line)), active=True)
            if self._fsync != "never":
                with contextlib.suppress(Exception):
                    fsync_directory(self.directory)
        assert self._table.active is not None
        return self._table.active

    def sync_if_due(self) -> None:
        """With ``fsync="interval"``, flush the active segment to stable storage once a second.

        The fsync runs outside the spool's lock, so ``append`` (the caller's thread) does not
        wait for it (only ``fsync="always"`` makes each append wait for the disk).
        """
        if self._fsync != "interval" or time.monotonic() - self._last_sync < FSYNC_INTERVAL:
            return
        with self._lock:
            self._last_sync = time.monotonic()
            if self._table.active is None:
                return
            fd = os.dup(self._table.active.fd)  # the segment may be sealed and closed meanwhile
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # -- bookkeeping ---------------------------------------------------------------------
    def mark_disk_only(self, ref: SpoolRef, seq: int) -> None:
        """Note that the record at ``ref`` (sequence ``seq``) is not in memory: reload it later."""
        with self._lock:
            segment = self._table.get(ref.segment)
            if segment is not None:
                segment.disk_only.add(ref.index, seq)

    def release(self, refs: list[SpoolRef]) -> None:
        """The records at ``refs`` have their final outcome: :meth:`resolve` each. Never
        raises: a failed deletion is reported and retried by :meth:`retry_deletes`."""
        for ref in refs:
            try:
                self.resolve(ref)
            except Exception as exc:
                self._reports.report("spool-release", logging.ERROR,
                                     "cannot release a delivered record in spool %s (%s); "
                                     "will retry", self.directory, exc, outage="spool")

    def resolve(self, ref: SpoolRef) -> None:
        """The record at ``ref`` has its final outcome; delete its segment once all have.
        Resolving the same record twice changes nothing."""
        with self._lock:
            self._table.resolve(ref)

    def uploading(self, refs: list[SpoolRef], *, now: bool) -> None:
        """Mark records as in an upload (``now``) or no longer (a failed attempt): while any
        is, ``close`` keeps its segment locked, so the next owner cannot send it again."""
        with self._lock:
            self._table.uploading(refs, now=now)

    def retry_deletes(self) -> None:
        """Delete again the finished segments whose deletion failed (the keeper calls this)."""
        with self._lock:
            self._table.retry_deletes()

    # -- dead letters --------------------------------------------------------------------
    def keep_letters(self, entries: list[Entry], reason: str) -> None:
        """Keep each of ``entries`` in ``dead/`` with ``reason``; when the area is full or
        fails, report it (the records stay counted ``dead_lettered``). Never raises. With
        the spool off (its directory not ours) no letter is written there."""
        if self._off is not None:
            return
        for entry in entries:
            try:
                kept = self.letters.keep(entry, reason)
            except Exception:  # a bug or an unexpected error must not cost the record path
                kept = False
            if not kept:
                self._reports.report("dead-letter-full", logging.ERROR,
                                     "dead-letter area %s is full or unwritable; record kept "
                                     "only in the counters", self.dead_dir)

    # -- lifecycle -----------------------------------------------------------------------
    def close(self) -> None:
        """Seal every segment and unlock it; what is not delivered stays on disk for replay.

        A segment with uploads still in flight stays locked until they end (``resolve`` or
        ``release``), so the next owner never re-sends a record that then arrives anyway.
        """
        with self._lock:
            self._table.close()

    def forget_after_fork(self) -> None:
        """In a forked child: drop the parent's segments (the parent still owns and locks them)."""
        self._lock = threading.Lock()
        self.letters.after_fork()
        for segment in self._table.clear():
            os.close(segment.fd)

    def _read(self, segment: Segment) -> tuple[dict[str, str] | None, list[Line], int]:
        settings, lines, size = read_segment(self._path(segment.name), segment.fd,
                                             self._mac_key)
        return settings, vet(lines, self._key_check), size

    def _path(self, name: str) -> str:
        return segment_path(self.directory, name)
