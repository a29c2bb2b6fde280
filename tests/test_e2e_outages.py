"""Reports that come back, over real HTTP: an outage is reported (once, not per failure), its
end is reported as "recovered", and the next outage is reported again at once."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import botocore.config
import pytest
from conftest import Collect, StatsSampler, wait_until
from servers import FaultProxy, SeenRequest, s3_error

import s3_log_handler._spool as spool_module
from s3_log_handler import S3Handler


class Switch:
    """An injector for FaultProxy: while ``down``, every PUT gets 503 SlowDown."""

    def __init__(self) -> None:
        self.down = False

    def __call__(self, request: SeenRequest) -> tuple[int, bytes] | None:
        if self.down and request.method == "PUT":
            return 503, s3_error("SlowDown", "injected outage")
        return None


def library_log() -> Collect:
    """Everything the library says, captured beside whatever else listens."""
    collect = Collect()
    lg = logging.getLogger("s3_log_handler")
    lg.addHandler(collect)
    lg.setLevel(logging.DEBUG)
    return collect


def lines(collect: Collect, level: int, needle: str) -> list[str]:
    return [r.getMessage() for r in collect.records if r.levelno == level
            and needle in r.getMessage()]


def emit(logger: logging.Logger, prefix: str, n: int) -> None:
    for i in range(n):
        logger.info("Session analytics data",
                    extra={"analytics_data": {"session_id": f"{prefix}-{i}", "n": i}})


class TestOutageReports:
    def test_outage_reported_recovered_then_the_next_outage_reported_again(
        self, moto_endpoint: str, bucket: str, s3: Any, analytics_logger: logging.Logger,
    ) -> None:
        """Two outages a few seconds apart: each is reported when it starts (the second one
        well inside the 5-minute limit), each end is one INFO "recovered" line with the
        number of failed attempts, and every record arrives."""
        switch = Switch()
        proxy = FaultProxy(moto_endpoint, inject=switch).start()
        collect = library_log()
        handler = S3Handler(bucket, endpoint_url=proxy.endpoint, retry_base=0.05,
                            retry_cap=0.1, workers=2,
                            botocore_config=botocore.config.Config(
                                retries={"mode": "standard", "max_attempts": 1}))
        analytics_logger.addHandler(handler)
        try:
            with StatsSampler(handler) as sampler:
                for outage in (1, 2):
                    switch.down = True
                    before = handler.stats()["failed"]
                    emit(analytics_logger, f"o{outage}", 5)
                    n = outage
                    # Every record of this outage failed at least once (the count is cumulative).
                    assert wait_until(lambda b=before: handler.stats()["failed"] >= b + 5, 20)
                    assert len(lines(collect, logging.ERROR, "SlowDown")) == n
                    switch.down = False
                    assert wait_until(lambda n=n: handler.stats()["delivered"] == 5 * n, 20)
                    assert wait_until(
                        lambda n=n: len(lines(collect, logging.INFO, "recovered")) == n, 5)
            assert set(sampler.balances) == {0}
            errors = lines(collect, logging.ERROR, "SlowDown")
            recovered = lines(collect, logging.INFO, "recovered")
            assert len(errors) == 2 and len(recovered) == 2
            for line in recovered:
                assert line.startswith(f"S3 uploads to s3://{bucket} recovered after ")
                attempts = int(line.split("recovered after ")[1].split(" ")[0])
                assert attempts >= 5
            keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
            assert len(keys) == 10
        finally:
            handler.close()
            proxy.stop()

    def test_a_spool_that_works_again_is_reported_recovered(
        self, moto_endpoint: str, bucket: str, tmp_path: Any,
        analytics_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """A spool whose writes fail is reported once; when writing works again one INFO
        line says so; records written meanwhile (memory only) still arrive."""
        collect = library_log()
        handler = S3Handler(bucket, endpoint_url=moto_endpoint, spool_dir=str(tmp_path))
        analytics_logger.addHandler(handler)
        real_write = spool_module.os.write

        def failing_write(fd: int, data: bytes) -> int:
            raise OSError(28, "No space left on device")

        try:
            monkeypatch.setattr(spool_module.os, "write", failing_write)
            emit(analytics_logger, "full", 3)
            monkeypatch.setattr(spool_module.os, "write", real_write)
            emit(analytics_logger, "ok", 2)
            assert handler.flush(20)
            assert handler.stats()["delivered"] == 5
            assert len(lines(collect, logging.ERROR, "cannot write to spool")) == 1
            [line] = lines(collect, logging.INFO, "recovered")
            assert line.startswith(f"spool {tmp_path} recovered after 3 failed attempts")
        finally:
            handler.close()


def test_reports_name_no_internal_class_for_an_unknown_setting() -> None:
    """An unknown keyword is reported as the user wrote it, naming S3Handler."""
    with pytest.raises(TypeError, match=r"^S3Handler\(\) got an unexpected keyword argument "
                                        r"'bukket'$"):
        S3Handler(f"b-{uuid.uuid4().hex[:6]}", bukket="x")
