"""Shared fixtures: a real moto server on loopback, unique buckets, a clean logging tree."""

from __future__ import annotations

import contextlib
import gzip
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from s3_log_handler import S3Handler

# Dummy credentials for moto; never real ones. Set before any boto3 client exists.
os.environ.update({
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
})
for _var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3",
             "ANALYTICS_S3_BUCKET", "AWS_REGION"):
    os.environ.pop(_var, None)


class Collect(logging.Handler):
    """A capturing handler beside ours: keeps every record it is given (and survives the
    close that dictConfig performs)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def warnings(self) -> list[str]:
        """The messages of the WARNING records kept so far."""
        return [r.getMessage() for r in self.records if r.levelno == logging.WARNING]


@contextlib.contextmanager
def collecting(logger_name: str, level: int | None = None) -> Iterator[Collect]:
    """A :class:`Collect` on the logger ``logger_name`` (set to ``level`` when given) while
    the block runs."""
    collect = Collect()
    lg = logging.getLogger(logger_name)
    lg.addHandler(collect)
    if level is not None:
        lg.setLevel(level)
    try:
        yield collect
    finally:
        lg.removeHandler(collect)


class StatsSampler:
    """Samples ``handler.stats()`` on a thread while a test runs: the counter balance of every
    sample, and the most records ever spooled at once. Use it as a context manager."""

    def __init__(self, handler: S3Handler, interval: float = 0.001) -> None:
        self._handler = handler
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample)
        self.balances: list[int] = []
        self.most_spooled = 0

    def _sample(self) -> None:
        from s3_log_handler.counters import balance

        while not self._stop.is_set():
            stats = self._handler.stats()
            self.balances.append(balance(stats))
            self.most_spooled = max(self.most_spooled, stats["spooled"])
            time.sleep(self._interval)

    def __enter__(self) -> StatsSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        # A loaded machine may finish the work before the sampler woke often: let it take
        # a few samples of the final state too (bounded), so "every sample" is never empty.
        wait_until(lambda: len(self.balances) > 20, 10)
        self._stop.set()
        self._thread.join()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A real moto server (S3 + CloudWatch Logs) over HTTP on 127.0.0.1, for the session."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(moto_endpoint: str) -> Any:
    """A boto3 S3 client pointed at the moto server."""
    return boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")


@pytest.fixture
def bucket(s3: Any) -> str:
    """A fresh, empty bucket for this test."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture(autouse=True)
def clean_logging() -> Iterator[None]:
    """Restore the logging tree (and close handlers a test attached) after each test."""
    root = logging.getLogger()
    saved = {name: (lg.handlers[:], lg.level, lg.propagate, lg.disabled)
             for name, lg in logging.Logger.manager.loggerDict.items()
             if isinstance(lg, logging.Logger)}
    root_saved = (root.handlers[:], root.level)
    yield
    for name, lg in list(logging.Logger.manager.loggerDict.items()):
        if not isinstance(lg, logging.Logger):
            continue
        handlers, level, propagate, disabled = saved.get(name, ([], logging.NOTSET, True, False))
        for h in lg.handlers:
            if h not in handlers and isinstance(h, S3Handler):
                h.close()
        lg.handlers[:] = handlers
        lg.setLevel(level)
        lg.propagate = propagate
        lg.disabled = disabled
    root.handlers[:], _ = root_saved
    root.setLevel(root_saved[1])


@pytest.fixture
def analytics_logger() -> logging.Logger:
    """The user's logger, exactly as their code gets it."""
    lg = logging.getLogger(f"analytics.test.{uuid.uuid4().hex[:8]}")
    lg.setLevel(logging.INFO)
    lg.propagate = False
    return lg


def read_objects(s3: Any, bucket: str, prefix: str = "") -> dict[str, bytes]:
    """Every object under ``prefix``, decompressed when gzip, keyed by its key."""
    out: dict[str, bytes] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
            out[item["Key"]] = gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body
    return out



#: What the shipped logging.yaml reads beyond the bucket, group and spool: cleared so a
#: developer's shell cannot change what a test sees.
SHIPPED_CONFIG_VARS = ("ANALYTICS_S3_PREFIX", "ANALYTICS_LOG_STREAM",
                       "ANALYTICS_METRICS_LOG_STREAM", "ANALYTICS_REDACT_FIELDS",
                       "ANALYTICS_HASH_FIELDS", "ANALYTICS_EVENT_TYPE", "ANALYTICS_CLOSE_TIMEOUT")


def point_shipped_config_at_moto(monkeypatch: pytest.MonkeyPatch, endpoint: str, bucket: str,
                                 spool_dir: Path, group_prefix: str) -> tuple[str, Any]:
    """Point the shipped logging.yaml at moto as an operator would: a new log group (made up
    front: moto in this process needs logging's lock to start its logs backend, which
    dictConfig holds while it builds handlers), the bucket, the spool, the endpoints and a
    clean environment. Returns the group's name and a logs client."""
    group = f"{group_prefix}/{uuid.uuid4().hex[:10]}"
    logs = boto3.client("logs", endpoint_url=endpoint, region_name="us-east-1")
    logs.create_log_group(logGroupName=group)
    for name in SHIPPED_CONFIG_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDWATCH_LOGS", endpoint)
    monkeypatch.setenv("ANALYTICS_S3_BUCKET", bucket)
    monkeypatch.setenv("ANALYTICS_LOG_GROUP", group)
    monkeypatch.setenv("ANALYTICS_SPOOL_DIR", str(spool_dir))
    return group, logs


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """umask 000 for the test: whatever the library creates gets its mode from its own
    code, not from the process's umask."""
    old = os.umask(0o000)
    try:
        yield
    finally:
        os.umask(old)

def download(s3: Any, bucket: str, root: Path) -> list[str]:
    """Copy every object byte for byte into ``root``, keeping its key as the path; return
    the keys, sorted."""
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            path = root / item["Key"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())
            keys.append(item["Key"])
    return sorted(keys)


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass; return its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def has_ready(jobs: Any) -> bool:
    """True when a ``JobQueue`` holds a job ready now (an idle upload thread would not sleep)."""
    return bool(jobs.idle_wait(time.monotonic()) <= 0.001)
