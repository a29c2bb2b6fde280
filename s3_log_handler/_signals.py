"""``flush_on_signals()``: flush every live handler on SIGTERM/SIGINT, then stop as before.

Opt-in only: nothing here runs unless the application calls :func:`flush_on_signals`.
Libraries that replace signal handlers behind the user's back are a known anti-pattern.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any

from ._aio import run_off_loop
from ._diagnostics import logger
from ._flush_all import FlushOutcome, default_timeout, flush_handlers, report

#: What ``signal.getsignal()`` returns: a callable, SIG_DFL/SIG_IGN, or None (set outside
#: Python).
_Previous = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None

#: Per signal: the handler installed before ours (signal.signal mode).
_previous: dict[int, _Previous] = {}
_timeouts: dict[int, float | None] = {}
_busy: set[int] = set()
_HINT = "; the process stops now as it would have without s3_log_handler"


def flush_on_signals(signals: Iterable[int] = (signal.SIGTERM, signal.SIGINT), *,
                     timeout: float | None = None,
                     loop: asyncio.AbstractEventLoop | None = None) -> None:
    """On each of ``signals``, flush every live :class:`S3Handler`, then let the signal do
    what it would have done without this call.

    * The flush waits at most ``timeout`` seconds (``None``: the largest ``close_timeout``
      of the live handlers at the time of the signal), and its outcome is logged on the
      ``s3_log_handler`` logger.
    * Then the handler that was installed before is called (a Python handler, e.g. your own
      or asyncio.run's SIGINT handler); with the default disposition, the default is restored
      and the signal raised again, so the process dies by it (exit status -15 / 143 for
      SIGTERM) exactly as without us; ``SIG_IGN`` stays ignored. A handler installed outside
      Python (``getsignal()`` returns None) is treated as the default.
    * A second signal arriving while the first is still flushing is passed on at once
      (Ctrl+C twice quits without waiting).
    * Calling it again installs nothing new (a later ``timeout`` replaces the earlier one).

    ``loop=None`` installs with ``signal.signal()``; the flush then runs while the main thread
    waits inside the signal handler, so an event loop on that thread pauses until it is done
    (the process is stopping anyway). Pass ``loop=`` when that event loop owns the signal
    (``loop.add_signal_handler``): the flush then runs as a task, off the loop, and chains
    to the loop's handler installed before (asyncio keeps one per signal: one added later
    replaces ours). Must be called from the main thread (``RuntimeError`` otherwise);
    POSIX only for ``loop=``.
    """
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("flush_on_signals() must be called from the main thread")
    for signum in signals:
        if loop is not None:
            _install_on_loop(loop, int(signum), timeout)
            continue
        _timeouts[int(signum)] = timeout
        if signal.getsignal(signum) is _on_signal:
            continue  # installed once already
        _previous[int(signum)] = signal.getsignal(signum)
        signal.signal(signum, _on_signal)


def _name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


# -- signal.signal mode --------------------------------------------------------------------
def _on_signal(signum: int, frame: FrameType | None) -> None:
    """The one handler installed for every signal (so "installed already" is an identity
    check). Runs on the main thread, between two bytecodes of whatever it interrupted."""
    if signum not in _busy:
        _busy.add(signum)
        try:
            outcome = _flush_from_signal(_timeouts.get(signum))
            if outcome is None:
                logger.warning("%s: the flush did not finish in time%s", _name(signum), _HINT)
            else:
                report(outcome, _name(signum), _HINT)
        except Exception:
            logger.exception("%s: flushing analytics records failed", _name(signum))
        finally:
            _busy.discard(signum)
    _chain(signum, frame, _previous.get(signum, signal.SIG_DFL))


def _flush_from_signal(timeout: float | None) -> FlushOutcome | None:
    """Flush on a helper thread while the main thread waits, bounded.

    Not inline: the interrupted code may hold a lock the flush needs (a handler's ledger lock
    while it admits a record), and waiting for it on the same thread would never end.
    """
    limit = default_timeout() if timeout is None else max(0.0, timeout)
    box: list[FlushOutcome] = []
    helper = threading.Thread(target=lambda: box.append(flush_handlers(limit)), daemon=True,
                              name="s3-log-handler-signal-flush")
    try:
        helper.start()
    except RuntimeError:  # interpreter shutdown: exit's own flush runs anyway
        return None
    helper.join(limit + 1.0)
    return box[0] if box else None


def _chain(signum: int, frame: FrameType | None, previous: _Previous) -> None:
    """Do what ``signum`` would have done without us."""
    if callable(previous):
        previous(signum, frame)
        return
    if previous == signal.SIG_IGN:
        return
    # SIG_DFL, or None (a handler not set from Python): the default action, re-raised.
    current = signal.getsignal(signum)
    signal.signal(signum, signal.SIG_DFL)
    try:
        signal.raise_signal(signum)  # terminating signals end the process right here
    finally:
        # A default of "ignore" (SIGWINCH...) or "stop" (SIGTSTP) returns: stay installed.
        signal.signal(signum, current)


# -- loop.add_signal_handler mode ----------------------------------------------------------
class _LoopRelay:
    """Our loop callback for one signal: flush as a task, then chain."""

    def __init__(self, loop: asyncio.AbstractEventLoop, signum: int,
                 timeout: float | None) -> None:
        self.loop = loop
        self.signum = signum
        self.timeout = timeout
        existing = _loop_handle(loop, signum)
        self.previous_callback: Callable[..., object] | None = None
        self.previous_args: tuple[object, ...] = ()
        if existing is not None:
            self.previous_callback = getattr(existing, "_callback", None)
            self.previous_args = tuple(getattr(existing, "_args", None) or ())
            if self.previous_callback is None:
                raise RuntimeError(f"cannot chain to the handler this loop already has for "
                                   f"{_name(signum)}; call flush_on_signals(loop=...) before "
                                   f"adding yours")
        previous = signal.getsignal(signum)
        # Ours from signal.signal mode already flushes: chain past it, never flush twice.
        self.previous_python = _previous.get(signum) if previous is _on_signal else previous
        self.busy = False
        self._tasks: set[asyncio.Task[None]] = set()

    def fire(self) -> None:
        if self.busy:  # a second signal while flushing: pass it on at once
            self._chain()
            return
        self.busy = True
        task = self.loop.create_task(self._flush_then_chain())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush_then_chain(self) -> None:
        try:
            limit = self.timeout
            outcome = await run_off_loop(lambda: flush_handlers(limit),
                                         name="s3-log-handler-signal-flush")
            report(outcome, _name(self.signum), _HINT)
        except Exception:
            logger.exception("%s: flushing analytics records failed", _name(self.signum))
        finally:
            self.busy = False
        self._chain()

    def _chain(self) -> None:
        if self.previous_callback is not None:
            self.previous_callback(*self.previous_args)
            return
        if callable(self.previous_python):
            self.previous_python(self.signum, None)
            return
        if self.previous_python == signal.SIG_IGN:
            return
        self.loop.remove_signal_handler(self.signum)
        signal.signal(self.signum, signal.SIG_DFL)
        signal.raise_signal(self.signum)
        # Still alive (a default of "ignore" or "stop"): take the signal again.
        self.loop.add_signal_handler(self.signum, self.fire)


def _loop_handle(loop: asyncio.AbstractEventLoop, signum: int) -> object | None:
    """The handle this loop holds for ``signum``, if any (asyncio keeps them privately)."""
    handlers = getattr(loop, "_signal_handlers", None)
    return handlers.get(signum) if isinstance(handlers, dict) else None


def _install_on_loop(loop: asyncio.AbstractEventLoop, signum: int,
                     timeout: float | None) -> None:
    existing = _loop_handle(loop, signum)
    relay = getattr(getattr(existing, "_callback", None), "__self__", None)
    if isinstance(relay, _LoopRelay):
        relay.timeout = timeout  # installed once already
        return
    relay = _LoopRelay(loop, signum, timeout)
    loop.add_signal_handler(signum, relay.fire)
