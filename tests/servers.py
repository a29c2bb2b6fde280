"""Real network peers for tests: a fault-injecting recording proxy, and a server that never answers.

Both listen on 127.0.0.1 only and stop when their test ends.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit


@dataclass
class SeenRequest:
    """One request the proxy saw: method, path and headers (lower-cased names)."""

    method: str
    path: str
    headers: dict[str, str]


#: Returns ``(status, xml_body)`` to answer instead of the upstream, or ``None`` to forward.
Injector = Callable[[SeenRequest], tuple[int, bytes] | None]


def s3_error(code: str, message: str = "injected") -> bytes:
    """An S3-style XML error body."""
    return (f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>"
            f"<Message>{message}</Message><RequestId>test</RequestId></Error>").encode()


def _answer(handler: BaseHTTPRequestHandler, status: int, payload: bytes,
            headers: list[tuple[str, str]] | None = None) -> None:
    """Send one complete response (hop-by-hop and length headers replaced by ours)."""
    handler.send_response(status)
    if headers is None:
        headers = [("Content-Type", "application/xml")]
    for k, v in headers:
        if k.lower() not in ("transfer-encoding", "connection", "content-length"):
            handler.send_header(k, v)
    handler.send_header("Content-Length", str(len(payload)))
    handler.end_headers()
    handler.wfile.write(payload)


def _forward(upstream: str, handler: BaseHTTPRequestHandler, body: bytes) -> tuple[
        int, bytes, list[tuple[str, str]]]:
    """Send ``handler``'s request (with ``body``) to ``upstream``; its status, body, headers
    (in :func:`_answer`'s order)."""
    up = urlsplit(upstream)
    conn = http.client.HTTPConnection(up.hostname or "127.0.0.1", up.port, timeout=30)
    try:
        headers = {k: v for k, v in handler.headers.items() if k.lower() != "connection"}
        conn.request(handler.command, handler.path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read(), resp.getheaders()
    finally:
        conn.close()


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length else b""


def _seen(handler: BaseHTTPRequestHandler) -> SeenRequest:
    return SeenRequest(handler.command, handler.path,
                       {k.lower(): v for k, v in handler.headers.items()})


class _Loopback:
    """A threaded HTTP server on 127.0.0.1 for one handler class, stopped by :meth:`stop`."""

    _server: ThreadingHTTPServer | None = None

    @property
    def endpoint(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def _serve(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


class _Quiet(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass


@dataclass
class FaultProxy(_Loopback):
    """An HTTP proxy in front of ``upstream`` that records requests and can inject errors."""

    upstream: str
    inject: Injector | None = None
    seen: list[SeenRequest] = field(default_factory=list)

    def start(self) -> FaultProxy:
        proxy = self

        class Handler(_Quiet):
            def _relay(self) -> None:
                body = _read_body(self)
                request = _seen(self)
                proxy.seen.append(request)
                injected = proxy.inject(request) if proxy.inject else None
                if injected is not None:
                    _answer(self, *injected)
                    return
                _answer(self, *_forward(proxy.upstream, self, body))

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _relay

        self._serve(Handler)
        return self


class BlackholeServer:
    """Accepts TCP connections on 127.0.0.1 and never answers a byte."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(1024)
        self._held: list[socket.socket] = []
        self._stopped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self._held.append(conn)

    def stop(self) -> None:
        self._stopped.set()
        # close() alone leaves the port listening while accept() blocks in another thread.
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        for conn in self._held:
            conn.close()


#: What :class:`FlakyWireProxy` does to one request instead of relaying it cleanly.
ERROR_500 = "error500"  #: answer 500 InternalError; nothing is forwarded
CUT = "cut"  #: close the connection before reading the body; nothing is forwarded
LOSE_RESPONSE = "lose_response"  #: forward (upstream stores it), then close without answering
WIRE_FAULTS = (ERROR_500, CUT, LOSE_RESPONSE)

#: Decides, per request (headers only, body unread), which wire fault to apply, or ``None``.
WirePlan = Callable[[SeenRequest], str | None]


@dataclass
class FlakyWireProxy(_Loopback):
    """An HTTP proxy in front of ``upstream`` whose wire fails the way real ones do.

    For each request ``plan`` picks one of :data:`WIRE_FAULTS` or ``None`` (relay it):
    a 500 ``InternalError`` answer, a connection cut before the request is read, or a
    request that reaches the upstream (which stores it) whose response is then lost.
    ``seen`` lists every request, ``applied`` every fault with its request, ``forwarded``
    every request the upstream received. Listens on 127.0.0.1 until :meth:`stop`.
    """

    upstream: str
    plan: WirePlan | None = None
    seen: list[SeenRequest] = field(default_factory=list)
    applied: list[tuple[str, SeenRequest]] = field(default_factory=list)
    forwarded: list[SeenRequest] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> FlakyWireProxy:
        proxy = self

        class Handler(_Quiet):
            def _hang_up(self) -> None:
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)

            def _relay(self) -> None:
                request = _seen(self)
                fault = proxy.plan(request) if proxy.plan else None
                with proxy._lock:
                    proxy.seen.append(request)
                    if fault is not None:
                        proxy.applied.append((fault, request))
                try:
                    if fault == CUT:
                        self._hang_up()
                        return
                    body = _read_body(self)
                    if fault == ERROR_500:
                        _answer(self, 500, s3_error("InternalError", "injected by FlakyWireProxy"))
                        return
                    response = _forward(proxy.upstream, self, body)
                    with proxy._lock:
                        proxy.forwarded.append(request)
                    if fault == LOSE_RESPONSE:
                        self._hang_up()
                        return
                    _answer(self, *response)
                except OSError:  # the client went away first: nothing to answer
                    self.close_connection = True

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _relay

        self._serve(Handler)
        return self
