"""s3_log_handler.testing: users assert what their app sends, with no AWS and no moto."""

from __future__ import annotations

import io
import logging
import re
import threading

import pytest
from botocore.exceptions import ClientError

from s3_log_handler.testing import (
    RecordedPut,
    RecordingS3Client,
    RecordingSession,
    recording_handler,
)

KEY = re.compile(r"^sessions/year=\d{4}/month=\d{2}/day=\d{2}/")


def log(logger: logging.Logger, payload: dict[str, object]) -> None:
    """The application's one logging call, unchanged."""
    logger.info("Session analytics data", extra={"analytics_data": payload})


class TestRecordingHandler:
    def test_object_mode_records_and_keys(self, analytics_logger: logging.Logger) -> None:
        """One gzip JSON object per record, under the usual key, in the default bucket."""
        handler, sent = recording_handler()
        analytics_logger.addHandler(handler)
        log(analytics_logger, {"session_id": "abc", "duration_seconds": 12})
        log(analytics_logger, {"session_id": "def", "duration_seconds": 3})

        assert handler.flush(5)
        assert sorted(r["session_id"] for r in sent.records()) == ["abc", "def"]
        keys = sent.keys()
        assert all(KEY.match(k) for k in keys)
        assert {k.rsplit("/", 1)[1] for k in keys} == {"abc.json.gz", "def.json.gz"}
        put = sent.puts[0]
        assert isinstance(put, RecordedPut) and put.bucket == "test-bucket"
        assert put.body[:2] == b"\x1f\x8b" and put.args["ContentEncoding"] == "gzip"
        assert handler.stats()["delivered"] == 2

    def test_batch_mode_splits_ndjson(self, analytics_logger: logging.Logger) -> None:
        """A batch is one NDJSON object; records() gives one dict per line, in order."""
        handler, sent = recording_handler(mode="batch", bucket="my-bucket")
        analytics_logger.addHandler(handler)
        for i in range(5):
            log(analytics_logger, {"session_id": f"s{i}", "n": i})

        assert handler.flush(5)
        assert [r["n"] for r in sent.records()] == [0, 1, 2, 3, 4]
        assert len(sent.keys()) == 1 and KEY.match(sent.keys()[0])
        assert sent.keys()[0].endswith(".ndjson.gz")
        assert sent.puts[0].bucket == "my-bucket"
        assert handler.stats()["delivered"] == 5

    @pytest.mark.parametrize("compression", ["none", "zstd"])
    def test_other_compressions_decode(
        self, analytics_logger: logging.Logger, compression: str
    ) -> None:
        """Uncompressed and zstd bodies read back the same records."""
        if compression == "zstd":
            pytest.importorskip("zstandard")
        handler, sent = recording_handler(compression=compression)
        analytics_logger.addHandler(handler)
        log(analytics_logger, {"session_id": "z", "ok": True})

        assert handler.flush(5)
        assert sent.records() == [{"session_id": "z", "ok": True}]

    def test_an_outage_is_retried_and_delivered(self, analytics_logger: logging.Logger) -> None:
        """fail_next makes puts raise SlowDown/503: the handler retries, nothing is lost."""
        handler, sent = recording_handler(retry_base=0.05, retry_cap=0.1)
        analytics_logger.addHandler(handler)
        sent.fail_next(3)
        for i in range(4):
            log(analytics_logger, {"session_id": f"r{i}"})

        assert handler.flush(10)
        assert sorted(r["session_id"] for r in sent.records()) == ["r0", "r1", "r2", "r3"]
        stats = handler.stats()
        assert (stats["delivered"], stats["failed"]) == (4, 3)
        assert sent.attempts == 7


class TestRecordingS3Client:
    def test_fail_next_raises_client_errors_then_recovers(self) -> None:
        """The injected error carries the code and status; failed puts are not kept."""
        client = RecordingS3Client()
        client.fail_next(1, code="AccessDenied", status=403)
        with pytest.raises(ClientError) as info:
            client.put_object(Bucket="b", Key="k", Body=b"{}")
        assert info.value.response["Error"]["Code"] == "AccessDenied"
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        response = client.put_object(Bucket="b", Key="k", Body=b"{}")
        assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
        assert client.keys() == ["k"] and client.attempts == 2

    def test_bodies_of_any_kind_and_extra_args(self) -> None:
        """str, bytes and readable bodies become bytes; other arguments are kept in args."""
        client = RecordingS3Client()
        client.put_object(Bucket="b", Key="1", Body='{"a": 1}', ContentType="application/json")
        client.put_object(Bucket="b", Key="2", Body=io.BytesIO(b'{"a": 2}\n{"a": 3}\n'))
        assert client.records() == [{"a": 1}, {"a": 2}, {"a": 3}]
        assert client.puts[0].args == {"ContentType": "application/json"}

    def test_concurrent_puts_are_all_kept(self) -> None:
        """Thread-safe: puts from many threads are all recorded."""
        client = RecordingS3Client()
        threads = [threading.Thread(target=lambda i=i: [
            client.put_object(Bucket="b", Key=f"{i}-{j}", Body=b"{}") for j in range(100)])
            for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(set(client.keys())) == 800


class TestRecordingSession:
    def test_one_shared_s3_client(self) -> None:
        """Every client("s3") call returns the same recorder, and keeps the keywords."""
        session = RecordingSession()
        assert session.client("s3", region_name="eu-west-1") is session.s3
        assert session.client("s3") is session.s3
        assert session.client_kwargs == {}

    def test_other_services_are_refused(self) -> None:
        """Only S3 is recorded; asking for anything else is a test-setup error."""
        with pytest.raises(ValueError, match="'logs'"):
            RecordingSession().client("logs")
