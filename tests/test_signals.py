"""``flush_on_signals()`` flushes, then leaves the process's own signal handling alone.

Each case runs ``tests/children/signal_child.py`` twice side by side, with and without
``flush_on_signals()`` (called twice), and sends both the same signal: ours must deliver
every record before the process goes on, and end exactly as the control does.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

import s3_log_handler

CHILD = Path(__file__).parent / "children" / "signal_child.py"
COUNT = 100


def start(setup: str, install: bool, endpoint: str, bucket: str) -> subprocess.Popen[str]:
    env = {**os.environ, "TEST_S3_ENDPOINT": endpoint, "TEST_S3_BUCKET": bucket}
    return subprocess.Popen([sys.executable, str(CHILD), setup, "1" if install else "0",
                             str(COUNT)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def count_objects(s3: Any, bucket: str) -> int:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return sum(len(page.get("Contents", [])) for page in pages)


@pytest.mark.parametrize(("setup", "signum", "expected_code"), [
    ("default", signal.SIGTERM, -signal.SIGTERM),  # a shell reports 143
    ("default", signal.SIGINT, -signal.SIGINT),  # KeyboardInterrupt, re-raised at exit
    ("previous", signal.SIGTERM, 3),  # the app's handler exits with status 3
    ("loop", signal.SIGTERM, 0),  # the loop's handler lets asyncio.run() return
])
def test_flush_then_the_same_end(setup: str, signum: int, expected_code: int,
                                 moto_endpoint: str, s3: Any, bucket: str) -> None:
    control_bucket = f"test-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=control_bucket)
    ours = start(setup, True, moto_endpoint, bucket)
    control = start(setup, False, moto_endpoint, control_bucket)
    try:
        for proc in (ours, control):
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.strip() == "ready", (line, proc.communicate()[1])
        ours.send_signal(signum)
        control.send_signal(signum)
        out, err = ours.communicate(timeout=30)
        control_out, control_err = control.communicate(timeout=30)
    finally:
        for proc in (ours, control):
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    found = count_objects(s3, bucket)
    name = signal.Signals(signum).name
    pending = re.findall(r"(\d+) were pending", err)
    print(f"{setup}/{name}: {found}/{COUNT} in S3 (pending at the signal: {pending}); exit "
          f"code {ours.returncode}, without flush_on_signals {control.returncode}")
    # Everything was delivered before the process went on (it may have died right after).
    assert found == COUNT, err[-2000:]
    assert len(re.findall(rf"{name}: analytics records flushed", err)) == 1, err[-2000:]
    # The process ended exactly as it does without us.
    assert ours.returncode == control.returncode == expected_code, (err[-2000:],
                                                                    control_err[-2000:])
    chained = re.findall(r"(?:previous|app) handler ran delivered=(\d+)", out)
    if setup in ("previous", "loop"):
        # The handler installed before ran once, after the flush.
        assert chained == [str(COUNT)], out
        assert len(re.findall(r"handler ran", control_out)) == 1, control_out


def test_bounded_when_the_signal_interrupts_a_lock_holder(moto_endpoint: str,
                                                          bucket: str) -> None:
    """The signal lands while the main thread holds the lock the flush needs: the flush (on
    a helper thread) gives up after its timeout instead of waiting forever, and the process
    still dies by SIGTERM."""
    proc = start("locked", True, moto_endpoint, bucket)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
        elapsed = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    print(f"locked: ended after {elapsed:.2f} s with exit code {proc.returncode}")
    assert proc.returncode == -signal.SIGTERM
    assert "SIGTERM: the flush did not finish in time" in err, err[-2000:]
    assert elapsed < 10


def test_main_thread_only() -> None:
    """From another thread it refuses (and installs nothing)."""
    before = signal.getsignal(signal.SIGTERM)
    errors: list[BaseException] = []

    def call() -> None:
        try:
            s3_log_handler.flush_on_signals()
        except RuntimeError as exc:
            errors.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    thread.join()
    assert len(errors) == 1 and "main thread" in str(errors[0])
    assert signal.getsignal(signal.SIGTERM) is before
