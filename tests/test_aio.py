"""``await handler.aflush()`` and ``await aflush_all()``: the event loop keeps running."""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
from servers import BlackholeServer

import s3_log_handler
from s3_log_handler import S3Handler


@pytest.fixture(autouse=True)
def only_this_tests_handlers(monkeypatch: pytest.MonkeyPatch) -> None:
    """``aflush_all`` sees the handlers this test built, not those another test left open."""
    live: weakref.WeakSet[S3Handler] = weakref.WeakSet()
    monkeypatch.setattr("s3_log_handler._handler._LIVE_HANDLERS", live)
    monkeypatch.setattr("s3_log_handler._flush_all._LIVE_HANDLERS", live)


def log_records(handler: S3Handler, prefix: str, count: int) -> None:
    lg = logging.getLogger(f"analytics.aio.{prefix}")
    lg.setLevel(logging.INFO)
    lg.propagate = False
    lg.addHandler(handler)
    try:
        for i in range(count):
            lg.info("Session analytics data",
                    extra={"analytics_data": {"session_id": f"{prefix}-{i}"}})
    finally:
        lg.removeHandler(handler)


@pytest.fixture
def blackhole() -> Iterator[BlackholeServer]:
    server = BlackholeServer()
    yield server
    server.stop()


@pytest.fixture
def stuck_handler(blackhole: BlackholeServer, bucket: str) -> Iterator[S3Handler]:
    """A handler whose S3 never answers (closing it waits 0.3 s at most)."""
    handler = S3Handler(bucket, endpoint_url=blackhole.endpoint, close_timeout=0.3)
    yield handler
    handler.close()


def test_loop_keeps_ticking_while_aflush_waits(stuck_handler: S3Handler) -> None:
    """A 10 ms ticker keeps ticking while ``aflush(1.5)`` waits on an S3 that never answers;
    it returns False after about 1.5 s."""
    log_records(stuck_handler, "stuck", 5)

    async def main() -> tuple[bool, float, int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        start = time.monotonic()
        result = await stuck_handler.aflush(1.5)
        elapsed = time.monotonic() - start
        task.cancel()
        return result, elapsed, ticks

    result, elapsed, ticks = asyncio.run(main())
    print(f"aflush(1.5) on a never-answering S3: {result} after {elapsed:.3f} s; "
          f"{ticks} ticks of 10 ms (at most {int(elapsed / 0.01)})")
    assert result is False
    assert 1.4 <= elapsed < 4.0
    # asyncio.sleep(0.01) takes a bit over 10 ms each; a blocked loop would tick ~0 times.
    assert ticks >= 0.5 * elapsed / 0.01


def test_aflush_and_aflush_all_deliver(moto_endpoint: str, bucket: str, s3: Any) -> None:
    """Against a working S3 both return True once every record emitted before is there."""
    first = S3Handler(bucket, endpoint_url=moto_endpoint, prefix="one", close_timeout=10)
    second = S3Handler(bucket, endpoint_url=moto_endpoint, prefix="two", close_timeout=10)
    try:
        log_records(first, "one", 30)
        log_records(second, "two", 30)

        async def main() -> tuple[bool, bool]:
            return await first.aflush(10), await s3_log_handler.aflush_all()

        assert asyncio.run(main()) == (True, True)
        for prefix in ("one", "two"):
            listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
            assert listed["KeyCount"] == 30
    finally:
        first.close()
        second.close()


def test_aflush_all_false_when_one_handler_is_stuck(moto_endpoint: str, bucket: str,
                                                    stuck_handler: S3Handler) -> None:
    """One deadline for all: a stuck handler makes the result False within ``timeout``."""
    working = S3Handler(bucket, endpoint_url=moto_endpoint, prefix="ok", close_timeout=10)
    try:
        log_records(working, "ok", 10)
        log_records(stuck_handler, "stuck", 3)
        start = time.monotonic()
        assert asyncio.run(s3_log_handler.aflush_all(0.5)) is False
        assert time.monotonic() - start < 3.0
        assert working.stats()["delivered"] == 10
    finally:
        working.close()


def test_aflush_after_the_default_executor_is_shut_down(moto_endpoint: str,
                                                        bucket: str) -> None:
    """The wait does not use the loop's default executor, which asyncio.run() shuts down and
    an application may have shut down before its lifespan ends."""
    handler = S3Handler(bucket, endpoint_url=moto_endpoint, close_timeout=10)
    try:
        log_records(handler, "late", 5)

        async def main() -> bool:
            await asyncio.get_running_loop().shutdown_default_executor()
            return await handler.aflush(10)

        assert asyncio.run(main()) is True
    finally:
        handler.close()


def test_cancelled_aflush_leaves_nothing_behind(stuck_handler: S3Handler) -> None:
    """Cancelling the awaiting task is clean: no error, no 'exception never retrieved'."""
    log_records(stuck_handler, "cancel", 2)

    async def main() -> None:
        task = asyncio.create_task(stuck_handler.aflush(0.5))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.7)  # the flush thread ends meanwhile and finds no one waiting

    asyncio.run(main())


def test_aflush_all_without_handlers() -> None:
    assert asyncio.run(s3_log_handler.aflush_all(0.1)) is True
