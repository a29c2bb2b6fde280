"""The dead-letter area: bounded by letters and by bytes, counted in memory.

The number of letters and their bytes are counted once when the spool opens (a listing of
``dead/``) and then kept in memory: keeping a letter on the caller's thread (a ``too_large``
record, say) never lists the directory, and when the area is full it costs no I/O at all.
A letter is kept only while the area holds fewer than ``DEAD_LETTER_CAP`` letters and the
new one fits in ``max_bytes``; otherwise the record stays counted ``dead_lettered`` and the
caller reports it. Another process may add or remove letters meanwhile: once the area looks
full the keeper counts again (:meth:`LetterArea.recount`, at most every
:data:`RECOUNT_INTERVAL` seconds), off the caller's thread.

``replay --dead-letters`` re-emits a letter's record with :attr:`Entry.letter` naming the
letter: if the record is dead-lettered again, :meth:`LetterArea.keep` updates that letter
in place (its attempt count) instead of writing a copy; :meth:`LetterArea.settle_retry`
removes it once the record is delivered or safely queued. Both run under one lock, so a
letter is never removed after an upload thread chose to update it, nor updated after it was
removed (the record then gets a new letter).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping

from . import _deadletters as letters
from ._records import DELIVERED, QUEUED, SPOOLED, Entry

#: Seconds between counts of an area that looks full (someone may have cleaned it up).
RECOUNT_INTERVAL = 30.0
#: What :meth:`LetterArea.settle_retry` decided for a re-emitted letter.
REMOVED, KEPT, WAIT = "removed", "kept", "wait"


class LetterArea:
    """The letters in ``dead_dir``: at most ``DEAD_LETTER_CAP`` files and ``max_bytes``.

    Raises ``OSError`` only at construction (``dead_dir`` cannot be listed).
    """

    def __init__(self, dead_dir: str, max_bytes: int,
                 put: Mapping[str, str] | None = None) -> None:
        self.dead_dir = dead_dir
        self.max_bytes = max_bytes
        self._put = dict(put or {})
        self._lock = threading.Lock()
        self.count = 0
        self.bytes = 0
        self._counted_at = 0.0
        self.recount()

    def after_fork(self) -> None:
        """In a forked child: a fresh lock (another thread may have held it at the fork)."""
        self._lock = threading.Lock()

    @property
    def full(self) -> bool:
        """True when no new letter may be written (by the count kept in memory)."""
        return self.count >= letters.DEAD_LETTER_CAP or self.bytes >= self.max_bytes

    def recount(self) -> None:
        """Count the letters and their bytes on disk (a listing: never on the caller's
        thread after start-up). Raises ``OSError`` when ``dead_dir`` cannot be listed."""
        count = size = 0
        with os.scandir(self.dead_dir) as found:
            for item in found:
                if item.name.endswith(letters.LETTER_SUFFIX):
                    count += 1
                    try:
                        size += item.stat(follow_symlinks=False).st_size
                    except OSError:
                        continue
        with self._lock:
            self.count, self.bytes = count, size
            self._counted_at = time.monotonic()

    def recount_if_full(self) -> None:
        """:meth:`recount` when the area looks full and was not counted for a while."""
        if self.full and time.monotonic() - self._counted_at >= RECOUNT_INTERVAL:
            self.recount()

    def keep(self, entry: Entry, reason: str) -> bool:
        """Keep ``entry`` with ``reason``: update its original letter in place when it was
        re-emitted from one (:attr:`Entry.letter`), else write a new letter if the area
        has room. False when it was not kept (full, or the disk failed)."""
        if entry.letter is not None:
            with self._lock:
                if entry.letter is not None:
                    updated = self._again(entry.letter, reason)
                    if updated is not None:
                        return updated
                    entry.letter = None  # removed by someone meanwhile: a new letter
        if self.full:
            return False  # before any work: a flood of refused records costs no I/O
        data = letters.letter_document(entry, reason, self._put)
        with self._lock:
            if self.count >= letters.DEAD_LETTER_CAP or self.bytes + len(data) > self.max_bytes:
                return False
            self.count += 1  # reserved: the write happens outside the lock
            self.bytes += len(data)
        try:
            letters.write_private(letters.new_letter_path(self.dead_dir), data)
        except OSError:
            with self._lock:
                self.count -= 1
                self.bytes -= len(data)
            return False
        return True

    def _again(self, path: str, reason: str) -> bool | None:
        """Update letter ``path`` in place; False when that failed (it stays as it was),
        ``None`` when it is gone."""
        try:
            old = letters.read_letter(path)
            new = letters.again(old, reason)
            letters.replace_private(path, new)
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return False
        self.bytes += len(new) - len(old)
        return True

    def settle_retry(self, entry: Entry | None, path: str) -> str:
        """What becomes of letter ``path`` whose record was just re-emitted as ``entry``
        (``None``: refused at emit). :data:`REMOVED` once the record is delivered or safely
        queued (in the spool); :data:`WAIT` while it is queued in memory only (ask again
        later); else :data:`KEPT` (dead-lettered again: updated in place; or dropped)."""
        with self._lock:
            state = None if entry is None else entry.state
            if entry is None or not (
                    state == DELIVERED or (state in (QUEUED, SPOOLED) and entry.ref is not None)):
                return WAIT if state == QUEUED else KEPT
            entry.letter = None  # dead-lettered later: a new letter, this one is gone
            try:
                size = os.lstat(path).st_size
                os.unlink(path)
            except OSError:
                return KEPT
            self.count -= 1
            self.bytes -= size
            return REMOVED
