"""The spool's bookkeeping of its segments: which records each holds, and the bytes on disk.

Per segment: how many records it holds and how many have their final outcome, the lines
already resolved (left out when a kept segment is handed on), the lines in an upload right
now, and the lines held only on disk with their sequence numbers. Resolved and disk-only
lines are kept as runs (:mod:`._runs`), so a long outage that spills a million records to
disk costs a few runs per segment in memory, not a dict entry per record. The table also
sums the segments' sizes, which ``max_spool_bytes`` bounds, and ends each segment's life:
sealed, then deleted once every record in it has its outcome, or at close handed on
(rewritten without its resolved lines, and unlocked) to the next owner.

Not thread-safe: :class:`~._spool.Spool` uses it under its lock. It reports its own disk
errors and never raises from those steps.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, field

from ._diagnostics import Reports
from ._records import SpoolRef
from ._runs import IndexRuns, SeqRuns
from ._segment_files import rewrite_without, segment_path


@dataclass(slots=True, eq=False)
class Segment:
    """One segment file held (and ``flock``-ed through ``fd``) by this spool."""

    name: str
    fd: int
    #: Bytes in the file (its settings header included).
    size: int = 0
    #: Records written to it (or found in it, for an adopted one).
    total: int = 0
    #: Records with their final outcome.
    resolved: int = 0
    sealed: bool = False
    #: Lines of the resolved records: left out when a kept segment is handed on.
    done: IndexRuns = field(default_factory=IndexRuns)
    #: Lines in an upload right now (at most what memory holds): a closing owner keeps the
    #: lock meanwhile, so the next owner cannot send them again.
    in_flight: set[int] = field(default_factory=set)
    #: Lines held only on disk (spilled, or adopted from a dead owner), with their numbers.
    disk_only: SeqRuns = field(default_factory=SeqRuns)

    @property
    def all_resolved(self) -> bool:
        """True when every record written to it has its final outcome."""
        return self.resolved >= self.total

    def resolve(self, index: int) -> bool:
        """Line ``index`` has its final outcome; False when it already had one."""
        if not self.done.add(index):
            return False
        self.resolved += 1
        self.in_flight.discard(index)
        return True


class SegmentTable:
    """The segments one spool in ``directory`` holds, the active one (appended to), their
    total size, and their life: seal, delete, hand on at close."""

    def __init__(self, directory: str, fsync: str, reports: Reports) -> None:
        self.directory = directory
        self._fsync = fsync
        self._reports = reports
        self._segments: dict[str, Segment] = {}
        self.active: Segment | None = None
        #: Bytes of every segment held, as written (what ``max_spool_bytes`` bounds).
        self.bytes = 0
        #: Set by :meth:`close`: segments are then handed on rather than kept.
        self.closed = False

    def __contains__(self, name: object) -> bool:
        return name in self._segments

    def get(self, name: str) -> Segment | None:
        """The segment called ``name``, if this spool holds it."""
        return self._segments.get(name)

    def all(self) -> list[Segment]:
        """Every segment held (a copy: the caller may remove some meanwhile)."""
        return list(self._segments.values())

    def oldest_first(self) -> list[Segment]:
        """Every segment held, oldest name (creation time) first."""
        return sorted(self._segments.values(), key=lambda s: s.name)

    def add(self, segment: Segment, *, active: bool = False) -> None:
        """Hold ``segment`` (and append to it from now on, when ``active``)."""
        self._segments[segment.name] = segment
        self.bytes += segment.size
        if active:
            self.active = segment

    def wrote(self, segment: Segment, size: int) -> None:
        """``size`` more bytes were appended to ``segment``."""
        segment.size += size
        self.bytes += size

    def resized(self, segment: Segment, size: int) -> None:
        """``segment`` is ``size`` bytes now (rewritten without its resolved lines)."""
        self.bytes += size - segment.size
        segment.size = size

    def remove(self, segment: Segment) -> None:
        """Stop holding ``segment`` (deleted, or handed on to the next owner)."""
        if self._segments.pop(segment.name, None) is not None:
            self.bytes -= segment.size
        if self.active is segment:
            self.active = None

    def clear(self) -> list[Segment]:
        """Forget every segment (in a forked child) and return them."""
        segments = list(self._segments.values())
        self._segments = {}
        self.active = None
        self.bytes = 0
        return segments

    # -- a record's outcome ------------------------------------------------------------------
    def resolve(self, ref: SpoolRef) -> None:
        """The record at ``ref`` has its final outcome; delete its segment once all have.
        Resolving the same record twice changes nothing."""
        segment = self._segments.get(ref.segment)
        if segment is None or not segment.resolve(ref.index):
            return
        if segment is self.active and segment.all_resolved:
            # Everything written so far is delivered: start afresh so that a crash
            # cannot make a later process re-send it.
            self.seal(segment)
        else:
            self.finish(segment)

    def uploading(self, refs: list[SpoolRef], *, now: bool) -> None:
        """Mark records as in an upload (``now``) or no longer (a failed attempt)."""
        for ref in refs:
            segment = self._segments.get(ref.segment)
            if segment is None:
                continue
            if now:
                segment.in_flight.add(ref.index)
            else:
                segment.in_flight.discard(ref.index)
                self.finish(segment)

    # -- a segment's life -------------------------------------------------------------------
    def sync(self, segment: Segment) -> None:
        """fsync ``segment``; a failure is reported (the lines stay written and counted)."""
        try:
            os.fsync(segment.fd)
        except Exception as exc:  # only the durability of written lines waits
            self._reports.report("spool-fsync", logging.ERROR,
                                 "cannot fsync spool %s (%s); records are written but may not "
                                 "survive a power loss", self.directory, exc, outage="spool")

    def seal(self, segment: Segment) -> None:
        """Append nothing more to ``segment``; delete it if every record is resolved."""
        if self._fsync == "interval" and not segment.all_resolved:
            self.sync(segment)  # its last second of records would miss the periodic sync
        segment.sealed = True
        if segment is self.active:
            self.active = None
        self.finish(segment)

    def finish(self, segment: Segment) -> None:
        """Delete a sealed segment whose records are all resolved; after close, unlock (and
        keep for the next owner) one with no upload in flight."""
        if not segment.sealed:
            return
        done = segment.all_resolved
        if not (done or (self.closed and not segment.in_flight)):
            return
        if done and not self._unlink(segment.name):
            return  # still locked, so no one adopts it; retry_deletes tries again
        if not done and segment.done:
            self._compact(segment)
        with contextlib.suppress(Exception):
            os.close(segment.fd)
        self.remove(segment)

    def retry_deletes(self) -> None:
        """Delete again the finished segments whose deletion failed."""
        for segment in self.all():
            self.finish(segment)

    def close(self) -> None:
        """Seal every segment and hand on (unlock) those with records left."""
        self.closed = True
        if self.active is not None:
            self.seal(self.active)
        for segment in self.all():
            self.finish(segment)

    def _unlink(self, name: str) -> bool:
        try:
            os.unlink(segment_path(self.directory, name))
        except FileNotFoundError:
            pass
        except Exception as exc:
            self._reports.report("spool-delete", logging.ERROR,
                                 "cannot delete a delivered spool segment in %s (%s); will "
                                 "retry", self.directory, exc, outage="spool")
            return False
        return True

    def _compact(self, segment: Segment) -> None:
        """Rewrite a segment handed on to the next owner without its resolved lines, so
        records delivered before close are never sent again (still locked: no one reads).
        When that fails the segment is handed on whole, and the failure reported."""
        try:
            size = rewrite_without(segment_path(self.directory, segment.name), segment.done,
                                   segment.fd, fsync=self._fsync != "never")
        except Exception as exc:
            self._reports.report("spool-compact", logging.ERROR,
                                 "cannot hand over spool segment %s without its delivered "
                                 "records (%s); the next owner sends them again",
                                 segment.name, exc)
        else:
            self.resized(segment, size)
