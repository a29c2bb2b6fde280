"""The handler's own voice: a logger that can never route back into an S3Handler.

Everything the library reports goes to ``logging.getLogger("s3_log_handler")``. S3Handler
ignores records from that logger (and from botocore/urllib3), and ignores every record
emitted on one of its own worker threads, so a diagnostic can never recurse into delivery.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass

logger = logging.getLogger("s3_log_handler")

#: Loggers whose records an S3Handler never ships (its own voice and the AWS stack's).
INTERNAL_LOGGERS = ("s3_log_handler", "botocore", "boto3", "urllib3", "s3transfer")

_INTERNAL_ROOTS = frozenset(INTERNAL_LOGGERS)
_worker_flag = threading.local()
_AWS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA|AROA|AIDA)[A-Z0-9]{12,}\b")
_CREDENTIAL_VARS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID",
                    "AWS_SECURITY_TOKEN", "ANALYTICS_HASH_KEY", "ANALYTICS_SPOOL_KEY")


def mark_internal_thread() -> None:
    """Mark the current thread as one of ours: records it emits are never shipped."""
    _worker_flag.internal = True


def on_internal_thread() -> bool:
    """True on a thread marked by :func:`mark_internal_thread`."""
    return getattr(_worker_flag, "internal", False)


def is_internal_record(record: logging.LogRecord) -> bool:
    """True for records that must never enter an S3Handler (recursion guard)."""
    return record.name.partition(".")[0] in _INTERNAL_ROOTS or on_internal_thread()


def scrub(text: str) -> str:
    """Remove credentials from ``text``: access key ids and any secret held in the environment."""
    for var in _CREDENTIAL_VARS:
        secret = os.environ.get(var)
        if secret and len(secret) >= 8:
            text = text.replace(secret, f"<{var} redacted>")
    return _AWS_KEY_ID.sub("<access key id redacted>", text)


#: A report key is logged at most once per this many seconds; repeats are counted meanwhile.
REPORT_INTERVAL = 300.0


@dataclass(slots=True)
class _Key:
    logged_at: float
    suppressed: int = 0


@dataclass(slots=True)
class _Outage:
    since: float
    failures: int = 0


class Reports:
    """The library's reports, limited per key and never silenced for good.

    :meth:`report` logs a key at once, then at most once per ``interval`` seconds, with the
    count of repeats it held back. A report may name an ``outage`` (``"upload"``,
    ``"spool"``): :meth:`recovered` then logs one INFO line with how many attempts failed
    and for how long, and forgets the outage's keys, so the next outage is reported at once.
    """

    def __init__(self, interval: float = REPORT_INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = interval
        self._clock = clock
        _REPORTERS.add(self)
        self._reset_after_fork()

    def _reset_after_fork(self) -> None:
        # A parent thread may have held the lock at fork time; the child reports afresh.
        self._lock = threading.Lock()
        self._keys: dict[str, _Key] = {}
        self._outages: dict[str, _Outage] = {}
        self._outage_keys: dict[str, set[str]] = {}
        self._recovered_at: dict[str, float] = {}

    def now(self) -> float:
        """The reports' clock: pass a reading taken when an attempt starts as ``started``."""
        return self._clock()

    def report(self, key: str, level: int, message: str, *args: object,
               outage: str | None = None, started: float | None = None) -> None:
        """Log ``message % args`` on the library logger unless ``key`` was logged less than
        ``interval`` seconds ago (then only count it). A failure of an attempt ``started``
        before ``outage`` last recovered belongs to that outage: it is not reported and does
        not open a new one (a slow request answered late). Never raises."""
        now = self._clock()
        with self._lock:
            if outage is not None and started is not None and (
                    started < self._recovered_at.get(outage, float("-inf"))):
                return
            if outage is not None:
                self._outages.setdefault(outage, _Outage(now)).failures += 1
                self._outage_keys.setdefault(outage, set()).add(key)
            state = self._keys.get(key)
            if state is not None and now - state.logged_at < self._interval:
                state.suppressed += 1
                return
            suppressed = state.suppressed if state is not None else 0
            self._keys[key] = _Key(now)
        _log(level, message, args, suppressed, self._interval)

    def failing(self, outage: str) -> bool:
        """True while ``outage`` has failures not yet followed by :meth:`recovered`."""
        return outage in self._outages

    def recovered(self, outage: str, what: str) -> None:
        """``what`` works again: if ``outage`` had failures, log one INFO line saying
        "<what> recovered after N failed attempts in S s" and forget the outage."""
        if outage not in self._outages:  # the common case: nothing to say, no lock taken
            return
        now = self._clock()
        with self._lock:
            state = self._outages.pop(outage, None)
            for key in self._outage_keys.pop(outage, set()):
                self._keys.pop(key, None)
            self._recovered_at[outage] = now
        if state is not None:
            logger.info("%s recovered after %d failed attempts in %.1f s", what,
                        state.failures, now - state.since)


def _log(level: int, message: str, args: tuple[object, ...], suppressed: int,
         interval: float) -> None:
    try:
        text = message % args if args else message
    except Exception:  # a bad format must not hide the report
        text = f"{message} {args!r}"
    if suppressed:
        text += f" ({suppressed} similar reports held back in the last {interval:.0f} s)"
    logger.log(level, scrub(text))


_REPORTERS: weakref.WeakSet[Reports] = weakref.WeakSet()


def _reset_reporters_after_fork() -> None:
    for reporter in list(_REPORTERS):
        reporter._reset_after_fork()


os.register_at_fork(after_in_child=_reset_reporters_after_fork)
