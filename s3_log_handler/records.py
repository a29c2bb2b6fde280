"""The snapshot of one log record that travels from ``emit()`` to S3 (and through the spool)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SpoolRef:
    """Where a record lives on disk: its segment's name and its line number there."""

    segment: str
    index: int


@dataclass(frozen=True, slots=True)
class Entry:
    """An immutable, thread-safe snapshot of one analytics record.

    ``body`` is the payload as one JSON line ending in ``\\n``; ``key`` is the final object
    key in object mode (fixed at emit time so a retry or replay overwrites the same key) and
    ``None`` in batch mode, where the batch names the object. ``seq`` orders records emitted
    by one handler (``-1`` for records recovered from disk); ``ref`` is set when the record
    was written to the spool.
    """

    body: bytes
    created: float
    record_id: str
    key: str | None
    seq: int = -1
    ref: SpoolRef | None = None

    @property
    def size(self) -> int:
        """Bytes this record holds in memory (its body), for the queue's byte budget."""
        return len(self.body)
