"""``s3_log_handler.asgi``: the lifespan conversation, driven as a server drives it.

Real delivery through real servers is in ``tests/test_e2e_servers.py``; here the flush is
recorded, to check *when* it happens relative to the app's own lifespan and the server.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from s3_log_handler._flush_all import FlushOutcome
from s3_log_handler.asgi import FlushOnShutdown, flush_on_shutdown


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What happened, in order: the server's messages sent, "flush", the app's own steps."""
    seen: list[str] = []

    def fake_flush(timeout: float | None = None) -> FlushOutcome:
        seen.append(f"flush timeout={timeout}")
        return FlushOutcome(True, 1, 0, 0, 0.0, 0.0)

    monkeypatch.setattr("s3_log_handler.asgi.flush_handlers", fake_flush)
    return seen


async def drive_lifespan(app: Any, events: list[str]) -> None:
    """Startup, then shutdown, as uvicorn does; re-raises what the app raised."""
    inbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()

    async def receive() -> dict[str, str]:
        return await inbox.get()

    async def send(message: Any) -> None:
        events.append(message["type"])

    task = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"},
                                    "state": {}}, receive, send))
    await inbox.put({"type": "lifespan.startup"})
    for _ in range(200):
        if task.done() or any(e.startswith("lifespan.startup.") for e in events):
            break
        await asyncio.sleep(0.01)
    await inbox.put({"type": "lifespan.shutdown"})
    await asyncio.wait_for(task, 5)


def starlette_app(events: list[str]) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        events.append("app startup")
        yield
        events.append("app shutdown")

    async def hello(request: Any) -> PlainTextResponse:
        return PlainTextResponse("hi")

    return Starlette(routes=[Route("/", hello)], lifespan=lifespan)


def test_app_with_its_own_lifespan(events: list[str]) -> None:
    """The app's shutdown code runs first, then the flush, then the server hears 'complete'."""
    asyncio.run(drive_lifespan(flush_on_shutdown(starlette_app(events), timeout=3), events))
    assert events == ["app startup", "lifespan.startup.complete", "app shutdown",
                      "flush timeout=3", "lifespan.shutdown.complete"]


def test_as_starlette_middleware(events: list[str]) -> None:
    """``app.add_middleware(FlushOnShutdown)`` (Starlette, FastAPI) works the same."""
    app = starlette_app(events)
    app.add_middleware(FlushOnShutdown)
    asyncio.run(drive_lifespan(app, events))
    assert events == ["app startup", "lifespan.startup.complete", "app shutdown",
                      "flush timeout=None", "lifespan.shutdown.complete"]


@pytest.mark.parametrize("behaviour", ["raises", "returns"])
def test_app_without_lifespan_support(behaviour: str, events: list[str]) -> None:
    """An app that raises (or returns) on the lifespan scope: the wrapper answers it."""
    async def http_only(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" and behaviour == "raises":
            raise RuntimeError("http only")

    asyncio.run(drive_lifespan(flush_on_shutdown(http_only), events))
    assert events == ["lifespan.startup.complete", "flush timeout=None",
                      "lifespan.shutdown.complete"]


def test_app_failing_at_shutdown_still_flushes(events: list[str]) -> None:
    """An app that raises on 'shutdown' without answering: flushed, and the error goes on."""
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        raise RuntimeError("shutdown went wrong")

    with pytest.raises(RuntimeError, match="shutdown went wrong"):
        asyncio.run(drive_lifespan(flush_on_shutdown(app), events))
    assert events == ["lifespan.startup.complete", "flush timeout=None"]


def test_failed_startup_is_left_to_the_server(events: list[str]) -> None:
    """'startup.failed' reaches the server unchanged; nothing to flush, nothing masked."""
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})
        raise RuntimeError("no database")

    with pytest.raises(RuntimeError, match="no database"):
        asyncio.run(drive_lifespan(flush_on_shutdown(app), events))
    assert events == ["lifespan.startup.failed"]


def test_http_passes_through(events: list[str]) -> None:
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    async def nothing() -> dict[str, str]:
        return {}

    async def ignore(message: Any) -> None:
        pass

    asyncio.run(flush_on_shutdown(app)({"type": "http"}, nothing, ignore))
    assert seen == ["http"] and events == []
