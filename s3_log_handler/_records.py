"""The snapshot of one log record that travels from ``emit()`` to S3 (and through the spool)."""

from __future__ import annotations

from dataclasses import dataclass

#: Where a record stands. ``NEW`` is not counted yet; ``QUEUED`` (in memory) and ``SPOOLED``
#: (only on disk) are the gauges; the rest are final outcomes, reached once.
NEW, QUEUED, SPOOLED = "new", "queued", "spooled"
DELIVERED, DROPPED, DEAD_LETTERED = "delivered", "dropped", "dead_lettered"
FINAL = frozenset({DELIVERED, DROPPED, DEAD_LETTERED})

#: Measured memory of one queued record beyond its body (entry, key string, job, deque slot).
RECORD_OVERHEAD = 512


@dataclass(frozen=True, slots=True)
class SpoolRef:
    """Where a record lives on disk: its segment's name and its line number there."""

    segment: str
    index: int


@dataclass(slots=True)
class Entry:
    """A snapshot of one analytics record, safe to hand to another thread.

    ``body`` is the payload as one JSON line ending in ``\\n``; ``key`` is the final object
    key in object mode (fixed at emit time so a retry or replay overwrites the same key) and
    ``None`` in batch mode, where the batch names the object. ``ref`` is set when the record
    was written to the spool; ``seq`` numbers records for ``flush()`` (``-1`` for records
    recovered from another owner's spool). ``source`` is the counter the record arrived
    through (``emitted`` or ``recovered``) and ``state`` where it stands; only the ledger
    changes ``state`` (and ``seq``), under its lock. ``letter`` names the dead letter a
    record re-emitted by ``replay`` came from.
    """

    body: bytes
    created: float
    record_id: str
    key: str | None
    seq: int = -1
    ref: SpoolRef | None = None
    source: str = "emitted"
    state: str = NEW
    #: The dead letter this record was re-emitted from (``replay --dead-letters``): if it is
    #: dead-lettered again, that letter is updated instead of a copy written.
    letter: str | None = None
    #: The record's ``{field:...}`` partition values (made safe), read at emit time; ``None``
    #: for a record recovered from a spool (read again from ``body`` when needed).
    fields: tuple[str, ...] | None = None

    @property
    def size(self) -> int:
        """Bytes of the JSON line (what batch sizes and ``max_record_bytes`` count)."""
        return len(self.body)

    @property
    def memory_cost(self) -> int:
        """Bytes this record holds in memory, for ``max_queue_bytes``: its body plus the
        objects that carry it (entry, key, job), so small records are not under-counted."""
        return len(self.body) + RECORD_OVERHEAD
