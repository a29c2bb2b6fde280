"""How ``flush_on_signals()`` leaves the process's own signal handling alone.

``python signal_child.py SETUP INSTALL COUNT`` (S3 settings from ``TEST_S3_ENDPOINT``,
``TEST_S3_BUCKET``). Logs COUNT analytics records, prints ``ready``, then waits for a signal.

SETUP ``default``: no handler of the app's own (SIGTERM kills, SIGINT raises
KeyboardInterrupt); ``previous``: the app's own Python SIGTERM handler, installed first, prints
``previous handler ran delivered=<n>`` and exits with status 3; ``loop``: an ``asyncio.run()``
app whose loop owns SIGTERM (``loop.add_signal_handler``), prints ``app handler ran
delivered=<n>`` and returns normally; ``locked``: the signal arrives while the main thread
holds the handler's ledger lock (as it does for a moment inside every ``emit()``), with
``flush_on_signals(timeout=1)``. INSTALL ``1`` calls ``flush_on_signals()`` twice (the
``loop=`` form for ``loop``); ``0`` does not (the control: how the process ends without us).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from types import FrameType

import s3_log_handler
from s3_log_handler import S3Handler

HANDLER = S3Handler(os.environ["TEST_S3_BUCKET"], endpoint_url=os.environ["TEST_S3_ENDPOINT"],
                    close_timeout=15)


def emit(count: int) -> None:
    analytics = logging.getLogger("analytics")
    analytics.setLevel(logging.INFO)
    analytics.propagate = False
    analytics.addHandler(HANDLER)
    for i in range(count):
        analytics.info("Session analytics data",
                       extra={"analytics_data": {"session_id": f"signal-{i}"}})


def delivered() -> int:
    return int(HANDLER.stats()["delivered"])


def previous_handler(signum: int, frame: FrameType | None) -> None:
    print(f"previous handler ran delivered={delivered()}", flush=True)
    sys.exit(3)


async def loop_app(install: bool, count: int) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def app_handler() -> None:
        print(f"app handler ran delivered={delivered()}", flush=True)
        stop.set()

    loop.add_signal_handler(signal.SIGTERM, app_handler)
    if install:
        s3_log_handler.flush_on_signals([signal.SIGTERM], loop=loop)
        s3_log_handler.flush_on_signals([signal.SIGTERM], loop=loop)
    emit(count)
    print("ready", flush=True)
    await stop.wait()


def main() -> None:
    setup, install, count = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3])
    diagnostics = logging.getLogger("s3_log_handler")
    diagnostics.setLevel(logging.INFO)
    diagnostics.addHandler(logging.StreamHandler(sys.stderr))
    if setup == "loop":
        asyncio.run(loop_app(install, count))
        return
    if setup == "previous":
        signal.signal(signal.SIGTERM, previous_handler)
    if install:
        s3_log_handler.flush_on_signals()
        s3_log_handler.flush_on_signals(timeout=1 if setup == "locked" else None)
    emit(count)
    if setup == "locked":
        HANDLER._ledger._lock.acquire()  # never released: the flush cannot take it
    print("ready", flush=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(0.05)


if __name__ == "__main__":
    main()
