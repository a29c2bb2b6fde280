"""``logging.config.fileConfig`` with the shipped ini example delivers to S3 (moto over HTTP)."""

from __future__ import annotations

import json
import logging
import logging.config
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import read_objects

from s3_log_handler import S3Handler

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "logging.ini"


def s3_handler() -> S3Handler:
    """The S3Handler fileConfig attached to the "analytics" logger."""
    (handler,) = [h for h in logging.getLogger("analytics").handlers if isinstance(h, S3Handler)]
    return handler


class TestFileConfig:
    def test_the_ini_example_sends_an_analytics_record_to_the_bucket(
            self, s3: Any, bucket: str, moto_endpoint: str,
            monkeypatch: pytest.MonkeyPatch) -> None:
        """args=/kwargs= read the environment; the record lands under the configured prefix."""
        monkeypatch.setenv("ANALYTICS_S3_BUCKET", bucket)
        monkeypatch.setenv("ANALYTICS_S3_PREFIX", "ini-sessions")
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_endpoint)
        logging.config.fileConfig(EXAMPLE, disable_existing_loggers=False)

        payload = {"session_id": "rm_ini1", "duration_seconds": 12.5}
        before = datetime.now(UTC)
        logging.getLogger("analytics").info("Session analytics data",
                                            extra={"analytics_data": payload})
        after = datetime.now(UTC)
        assert s3_handler().flush(30)
        keys = {f"ini-sessions/year={t:%Y}/month={t:%m}/day={t:%d}/rm_ini1.json.gz"
                for t in (before, after)}  # two only if the record was logged at midnight
        objects = read_objects(s3, bucket)
        assert len(objects) == 1 and set(objects) <= keys
        assert json.loads(next(iter(objects.values()))) == payload

    def test_without_a_bucket_the_handler_is_off_and_records_are_not_sent(
            self, monkeypatch: pytest.MonkeyPatch) -> None:
        """An empty ANALYTICS_S3_BUCKET: the handler exists, disabled, counting ignored."""
        monkeypatch.setenv("ANALYTICS_S3_BUCKET", "")
        logging.config.fileConfig(EXAMPLE, disable_existing_loggers=False)
        logging.getLogger("analytics").info("x", extra={"analytics_data": {"session_id": "a"}})
        handler = s3_handler()
        assert handler.config.enabled is False
        assert handler.stats()["ignored"] == 1
