"""``@flush_on_return`` for AWS Lambda handlers: bounded by the invocation's remaining time."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import Collect, collecting
from servers import BlackholeServer

from s3_log_handler import S3Handler, flush_on_return


@pytest.fixture(autouse=True)
def only_this_tests_handlers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The decorator flushes the handlers this test built, not those another left open."""
    live: weakref.WeakSet[S3Handler] = weakref.WeakSet()
    monkeypatch.setattr("s3_log_handler._handler._LIVE_HANDLERS", live)
    monkeypatch.setattr("s3_log_handler._flush_all._LIVE_HANDLERS", live)


class FakeContext:
    """What Lambda passes as ``context``: the remaining time counts down in real time."""

    def __init__(self, remaining_ms: int) -> None:
        self._deadline = time.monotonic() + remaining_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@pytest.fixture
def diagnostics() -> Iterator[Collect]:
    with collecting("s3_log_handler", logging.DEBUG) as collect:
        yield collect


@pytest.fixture
def analytics(request: pytest.FixtureRequest) -> logging.Logger:
    lg = logging.getLogger(f"analytics.lambda.{request.node.name}")
    lg.setLevel(logging.INFO)
    lg.propagate = False
    return lg


def send(lg: logging.Logger, prefix: str, count: int) -> None:
    for i in range(count):
        lg.info("Session analytics data", extra={"analytics_data": {"session_id": f"{prefix}-{i}"}})


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_returns_within_the_budget_and_logs_what_is_pending(
        kind: str, bucket: str, analytics: logging.Logger, diagnostics: Collect) -> None:
    """300 ms left and an S3 that never answers: the handler returns its result before the
    invocation's deadline and one WARNING says what is still pending."""
    blackhole = BlackholeServer()
    handler = S3Handler(bucket, endpoint_url=blackhole.endpoint, close_timeout=1.0)
    analytics.addHandler(handler)
    try:
        if kind == "sync":
            @flush_on_return
            def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, int]:
                send(analytics, "stuck", 3)
                return {"statusCode": 200}

            context = FakeContext(300)
            start = time.monotonic()
            result = lambda_handler({}, context)
        else:
            @flush_on_return
            async def async_handler(event: dict[str, Any], context: Any) -> dict[str, int]:
                send(analytics, "stuck", 3)
                return {"statusCode": 200}

            context = FakeContext(300)
            start = time.monotonic()
            result = asyncio.run(async_handler({}, context))
        elapsed = time.monotonic() - start
        left = context.get_remaining_time_in_millis()
        warnings = diagnostics.warnings()
        print(f"{kind}: returned after {elapsed * 1000:.0f} ms of a 300 ms budget "
              f"({left} ms left); {warnings}")
        assert result == {"statusCode": 200}
        assert len(warnings) == 1
        # The flush was given what the invocation had left minus the 0.2 s margin (no wall-clock
        # bound here: a loaded CI machine stretches it; the figure is printed above).
        given = re.search(r"\(timeout ([0-9.]+) s\)", warnings[0])
        assert given is not None and float(given.group(1)) <= 0.1
        assert "flush_on_return" in warnings[0]
        assert "3 still held" in warnings[0]
    finally:
        analytics.removeHandler(handler)
        handler.close()
        blackhole.stop()


def test_delivers_before_returning(moto_endpoint: str, bucket: str, s3: Any,
                                   analytics: logging.Logger, diagnostics: Collect) -> None:
    """With S3 answering, every record is in S3 when the handler returns; no warning."""
    handler = S3Handler(bucket, endpoint_url=moto_endpoint, close_timeout=10)
    analytics.addHandler(handler)
    try:
        @flush_on_return(margin=0.5)
        def lambda_handler(event: dict[str, Any], context: Any) -> str:
            send(analytics, "ok", 20)
            return "done"

        assert lambda_handler({}, FakeContext(10_000)) == "done"
        assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 20
        assert diagnostics.warnings() == []
    finally:
        analytics.removeHandler(handler)
        handler.close()


def test_flushes_when_the_handler_raises(moto_endpoint: str, bucket: str, s3: Any,
                                         analytics: logging.Logger) -> None:
    """The exception reaches Lambda unchanged; what was logged before it is in S3."""
    handler = S3Handler(bucket, endpoint_url=moto_endpoint, close_timeout=10)
    analytics.addHandler(handler)
    try:
        @flush_on_return
        def lambda_handler(event: dict[str, Any], context: Any) -> None:
            send(analytics, "raised", 5)
            raise KeyError("boom")

        with pytest.raises(KeyError, match="boom"):
            lambda_handler({}, context=FakeContext(10_000))
        assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 5
    finally:
        analytics.removeHandler(handler)
        handler.close()


def test_the_client_is_made_when_the_decorator_is_applied(
        moto_endpoint: str, bucket: str, s3: Any, analytics: logging.Logger,
        diagnostics: Collect) -> None:
    """Decorating happens at import, in Lambda's init phase: the S3 client is made then (its
    "S3 export enabled" line appears before any record), so no invocation pays for it."""
    handler = S3Handler(bucket, endpoint_url=moto_endpoint, close_timeout=10)
    analytics.addHandler(handler)
    try:
        @flush_on_return
        def lambda_handler(event: dict[str, Any], context: Any) -> str:
            send(analytics, "warm", 3)
            return "done"

        enabled = [r.getMessage() for r in diagnostics.records
                   if r.getMessage().startswith("S3 export enabled")]
        assert enabled == [f"S3 export enabled: s3://{bucket}/sessions "
                           f"(region us-east-1, mode object)"]
        assert handler.stats()["emitted"] == 0
        assert lambda_handler({}, FakeContext(10_000)) == "done"
        assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 3
        assert len([r for r in diagnostics.records
                    if r.getMessage().startswith("S3 export enabled")]) == 1
    finally:
        analytics.removeHandler(handler)
        handler.close()


class _NoClientSession:
    """A boto3 session whose ``client()`` fails, as a broken set-up would."""

    def client(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("no client today")


def test_a_client_that_cannot_be_made_at_decoration_is_left_to_the_first_upload(
        bucket: str, analytics: logging.Logger, diagnostics: Collect) -> None:
    """Making the client fails: decorating still works and logs nothing; the first upload
    reports the failure as it always does."""
    handler = S3Handler(bucket, boto3_session=_NoClientSession(), close_timeout=0.2)
    analytics.addHandler(handler)
    try:
        @flush_on_return
        def lambda_handler(event: dict[str, Any], context: Any) -> str:
            send(analytics, "broken", 1)
            return "done"

        assert diagnostics.records == []
        assert lambda_handler({}, FakeContext(1_000)) == "done"
        assert any("no client today" in r.getMessage() for r in diagnostics.records
                   if r.levelno >= logging.ERROR), [r.getMessage() for r in diagnostics.records]
    finally:
        analytics.removeHandler(handler)
        handler.close()


def test_margin_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="margin"):
        flush_on_return(margin=-1)
