"""Real servers, real packages, real HTTP: 200 requests each log one record, then SIGTERM.

Each server runs in a subprocess against the session's moto server; every one must leave
200/200 objects in the bucket. Without the integrations, uvicorn (which dies by re-raising
SIGTERM) and its gunicorn worker lost 40-50 % of them (issue 12).
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port, wait_until

CHILDREN = Path(__file__).parent / "children"
REQUESTS = 200


def server_env(endpoint: str, bucket: str) -> dict[str, str]:
    return {**os.environ, "TEST_S3_ENDPOINT": endpoint, "TEST_S3_BUCKET": bucket,
            "TEST_CLOSE_TIMEOUT": "15", "PYTHONUNBUFFERED": "1"}


def get(port: int, path: str, attempts: int = 5) -> None:
    """One GET on a fresh connection; a connection cut by a worker that is recycling is
    retried (the same id again: the same key, so a retry never adds an object)."""
    for attempt in range(attempts):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("GET", path, headers={"Connection": "close"})
            response = conn.getresponse()
            response.read()
            if response.status == 200:
                return
        except OSError:
            if attempt == attempts - 1:
                raise
        finally:
            conn.close()
        time.sleep(0.05)
    raise AssertionError(f"GET {path} failed {attempts} times")


def serve_and_stop(command: list[str], env: dict[str, str], port: int, prefix: str,
                   ) -> tuple[int, str, str]:
    """Start ``command``, wait until it answers, send 200 logging requests, SIGTERM it and
    wait for it to end. Returns (returncode, stdout, stderr)."""
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=CHILDREN)
    try:
        def answers() -> bool:
            try:
                get(port, "/health", attempts=1)
            except (OSError, AssertionError):
                return proc.poll() is not None  # stop waiting if it died
            return True

        assert wait_until(answers, 30, 0.1), "server did not start"
        assert proc.poll() is None, proc.communicate()
        for i in range(REQUESTS):
            get(port, f"/session/{prefix}-{i}")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=40)
        return proc.returncode, out, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def keys_found(s3: Any, bucket: str) -> set[str]:
    keys: set[str] = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys.update(item["Key"].rsplit("/", 1)[1] for item in page.get("Contents", []))
    return keys


def check_all_arrived(s3: Any, bucket: str, prefix: str, out: str, err: str) -> None:
    found = keys_found(s3, bucket)
    expected = {f"{prefix}-{i}.json.gz" for i in range(REQUESTS)}
    # What each process still held when its flush began: the app prints it at lifespan
    # shutdown; the signal integration logs it.
    pending = ([int(n) for n in re.findall(r"pending=(\d+)", out)]
               or [int(n) for n in re.findall(r"(\d+) were pending", err)])
    print(f"{prefix}: {len(found & expected)}/{REQUESTS} objects in S3; "
          f"pending when the flush began: {pending}")
    assert found == expected, (len(found), err[-3000:])
    assert "not every analytics record was delivered" not in err, err[-3000:]


PYTHON = sys.executable


@pytest.mark.parametrize("app", ["wrapped", "lifespan_form", "raw_wrapped"])
def test_uvicorn(app: str, moto_endpoint: str, s3: Any, bucket: str) -> None:
    """``uvicorn app:app`` with the integration: the lifespan shutdown flush delivers all
    200 records although the process then dies by its re-raised SIGTERM."""
    port = free_port()
    code, out, err = serve_and_stop(
        [PYTHON, "-m", "uvicorn", f"server_apps:{app}", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning"],
        server_env(moto_endpoint, bucket), port, f"uvicorn-{app}")
    check_all_arrived(s3, bucket, f"uvicorn-{app}", out, err)
    assert code == -signal.SIGTERM, (code, err[-2000:])  # no atexit ran: the flush did it


def test_gunicorn_uvicorn_workers(moto_endpoint: str, s3: Any, bucket: str) -> None:
    """``gunicorn -k uvicorn.workers.UvicornWorker -w 2 --max-requests 40``: every worker
    that is recycled, and each one stopped by SIGTERM, flushes at its lifespan shutdown."""
    port = free_port()
    code, out, err = serve_and_stop(
        [PYTHON, "-m", "gunicorn", "-k", "uvicorn.workers.UvicornWorker", "-w", "2",
         "--max-requests", "40", "--graceful-timeout", "30", "-b", f"127.0.0.1:{port}",
         "--log-level", "warning", "server_apps:wrapped"],
        server_env(moto_endpoint, bucket), port, "gunicorn-uvicorn")
    check_all_arrived(s3, bucket, "gunicorn-uvicorn", out, err)
    shutdowns = len(re.findall(r"app shutdown", out))
    print(f"gunicorn-uvicorn: {shutdowns} worker lifespan shutdowns; master exit code {code}")
    # At least 3 recycled (about 200 / 40 in all, shared by 2 workers), plus those stopped
    # by SIGTERM that had started.
    assert shutdowns >= 4, out


@pytest.mark.parametrize("mode", ["signal", "loop"])
def test_asyncio_worker(mode: str, moto_endpoint: str, s3: Any, bucket: str) -> None:
    """A plain ``asyncio.run()`` worker with ``flush_on_signals()`` (or its ``loop=`` form):
    everything arrives, and the process still dies by SIGTERM as it would without us."""
    port = free_port()
    code, out, err = serve_and_stop(
        [PYTHON, str(CHILDREN / "asyncio_worker.py"), mode, str(port)],
        server_env(moto_endpoint, bucket), port, f"asyncio-{mode}")
    check_all_arrived(s3, bucket, f"asyncio-{mode}", out, err)
    assert "SIGTERM: analytics records flushed" in err, err[-2000:]
    assert code == -signal.SIGTERM, (code, err[-2000:])


def test_gunicorn_sync_preload(moto_endpoint: str, s3: Any, bucket: str) -> None:
    """Regression guard: gunicorn sync workers with ``--preload`` and ``max_requests``
    recycling exit through the interpreter, so ``logging.shutdown()`` delivers everything
    with no integration at all."""
    port = free_port()
    code, out, err = serve_and_stop(
        [PYTHON, "-m", "gunicorn", "-w", "2", "--preload", "--max-requests", "40",
         "-b", f"127.0.0.1:{port}", "--log-level", "warning", "server_apps:wsgi"],
        server_env(moto_endpoint, bucket), port, "gunicorn-sync")
    check_all_arrived(s3, bucket, "gunicorn-sync", out, err)
    assert code == 0, (code, err[-2000:])
