"""Which records still await an outcome: the bookkeeping behind ``flush()``.

Not thread-safe on its own: the worker calls it under its lock.
"""

from __future__ import annotations

import bisect
import heapq


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
        #: Numbers of lost records not yet reported by a flush, sorted.
        self._losses: list[int] = []
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
        while self._heap and self._heap[0] in self._settled:
            self._settled.discard(heapq.heappop(self._heap))

    def pending_upto(self, mark: int) -> bool:
        """True while some record numbered ``<= mark`` has no outcome yet."""
        return bool(self._heap) and self._heap[0] <= mark

    def all_delivered(self, mark: int, since: int) -> bool:
        """Once nothing up to ``mark`` is pending: True if no record numbered in
        (``since``, ``mark``] was lost. ``since`` is :attr:`reported_upto` as the caller saw it
        when it started; losses up to ``mark`` count as reported from now on."""
        reported = bisect.bisect_right(self._losses, mark)
        ok = bisect.bisect_right(self._losses, since) == reported
        del self._losses[:reported]
        self.reported_upto = max(self.reported_upto, mark)
        return ok
