"""A waiting ``flush()`` does not delay new uploads (one wait per purpose), over real HTTP.

The bound on the ratio lives in ``make bench``; this test prints the ratio and asserts the
outcome: every record emitted while another thread waits in ``flush()`` reaches S3 while
that flush is still waiting, and nothing is lost.
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
from typing import Any

from conftest import wait_until
from servers import FaultProxy, SeenRequest

from s3_log_handler import S3Handler

SAMPLES = 15


class Gate:
    """Holds the PUT of the record ``slow`` until released; notes when each PUT arrives."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.arrived: dict[str, float] = {}

    def __call__(self, request: SeenRequest) -> tuple[int, bytes] | None:
        if request.method == "PUT":
            name = request.path.rsplit("/", 1)[-1].split(".")[0]
            self.arrived[name] = time.perf_counter()
            if name == "slow":
                self.release.wait(30)
        return None


def upload_start_latencies(handler: S3Handler, logger: logging.Logger, gate: Gate,
                           tag: str) -> list[float]:
    """Emit SAMPLES records one at a time; seconds from each emit to its PUT's arrival."""
    latencies = []
    for i in range(SAMPLES):
        name = f"{tag}-{i}"
        started = time.perf_counter()
        logger.info("Session analytics data", extra={"analytics_data": {"session_id": name}})
        assert wait_until(lambda name=name: name in gate.arrived, 10, interval=0.0005)
        latencies.append(gate.arrived[name] - started)
    return latencies


def test_a_record_emitted_while_flush_waits_starts_uploading_as_fast(
    moto_endpoint: str, bucket: str, s3: Any, analytics_logger: logging.Logger,
) -> None:
    """One upload thread is held by a slow PUT and another thread waits in flush() for it;
    records emitted meanwhile start uploading about as fast as without the waiting flush."""
    gate = Gate()
    proxy = FaultProxy(moto_endpoint, inject=gate).start()
    handler = S3Handler(bucket, endpoint_url=proxy.endpoint, workers=2)
    analytics_logger.addHandler(handler)
    try:
        upload_start_latencies(handler, analytics_logger, gate, "warm")
        alone = upload_start_latencies(handler, analytics_logger, gate, "alone")
        analytics_logger.info("Session analytics data",
                              extra={"analytics_data": {"session_id": "slow"}})
        assert wait_until(lambda: "slow" in gate.arrived, 10)
        flushed: list[bool] = []
        flusher = threading.Thread(target=lambda: flushed.append(handler.flush(30)))
        flusher.start()
        during = upload_start_latencies(handler, analytics_logger, gate, "during")
        still_waiting = flusher.is_alive()
        gate.release.set()
        flusher.join(30)
        ratio = statistics.median(during) / statistics.median(alone)
        print(f"\nemit -> PUT start, median: alone {statistics.median(alone) * 1e3:.2f} ms, "
              f"while flush() waits {statistics.median(during) * 1e3:.2f} ms, ratio {ratio:.2f}")
        assert still_waiting  # every "during" record reached S3 while flush() still waited
        assert flushed == [True]
        assert handler.flush(10)
        assert handler.stats()["delivered"] == 3 * SAMPLES + 1
        assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 3 * SAMPLES + 1
    finally:
        gate.release.set()
        handler.close()
        proxy.stop()
