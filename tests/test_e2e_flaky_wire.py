"""Batch mode over a flaky wire: 500s, connections cut, and responses lost after S3 stored.

A :class:`FlakyWireProxy` sits between the handler and moto. The first PUTs fail in turn as
(a) a 500 InternalError, (b) a connection cut before the request is read, and (c) a request
that moto stores whose response is then lost; later PUTs fail the same ways at random (fixed
seed). A batch keeps its key across retries, so a retry after a lost response overwrites
the same object: every record must be in S3 exactly once (read from moto directly).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import botocore.config
import orjson
import pytest
from conftest import read_objects, wait_until
from servers import CUT, ERROR_500, LOSE_RESPONSE, WIRE_FAULTS, FlakyWireProxy, SeenRequest

from s3_log_handler import S3Handler
from s3_log_handler.counters import balance

RECORDS = 500
THREADS = 4


class WirePattern:
    """PUT number n fails as ``WIRE_FAULTS[n % 3]`` for the first ``first`` PUTs, then at
    random with probability ``p`` (``random.Random(seed)``); other requests pass."""

    def __init__(self, first: int, p: float, seed: int) -> None:
        self._first = first
        self._p = p
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._puts = 0
        self.active = True

    def __call__(self, request: SeenRequest) -> str | None:
        if request.method != "PUT" or not self.active:
            return None
        with self._lock:
            n = self._puts
            self._puts += 1
            if n < self._first:
                return WIRE_FAULTS[n % len(WIRE_FAULTS)]
            if self._rng.random() < self._p:
                return self._rng.choice(WIRE_FAULTS)
        return None


class Sampler:
    """Every ``handler.stats()`` sample taken on a thread while the block runs."""

    def __init__(self, handler: S3Handler) -> None:
        self._handler = handler
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="test-stats-sampler")
        self.samples: list[dict[str, Any]] = []

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self._handler.stats())
            time.sleep(0.001)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        wait_until(lambda: len(self.samples) > 20, 10)
        self._stop.set()
        self._thread.join()


def bad_samples(samples: Sequence[Mapping[str, Any]]) -> list[tuple[int, str]]:
    """(sample index, what is wrong) for samples that do not balance or count below zero."""
    bad = []
    for i, stats in enumerate(samples):
        if balance(dict(stats)):
            bad.append((i, f"balance {balance(dict(stats))}"))
        for name, value in stats.items():
            counts = value.items() if isinstance(value, Mapping) else [(None, value)]
            for reason, count in counts:
                if isinstance(count, int) and count < 0:
                    bad.append((i, f"{name}{f'[{reason}]' if reason else ''} = {count}"))
    return bad


@pytest.mark.parametrize("spool", [False, True], ids=["memory", "spool"])
def test_batches_over_a_flaky_wire_arrive_exactly_once(
    spool: bool, tmp_path: Path, moto_endpoint: str, s3: Any, bucket: str,
    analytics_logger: logging.Logger,
) -> None:
    """500 records in batches of 50 through 500s, cut connections and lost responses:
    each record is in moto exactly once, delivered == 500, and every sample balances."""
    pattern = WirePattern(first=12, p=0.2, seed=8)
    proxy = FlakyWireProxy(moto_endpoint, plan=pattern).start()
    handler = S3Handler(
        bucket, mode="batch", endpoint_url=proxy.endpoint,
        spool_dir=str(tmp_path) if spool else None,
        botocore_config=botocore.config.Config(
            retries={"mode": "standard", "max_attempts": 2}, read_timeout=2, connect_timeout=2),
        retry_base=0.05, retry_cap=0.2, config_error_retry=0.2, max_batch_age=0.2,
        max_batch_records=50, close_timeout=10)
    analytics_logger.addHandler(handler)
    ids = [f"w-{n}" for n in range(RECORDS)]

    def emit(chunk: Sequence[str]) -> None:
        for n, session_id in enumerate(chunk):
            analytics_logger.info("Session analytics data", extra={"analytics_data": {
                "session_id": session_id, "turn": n, "notes": "w" * 200}})

    try:
        with Sampler(handler) as sampler:
            emitters = [threading.Thread(target=emit, args=(ids[t::THREADS],))
                        for t in range(THREADS)]
            for t in emitters:
                t.start()
            for t in emitters:
                t.join(60)
            flushed = handler.flush(30)
            idle = handler.wait_idle(30)
            stats = handler.stats()
    finally:
        pattern.active = False
        handler.close()
        proxy.stop()

    applied = Counter(fault for fault, _ in proxy.applied)
    print(f"\nflaky wire[{'spool' if spool else 'memory'}]: {len(proxy.seen)} requests, faults "
          f"{dict(applied)}, stats {stats}")
    # The wire really failed in all three ways, and the handler saw failures.
    assert set(applied) == {ERROR_500, CUT, LOSE_RESPONSE}
    assert stats["failed"] > 0
    # A lost response: moto stored the batch although the handler was told nothing.
    lost = {request.path for fault, request in proxy.applied if fault == LOSE_RESPONSE}
    assert lost <= {request.path for request in proxy.forwarded}

    assert bad_samples(sampler.samples) == []
    assert flushed and idle, stats
    assert (stats["emitted"], stats["delivered"], stats["queued"], stats["spooled"],
            stats["dropped"], stats["dead_lettered"]) == (RECORDS, RECORDS, 0, 0, 0, 0), stats
    objects = read_objects(s3, bucket)  # from moto itself, not through the proxy
    found = Counter(orjson.loads(line)["session_id"]
                    for body in objects.values() for line in body.splitlines() if line)
    assert sorted(found) == sorted(ids)
    assert {k: v for k, v in found.items() if v > 1} == {}
    assert all(".ndjson" in key for key in objects)
