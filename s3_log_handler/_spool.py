"""Write-ahead spool: records reach disk before ``emit()`` returns and leave it once delivered.

Layout of ``spool_dir`` (directories ``0700``, files ``0600``, owned by this euid)::

    <ms>-<pid>-<rand>.seg    segments: one record per line, ``<header json>\\t<body json>\\n``
    dead/<ms>-<rand>.json    dead letters: one record that can never be uploaded, with its reason

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
from collections.abc import Callable
from dataclasses import dataclass, field

from ._deadletters import write_dead_letter
from ._diagnostics import Reports
from ._records import Entry, SpoolRef
from ._segment_files import (
    SEGMENT_SUFFIX,
    ForeignFile,
    create_locked,
    fsync_directory,
    lock_abandoned,
    read_lines,
    rewrite_without,
    segment_path,
)
from ._segment_lines import TORN_WRITE, Line, encode_line
from ._spool_dir import prepare_spool_dir, refuse_if_not_ours
from ._spool_trust import Rejected, vet

#: A segment is sealed (and a new one started) past this size.
SEGMENT_BYTES = 4 * 1024 * 1024
FSYNC_INTERVAL = 1.0


@dataclass(slots=True)
class _Segment:
    name: str
    fd: int
    size: int = 0
    total: int = 0
    resolved: int = 0
    #: Indices of the resolved records: left out when a kept segment is handed on.
    done: set[int] = field(default_factory=set)
    sealed: bool = False
    #: Indices of records in an upload right now: a closing owner keeps the lock meanwhile.
    in_flight: set[int] = field(default_factory=set)
    #: Records held only on disk (spilled, or adopted from a dead owner): index -> seq.
    disk_only: dict[int, int] = field(default_factory=dict)


class Spool:
    """A directory of write-ahead segments owned by one handler in one process.

    Raises ``OSError`` only at construction (the directory cannot be created, or is not
    ours: :class:`~._spool_dir.UnsafeSpoolDir`) and from the keeper's reads; every method a
    record passes through reports and carries on. ``mac_key`` makes every line carry an
    HMAC; ``key_check`` says whether a line read back may be uploaded under its key.
    """

    def __init__(self, directory: str, fsync: str = "never", reports: Reports | None = None,
                 *, mac_key: bytes | None = None,
                 key_check: Callable[[Entry], bool] | None = None) -> None:
        self.directory = directory
        self.dead_dir = prepare_spool_dir(directory)
        self._mac_key = mac_key
        self._key_check = key_check
        #: Why the spool switched itself off (its directory is no longer ours), else None.
        self._off: str | None = None
        #: Lines read back that must not be uploaded, for the keeper to dead-letter.
        self.rejected = Rejected()
        self._fsync = fsync
        self._reports = reports or Reports()
        self._lock = threading.Lock()
        self._segments: dict[str, _Segment] = {}
        self._active: _Segment | None = None
        self._closed = False
        self._last_sync = time.monotonic()

    # -- writing -------------------------------------------------------------------------
    def append(self, entry: Entry) -> Entry:
        """Write ``entry`` to the active segment and set its :class:`SpoolRef`; when the disk
        fails or the spool is off, report it and return ``entry`` without one (held in
        memory only)."""
        if self._off is not None:
            return entry
        line = encode_line(entry, self._mac_key)
        with self._lock:
            try:
                segment = self._writable_segment()
                self._write(segment, line)
            except Exception as exc:  # disk full, permissions, a bug: kept in memory only
                self._reports.report("spool-write", logging.ERROR,
                                     "cannot write to spool %s (%s); records are held in "
                                     "memory only until it works again", self.directory, exc,
                                     outage="spool")
                return entry
            entry.ref = SpoolRef(segment.name, segment.total)
            segment.total += 1
            segment.size += len(line)
            if self._fsync == "always":
                self._sync(segment)
            if segment.size >= SEGMENT_BYTES:
                self._seal(segment)
        if self._reports.failing("spool"):
            self._reports.recovered("spool", f"spool {self.directory}")
        return entry

    def _write(self, segment: _Segment, line: bytes) -> None:
        written = os.write(segment.fd, line)  # when this raises, nothing was written
        if written != len(line):
            try:  # cut the half line off, or the next record would join it
                os.ftruncate(segment.fd, segment.size)
            except Exception:
                self._seal(segment)  # nothing more may land behind a half line
            raise OSError(errno.ENOSPC, "short write to spool segment", segment.name)

    def _sync(self, segment: _Segment) -> None:
        try:
            os.fsync(segment.fd)
        except Exception as exc:  # the line is written (and counted): only its durability waits
            self._reports.report("spool-fsync", logging.ERROR,
                                 "cannot fsync spool %s (%s); records are written but may not "
                                 "survive a power loss", self.directory, exc, outage="spool")

    def _writable_segment(self) -> _Segment:
        if self._active is None:
            name = f"{int(time.time() * 1000):013d}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            fd = create_locked(self.directory, name)
            self._active = self._segments[name] = _Segment(name, fd)
            if self._fsync != "never":
                with contextlib.suppress(Exception):
                    fsync_directory(self.directory)
        return self._active

    def sync_if_due(self) -> None:
        """With ``fsync="interval"``, flush the active segment to stable storage once a second.

        The fsync runs outside the spool's lock, so ``append`` (the caller's thread) does not
        wait for it (only ``fsync="always"`` makes each append wait for the disk).
        """
        if self._fsync != "interval" or time.monotonic() - self._last_sync < FSYNC_INTERVAL:
            return
        with self._lock:
            self._last_sync = time.monotonic()
            if self._active is None:
                return
            fd = os.dup(self._active.fd)  # the segment may be sealed and closed meanwhile
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # -- bookkeeping ---------------------------------------------------------------------
    def mark_disk_only(self, ref: SpoolRef, seq: int) -> None:
        """Note that the record at ``ref`` (sequence ``seq``) is not in memory: reload it later."""
        with self._lock:
            self._segments[ref.segment].disk_only[ref.index] = seq

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
            segment = self._segments.get(ref.segment)
            if segment is None or ref.index in segment.done:
                return
            segment.resolved += 1
            segment.done.add(ref.index)
            segment.in_flight.discard(ref.index)
            if segment is self._active and segment.resolved >= segment.total:
                # Everything written so far is delivered: start afresh so that a crash
                # cannot make a later process re-send it.
                self._seal(segment)
            else:
                self._finish(segment)

    def uploading(self, refs: list[SpoolRef], *, now: bool) -> None:
        """Mark records as in an upload (``now``) or no longer (a failed attempt): while any
        is, ``close`` keeps its segment locked, so the next owner cannot send it again."""
        with self._lock:
            for ref in refs:
                segment = self._segments.get(ref.segment)
                if segment is None:
                    continue
                if now:
                    segment.in_flight.add(ref.index)
                else:
                    segment.in_flight.discard(ref.index)
                    self._finish(segment)

    def retry_deletes(self) -> None:
        """Delete again the finished segments whose deletion failed (the keeper calls this)."""
        with self._lock:
            for segment in list(self._segments.values()):
                self._finish(segment)

    def load_backlog(self, max_bytes: int) -> list[Entry]:
        """Read up to ``max_bytes`` (as :attr:`Entry.memory_cost` counts them) of disk-only
        records back, oldest segment first.

        Raises ``OSError`` when no segment can be read; records stay disk-only until read."""
        loaded: list[Entry] = []
        budget = max_bytes
        with self._lock:
            if self._closed:
                return loaded
            if self._active is not None and self._active.disk_only:
                self._seal(self._active)
            for segment in sorted(self._segments.values(), key=lambda s: s.name):
                if budget <= 0:
                    break
                if not segment.disk_only or not segment.sealed:
                    continue
                try:
                    lines = self._read(segment)
                except Exception:
                    if loaded:
                        break  # hand back what was read; the rest waits for the next round
                    raise
                for index, entry, problem in lines:
                    if index not in segment.disk_only:
                        continue
                    if problem is not None or entry is None:
                        self.rejected.add(problem, entry, SpoolRef(segment.name, index),
                                          seq=segment.disk_only.pop(index))
                        continue
                    entry.seq = segment.disk_only.pop(index)
                    entry.ref = SpoolRef(segment.name, index)
                    loaded.append(entry)
                    budget -= entry.memory_cost
                    if budget <= 0:
                        break
        return loaded

    # -- recovery ------------------------------------------------------------------------
    def adopt_abandoned(self) -> tuple[int, list[Entry]]:
        """Lock every segment whose owner is gone and take its records as disk-only.

        Returns ``(records, torn)``: how many complete records were adopted, and the torn
        lines (a write cut short by a crash), which the caller dead-letters; lines that
        fail their checks go to :attr:`rejected`. When the directory is no longer ours,
        the spool switches itself off (one ERROR) and adopts nothing.
        """
        adopted = 0
        torn: list[Entry] = []
        self._off = self._off or refuse_if_not_ours(self.directory, self._reports)
        if self._off is not None:
            return adopted, torn
        for name in sorted(os.listdir(self.directory)):
            if not name.endswith(SEGMENT_SUFFIX):
                continue
            name = name.removesuffix(SEGMENT_SUFFIX)
            with self._lock:
                if self._closed:
                    break
                if name in self._segments:
                    continue
                try:
                    segment = self._try_lock(name)
                except ForeignFile as exc:
                    self._reports.report(f"spool-foreign-file-{name}", logging.WARNING,
                                         "not adopting %s in spool %s: %s", name,
                                         self.directory, exc.strerror)
                    continue
                if segment is None:
                    continue
                try:
                    lines = self._read(segment)
                except Exception as exc:  # unlock it and carry on: tried again next round
                    with contextlib.suppress(Exception):
                        os.close(segment.fd)
                    self._reports.report("spool-adopt", logging.ERROR,
                                         "cannot read abandoned spool segment %s (%s); will "
                                         "retry", name, exc, outage="spool")
                    continue
                for index, entry, problem in lines:
                    segment.total += 1
                    if problem is None and entry is not None:
                        segment.disk_only[index] = -1
                        adopted += 1
                    elif problem == TORN_WRITE:
                        torn.append(Entry(b"", 0.0, "", None, ref=SpoolRef(name, index),
                                          source="recovered"))
                    else:
                        self.rejected.add(problem, entry, SpoolRef(name, index))
                self._segments[name] = segment
                self._finish(segment)
        return adopted, torn

    def _try_lock(self, name: str) -> _Segment | None:
        fd = lock_abandoned(self._path(name))
        return None if fd is None else _Segment(name, fd, sealed=True)

    # -- dead letters --------------------------------------------------------------------
    def keep_letters(self, entries: list[Entry], reason: str) -> None:
        """Keep each of ``entries`` in ``dead/`` with ``reason``; when the area is full or
        fails, report it (the records stay counted ``dead_lettered``). Never raises. With
        the spool off (its directory not ours) no letter is written there."""
        if self._off is not None:
            return
        for entry in entries:
            try:
                kept = write_dead_letter(self.dead_dir, entry, reason)
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
            self._closed = True
            if self._active is not None:
                self._seal(self._active)
            for segment in list(self._segments.values()):
                self._finish(segment)

    def forget_after_fork(self) -> None:
        """In a forked child: drop the parent's segments (the parent still owns and locks them)."""
        self._lock = threading.Lock()
        for segment in self._segments.values():
            os.close(segment.fd)
        self._segments = {}
        self._active = None

    def _seal(self, segment: _Segment) -> None:
        if self._fsync == "interval" and segment.resolved < segment.total:
            self._sync(segment)  # its last second of records would miss the periodic sync
        segment.sealed = True
        if segment is self._active:
            self._active = None
        self._finish(segment)

    def _finish(self, segment: _Segment) -> None:
        """Delete a sealed segment whose records are all resolved; after close, unlock (and
        keep for the next owner) one with no upload in flight."""
        if not segment.sealed:
            return
        done = segment.resolved >= segment.total
        if not (done or (self._closed and not segment.in_flight)):
            return
        if done and not self._unlink(segment.name):
            return  # still locked, so no one adopts it; retry_deletes tries again
        if not done and segment.done:
            self._compact(segment)
        with contextlib.suppress(Exception):
            os.close(segment.fd)
        del self._segments[segment.name]

    def _unlink(self, name: str) -> bool:
        try:
            os.unlink(self._path(name))
        except FileNotFoundError:
            pass
        except Exception as exc:
            self._reports.report("spool-delete", logging.ERROR,
                                 "cannot delete a delivered spool segment in %s (%s); will "
                                 "retry", self.directory, exc, outage="spool")
            return False
        return True

    def _compact(self, segment: _Segment) -> None:
        """Rewrite a segment handed on to the next owner without its resolved lines, so
        records delivered before close are never sent again (still locked: no one reads).
        When that fails the segment is handed on whole, and the failure reported."""
        try:
            rewrite_without(self._path(segment.name), segment.done, segment.fd,
                            fsync=self._fsync != "never")
        except Exception as exc:
            self._reports.report("spool-compact", logging.ERROR,
                                 "cannot hand over spool segment %s without its delivered "
                                 "records (%s); the next owner sends them again",
                                 segment.name, exc)

    def _read(self, segment: _Segment) -> list[Line]:
        return vet(read_lines(self._path(segment.name), segment.fd, self._mac_key),
                   self._key_check)

    def _path(self, name: str) -> str:
        return segment_path(self.directory, name)
