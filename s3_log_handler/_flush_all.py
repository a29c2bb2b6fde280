"""Flush every live :class:`S3Handler` at once, within one deadline.

What the shutdown integrations share (ASGI lifespan, signals, Lambda): :func:`flush_handlers`
waits on plain threads and reports what it saw; :func:`aflush_all` is the public awaitable.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from ._aio import run_off_loop
from ._diagnostics import logger
from ._handler import _LIVE_HANDLERS, S3Handler


def live_handlers() -> list[S3Handler]:
    """Every open, enabled :class:`S3Handler` in this process (closed ones are gone)."""
    return [h for h in list(_LIVE_HANDLERS) if h.config.enabled]


def default_timeout(handlers: list[S3Handler] | None = None) -> float:
    """The largest ``close_timeout`` of ``handlers`` (default: the live ones); 0 without any.

    Reads settings only, takes no lock: safe inside a signal handler.
    """
    chosen = live_handlers() if handlers is None else handlers
    return max((h.config.close_timeout for h in chosen), default=0.0)


def pending(handlers: list[S3Handler]) -> int:
    """Records the handlers still hold (``queued`` + ``spooled``), recovered ones included."""
    total = 0
    for handler in handlers:
        stats = handler.stats()
        total += int(stats["queued"]) + int(stats["spooled"])
    return total


@dataclass(frozen=True)
class FlushOutcome:
    """What one :func:`flush_handlers` call saw."""

    delivered: bool  #: every record emitted before the call was delivered
    handlers: int  #: how many handlers were flushed
    pending_before: int  #: records held (queued + spooled) when the flush began
    pending_after: int  #: records still held when it ended
    seconds: float  #: how long it waited
    timeout: float  #: the deadline it was given, in seconds


def flush_handlers(timeout: float | None = None) -> FlushOutcome:
    """Flush every live handler concurrently, all within ``timeout`` seconds from now.

    ``None`` means the largest ``close_timeout`` of those handlers. Blocks the calling
    thread (each handler's wait runs on a thread of its own, so one handler whose uploads
    run on the waiting thread cannot delay another). Never raises for a handler: one whose
    flush fails counts as not delivered.
    """
    handlers = live_handlers()
    limit = default_timeout(handlers) if timeout is None else max(0.0, float(timeout))
    start = time.monotonic()
    if not handlers:
        return FlushOutcome(True, 0, 0, 0, 0.0, limit)
    deadline = start + limit
    before = _pending_quietly(handlers)
    results: list[bool] = []
    threads: list[threading.Thread] = []
    inline: list[S3Handler] = []

    def wait_for(handler: S3Handler) -> None:
        try:
            ok = handler.flush(max(0.0, deadline - time.monotonic()))
        except Exception:
            ok = False
        results.append(ok)  # list.append is atomic

    for handler in handlers:
        thread = threading.Thread(target=wait_for, args=(handler,), daemon=True,
                                  name="s3-log-handler-flush-all")
        try:
            thread.start()
        except RuntimeError:  # interpreter shutdown: no new threads, wait here instead
            inline.append(handler)
            continue
        threads.append(thread)
    for handler in inline:
        wait_for(handler)
    for thread in threads:
        # A flush returns by its deadline; the small grace covers thread scheduling only.
        thread.join(max(0.0, deadline - time.monotonic()) + 0.25)
    delivered = len(results) == len(handlers) and all(results)
    return FlushOutcome(delivered, len(handlers), before, _pending_quietly(handlers),
                        time.monotonic() - start, limit)


async def aflush_all(timeout: float | None = None) -> bool:
    """Flush every live :class:`S3Handler` concurrently, without blocking the event loop.

    Waits at most ``timeout`` seconds for all of them together (``None``: the largest
    ``close_timeout`` among them). Returns True only if every record emitted before the
    call was delivered; True at once when no handler is live. The wait runs on a thread of
    its own, not on the loop's default executor (which may already be shut down during
    lifespan shutdown).
    """
    outcome = await run_off_loop(lambda: flush_handlers(timeout),
                                 name="s3-log-handler-aflush-all")
    return outcome.delivered


def report(outcome: FlushOutcome, where: str, hint: str = "", *,
           success_level: int = logging.INFO) -> None:
    """Log ``outcome`` on the ``s3_log_handler`` logger: one ``success_level`` line when
    everything was delivered (DEBUG when nothing was pending), one WARNING with what is still
    held otherwise. ``where`` names the integration (``"SIGTERM"``, ``"lifespan shutdown"``)."""
    if outcome.delivered:
        level = success_level if outcome.pending_before else logging.DEBUG
        logger.log(level, "%s: analytics records flushed to S3 in %.2f s (%d were pending)",
                   where, outcome.seconds, max(outcome.pending_before, 0))
        return
    logger.warning("%s: not every analytics record was delivered to S3 after %.2f s (timeout "
                   "%.2f s): %d still held in memory or spool, %d were pending at the start%s",
                   where, outcome.seconds, outcome.timeout, outcome.pending_after,
                   outcome.pending_before, hint)


def _pending_quietly(handlers: list[S3Handler]) -> int:
    try:
        return pending(handlers)
    except Exception:  # counting is informative only; never let it cost the flush
        return -1
