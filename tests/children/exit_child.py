"""Logs analytics records through an S3Handler and exits WITHOUT flush() or close().

Run by ``tests/test_e2e_core.py``: ``python exit_child.py ENDPOINT BUCKET COUNT CLOSE_TIMEOUT``.
Whatever reaches S3 got there through ``logging.shutdown()`` at interpreter exit. Prints
``emitted <COUNT> <time.time()>`` once the log calls returned, and, after
``logging.shutdown()`` has run, ``stats <json>`` with the handler's counters and their balance.
"""

from __future__ import annotations

import atexit
import json
import sys
import time
from typing import Any

_HANDLERS: list[Any] = []


def _report_stats() -> None:
    """Print the counters once logging has shut down."""
    from s3_log_handler.counters import balance

    for handler in _HANDLERS:
        stats = handler.stats()
        print("stats", json.dumps({"balance": balance(stats), **stats}), flush=True)


# atexit runs handlers last-in first-out: registering before `logging` is imported (logging
# registers its shutdown on import) makes this run after logging.shutdown().
atexit.register(_report_stats)

import logging  # noqa: E402

from s3_log_handler import S3Handler  # noqa: E402


def main() -> None:
    endpoint, bucket, count, close_timeout = sys.argv[1:5]
    handler = S3Handler(bucket, endpoint_url=endpoint, close_timeout=float(close_timeout))
    _HANDLERS.append(handler)
    analytics_logger = logging.getLogger("analytics.exit_child")
    analytics_logger.setLevel(logging.INFO)
    analytics_logger.propagate = False
    analytics_logger.addHandler(handler)
    for i in range(int(count)):
        analytics_logger.info("Session analytics data",
                              extra={"analytics_data": {"session_id": f"exit-{i}", "i": i}})
    print(f"emitted {count} {time.time()!r}", flush=True)


if __name__ == "__main__":
    main()
