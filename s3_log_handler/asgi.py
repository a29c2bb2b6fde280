"""ASGI integration: flush every live S3Handler during the server's lifespan shutdown.

uvicorn (and gunicorn's ``UvicornWorker``) end a graceful shutdown by raising SIGTERM again
with the default disposition, so neither ``atexit`` nor ``logging.shutdown()`` runs and what
is still queued in memory is lost. The ASGI lifespan ``shutdown`` event is the hook that does
run::

    from s3_log_handler.asgi import flush_on_shutdown
    app = flush_on_shutdown(app)          # or: app.add_middleware(FlushOnShutdown)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ._aio import run_off_loop
from ._diagnostics import logger
from ._flush_all import flush_handlers, report

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_SHUTDOWN_ANSWERS = ("lifespan.shutdown.complete", "lifespan.shutdown.failed")


class FlushOnShutdown:
    """Wraps an ASGI app; at lifespan shutdown, flushes every live handler before the server
    is told the shutdown is complete.

    * HTTP and WebSocket scopes pass through untouched (no per-request cost beyond one
      comparison).
    * The app's own lifespan runs first, as without the wrapper (Starlette/FastAPI
      ``lifespan=``, ``on_shutdown``): the flush happens when the app answers
      ``lifespan.shutdown.complete`` (or ``.failed``), just before that answer reaches the
      server, so records logged by the app's own shutdown code are flushed too.
    * An app that does not speak lifespan (it raises, or returns, before answering
      ``lifespan.startup``) is answered by the wrapper itself, so the flush still happens.
    * The flush waits at most ``timeout`` seconds (``None``: the largest ``close_timeout``)
      without blocking the event loop, and its outcome is logged on the ``s3_log_handler``
      logger. It never raises into the server.

    Usable as Starlette/FastAPI middleware too: ``app.add_middleware(FlushOnShutdown)``.
    """

    def __init__(self, app: ASGIApp, timeout: float | None = None) -> None:
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "lifespan":
            await self.app(scope, receive, send)
            return
        await _Lifespan(self, receive, send).run(scope)

    async def flush(self) -> None:
        """Flush every live handler (bounded by ``timeout``) and log the outcome."""
        try:
            timeout = self.timeout
            outcome = await run_off_loop(lambda: flush_handlers(timeout),
                                         name="s3-log-handler-lifespan-flush")
            report(outcome, "lifespan shutdown")
        except Exception:
            logger.exception("lifespan shutdown: flushing analytics records failed")


def flush_on_shutdown(app: ASGIApp, *, timeout: float | None = None) -> FlushOnShutdown:
    """``app``, wrapped so that the server's lifespan shutdown flushes every live
    :class:`S3Handler` first; see :class:`FlushOnShutdown`."""
    return FlushOnShutdown(app, timeout)


class _Lifespan:
    """One lifespan conversation between the server and the wrapped app."""

    def __init__(self, owner: FlushOnShutdown, receive: Receive, send: Send) -> None:
        self.owner = owner
        self.server_receive = receive
        self.server_send = send
        self.startup_received = False
        self.startup_answered = False
        self.shutdown_received = False
        self.flushed = False

    async def run(self, scope: Scope) -> None:
        try:
            await self.owner.app(scope, self.receive, self.send)
        except Exception as exc:
            if self.startup_answered:
                await self.flush_once_if_stopping()
                raise
            logger.debug("the ASGI app does not support lifespan (%r); s3_log_handler answers "
                         "it to flush at shutdown", exc)
        if not self.startup_answered:  # raised or returned without speaking lifespan
            await self.serve_lifespan()
        else:
            await self.flush_once_if_stopping()

    async def receive(self) -> Message:
        message = await self.server_receive()
        kind = message.get("type")
        if kind == "lifespan.startup":
            self.startup_received = True
        elif kind == "lifespan.shutdown":
            self.shutdown_received = True
        return message

    async def send(self, message: Message) -> None:
        kind = str(message.get("type", ""))
        if kind.startswith("lifespan.startup."):
            self.startup_answered = True
        elif kind in _SHUTDOWN_ANSWERS:
            await self.flush_once()
        await self.server_send(message)

    async def flush_once(self) -> None:
        if not self.flushed:
            self.flushed = True
            await self.owner.flush()

    async def flush_once_if_stopping(self) -> None:
        """The app ended after shutdown began without answering it: flush anyway."""
        if self.shutdown_received:
            await self.flush_once()

    async def serve_lifespan(self) -> None:
        """Speak lifespan in the app's place: accept startup, flush at shutdown."""
        while not self.startup_received:
            if (await self.server_receive()).get("type") == "lifespan.startup":
                self.startup_received = True
        await self.server_send({"type": "lifespan.startup.complete"})
        while not self.shutdown_received:
            if (await self.server_receive()).get("type") == "lifespan.shutdown":
                self.shutdown_received = True
        await self.flush_once()
        await self.server_send({"type": "lifespan.shutdown.complete"})
