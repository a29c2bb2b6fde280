"""Batching as a plain accumulator: no threads, no clock of its own (``now`` is passed in).

Records are grouped by their own UTC partition, so a batch never mixes days (or hours, when
the key template uses ``{hour}``): a stream that crosses midnight becomes two objects.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ._keys import Partition
from ._policies import BatchPolicy
from ._records import Entry


@dataclass(slots=True)
class Batch:
    """Records of one partition (date and ``{field:...}`` values) waiting to become one
    object."""

    partition: Partition
    fields: tuple[str, ...]
    opened_at: float
    entries: list[Entry] = field(default_factory=list)
    size: int = 0
    #: Raw bytes at which the batch is cut: ``max_bytes``, or less when the compression
    #: ratio says it reaches ``target_bytes`` sooner; made again when the ratio changes.
    limit: int = 1 << 62
    ratio_seen: int = -1


#: Compressed/raw size assumed before any object of a handler has been compressed: JSON
#: session records compress 5-8x with gzip (bench/throughput.py measures 5.5x).
PRIOR_RATIO = 0.2
#: Raw bytes of a handler's first batch compressed once, on the spot, to learn the ratio
#: before the first object is cut (~0.5 ms of libdeflate, once per handler).
PROBE_BYTES = 64 * 1024
#: A batch cut by flush() or close() larger than this (raw bytes) is sent as up to
#: ``flush_parts`` objects, so that many upload threads compress it at once: a flush waits
#: for the largest part, not for one thread compressing ~100 MB.
SPLIT_BYTES = 8 * 1024 * 1024
#: Weight of the newest object in the running compression ratio.
_LEARN = 0.5
#: Partition values whose compression ratio is remembered (beyond it, the handler's own).
_RATIOS_KEPT = 1024


class BatchAccumulator:
    """Collects entries per partition and says when a batch is due.

    A batch is cut when its estimated compressed size reaches ``target_bytes`` (its raw
    size times the compression ratio of the last objects of the same field values, or of
    the handler: libdeflate cannot compress a stream, so the size is learned, not measured
    by compressing twice), or when it holds ``max_records`` records or ``max_bytes`` raw
    bytes, or its first record is ``max_age`` seconds old (a :class:`BatchPolicy`). At most
    ``max_open`` batches are open: a record for another partition cuts the oldest first
    (counted ``partition_cuts``); when open batches hold ``memory_bytes`` the largest is cut
    (``memory_cuts``). A cut batch is uploaded, never dropped. ``measure`` (the compressed
    size of some bytes) is called once, on the first :data:`PROBE_BYTES` of records, so
    the first object is sized by this data's ratio too.
    """

    def __init__(self, policy: BatchPolicy,
                 measure: Callable[[bytes], int] | None = None) -> None:
        self._measure = measure
        self._max_records = policy.max_records
        self._max_bytes = policy.max_bytes
        self._max_age = policy.max_age
        self._hourly = policy.hourly
        self._target = policy.target_bytes
        self._max_open = policy.max_open
        self._memory = policy.memory_bytes
        self._flush_parts = policy.flush_parts
        self._span = 3600 if policy.hourly else 86400
        #: Open batches by (hour or day number, field values): no Partition per record.
        self._open: dict[tuple[int, tuple[str, ...]], Batch] = {}
        self._open_bytes = 0
        self._ratio = PRIOR_RATIO
        self._ratios: dict[tuple[str, ...], float] = {}
        #: Bumped whenever a ratio is learned: open batches then make their limit again.
        self._ratio_version = 0
        #: Cuts not yet counted by the ledger (it adds them to its counters).
        self.cuts: dict[str, int] = {}

    @property
    def open_batches(self) -> int:
        """How many batches (partitions) are open."""
        return len(self._open)

    def __len__(self) -> int:
        return sum(len(b.entries) for b in self._open.values())

    def add(self, entry: Entry, now: float, fields: tuple[str, ...] = ()) -> list[Batch]:
        """Add ``entry`` (with its partition ``fields``); return the batches to upload now:
        its own when it just became full, and any cut to make room."""
        group = (int(entry.created // self._span), fields)
        ready: list[Batch] = []
        batch = self._open.get(group)
        if batch is None:
            if len(self._open) >= self._max_open:
                ready.append(self._cut(next(iter(self._open)), "partition_cuts"))
            batch = self._open[group] = self._new_batch(entry.created, fields, now)
        batch.entries.append(entry)
        size = batch.size = batch.size + entry.size
        self._open_bytes += entry.size
        if self._measure is not None and size >= PROBE_BYTES:
            sample = b"".join(e.body for e in batch.entries)
            self._ratio = self._measure(sample) / len(sample)
            self._measure = None
            self._ratio_version += 1
        if batch.ratio_seen != self._ratio_version:  # one compare unless a ratio changed
            batch.ratio_seen = self._ratio_version
            batch.limit = self._limit(fields)
        if size >= batch.limit or len(batch.entries) >= self._max_records:
            ready.append(self._cut(group, None))
        elif self._open_bytes >= self._memory:
            largest = max(self._open, key=lambda g: self._open[g].size)
            ready.append(self._cut(largest, "memory_cuts"))
        return ready

    def _new_batch(self, created: float, fields: tuple[str, ...], now: float) -> Batch:
        partition = Partition.of(created) if self._hourly else Partition.day_of(created)
        return Batch(partition, fields, now)

    def _limit(self, fields: tuple[str, ...]) -> int:
        ratio = self._ratios.get(fields, self._ratio)
        return min(self._max_bytes, int(self._target / ratio) if ratio > 0 else self._max_bytes)

    def learn(self, fields: tuple[str, ...], raw: int, compressed: int) -> None:
        """Remember the compression ratio of an object just built (any thread: a lost
        update only delays the estimate by one object)."""
        if raw <= 0:
            return
        ratio = compressed / raw
        self._ratio += (ratio - self._ratio) * _LEARN
        if fields in self._ratios or len(self._ratios) < _RATIOS_KEPT:
            old = self._ratios.get(fields, ratio)
            self._ratios[fields] = old + (ratio - old) * _LEARN
        self._ratio_version += 1

    def due(self, now: float) -> list[Batch]:
        """Remove and return every batch whose first record is at least ``max_age`` old."""
        ripe = [g for g, b in self._open.items() if now - b.opened_at >= self._max_age]
        return [self._cut(g, None) for g in ripe]

    def seconds_until_due(self, now: float) -> float | None:
        """Seconds until the oldest open batch is due, or ``None`` when nothing is open."""
        if not self._open:
            return None
        oldest = min(b.opened_at for b in self._open.values())
        return max(0.0, oldest + self._max_age - now)

    def drain(self) -> list[Batch]:
        """Remove and return every open batch (flush and close use this); one over
        :data:`SPLIT_BYTES` comes back as up to ``flush_parts`` batches of its records, in
        order, so upload threads compress them in parallel."""
        batches: list[Batch] = []
        for batch in self._open.values():
            parts = min(self._flush_parts, -(-batch.size // SPLIT_BYTES))
            batches.extend(_split(batch, parts) if parts > 1 else [batch])
        self._open.clear()
        self._open_bytes = 0
        return batches

    def _cut(self, group: tuple[int, tuple[str, ...]], reason: str | None) -> Batch:
        batch = self._open.pop(group)
        self._open_bytes -= batch.size
        if reason is not None:
            self.cuts[reason] = self.cuts.get(reason, 0) + 1
        return batch


def _split(batch: Batch, parts: int) -> list[Batch]:
    share = batch.size / parts
    out = [Batch(batch.partition, batch.fields, batch.opened_at)]
    for entry in batch.entries:
        last = out[-1]
        if last.size >= share and len(out) < parts:
            last = Batch(batch.partition, batch.fields, batch.opened_at)
            out.append(last)
        last.entries.append(entry)
        last.size += entry.size
    return out
