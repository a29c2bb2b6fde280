"""Shared benchmark pieces: a moto server in its own process, buckets, timers, tables.

Benchmarks are not tests: nothing here passes or fails on a timing. Every number is printed
next to a baseline measured in the same run, because absolute timings drift on a shared box.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Dummy credentials for moto; never real ones. Set before any boto3 client exists.
os.environ.update({
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
})
for _var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3",
             "ANALYTICS_S3_BUCKET", "AWS_REGION"):
    os.environ.pop(_var, None)

BENCH_DIR = Path(__file__).resolve().parent
MESSAGE = "Session analytics data"

Row = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Check:
    """One target from the issues, measured: informative only, never an exit code."""

    name: str
    measured: str
    target: str
    #: ``None`` when the issue sets no target and the number is only reported.
    met: bool | None

    @property
    def label(self) -> str:
        """``PASS`` when the target was met in this run, ``FALL-SHORT`` if not, else ``info``."""
        if self.met is None:
            return "info"
        return "PASS" if self.met else "FALL-SHORT"


@dataclass(slots=True)
class Section:
    """One section's table: its rows, the columns to print, notes, and the targets it checks."""

    title: str
    columns: list[str]
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Context:
    """What every section gets: the moto endpoint (another process) and the run's size."""

    endpoint: str
    quick: bool

    def n(self, full: int, quick: int) -> int:
        """``full`` in the default mode, ``quick`` with ``--quick``."""
        return quick if self.quick else full


# -- moto in another process ---------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def moto_server(timeout: float = 30.0) -> Iterator[str]:
    """Run ``moto_server`` in a separate process on 127.0.0.1 and yield its endpoint URL.

    A separate process keeps moto's CPU out of ours, so our CPU and throughput numbers are
    our own. Raises ``RuntimeError`` if it does not answer within ``timeout`` seconds.
    """
    port = _free_port()
    exe = Path(sys.executable).parent / "moto_server"
    proc = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, preexec_fn=_die_with_parent)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        _wait_for(endpoint, proc, timeout)
        yield endpoint
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the benchmark dies, even by SIGKILL."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _wait_for(endpoint: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            msg = f"moto_server exited with code {proc.returncode}"
            raise RuntimeError(msg)
        try:
            with urllib.request.urlopen(f"{endpoint}/moto-api/data.json", timeout=2):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    msg = f"moto_server did not answer on {endpoint} within {timeout}s"
    raise RuntimeError(msg)


def reset_moto(endpoint: str) -> None:
    """Drop every bucket and log group moto holds, so sections do not grow its memory."""
    request = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=30):
        pass


def s3_client(endpoint: str) -> Any:
    """A plain boto3 S3 client for set-up and checks."""
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")


def new_bucket(endpoint: str, name: str) -> str:
    """Create a uniquely named bucket and return its name."""
    bucket = f"bench-{name}-{uuid.uuid4().hex[:8]}"
    s3_client(endpoint).create_bucket(Bucket=bucket)
    return bucket


def count_objects(endpoint: str, bucket: str) -> int:
    """How many objects ``bucket`` holds."""
    pages = s3_client(endpoint).get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return sum(page.get("KeyCount", 0) for page in pages)


# -- numbers and tables --------------------------------------------------------------------
def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0..1) of already sorted values, nearest rank."""
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * len(sorted_values)) - 1))
    return float(sorted_values[index])


def cpu_seconds() -> float:
    """CPU seconds (user + system) of this whole process, every thread included."""
    return time.process_time()


def timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """Run ``fn``; return (wall seconds, process CPU seconds, its result)."""
    wall, cpu = time.perf_counter(), cpu_seconds()
    result = fn()
    return time.perf_counter() - wall, cpu_seconds() - cpu, result


def fmt(value: Any, digits: int = 1) -> str:
    """A table cell: floats with ``digits`` decimals and thousands separators."""
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def markdown_table(columns: Sequence[str], rows: Sequence[Row]) -> str:
    """Rows as a GitHub markdown table (numbers right-aligned)."""
    cells = [[fmt(row.get(c, "")) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    numeric = [all(isinstance(row.get(c), int | float) for row in rows if c in row)
               for c in columns]
    head = "| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)) + " |"
    rule = "|" + "|".join(("-" * (w + 1) + ":") if num else ("-" * (w + 2))
                          for w, num in zip(widths, numeric, strict=True)) + "|"
    body = ["| " + " | ".join(cell.rjust(w) if num else cell.ljust(w)
                              for cell, w, num in zip(r, widths, numeric, strict=True)) + " |"
            for r in cells]
    return "\n".join([head, rule, *body])
