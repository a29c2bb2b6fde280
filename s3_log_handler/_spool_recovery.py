"""Reading records back from disk: a dead owner's segments (adoption) and spilled records.

Part of :class:`~._spool.Spool` (a base class, so the spool keeps one lock and one table):
the keeper's side of the spool. Both steps raise ``OSError`` for the keeper to report and
retry; lines that fail their checks go to :attr:`rejected` for the keeper to dead-letter,
never to an upload.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading

from ._diagnostics import Reports
from ._records import Entry, SpoolRef
from ._segment_files import SEGMENT_SUFFIX, ForeignFile, lock_abandoned, segment_path
from ._segment_lines import TORN_WRITE, Line
from ._segment_table import Segment, SegmentTable
from ._spool_dir import refuse_if_not_ours
from ._spool_meta import describe, flags, unmet
from ._spool_trust import Rejected


class SpoolRecovery:
    """Adoption and backlog reads; the attributes below are set by :class:`~._spool.Spool`."""

    directory: str
    rejected: Rejected
    _lock: threading.Lock
    _table: SegmentTable
    _reports: Reports
    _put: dict[str, str]
    _off: str | None
    #: Abandoned segments not adopted: our uploads would weaken their settings.
    _not_adopted: set[str]

    def _read(self, segment: Segment) -> tuple[dict[str, str] | None, list[Line], int]:
        raise NotImplementedError

    def load_backlog(self, max_bytes: int) -> list[Entry]:
        """Read up to ``max_bytes`` (as :attr:`Entry.memory_cost` counts them) of disk-only
        records back, oldest segment first.

        Raises ``OSError`` when no segment can be read; records stay disk-only until read."""
        loaded: list[Entry] = []
        budget = max_bytes
        with self._lock:
            if self._table.closed:
                return loaded
            active = self._table.active
            if active is not None and active.disk_only:
                self._table.seal(active)
            for segment in self._table.oldest_first():
                if budget <= 0:
                    break
                if not segment.disk_only or not segment.sealed:
                    continue
                try:
                    lines = self._read(segment)[1]
                except Exception:
                    if loaded:
                        break  # hand back what was read; the rest waits for the next round
                    raise
                for index, entry, problem in lines:
                    seq = segment.disk_only.pop(index)
                    if seq is None:
                        continue
                    if problem is not None or entry is None:
                        self.rejected.add(problem, entry, SpoolRef(segment.name, index), seq=seq)
                        continue
                    entry.seq, entry.ref = seq, SpoolRef(segment.name, index)
                    loaded.append(entry)
                    budget -= entry.memory_cost
                    if budget <= 0:
                        break
        return loaded

    def adopt_abandoned(self) -> tuple[int, list[Entry]]:
        """Lock every segment whose owner is gone and take its records as disk-only.

        Returns ``(records, torn)``: how many complete records were adopted, and the torn
        lines (a write cut short by a crash), which the caller dead-letters; lines that
        fail their checks go to :attr:`rejected`. When the directory is no longer ours,
        the spool switches itself off (one ERROR) and adopts nothing. A segment written
        with security settings our uploads would not keep is left alone (one WARNING).
        """
        adopted = 0
        torn: list[Entry] = []
        self._off = self._off or refuse_if_not_ours(self.directory, self._reports)
        if self._off is not None:
            return adopted, torn
        for name in sorted(os.listdir(self.directory)):
            name = name.removesuffix(SEGMENT_SUFFIX) if name.endswith(SEGMENT_SUFFIX) else ""
            with self._lock:
                if self._table.closed:
                    break
                if not name or name in self._table or name in self._not_adopted:
                    continue
                segment = self._try_lock(name)
                if segment is None:
                    continue
                try:
                    settings, lines, segment.size = self._read(segment)
                except Exception as exc:  # unlock it and carry on: tried again next round
                    with contextlib.suppress(Exception):
                        os.close(segment.fd)
                    self._reports.report("spool-adopt", logging.ERROR,
                                         "cannot read abandoned spool segment %s (%s); will "
                                         "retry", name, exc, outage="spool")
                    continue
                if not self._may_upload(segment, settings):
                    continue
                for index, entry, problem in lines:
                    segment.total += 1
                    if problem is None and entry is not None:
                        segment.disk_only.add(index, -1)
                        adopted += 1
                    elif problem == TORN_WRITE:
                        torn.append(Entry(b"", 0.0, "", None, ref=SpoolRef(name, index),
                                          source="recovered"))
                    else:
                        self.rejected.add(problem, entry, SpoolRef(name, index))
                self._table.add(segment)
                self._table.finish(segment)
        return adopted, torn

    def _try_lock(self, name: str) -> Segment | None:
        try:
            fd = lock_abandoned(segment_path(self.directory, name))
        except ForeignFile as exc:
            self._reports.report(f"spool-foreign-file-{name}", logging.WARNING,
                                 "not adopting %s in spool %s: %s", name, self.directory,
                                 exc.strerror)
            return None
        return None if fd is None else Segment(name, fd, sealed=True)

    def _may_upload(self, segment: Segment, settings: dict[str, str] | None) -> bool:
        """False (the segment unlocked and left alone, one WARNING) when its records were
        written with security settings that our uploads would not keep."""
        missing = unmet(settings, self._put)
        if not missing:
            return True
        with contextlib.suppress(Exception):
            os.close(segment.fd)
        self._not_adopted.add(segment.name)
        self._reports.report(f"spool-settings-{segment.name}", logging.WARNING,
                             "not adopting segment %s in spool %s: its records were written "
                             "with %s, which this handler's uploads would not keep; deliver "
                             "them with `s3-log-handler replay %s %s` (or --config)",
                             segment.name, self.directory, describe(missing, self._put),
                             self.directory, flags(missing))
        return False
