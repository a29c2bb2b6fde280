"""Health metrics: the handler's counters as CloudWatch Embedded Metric Format (EMF) lines.

With ``metrics_interval`` set, the keeper thread logs one line every interval (and a last
one at close) on the ``s3_log_handler.metrics`` logger. Each line is one JSON object and
nothing else, as CloudWatch Logs needs to extract the metrics from the event::

    {"_aws": {"Timestamp": 1764460800000, "CloudWatchMetrics": [{"Namespace":
      "S3LogHandler", "Dimensions": [["bucket", "prefix", "mode"]], "Metrics": [{"Name":
      "delivered", "Unit": "Count"}, ...]}]}, "bucket": "...", "prefix": "sessions",
     "mode": "object", "delivered": 120, "dropped": 0, ...}

**Counters are per-interval deltas** (what happened since the previous line), so CloudWatch's
``Sum`` over a period is the count in that period and an alarm such as "``dropped`` Sum > 0
over 5 minutes" needs no maths; a restart or a fork starts from zero without a negative
step. ``queued``, ``spooled`` and ``oldest_queued_age`` are gauges (the value when the line
was made: use ``Maximum``). Summing every line's deltas and taking the last line's gauges
gives the handler's totals, which balance as :func:`s3_log_handler.counters.balance` says.

The logger's name starts with ``s3_log_handler``, so an S3Handler ignores its records
(:func:`~s3_log_handler._diagnostics.is_internal_record`): metrics never recurse into S3.
Format them with ``%(message)s`` only; any prefix stops CloudWatch extracting them.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson

#: The logger the lines go to; route it to a CloudWatch Logs handler with a bare formatter.
metrics_logger = logging.getLogger("s3_log_handler.metrics")

NAMESPACE = "S3LogHandler"
DIMENSIONS = ("bucket", "prefix", "mode")
#: EMF allows at most 100 metrics in one directive.
MAX_METRICS = 100

#: (metric name, counter in ``stats()``, unit): reported as the change since the last line.
DELTAS = (
    ("emitted", "emitted", "Count"),
    ("recovered", "recovered", "Count"),
    ("ignored", "ignored", "Count"),
    ("delivered", "delivered", "Count"),
    ("dropped", "dropped", "Count"),
    ("dead_lettered", "dead_lettered", "Count"),
    ("failed_attempts", "failed", "Count"),
    ("objects_sent", "objects_sent", "Count"),
    ("bytes_sent", "bytes_sent", "Bytes"),
)
#: (metric name, value in the health reading, unit): reported as they are now.
GAUGES = (
    ("queued", "queued", "Count"),
    ("spooled", "spooled", "Count"),
    ("oldest_queued_age", "oldest_queued_age", "Seconds"),
)
#: Drop reasons always reported (as ``dropped_<reason>``, 0 when none), so a dashboard or
#: alarm has data before the first loss. Other reasons, and ``dead_lettered_<reason>`` (e.g.
#: ``too_large``, ``AccessDenied``), appear once they occur.
DROP_REASONS = ("queue_full", "spool_full", "closed", "shutdown", "internal_error")

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def dimension_values(bucket: str, prefix: str, mode: str) -> dict[str, str]:
    """The three dimensions; an empty prefix becomes ``"(none)"`` (a dimension value may
    not be empty)."""
    return {"bucket": bucket, "prefix": prefix or "(none)", "mode": mode}


def emf_document(current: Mapping[str, Any], previous: Mapping[str, Any] | None, *,
                 dimensions: Mapping[str, str], timestamp_ms: int) -> dict[str, Any]:
    """One EMF document from two health readings (``Ledger.health()``; ``previous`` None for
    the first line): counters as ``current - previous``, gauges as in ``current``.

    If a counter went down (a forked child starts from zero), the line counts from zero.
    Every metric named in the directive and every dimension has a top-level value; at
    most :data:`MAX_METRICS` metrics.
    """
    if previous is not None and any(int(current[c]) < int(previous[c]) for _, c, _ in DELTAS):
        previous = None
    values: dict[str, float | int] = {}
    units: dict[str, str] = {}
    for name, counter, unit in DELTAS:
        values[name] = int(current[counter]) - (int(previous[counter]) if previous else 0)
        units[name] = unit
    for prefix, key, always in (("dropped_", "dropped_reasons", DROP_REASONS),
                                ("dead_lettered_", "dead_letter_reasons", ())):
        now_reasons: Mapping[str, int] = current.get(key, {})
        before_reasons: Mapping[str, int] = previous.get(key, {}) if previous else {}
        for reason in (*always, *sorted(set(now_reasons) - set(always))):
            name = prefix + _UNSAFE.sub("_", reason)[:200]
            if name in values or len(values) >= MAX_METRICS - len(GAUGES):
                continue
            values[name] = int(now_reasons.get(reason, 0)) - int(before_reasons.get(reason, 0))
            units[name] = "Count"
    for name, key, unit in GAUGES:
        values[name] = current[key]
        units[name] = unit
    directive = {
        "Namespace": NAMESPACE,
        "Dimensions": [list(DIMENSIONS)],
        "Metrics": [{"Name": name, "Unit": units[name]} for name in values],
    }
    return {"_aws": {"Timestamp": timestamp_ms, "CloudWatchMetrics": [directive]},
            **{d: dimensions[d] for d in DIMENSIONS}, **values}


class HealthMetrics:
    """Logs an EMF line every ``interval`` seconds when :meth:`report_if_due` is called (by
    the keeper), and a last one from :meth:`report_final`; nothing after that.

    ``read`` returns a health reading (``Ledger.health``). Thread-safe: the keeper and the
    closing thread may both report; each line covers its own interval, never one twice.
    """

    def __init__(self, read: Callable[[], dict[str, Any]], dimensions: Mapping[str, str],
                 interval: float, *, wall_clock: Callable[[], float] = time.time) -> None:
        self._read = read
        self._dimensions = dict(dimensions)
        self.interval = interval
        self._wall_clock = wall_clock
        self.restart()

    def restart(self) -> None:
        """Count from zero with a fresh lock (at start, and in a forked child)."""
        self._lock = threading.Lock()
        self._previous: dict[str, Any] | None = None
        self._finished = False
        self.next_due = time.monotonic() + self.interval

    def seconds_until_due(self, now: float) -> float:
        """How long the keeper may sleep before the next line is due."""
        return max(0.0, self.next_due - now)

    def report_if_due(self, now: float) -> None:
        """Log a line when ``now`` (monotonic) has reached the next due time."""
        if now >= self.next_due:
            self.next_due = now + self.interval
            self.report()

    def report_final(self) -> None:
        """Log the last (partial) interval; later calls log nothing."""
        self.report(final=True)

    def report(self, *, final: bool = False) -> None:
        """Log one line now. Raises what reading or logging raised (the keeper reports it)."""
        with self._lock:
            if self._finished:
                return
            current = self._read()
            document = emf_document(current, self._previous, dimensions=self._dimensions,
                                    timestamp_ms=int(self._wall_clock() * 1000))
            self._previous = current
            self._finished = final
        metrics_logger.info(orjson.dumps(document).decode())
