"""Batching as a plain accumulator: no threads, no clock of its own (``now`` is passed in).

Records are grouped by their own UTC partition, so a batch never mixes days (or hours, when
the key template uses ``{hour}``): a stream that crosses midnight becomes two objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ._keys import Partition
from ._policies import BatchPolicy
from ._records import Entry


@dataclass(slots=True)
class Batch:
    """Records of one partition waiting to become one NDJSON object."""

    partition: Partition
    opened_at: float
    entries: list[Entry] = field(default_factory=list)
    size: int = 0


class BatchAccumulator:
    """Collects entries per partition and says when a batch is due.

    A batch is due when it holds ``max_records`` records, ``max_bytes`` uncompressed bytes,
    or its first record is ``max_age`` seconds old (a :class:`BatchPolicy`).
    """

    def __init__(self, policy: BatchPolicy) -> None:
        self._max_records = policy.max_records
        self._max_bytes = policy.max_bytes
        self._max_age = policy.max_age
        self._hourly = policy.hourly
        self._open: dict[Partition, Batch] = {}

    @property
    def open_batches(self) -> int:
        """How many batches (partitions) are open."""
        return len(self._open)

    def __len__(self) -> int:
        return sum(len(b.entries) for b in self._open.values())

    def add(self, entry: Entry, now: float) -> Batch | None:
        """Add ``entry``; return its batch if that batch just became full (and close it)."""
        partition = (Partition.of(entry.created) if self._hourly
                     else Partition.day_of(entry.created))
        batch = self._open.get(partition)
        if batch is None:
            batch = self._open[partition] = Batch(partition, now)
        batch.entries.append(entry)
        batch.size += entry.size
        if len(batch.entries) >= self._max_records or batch.size >= self._max_bytes:
            return self._open.pop(partition)
        return None

    def due(self, now: float) -> list[Batch]:
        """Remove and return every batch whose first record is at least ``max_age`` old."""
        ripe = [p for p, b in self._open.items() if now - b.opened_at >= self._max_age]
        return [self._open.pop(p) for p in ripe]

    def seconds_until_due(self, now: float) -> float | None:
        """Seconds until the oldest open batch is due, or ``None`` when nothing is open."""
        if not self._open:
            return None
        oldest = min(b.opened_at for b in self._open.values())
        return max(0.0, oldest + self._max_age - now)

    def drain(self) -> list[Batch]:
        """Remove and return every open batch (flush and close use this)."""
        batches = list(self._open.values())
        self._open.clear()
        return batches
