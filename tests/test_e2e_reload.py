"""A plain ``logging.config.dictConfig()`` reload, over real HTTP, while another thread logs.

dictConfig holds logging's module lock while it closes the handlers it replaces, and botocore
needs that lock mid-upload: the handler must neither stall the reload nor drop what it holds.
"""

from __future__ import annotations

import logging
import logging.config
import threading
import time
from typing import Any

import orjson
from conftest import read_objects, wait_until

from s3_log_handler import S3Handler
from s3_log_handler.counters import balance


def _config(bucket: str, endpoint: str) -> dict[str, Any]:
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"s3": {"class": "s3_log_handler.S3Handler", "bucket": bucket,
                            "endpoint_url": endpoint, "close_timeout": 5}},
        "loggers": {"analytics.reload": {"level": "INFO", "handlers": ["s3"],
                                         "propagate": False}},
    }


class TestPlainDictConfigReload:
    def test_reloads_under_load_lose_nothing_and_do_not_stall(
        self, s3: Any, bucket: str, moto_endpoint: str
    ) -> None:
        """Three reloads while a thread logs continuously: every record lands exactly once,
        no handler drops one as closed, and each reload returns without waiting out
        close_timeout."""
        logger = logging.getLogger("analytics.reload")
        logging.config.dictConfig(_config(bucket, moto_endpoint))
        handlers: list[S3Handler] = [h for h in logger.handlers if isinstance(h, S3Handler)]
        sent: list[str] = []
        stop = threading.Event()

        def emit_until_stopped() -> None:
            n = 0
            while not stop.is_set():
                session_id = f"s{n:05d}"
                logger.info("Session analytics data",
                            extra={"analytics_data": {"session_id": session_id, "n": n}})
                sent.append(session_id)
                n += 1
                time.sleep(0.002)

        emitter = threading.Thread(target=emit_until_stopped)
        emitter.start()
        reload_seconds = []
        for _ in range(3):
            time.sleep(0.3)
            begin = time.monotonic()
            logging.config.dictConfig(_config(bucket, moto_endpoint))
            reload_seconds.append(time.monotonic() - begin)
            handlers += [h for h in logger.handlers if isinstance(h, S3Handler)]
        time.sleep(0.3)
        stop.set()
        emitter.join()
        assert handlers[-1].flush(30)
        for old in handlers[:-1]:
            assert wait_until(lambda h=old: h.stats()["queued"] == 0, 30)

        keys = read_objects(s3, bucket)
        landed = sorted(orjson.loads(body)["session_id"] for body in keys.values())
        assert landed == sorted(sent)
        assert len(handlers) == 4
        for handler in handlers:
            stats = handler.stats()
            assert stats["dropped"] == 0, stats["dropped_reasons"]
            assert balance(stats) == 0
        assert sum(h.stats()["delivered"] for h in handlers) == len(sent)
        assert max(reload_seconds) < 5, reload_seconds  # never waits out close_timeout
        assert all(body.endswith(b"\n") for body in keys.values())
