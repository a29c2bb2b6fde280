"""uploader: what a failed upload means (classify), and the client built from the user's
boto3 session and botocore Config."""

from __future__ import annotations

import json
import logging
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    MissingDependencyException,
    NoCredentialsError,
)
from conftest import read_objects

from s3_log_handler import S3Handler
from s3_log_handler._policies import ClientPolicy, PutPolicy
from s3_log_handler._settings import HandlerConfig
from s3_log_handler._uploader import FailureKind, classify, make_client

CONFIG = PutPolicy.of(HandlerConfig.from_kwargs(env={}, bucket="analytics", prefix="sessions"))


def client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": f"{code} happened"},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")


class TestClassify:
    @pytest.mark.parametrize(("code", "status"), [
        ("SlowDown", 503), ("InternalError", 500), ("RequestTimeout", 400),
        ("Throttling", 400), ("BadDigest", 400), ("Whatever", 502)])
    def test_network_trouble_and_throttling_are_transient(self, code: str, status: int) -> None:
        """5xx, throttling and damaged bodies are retried soon."""
        assert classify(client_error(code, status), CONFIG).kind is FailureKind.TRANSIENT

    @pytest.mark.parametrize("code", [
        "AccessDenied", "NoSuchBucket", "InvalidAccessKeyId", "PermanentRedirect",
        "AccessControlListNotSupported", "InvalidStorageClass", "InvalidArgument"])
    def test_settings_errors_keep_the_data(self, code: str) -> None:
        """Errors every record would hit alike are configuration errors, never dead letters."""
        assert classify(client_error(code, 400), CONFIG).kind is FailureKind.CONFIG

    @pytest.mark.parametrize("code", ["EntityTooLarge", "KeyTooLongError", "MetadataTooLarge"])
    def test_only_what_is_wrong_with_one_object_is_rejected(self, code: str) -> None:
        """Retrying cannot help these: the object is dead-lettered."""
        assert classify(client_error(code, 400), CONFIG).kind is FailureKind.REJECTED

    def test_client_side_setup_errors_are_configuration_errors(self) -> None:
        """No credentials or a missing optional dependency: fix the setup, keep the data."""
        for exc in (NoCredentialsError(), MissingDependencyException(msg="crt")):
            assert classify(exc, CONFIG).kind is FailureKind.CONFIG

    def test_connection_errors_are_transient(self) -> None:
        """S3 unreachable: retried with backoff."""
        exc = EndpointConnectionError(endpoint_url="http://127.0.0.1:1")
        assert classify(exc, CONFIG).kind is FailureKind.TRANSIENT

    def test_access_denied_hint_names_the_action_and_resource(self) -> None:
        """The hint tells the operator exactly what to allow."""
        hint = classify(client_error("AccessDenied", 403), CONFIG).hint
        assert "s3:PutObject" in hint and "arn:aws:s3:::analytics/sessions/*" in hint


# -- bring your own boto3 session / botocore Config (watchtower issue #151) ----------------

PAYLOAD = {"session_id": "byo-1", "duration_seconds": 42}


def own_session() -> boto3.session.Session:
    """A user's session with its own (dummy) credentials, distinct from the environment's."""
    return boto3.session.Session(aws_access_key_id="AKIDBYOSESSION",
                                 aws_secret_access_key="testing-secret",
                                 region_name="us-east-1")


class SpySession(boto3.session.Session):
    """A plain boto3 session that keeps the clients it creates, to inspect their config."""

    def __init__(self) -> None:
        super().__init__()
        self.made: list[Any] = []

    def client(self, *args: Any, **kwargs: Any) -> Any:
        self.made.append(super().client(*args, **kwargs))
        return self.made[-1]


class TestBringYourOwnAwsObjects:
    def test_the_users_session_signs_the_uploads(
        self, moto_endpoint: str, bucket: str, s3: Any, analytics_logger: logging.Logger
    ) -> None:
        """The client comes from the user's session: its event hooks fire and its
        credentials sign the request that lands in the bucket."""
        session = own_session()
        seen: list[str] = []

        def before_send(request: Any, **_: Any) -> None:
            seen.append(request.headers["Authorization"].decode())

        session.events.register("before-send.s3.PutObject", before_send)
        handler = S3Handler(bucket, endpoint_url=moto_endpoint, boto3_session=session)
        analytics_logger.addHandler(handler)
        analytics_logger.info("Session analytics data", extra={"analytics_data": PAYLOAD})

        assert handler.flush(10)
        assert len(seen) == 1 and "Credential=AKIDBYOSESSION/" in seen[0]
        objects = read_objects(s3, bucket)
        assert [json.loads(body) for body in objects.values()] == [PAYLOAD]
        assert handler.stats()["delivered"] == 1

    def test_the_users_config_wins_where_set_and_ours_fills_the_rest(
        self, moto_endpoint: str, bucket: str, s3: Any, analytics_logger: logging.Logger
    ) -> None:
        """read_timeout and proxies are theirs; retries mode, connect_timeout and pool are
        ours; records still land over real HTTP (the https proxy is unused for http)."""
        proxies = {"https": "http://proxy.invalid:3128"}
        session = SpySession()
        handler = S3Handler(bucket, endpoint_url=moto_endpoint, workers=12, boto3_session=session,
                            botocore_config=Config(read_timeout=7, proxies=proxies))
        analytics_logger.addHandler(handler)
        analytics_logger.info("Session analytics data", extra={"analytics_data": PAYLOAD})

        assert handler.flush(10)
        [client] = session.made
        config = client.meta.config
        assert (config.read_timeout, config.proxies) == (7, proxies)
        assert config.retries["mode"] == "standard"
        assert (config.connect_timeout, config.max_pool_connections) == (5, 12)
        objects = read_objects(s3, bucket)
        assert len(objects) == 1 and next(iter(objects)).endswith("/byo-1.json.gz")

    def test_retries_merge_key_by_key(self) -> None:
        """Setting only total_max_attempts keeps our standard mode; a mode they set wins."""
        only_attempts = make_client(ClientPolicy.of(HandlerConfig.from_kwargs(
            env={}, bucket="bkt", botocore_config=Config(retries={"total_max_attempts": 2}))))
        assert only_attempts.meta.config.retries == {"mode": "standard", "total_max_attempts": 2}
        legacy = make_client(ClientPolicy.of(HandlerConfig.from_kwargs(
            env={}, bucket="bkt", botocore_config=Config(retries={"mode": "legacy"}))))
        assert legacy.meta.config.retries["mode"] == "legacy"

    def test_their_pool_size_and_timeouts_win_over_ours(self) -> None:
        """Every option both set is theirs."""
        theirs = Config(connect_timeout=1, read_timeout=2, max_pool_connections=3)
        client = make_client(ClientPolicy.of(HandlerConfig.from_kwargs(
            env={}, bucket="bkt", workers=50, botocore_config=theirs)))
        config = client.meta.config
        assert (config.connect_timeout, config.read_timeout, config.max_pool_connections) == (
            1, 2, 3)

    def test_without_their_objects_ours_apply(self) -> None:
        """No session, no Config: a fresh session with our Config (pool grows with workers)."""
        client = make_client(ClientPolicy.of(HandlerConfig.from_kwargs(
            env={}, bucket="bkt", workers=20, region_name="eu-west-1")))
        config = client.meta.config
        assert config.retries["mode"] == "standard"
        assert (config.connect_timeout, config.read_timeout, config.max_pool_connections) == (
            5, 30, 20)
        assert client.meta.region_name == "eu-west-1"

    def test_settings_region_and_endpoint_are_passed_to_their_session(
        self, moto_endpoint: str
    ) -> None:
        """Explicit region_name/endpoint_url settings win over the session's region."""
        client = make_client(ClientPolicy.of(HandlerConfig.from_kwargs(
            env={}, bucket="bkt", region_name="eu-central-1", endpoint_url=moto_endpoint,
            boto3_session=own_session())))
        assert client.meta.region_name == "eu-central-1"
        assert client.meta.endpoint_url == moto_endpoint
