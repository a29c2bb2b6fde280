"""Counters of every record's outcome, kept so that they always add up.

The identity, true in every :meth:`S3Handler.stats` sample (the ledger changes and reads
these counters under its one lock)::

    emitted + recovered == ignored + delivered + queued + spooled + dropped + dead_lettered

``emitted`` counts ``emit()`` calls in this process; ``recovered`` counts records this process
found in the spool that an earlier process (or handler) left behind. ``queued`` and ``spooled``
are gauges: records waiting in memory (including uploads in flight and awaiting a retry) and
records held only on disk. ``failed`` counts upload *attempts* that failed; the record itself
stays queued or spooled and is retried, so it is not an outcome.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

OUTCOMES = ("ignored", "delivered", "queued", "spooled", "dropped", "dead_lettered")
SOURCES = ("emitted", "recovered")
ATTEMPTS = ("failed", "bytes_sent", "objects_sent", "fallbacks", "retries")
#: How records were placed (not outcomes): a ``{field:...}`` value that fell back to the
#: default partition, a ``time_field`` that fell back to the log time, and batches cut
#: before their size or age because ``max_open_partitions`` or memory asked for it.
PLACEMENT = ("field_defaults", "time_fallbacks", "partition_cuts", "memory_cuts")
#: format='parquet': values kept in the ``extra_json`` column because the partition's pinned
#: schema has no column for them, or one of another type; lines that are not a JSON object.
COLUMNAR = ("parquet_outside_schema", "parquet_type_mismatches", "parquet_unparsed")


class Counters:
    """Record counters as plain data; :meth:`snapshot` returns a plain dict copy.

    Not thread-safe on its own: the ledger (``_ledger.py``) is the only writer and holds its
    lock around every change and every snapshot, so a change of several counters is atomic.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Start from zero (a forked child counts only its own records)."""
        self._values: dict[str, int] = dict.fromkeys(SOURCES + OUTCOMES + ATTEMPTS + PLACEMENT
                                                 + COLUMNAR, 0)
        self._reasons: dict[str, Counter[str]] = {"dropped": Counter(), "dead_lettered": Counter()}

    def add(self, **deltas: int) -> None:
        """Add each delta (attempt counters such as ``failed`` and ``bytes_sent``)."""
        for name, delta in deltas.items():
            self._values[name] += delta

    def move(self, source: str, target: str, count: int = 1, reason: str | None = None) -> None:
        """Move ``count`` records from gauge ``source`` to ``target``.

        ``reason`` is recorded for ``dropped`` and ``dead_lettered`` outcomes.
        """
        self._values[source] -= count
        self._values[target] += count
        if reason is not None and target in self._reasons:
            self._reasons[target][reason] += count

    def arrive(self, source: str, outcome: str, count: int = 1, reason: str | None = None) -> None:
        """Count ``count`` new records from ``source`` that reach ``outcome`` at once."""
        self._values[source] += count
        self._values[outcome] += count
        if reason is not None and outcome in self._reasons:
            self._reasons[outcome][reason] += count

    def get(self, name: str) -> int:
        """The current value of one counter."""
        return self._values[name]

    def snapshot(self) -> dict[str, Any]:
        """A consistent copy of all counters plus ``dropped_reasons``/``dead_letter_reasons``."""
        out: dict[str, Any] = dict(self._values)
        out["dropped_reasons"] = dict(self._reasons["dropped"])
        out["dead_letter_reasons"] = dict(self._reasons["dead_lettered"])
        return out


def balance(stats: dict[str, Any]) -> int:
    """Sources minus outcomes of a :meth:`Counters.snapshot`; zero whenever nothing is lost."""
    sources = sum(int(stats[name]) for name in SOURCES)
    return sources - sum(int(stats[name]) for name in OUTCOMES)
