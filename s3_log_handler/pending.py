"""Which records still await an outcome: the bookkeeping behind ``flush()``.

Not thread-safe on its own: the worker calls it under its lock.
"""

from __future__ import annotations

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
        self._last_loss = -1
        self._reported_upto = -1

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
        if lost and tracked:
            self._last_loss = max(self._last_loss, *tracked)
        while self._heap and self._heap[0] in self._settled:
            self._settled.discard(heapq.heappop(self._heap))

    def pending_upto(self, mark: int) -> bool:
        """True while some record numbered ``<= mark`` has no outcome yet."""
        return bool(self._heap) and self._heap[0] <= mark

    def all_delivered(self, mark: int) -> bool:
        """Once nothing up to ``mark`` is pending: True if none of those records since the
        previous successful call was lost. Records the mark as reported."""
        ok = not (self._reported_upto < self._last_loss <= mark)
        self._reported_upto = max(self._reported_upto, mark)
        return ok
