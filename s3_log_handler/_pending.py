"""Which records still await an outcome: the bookkeeping behind ``flush()``.

Not thread-safe on its own: the worker calls it under its lock.
"""

from __future__ import annotations

import bisect
import heapq

_MAX_LOSSES = 100_000


class PendingRecords:
    """Sequence numbers handed to records, and which of them are settled.

    A record is *settled* once it has a final outcome (delivered, dropped, dead-lettered).
    ``flush`` asks whether every record numbered up to some mark is settled, and whether any
    of them was lost since the previous successful flush.
    """

    def __init__(self) -> None:
        self._heap: list[int] = []
        self._settled: set[int] = set()
        self._next = 0
        #: Numbers of lost records not yet reported by every flush that covers them, sorted.
        self._losses: list[int] = []
        self._flushes = 0
        self.reported_upto = -1

    def add(self) -> int:
        """Number a new record; it is pending until :meth:`settle` is called with its number."""
        seq = self._next
        self._next += 1
        heapq.heappush(self._heap, seq)
        return seq

    @property
    def newest(self) -> int:
        """The number of the newest record so far (``-1`` before the first)."""
        return self._next - 1

    def settle(self, seqs: list[int], *, lost: bool) -> None:
        """Give records their final outcome; ``lost`` when it was not delivery.

        Negative numbers (records recovered from another process) are ignored.
        """
        tracked = [s for s in seqs if s >= 0]
        self._settled.update(tracked)
        if lost:
            for seq in tracked:
                bisect.insort(self._losses, seq)
            # Without flushes losses would pile up: past the cap the newest are forgotten,
            # and only a flush covering more than _MAX_LOSSES losses could miss one.
            del self._losses[_MAX_LOSSES:]
        while self._heap and self._heap[0] in self._settled:
            self._settled.discard(heapq.heappop(self._heap))

    def pending_upto(self, mark: int) -> bool:
        """True while some record numbered ``<= mark`` has no outcome yet."""
        return bool(self._heap) and self._heap[0] <= mark

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
        ok = bisect.bisect_right(self._losses, since) == bisect.bisect_right(self._losses, mark)
        self.reported_upto = max(self.reported_upto, mark)
        if self._flushes == 0:
            del self._losses[:bisect.bisect_right(self._losses, self.reported_upto)]
        return ok
