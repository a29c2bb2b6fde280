"""Counters of every record's outcome, kept so that they always add up.

The identity, true at every instant (each change happens under one lock)::

    emitted + recovered == ignored + delivered + queued + spooled + dropped + dead_lettered

``emitted`` counts ``emit()`` calls in this process; ``recovered`` counts records this process
found in the spool that an earlier process (or handler) left behind. ``queued`` and ``spooled``
are gauges: records waiting in memory (including uploads in flight and awaiting a retry) and
records held only on disk. ``failed`` counts upload *attempts* that failed; the record itself
stays queued or spooled and is retried, so it is not an outcome.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

OUTCOMES = ("ignored", "delivered", "queued", "spooled", "dropped", "dead_lettered")
SOURCES = ("emitted", "recovered")
ATTEMPTS = ("failed", "bytes_sent", "objects_sent", "fallbacks", "retries")


class Counters:
    """Thread-safe record counters; :meth:`snapshot` returns a plain dict copy."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Start from zero with a fresh lock (a forked child counts only its own records)."""
        self._lock = threading.Lock()
        self._values: dict[str, int] = dict.fromkeys(SOURCES + OUTCOMES + ATTEMPTS, 0)
        self._reasons: dict[str, Counter[str]] = {"dropped": Counter(), "dead_lettered": Counter()}

    def add(self, **deltas: int) -> None:
        """Add each delta atomically (negative deltas move records out of a gauge)."""
        with self._lock:
            for name, delta in deltas.items():
                self._values[name] += delta

    def move(self, source: str, target: str, count: int = 1, reason: str | None = None) -> None:
        """Move ``count`` records from gauge ``source`` to outcome ``target`` atomically.

        ``reason`` is recorded for ``dropped`` and ``dead_lettered`` outcomes.
        """
        with self._lock:
            self._values[source] -= count
            self._values[target] += count
            if reason is not None and target in self._reasons:
                self._reasons[target][reason] += count

    def arrive(self, source: str, outcome: str, count: int = 1, reason: str | None = None) -> None:
        """Count ``count`` new records from ``source`` that reach ``outcome`` at once."""
        with self._lock:
            self._values[source] += count
            self._values[outcome] += count
            if reason is not None and outcome in self._reasons:
                self._reasons[outcome][reason] += count

    def get(self, name: str) -> int:
        """The current value of one counter."""
        with self._lock:
            return self._values[name]

    def snapshot(self) -> dict[str, Any]:
        """A consistent copy of all counters plus ``dropped_reasons``/``dead_letter_reasons``."""
        with self._lock:
            out: dict[str, Any] = dict(self._values)
            out["dropped_reasons"] = dict(self._reasons["dropped"])
            out["dead_letter_reasons"] = dict(self._reasons["dead_lettered"])
        return out


def balance(stats: dict[str, Any]) -> int:
    """Sources minus outcomes of a :meth:`Counters.snapshot`; zero whenever nothing is lost."""
    sources = sum(int(stats[name]) for name in SOURCES)
    return sources - sum(int(stats[name]) for name in OUTCOMES)
