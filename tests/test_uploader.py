"""uploader.classify: what a failed upload means for the records in it."""

from __future__ import annotations

import pytest
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    MissingDependencyException,
    NoCredentialsError,
)

from s3_log_handler._settings import HandlerConfig
from s3_log_handler._uploader import FailureKind, classify

CONFIG = HandlerConfig.from_kwargs(env={}, bucket="analytics", prefix="sessions")


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
