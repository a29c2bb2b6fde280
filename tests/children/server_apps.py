"""The apps the real-server tests run (``tests/test_e2e_servers.py``), configured from the
environment: ``TEST_S3_ENDPOINT``, ``TEST_S3_BUCKET``, ``TEST_CLOSE_TIMEOUT``.

Every request to ``/session/<id>`` logs one analytics record exactly as a user's code does;
``/health`` logs nothing. The S3Handler is built at import, so a server that imports the app
in each worker (uvicorn, gunicorn without ``--preload``) gets one per worker, and gunicorn
with ``--preload`` builds it in the master and forks it.

ASGI apps (uvicorn, gunicorn's UvicornWorker):

* ``wrapped``: a Starlette app with its own lifespan, wrapped by ``flush_on_shutdown``;
* ``lifespan_form``: the FastAPI-style ``lifespan=`` form awaiting ``aflush_all()``;
* ``raw_wrapped``: a raw ASGI app that does not speak lifespan, wrapped.

WSGI app (gunicorn sync workers): ``wsgi``.
At lifespan shutdown the Starlette apps print ``app shutdown pid=<pid> pending=<n>``: what the
handler still held when the flush began.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import s3_log_handler
from s3_log_handler import S3Handler
from s3_log_handler.asgi import flush_on_shutdown

HANDLER = S3Handler(os.environ["TEST_S3_BUCKET"], endpoint_url=os.environ["TEST_S3_ENDPOINT"],
                    close_timeout=float(os.environ.get("TEST_CLOSE_TIMEOUT", "15")))
analytics_logger = logging.getLogger("analytics")
analytics_logger.setLevel(logging.INFO)
analytics_logger.propagate = False
analytics_logger.addHandler(HANDLER)
_diagnostics = logging.getLogger("s3_log_handler")
_diagnostics.setLevel(logging.INFO)
_diagnostics.addHandler(logging.StreamHandler(sys.stderr))


def send_to_analytics_queue(data: dict[str, Any]) -> None:
    """The user's unchanged call site."""
    analytics_logger.info("Session analytics data", extra={"analytics_data": data})


def _log_request(path: str) -> None:
    if path.startswith("/session/"):
        send_to_analytics_queue({"session_id": path.rsplit("/", 1)[1], "pid": os.getpid()})


def _print_pending() -> None:
    stats = HANDLER.stats()
    print(f"app shutdown pid={os.getpid()} pending={stats['queued'] + stats['spooled']}",
          flush=True)


async def _session(request: Request) -> PlainTextResponse:
    _log_request(request.url.path)
    return PlainTextResponse("ok")


ROUTES = [Route("/session/{sid}", _session), Route("/health", _session)]


@contextlib.asynccontextmanager
async def _own_lifespan(app: Starlette) -> AsyncIterator[None]:
    yield
    _print_pending()  # the app's own shutdown code runs before the wrapper's flush


@contextlib.asynccontextmanager
async def _flushing_lifespan(app: Starlette) -> AsyncIterator[None]:
    yield
    _print_pending()
    await s3_log_handler.aflush_all()


wrapped = flush_on_shutdown(Starlette(routes=ROUTES, lifespan=_own_lifespan))
lifespan_form = Starlette(routes=ROUTES, lifespan=_flushing_lifespan)


async def _raw(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        raise RuntimeError(f"{scope['type']} is not supported")  # no lifespan support
    _log_request(scope["path"])
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


raw_wrapped = flush_on_shutdown(_raw)


def wsgi(environ: dict[str, Any],
         start_response: Callable[[str, list[tuple[str, str]]], Any]) -> Iterable[bytes]:
    _log_request(environ.get("PATH_INFO", ""))
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]

#: Without any integration (the control the numbers in the README compare against).
bare = Starlette(routes=ROUTES, lifespan=_own_lifespan)
