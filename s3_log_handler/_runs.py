"""Sets of line numbers kept as runs, so bookkeeping costs per run, not per record.

A segment's records are appended, spilled, delivered and reloaded mostly in order, so the
line numbers in each state form a few runs of consecutive numbers. :class:`IndexRuns` is a
set of such numbers; :class:`SeqRuns` also maps each number to the sequence number its
record got for ``flush()`` (consecutive too, as records are numbered in the order they are
admitted), or to ``-1`` for records adopted from another owner. Both keep sorted, disjoint
runs in parallel lists (for :mod:`bisect`); adding or removing at either end of a run is
O(log runs), splitting one O(runs).

Plain data, not thread-safe: the spool calls them under its lock.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator


class IndexRuns:
    """A set of non-negative integers, stored as sorted disjoint runs ``[first, last]``."""

    __slots__ = ("_count", "_firsts", "_lasts")

    def __init__(self) -> None:
        self._firsts: list[int] = []
        self._lasts: list[int] = []
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def __bool__(self) -> bool:
        return self._count > 0

    def __contains__(self, value: object) -> bool:
        if not isinstance(value, int):
            return False
        i = bisect.bisect_right(self._firsts, value) - 1
        return i >= 0 and value <= self._lasts[i]

    def __iter__(self) -> Iterator[int]:
        for first, last in zip(self._firsts, self._lasts, strict=True):
            yield from range(first, last + 1)

    @property
    def runs(self) -> int:
        """How many runs hold the numbers (what the memory follows)."""
        return len(self._firsts)

    @property
    def first(self) -> int | None:
        """The smallest number held, or ``None`` when empty."""
        return self._firsts[0] if self._firsts else None

    def add(self, value: int) -> bool:
        """Add ``value``; False when it was already there."""
        i = bisect.bisect_right(self._firsts, value)  # runs[i-1] starts at or before value
        if i and self._lasts[i - 1] >= value:
            return False
        joins_left = i > 0 and self._lasts[i - 1] == value - 1
        joins_right = i < len(self._firsts) and self._firsts[i] == value + 1
        if joins_left and joins_right:
            self._lasts[i - 1] = self._lasts.pop(i)
            del self._firsts[i]
        elif joins_left:
            self._lasts[i - 1] = value
        elif joins_right:
            self._firsts[i] = value
        else:
            self._firsts.insert(i, value)
            self._lasts.insert(i, value)
        self._count += 1
        return True

    def discard(self, value: int) -> bool:
        """Remove ``value``; False when it was not there."""
        i = bisect.bisect_right(self._firsts, value) - 1
        if i < 0 or value > self._lasts[i]:
            return False
        first, last = self._firsts[i], self._lasts[i]
        if first == last:
            del self._firsts[i], self._lasts[i]
        elif value == first:
            self._firsts[i] = value + 1
        elif value == last:
            self._lasts[i] = value - 1
        else:
            self._lasts[i] = value - 1
            self._firsts.insert(i + 1, value + 1)
            self._lasts.insert(i + 1, last)
        self._count -= 1
        return True


class SeqRuns:
    """Line numbers of records held only on disk, each with its record's sequence number.

    A run ``(first, last, seq)`` maps line ``first + k`` to ``seq + k``; a run whose ``seq``
    is ``-1`` maps every line in it to ``-1`` (records adopted from another owner).
    """

    __slots__ = ("_count", "_firsts", "_lasts", "_seqs")

    def __init__(self) -> None:
        self._firsts: list[int] = []
        self._lasts: list[int] = []
        self._seqs: list[int] = []
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def __bool__(self) -> bool:
        return self._count > 0

    def __contains__(self, index: object) -> bool:
        return isinstance(index, int) and self._find(index) >= 0

    @property
    def runs(self) -> int:
        """How many runs hold the lines (what the memory follows)."""
        return len(self._firsts)

    def add(self, index: int, seq: int) -> None:
        """Hold line ``index`` with sequence number ``seq`` (``-1``: none). A line already
        held keeps its first number."""
        seq = max(seq, -1)
        i = bisect.bisect_right(self._firsts, index)
        if i and self._lasts[i - 1] >= index:
            return
        if i and self._lasts[i - 1] == index - 1 and self._continues(i - 1, index, seq):
            self._lasts[i - 1] = index
        elif i < len(self._firsts) and self._firsts[i] == index + 1 and (
                self._seqs[i] == (seq + 1 if seq >= 0 else -1)):
            self._firsts[i] = index
            self._seqs[i] = seq
        else:
            self._firsts.insert(i, index)
            self._lasts.insert(i, index)
            self._seqs.insert(i, seq)
        self._count += 1

    def pop(self, index: int) -> int | None:
        """Release line ``index`` and return its sequence number; ``None`` if not held."""
        i = self._find(index)
        if i < 0:
            return None
        first, last, base = self._firsts[i], self._lasts[i], self._seqs[i]
        seq = base + (index - first) if base >= 0 else -1
        if first == last:
            del self._firsts[i], self._lasts[i], self._seqs[i]
        elif index == first:
            self._firsts[i] = index + 1
            self._seqs[i] = seq + 1 if base >= 0 else -1
        elif index == last:
            self._lasts[i] = index - 1
        else:
            self._lasts[i] = index - 1
            self._firsts.insert(i + 1, index + 1)
            self._lasts.insert(i + 1, last)
            self._seqs.insert(i + 1, seq + 1 if base >= 0 else -1)
        self._count -= 1
        return seq

    def _find(self, index: int) -> int:
        i = bisect.bisect_right(self._firsts, index) - 1
        return i if i >= 0 and index <= self._lasts[i] else -1

    def _continues(self, i: int, index: int, seq: int) -> bool:
        base = self._seqs[i]
        if base < 0 or seq < 0:
            return base < 0 and seq < 0
        return base + (index - self._firsts[i]) == seq
