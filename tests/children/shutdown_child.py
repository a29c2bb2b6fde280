"""Logs analytics records, then ends in one of the ways a real service ends, WITHOUT a final
flush of its own: ``python shutdown_child.py MODE ENDPOINT BUCKET COUNT``.

MODE ``root``: the S3Handler sits on the root logger at INFO (it also sees botocore's own
records); ``reload``: a second ``dictConfig()`` replaces the handler just before exit;
``short_flush``: ``flush(0.01)`` times out, then ``close()`` is called by hand.
Whatever reaches S3 got there through the library's own shutdown paths.
"""

from __future__ import annotations

import logging
import logging.config
import sys
from typing import Any


def config(endpoint: str, bucket: str, logger: str) -> dict[str, Any]:
    target = {"handlers": ["s3"], "level": "INFO"}
    document: dict[str, Any] = {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"s3": {"class": "s3_log_handler.S3Handler", "bucket": bucket,
                            "endpoint_url": endpoint, "close_timeout": 20}},
    }
    if logger == "root":
        document["root"] = target
    else:
        document["loggers"] = {logger: {**target, "propagate": False}}
    return document


def main() -> None:
    mode, endpoint, bucket, count = sys.argv[1:5]
    logger_name = "root" if mode == "root" else "analytics"
    logging.config.dictConfig(config(endpoint, bucket, logger_name))
    analytics_logger = logging.getLogger("analytics")
    for i in range(int(count)):
        analytics_logger.info("Session analytics data",
                              extra={"analytics_data": {"session_id": f"{mode}-{i}", "i": i}})
    if mode == "reload":
        logging.config.dictConfig(config(endpoint, bucket, logger_name))
    if mode == "short_flush":
        handler = logging.getLogger("analytics").handlers[0]
        print("short flush", handler.flush(0.01), flush=True)
        handler.close()
    print("done", flush=True)


if __name__ == "__main__":
    main()
