"""How a service ends, over real HTTP: what the handler holds at the end still reaches S3.

Each case runs a child Python process (``tests/children/shutdown_child.py``) that never calls
a final flush itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import read_objects

CHILD = Path(__file__).parent / "children" / "shutdown_child.py"
COUNT = 40


def run_child(mode: str, endpoint: str, bucket: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(CHILD), mode, endpoint, bucket, str(COUNT)],
                          capture_output=True, text=True, timeout=120, env=dict(os.environ),
                          check=False)


class TestShutdown:
    @pytest.mark.parametrize("mode", ["root", "reload", "short_flush"])
    def test_every_record_arrives(self, mode: str, moto_endpoint: str, s3: Any,
                                  bucket: str) -> None:
        """On the root logger (botocore logs into it while exit flushes), after a dictConfig
        reload right before exit, and when close() follows a flush that timed out: every
        record the child logged is in S3, once, and nothing was reported lost."""
        done = run_child(mode, moto_endpoint, bucket)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip().endswith("done")
        bodies = read_objects(s3, bucket)
        assert sorted(k.rsplit("/", 1)[1] for k in bodies) == sorted(
            f"{mode}-{i}.json.gz" for i in range(COUNT))
        assert "undelivered" not in done.stderr
