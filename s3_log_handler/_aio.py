"""Run one blocking call off the event loop, on a thread of its own.

Not ``asyncio.to_thread`` / ``loop.run_in_executor(None, ...)``: the loop's default executor
may already be shut down (``loop.shutdown_default_executor()``) or saturated by the
application exactly when a flush matters most, during lifespan shutdown. A dedicated daemon
thread answers through an ``asyncio.Future`` instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


async def run_off_loop(call: Callable[[], T], *, name: str = "s3-log-handler-aflush") -> T:
    """Run ``call()`` on a new daemon thread and await its result (or exception).

    The loop keeps running meanwhile. Cancelling the awaiting task abandons the result; the
    thread still ends by itself (``call`` must be bounded, as every flush is). When no thread
    can be started (interpreter shutdown), ``call()`` runs on the loop's thread instead.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(value: T | None, error: BaseException | None) -> None:
        if future.done():  # the awaiting task was cancelled
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)  # type: ignore[arg-type]

    def work() -> None:
        value: T | None = None
        error: BaseException | None = None
        try:
            value = call()
        except BaseException as exc:  # handed to the awaiting task, never lost here
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop was closed meanwhile
            loop.call_soon_threadsafe(settle, value, error)

    try:
        threading.Thread(target=work, name=name, daemon=True).start()
    except RuntimeError:  # "can't create new thread at interpreter shutdown"
        return call()
    return await future
