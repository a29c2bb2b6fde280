"""The operator's log lines, exactly as the README documents them, over real HTTP (moto)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import Collect, collecting, wait_until

from s3_log_handler import S3Handler


@pytest.fixture
def voice() -> Iterator[Collect]:
    """Everything the library logs (DEBUG and up) during the test."""
    with collecting("s3_log_handler", logging.DEBUG) as collect:
        yield collect


def lines(voice: Collect, level: int, start: str) -> list[str]:
    return [r.getMessage() for r in voice.records
            if r.levelno == level and r.name == "s3_log_handler"
            and r.getMessage().startswith(start)]


def sizes(s3: Any, bucket: str) -> dict[str, int]:
    """Every object's key and stored size (the compressed bytes the handler sent)."""
    return {o["Key"]: o["Size"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])}


class TestExportEnabled:
    def test_one_info_line_at_first_use_names_bucket_prefix_region_and_mode(
        self, moto_endpoint: str, bucket: str, analytics_logger: logging.Logger,
        voice: Collect,
    ) -> None:
        """Nothing at construction; one INFO line once records flow, however many threads
        and records there are."""
        handler = S3Handler(bucket, endpoint_url=moto_endpoint, workers=4)
        analytics_logger.addHandler(handler)
        assert lines(voice, logging.INFO, "S3 export enabled") == []
        for i in range(20):
            analytics_logger.info("x", extra={"analytics_data": {"session_id": f"s{i}"}})
        assert handler.flush(30)
        assert lines(voice, logging.INFO, "S3 export enabled") == [
            f"S3 export enabled: s3://{bucket}/sessions (region us-east-1, mode object)"]

    def test_the_region_is_the_one_the_client_resolved(
        self, moto_endpoint: str, bucket: str, analytics_logger: logging.Logger,
        voice: Collect, monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """AWS_REGION (which botocore alone ignores) shows up as the region, with batch mode
        and another prefix."""
        monkeypatch.delenv("AWS_DEFAULT_REGION")
        monkeypatch.setenv("AWS_REGION", "eu-west-1")
        handler = S3Handler(bucket, endpoint_url=moto_endpoint, mode="batch", prefix="calls")
        analytics_logger.addHandler(handler)
        analytics_logger.info("x", extra={"analytics_data": {"session_id": "a"}})
        handler.flush(30)
        assert lines(voice, logging.INFO, "S3 export enabled") == [
            f"S3 export enabled: s3://{bucket}/calls (region eu-west-1, mode batch)"]


class TestUploaded:
    def test_one_debug_line_per_object_with_its_records_and_bytes(
        self, moto_endpoint: str, bucket: str, s3: Any, analytics_logger: logging.Logger,
        voice: Collect,
    ) -> None:
        """Object mode: one line per PUT, naming the key, 1 record and the bytes S3 stored."""
        handler = S3Handler(bucket, endpoint_url=moto_endpoint)
        analytics_logger.addHandler(handler)
        for i in range(5):
            analytics_logger.info("x", extra={"analytics_data": {"session_id": f"s{i}"}})
        assert handler.flush(30)
        stored = sizes(s3, bucket)
        assert len(stored) == 5
        assert sorted(lines(voice, logging.DEBUG, "uploaded ")) == sorted(
            f"uploaded s3://{bucket}/{key} (1 records, {size} bytes)"
            for key, size in stored.items())

    def test_a_batch_line_counts_its_records(
        self, moto_endpoint: str, bucket: str, s3: Any, analytics_logger: logging.Logger,
        voice: Collect,
    ) -> None:
        """Batch mode: one line for the one object holding all seven records."""
        handler = S3Handler(bucket, endpoint_url=moto_endpoint, mode="batch")
        analytics_logger.addHandler(handler)
        for i in range(7):
            analytics_logger.info("x", extra={"analytics_data": {"session_id": f"s{i}"}})
        assert handler.flush(30)
        [(key, size)] = sizes(s3, bucket).items()
        assert lines(voice, logging.DEBUG, "uploaded ") == [
            f"uploaded s3://{bucket}/{key} (7 records, {size} bytes)"]

    def test_no_line_is_built_when_debug_is_off(
        self, moto_endpoint: str, bucket: str, analytics_logger: logging.Logger,
        voice: Collect,
    ) -> None:
        """At INFO the upload lines do not exist at all."""
        logging.getLogger("s3_log_handler").setLevel(logging.INFO)
        handler = S3Handler(bucket, endpoint_url=moto_endpoint)
        analytics_logger.addHandler(handler)
        analytics_logger.info("x", extra={"analytics_data": {"session_id": "a"}})
        assert handler.flush(30)
        assert lines(voice, logging.DEBUG, "uploaded ") == []


class TestErrorsKeepTheirHints:
    def test_a_missing_bucket_is_one_error_with_its_hint(
        self, moto_endpoint: str, analytics_logger: logging.Logger, voice: Collect,
    ) -> None:
        """The plan's "404 Not Found" symptom: the ERROR line names the code and the fix."""
        handler = S3Handler("no-such-bucket-here", endpoint_url=moto_endpoint,
                            close_timeout=0.1)
        analytics_logger.addHandler(handler)
        analytics_logger.info("x", extra={"analytics_data": {"session_id": "a"}})
        assert wait_until(lambda: bool(lines(voice, logging.ERROR, "S3 upload to ")), 30)
        [error] = lines(voice, logging.ERROR, "S3 upload to ")
        assert error.startswith("S3 upload to s3://no-such-bucket-here/sessions/year=")
        assert "failed: NoSuchBucket: " in error
        assert error.endswith("Hint: bucket 'no-such-bucket-here' does not exist: create it "
                              "or fix ANALYTICS_S3_BUCKET.")
