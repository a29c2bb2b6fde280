"""A plain ``asyncio.run()`` worker: a tiny HTTP server on asyncio streams whose requests to
``/session/<id>`` each log one analytics record, with ``flush_on_signals()``.

``python asyncio_worker.py MODE PORT`` (S3 settings from ``TEST_S3_ENDPOINT``,
``TEST_S3_BUCKET``, ``TEST_CLOSE_TIMEOUT``). MODE ``signal``: ``flush_on_signals()`` before
``asyncio.run``; ``loop``: ``flush_on_signals(loop=...)`` inside it (the loop owns SIGTERM).
Nothing else handles SIGTERM, so the process dies by it, as such workers do.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys

import s3_log_handler
from s3_log_handler import S3Handler


def setup_logging() -> None:
    handler = S3Handler(os.environ["TEST_S3_BUCKET"],
                        endpoint_url=os.environ["TEST_S3_ENDPOINT"],
                        close_timeout=float(os.environ.get("TEST_CLOSE_TIMEOUT", "15")))
    analytics = logging.getLogger("analytics")
    analytics.setLevel(logging.INFO)
    analytics.propagate = False
    analytics.addHandler(handler)
    diagnostics = logging.getLogger("s3_log_handler")
    diagnostics.setLevel(logging.INFO)
    diagnostics.addHandler(logging.StreamHandler(sys.stderr))


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    request_line = await reader.readline()
    while (await reader.readline()) not in (b"\r\n", b"\n", b""):
        pass
    parts = request_line.split()
    path = parts[1].decode() if len(parts) > 1 else ""
    if path.startswith("/session/"):
        logging.getLogger("analytics").info(
            "Session analytics data",
            extra={"analytics_data": {"session_id": path.rsplit("/", 1)[1]}})
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
    await writer.drain()
    writer.close()


async def main(mode: str, port: int) -> None:
    if mode == "loop":
        s3_log_handler.flush_on_signals(loop=asyncio.get_running_loop())
    server = await asyncio.start_server(handle, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    setup_logging()
    if sys.argv[1] == "signal":
        s3_log_handler.flush_on_signals()
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
