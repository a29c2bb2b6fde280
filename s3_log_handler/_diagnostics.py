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
import weakref

logger = logging.getLogger("s3_log_handler")

#: Loggers whose records an S3Handler never ships (its own voice and the AWS stack's).
INTERNAL_LOGGERS = ("s3_log_handler", "botocore", "boto3", "urllib3", "s3transfer")

_INTERNAL_ROOTS = frozenset(INTERNAL_LOGGERS)
_worker_flag = threading.local()
_AWS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA|AROA|AIDA)[A-Z0-9]{12,}\b")
_CREDENTIAL_VARS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID",
                    "AWS_SECURITY_TOKEN", "ANALYTICS_HASH_KEY")


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


class ReportOnce:
    """Reports each distinct key once (e.g. once per error code), then stays quiet."""

    def __init__(self) -> None:
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        _REPORTERS.add(self)

    def _reset_after_fork(self) -> None:
        # A parent thread may have held the lock at fork time; the child reports afresh.
        self._lock = threading.Lock()
        self._seen = set()

    def first(self, key: str) -> bool:
        """True the first time ``key`` is seen by this instance."""
        with self._lock:
            if key in self._seen:
                return False
            self._seen.add(key)
            return True

    def report(self, key: str, level: int, message: str, *args: object) -> None:
        """Log ``message`` on the library logger the first time ``key`` is seen."""
        if self.first(key):
            logger.log(level, scrub(message % args if args else message))


_REPORTERS: weakref.WeakSet[ReportOnce] = weakref.WeakSet()


def _reset_reporters_after_fork() -> None:
    for reporter in list(_REPORTERS):
        reporter._reset_after_fork()


os.register_at_fork(after_in_child=_reset_reporters_after_fork)
