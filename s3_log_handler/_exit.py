"""When the handler must not wait: inside ``dictConfig()``, and once interpreter exit began.

``dictConfig()`` holds logging's module lock while it closes the handlers it replaces, and
botocore needs that lock mid-upload: a flush or close inside it could only stall. At exit,
an ``atexit`` hook (which runs before logging's own: hooks run last-registered first, and
logging registered at its import) marks the moment, so the argument-less ``flush()`` and
the ``close()`` that ``logging.shutdown()`` calls share one deadline from there.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from typing import Any

#: The RLock that ``dictConfig()`` holds while it closes and replaces handlers.
LOGGING_MODULE_LOCK: Any = getattr(logging, "_lock", threading.RLock())

_started: float | None = None


def inside_logging_config() -> bool:
    """True on a thread holding logging's module lock, as ``dictConfig()`` does throughout."""
    is_owned = getattr(LOGGING_MODULE_LOCK, "_is_owned", None)
    return bool(is_owned()) if callable(is_owned) else False


def exit_started() -> float | None:
    """When interpreter exit began (``time.monotonic()``), or ``None`` before it."""
    return _started


def _exit_begins() -> None:
    global _started
    _started = time.monotonic()


atexit.register(_exit_begins)
