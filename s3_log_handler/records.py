"""The snapshot of one log record that travels from ``emit()`` to S3 (and through the spool)."""

from __future__ import annotations

from dataclasses import dataclass


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
    was written to the spool; ``seq`` orders records submitted to one worker (``-1`` for
    records recovered from another owner's spool). Both are set once, before the entry is
    queued, and never change afterwards.
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
