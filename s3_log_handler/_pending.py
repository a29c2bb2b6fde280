"""Which records still await an outcome, and which were lost: the bookkeeping behind ``flush()``.

Not thread-safe on its own: the ledger calls it under its lock.

Memory follows what is *pending*, never what already settled: a set of the numbers still
waiting in memory, the numbers of records spilled to disk (held only in the spool) as runs,
and losses as runs too, so an outage that drops or spills a million records in a row costs
one run, not a million entries. The oldest pending number only ever moves up (numbers are
handed out in order), so finding it again costs O(1) amortised.

For the health metric ``oldest_queued_age``, admission times are kept as sparse marks
``(number, time)``, at most one per :data:`MARK_EVERY` seconds and only back to the oldest
pending record, so the age of that record is known to within ``MARK_EVERY`` (never
under-stated) at O(1) amortised cost and bounded memory.
"""

from __future__ import annotations

import bisect
from collections import deque

from ._runs import IndexRuns

#: Runs of losses kept for flushes that have not reported them yet; past it the newest runs
#: are forgotten (only a flush covering more than this many separate runs could miss one).
_MAX_RUNS = 100_000
#: Seconds between two admission-time marks: the precision of ``oldest_age``.
MARK_EVERY = 0.1
#: Most marks kept; past it every other mark is dropped (the age stays an upper bound).
_MAX_MARKS = 4096


class PendingRecords:
    """Sequence numbers handed to records, which are still pending, and which were lost.

    A record is *settled* once it has a final outcome (delivered, dropped, dead-lettered).
    ``flush`` asks whether every record numbered up to some mark is settled, and whether any
    of them was lost since the previous successful flush.
    """

    def __init__(self) -> None:
        self._pending: set[int] = set()
        #: Pending numbers of records held only on disk (spilled), as runs.
        self._spilled = IndexRuns()
        #: No pending number is below this one (it may itself be settled already).
        self._oldest = 0
        self._next = 0
        #: Lost numbers not yet reported by every flush that covers them: sorted, disjoint
        #: inclusive runs ``[first, last]`` (parallel lists, for bisect).
        self._firsts: list[int] = []
        self._lasts: list[int] = []
        self._flushes = 0
        self.reported_upto = -1
        #: ``(number, monotonic time)`` of admissions, sparse; see the module docstring.
        self._marks: deque[tuple[int, float]] = deque()

    def add(self, now: float | None = None) -> int:
        """Number a new record; it is pending until :meth:`settle` is called with its number.

        ``now`` (monotonic seconds) is when it was admitted, for :meth:`oldest_age`."""
        seq = self._next
        self._next += 1
        if not self._pending:
            self._oldest = seq  # skip the settled numbers before it at once
            if not self._spilled:
                self._marks.clear()  # nothing older waits
        self._pending.add(seq)
        if now is not None:
            marks = self._marks
            if not marks or now - marks[-1][1] >= MARK_EVERY:
                marks.append((seq, now))
                if len(marks) > _MAX_MARKS:
                    self._trim_marks()
        return seq

    def oldest_age(self, now: float) -> float:
        """Seconds (to within :data:`MARK_EVERY`, never less) since the oldest record still
        pending, in memory or spilled, was admitted; 0.0 when none is. Records added without
        a time (recovered from another owner, refused at emit) are not seen."""
        oldest = self._trim_marks()
        if oldest is None or not self._marks:
            return 0.0
        return max(0.0, now - self._marks[0][1])

    def _oldest_pending(self) -> int | None:
        """The number of the oldest record without an outcome, in memory or spilled."""
        oldest: int | None = None
        if self._pending:
            while self._oldest not in self._pending:
                self._oldest += 1
            oldest = self._oldest
        first_spilled = self._spilled.first
        if first_spilled is not None and (oldest is None or first_spilled < oldest):
            oldest = first_spilled
        return oldest

    def _trim_marks(self) -> int | None:
        """Forget the marks older than the one covering the oldest pending record (returned),
        then, if still too many, every other one (the first stays: an upper bound)."""
        oldest = self._oldest_pending()
        marks = self._marks
        if oldest is None:
            marks.clear()
            return None
        while len(marks) > 1 and marks[1][0] <= oldest:
            marks.popleft()
        if len(marks) > _MAX_MARKS // 2:
            kept = list(marks)[::2]
            marks.clear()
            marks.extend(kept)
        return oldest

    @property
    def newest(self) -> int:
        """The number of the newest record so far (``-1`` before the first)."""
        return self._next - 1

    def spill(self, seq: int) -> None:
        """Record ``seq`` (pending) is held only on disk now: keep its number in a run."""
        if seq in self._pending:
            self._pending.remove(seq)
            self._spilled.add(seq)

    def settle(self, seqs: list[int], *, lost: bool) -> None:
        """Give records their final outcome; ``lost`` when it was not delivery.

        Negative numbers (records recovered from another process) are ignored.
        """
        pending = self._pending
        for seq in seqs:
            if seq < 0:
                continue
            if seq in pending:
                pending.remove(seq)
            elif self._spilled:
                self._spilled.discard(seq)
            if lost:
                self._lose(seq)

    def pending_upto(self, mark: int) -> bool:
        """True while some record numbered ``<= mark`` has no outcome yet."""
        oldest = self._oldest_pending()
        return oldest is not None and oldest <= mark

    def begin_flush(self) -> tuple[int, int]:
        """Start a flush: its ``(mark, since)``, the range of records it reports on."""
        self._flushes += 1
        return self.newest, self.reported_upto

    def end_flush(self, mark: int, since: int, *, drained: bool) -> bool:
        """End a flush; when everything up to ``mark`` was settled (``drained``), True if no
        record numbered in (``since``, ``mark``] was lost. Those losses then count as
        reported, and are forgotten once no other flush still covers them."""
        self._flushes -= 1
        if not drained:
            return False
        ok = not self._lost_between(since, mark)
        self.reported_upto = max(self.reported_upto, mark)
        if self._flushes == 0:
            self._forget_upto(self.reported_upto)
        return ok

    # -- loss runs ------------------------------------------------------------------------
    def _lose(self, seq: int) -> None:
        i = bisect.bisect_right(self._firsts, seq)  # runs[i-1] starts at or before seq
        if i and self._lasts[i - 1] >= seq:
            return  # already counted
        joins_left = i > 0 and self._lasts[i - 1] == seq - 1
        joins_right = i < len(self._firsts) and self._firsts[i] == seq + 1
        if joins_left and joins_right:
            self._lasts[i - 1] = self._lasts.pop(i)
            del self._firsts[i]
        elif joins_left:
            self._lasts[i - 1] = seq
        elif joins_right:
            self._firsts[i] = seq
        elif len(self._firsts) < _MAX_RUNS:
            self._firsts.insert(i, seq)
            self._lasts.insert(i, seq)

    def _lost_between(self, since: int, mark: int) -> bool:
        """True when some lost number lies in (``since``, ``mark``]."""
        i = bisect.bisect_right(self._lasts, since)  # first run ending after since
        return i < len(self._firsts) and self._firsts[i] <= mark

    def _forget_upto(self, upto: int) -> None:
        i = bisect.bisect_right(self._lasts, upto)  # runs wholly reported
        del self._firsts[:i], self._lasts[:i]
        if self._firsts and self._firsts[0] <= upto:
            self._firsts[0] = upto + 1  # a run that straddles the mark keeps its tail
