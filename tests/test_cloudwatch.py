"""cloudwatch_handler: watchtower against a real endpoint, or a NullHandler with one warning."""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import orjson
import pytest
import watchtower
from conftest import Collect, collecting, free_port
from servers import BlackholeServer

from s3_log_handler import AnalyticsJsonFormatter, cloudwatch_handler


@pytest.fixture
def voice() -> Iterator[Collect]:
    """What the library says on its own logger during the test."""
    with collecting("s3_log_handler") as collect:
        yield collect


@pytest.fixture
def group() -> str:
    return f"/test/{uuid.uuid4().hex[:10]}"


def group_exists(moto_endpoint: str, name: str, region: str = "us-east-1") -> bool:
    client = boto3.client("logs", endpoint_url=moto_endpoint, region_name=region)
    found = client.describe_log_groups(logGroupNamePrefix=name)["logGroups"]
    return any(g["logGroupName"] == name for g in found)


def messages(moto_endpoint: str, name: str) -> list[dict[str, Any]]:
    client = boto3.client("logs", endpoint_url=moto_endpoint, region_name="us-east-1")
    return [orjson.loads(e["message"]) for e in client.filter_log_events(
        logGroupName=name)["events"]]


class TestDegrades:
    def test_no_log_group_gives_null_handler_and_one_warning(
        self, voice: Collect, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Unset or empty log group: a NullHandler, and one warning naming the variable."""
        monkeypatch.delenv("ANALYTICS_LOG_GROUP", raising=False)
        handler = cloudwatch_handler(log_group_name="")
        assert type(handler) is logging.NullHandler
        assert len(voice.warnings()) == 1 and "ANALYTICS_LOG_GROUP" in voice.warnings()[0]

    @pytest.mark.parametrize("via", ["argument", "environment"])
    def test_refused_connection_gives_null_handler_quickly(
        self, voice: Collect, group: str, via: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An endpoint nobody listens on: a NullHandler and one warning, within seconds."""
        dead = f"http://127.0.0.1:{free_port()}"
        monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDWATCH_LOGS", dead)
        begin = time.monotonic()
        handler = cloudwatch_handler(group, endpoint_url=dead if via == "argument" else None)
        elapsed = time.monotonic() - begin
        assert type(handler) is logging.NullHandler
        assert len(voice.warnings()) == 1
        assert group in voice.warnings()[0] and "EndpointConnectionError" in voice.warnings()[0]
        assert elapsed < 10.0  # botocore's defaults would retry for far longer

    def test_silent_endpoint_is_bounded_by_probe_timeout(self, voice: Collect,
                                                         group: str) -> None:
        """An endpoint that accepts and never answers costs about probe_timeout, not more."""
        server = BlackholeServer()
        try:
            begin = time.monotonic()
            handler = cloudwatch_handler(group, endpoint_url=server.endpoint,
                                         probe_timeout=0.5)
            elapsed = time.monotonic() - begin
        finally:
            server.stop()
        assert type(handler) is logging.NullHandler
        assert "Timeout" in voice.warnings()[0]
        assert elapsed < 0.5 * 10

    def test_missing_region_degrades_instead_of_raising(
        self, voice: Collect, group: str, monkeypatch: pytest.MonkeyPatch, moto_endpoint: str
    ) -> None:
        """No region anywhere is reported, not raised from dictConfig."""
        monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
        monkeypatch.delenv("AWS_REGION", raising=False)
        monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
        handler = cloudwatch_handler(group, endpoint_url=moto_endpoint)
        assert type(handler) is logging.NullHandler
        assert "NoRegionError" in voice.warnings()[0]


class TestConnects:
    def test_unknown_option_is_a_configuration_error(self, group: str,
                                                     moto_endpoint: str) -> None:
        """A typo in an option fails loudly instead of quietly switching CloudWatch off."""
        with pytest.raises(TypeError, match="send_intervall"):
            cloudwatch_handler(group, endpoint_url=moto_endpoint, send_intervall=5)

    def test_builds_watchtower_and_creates_missing_group(
        self, voice: Collect, group: str, moto_endpoint: str
    ) -> None:
        """A reachable endpoint: a watchtower handler, the group created, events delivered."""
        handler = cloudwatch_handler(group, endpoint_url=moto_endpoint, send_interval=1)
        try:
            assert isinstance(handler, watchtower.CloudWatchLogHandler)
            assert handler.log_group_name == group and not voice.warnings()
            assert group_exists(moto_endpoint, group)
            handler.setFormatter(AnalyticsJsonFormatter())
            logger = logging.getLogger(f"analytics.cw.{uuid.uuid4().hex[:6]}")
            logger.propagate = False
            logger.addHandler(handler)
            logger.warning("hello", extra={"analytics_data": {"session_id": "s1"}})
            handler.flush()
        finally:
            handler.close()
        out = messages(moto_endpoint, group)
        assert [(m["_session_id"], m["message"]) for m in out] == [("s1", "hello")]

    def test_a_burst_logged_right_after_start_up_is_not_lost(
        self, group: str, moto_endpoint: str
    ) -> None:
        """The stream exists before the first send: watchtower discards every record logged
        while it creates a missing stream, so a start-up burst would otherwise vanish."""
        handler = cloudwatch_handler(group, endpoint_url=moto_endpoint, send_interval=1,
                                     log_stream_name="agent-{process_id}")
        client = boto3.client("logs", endpoint_url=moto_endpoint, region_name="us-east-1")
        streams = client.describe_log_streams(logGroupName=group)["logStreams"]
        assert [s["logStreamName"] for s in streams] == [f"agent-{os.getpid()}"]
        handler.setFormatter(AnalyticsJsonFormatter())
        logger = logging.getLogger(f"analytics.cw.{uuid.uuid4().hex[:6]}")
        logger.propagate = False
        logger.setLevel(logging.INFO)
        logger.addHandler(handler)
        try:
            for n in range(300):
                logger.info("burst", extra={"analytics_data": {"session_id": f"s{n}"}})
            handler.flush()
        finally:
            handler.close()
        assert len(messages(moto_endpoint, group)) == 300

    def test_existing_group_is_used_as_is(self, group: str, moto_endpoint: str) -> None:
        """An existing group is found by the probe and not created again."""
        boto3.client("logs", endpoint_url=moto_endpoint,
                     region_name="us-east-1").create_log_group(logGroupName=group)
        handler = cloudwatch_handler(group, endpoint_url=moto_endpoint)
        handler.close()
        assert isinstance(handler, watchtower.CloudWatchLogHandler)

    def test_aws_region_is_honoured_without_aws_default_region(
        self, group: str, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """AWS_REGION alone picks the region (botocore itself would raise NoRegionError)."""
        monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
        monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
        monkeypatch.setenv("AWS_REGION", "eu-west-1")
        handler = cloudwatch_handler(group, endpoint_url=moto_endpoint)
        handler.close()
        assert isinstance(handler, watchtower.CloudWatchLogHandler)
        assert handler.cwl_client.meta.region_name == "eu-west-1"
        assert group_exists(moto_endpoint, group, "eu-west-1")
