"""Memory stays bounded during a long outage: dropped records cost nothing once counted."""

from __future__ import annotations

import logging
import tracemalloc

from botocore.config import Config
from conftest import wait_until
from servers import BlackholeServer

from s3_log_handler import S3Handler
from s3_log_handler.counters import balance

RECORDS = 100_000


def test_an_outage_that_drops_100k_records_keeps_memory_flat(
    analytics_logger: logging.Logger,
) -> None:
    """S3 never answers, no spool, an 8 KiB queue: 100,000 records are counted (a few queued,
    the rest dropped ``queue_full``), and what Python holds grows by far less than the ~130
    bytes per dropped record the old flush bookkeeping kept."""
    blackhole = BlackholeServer()
    handler = S3Handler("outage-bucket", endpoint_url=blackhole.endpoint,
                        max_queue_bytes=8 * 1024, close_timeout=0.5,
                        botocore_config=Config(connect_timeout=1, read_timeout=1,
                                               retries={"mode": "standard", "max_attempts": 1}))
    # Only ours: pytest's capture handlers would keep every record and hide the measurement.
    analytics_logger.handlers[:] = [handler]
    payload = {"session_id": "s", "duration_seconds": 1.5, "notes": "x" * 200}
    try:
        for _ in range(1_000):  # warm up: threads, the client (botocore's models), reports
            analytics_logger.info("Session analytics data", extra={"analytics_data": payload})
        assert wait_until(lambda: handler.stats()["failed"] >= 1, 20)
        tracemalloc.start()
        before, _ = tracemalloc.get_traced_memory()
        for _ in range(RECORDS):
            analytics_logger.info("Session analytics data", extra={"analytics_data": payload})
        after, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        stats = handler.stats()
        growth = after - before
        print(f"\nheld by Python after {RECORDS:,} records in an outage: +{growth / 1024:.0f} KiB "
              f"({growth / RECORDS:.1f} B per record); dropped {stats['dropped']:,}")
        assert stats["emitted"] == RECORDS + 1_000 and balance(stats) == 0
        assert stats["dropped_reasons"]["queue_full"] >= RECORDS - 100
        assert growth < 1024 * 1024  # the old bookkeeping: ~13 MiB for these drops
    finally:
        handler.close()
        blackhole.stop()
