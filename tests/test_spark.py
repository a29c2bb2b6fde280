"""A real engine reads the layout: Apache Spark (pyspark, local mode) over a downloaded copy.

pyspark is heavy (~500 MB with its jars) and stays out of the dev extra: the first run installs
it with pip into ``<venv>/test-cache/pyspark`` and later runs reuse that copy. The test is
skipped when ``java`` is not on PATH or the install fails (no network). It reads local files:
Spark's ``s3a://`` needs the hadoop-aws jars, which pyspark does not ship.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_query_duckdb import DAYS, SESSIONS, download, emit_all

from s3_log_handler import S3Handler

#: Where the on-demand pyspark lives: inside the venv, so it never enters the work tree.
PYSPARK_CACHE = Path(sys.prefix) / "test-cache" / "pyspark"
#: Spark 3.5 and 4.x both run on the machine's Java 17.
PYSPARK_REQUIREMENT = "pyspark>=3.5,<5"
INSTALL_TIMEOUT = 900


def install_pyspark() -> Path | None:
    """The directory holding an importable pyspark, installed now if missing; None on failure.

    pip installs into a private directory that is renamed into place only when complete, so a
    run interrupted mid-install (or a second one at the same time) never sees half a package.
    """
    if (PYSPARK_CACHE / "pyspark" / "__init__.py").exists():
        return PYSPARK_CACHE
    partial = PYSPARK_CACHE.with_name(f"pyspark.partial-{os.getpid()}")
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
             "--target", str(partial), PYSPARK_REQUIREMENT],
            capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False)
        if done.returncode != 0 or not (partial / "pyspark" / "__init__.py").exists():
            return None
        try:
            partial.rename(PYSPARK_CACHE)
        except OSError:  # another run finished first: use its copy
            if not (PYSPARK_CACHE / "pyspark" / "__init__.py").exists():
                return None
        return PYSPARK_CACHE
    except (OSError, subprocess.TimeoutExpired):
        return None
    finally:
        shutil.rmtree(partial, ignore_errors=True)


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    """A local-mode SparkSession on one core, its UI off, bound to loopback."""
    if shutil.which("java") is None:
        pytest.skip("Spark needs java on PATH")
    location = install_pyspark()
    if location is None:
        pytest.skip(f"could not pip install {PYSPARK_REQUIREMENT} into {PYSPARK_CACHE}")
    sys.path.insert(0, str(location))
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    session = (SparkSession.builder.master("local[1]").appName("s3_log_handler-test")
               .config("spark.ui.enabled", "false")
               .config("spark.driver.host", "127.0.0.1")
               .config("spark.driver.bindAddress", "127.0.0.1")
               .config("spark.sql.shuffle.partitions", "2")
               .getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
    sys.path.remove(str(location))


class TestSparkReadsTheLayout:
    @pytest.mark.parametrize(("mode", "ext"), [("object", ".json.gz"), ("batch", ".ndjson.gz")])
    def test_partitions_become_columns_and_counts_match_what_was_emitted(
            self, spark: Any, s3: Any, bucket: str, moto_endpoint: str, tmp_path: Path,
            mode: str, ext: str) -> None:
        """``spark.read.json`` discovers year/month/day as integers and counts every session."""
        handler = S3Handler(bucket, endpoint_url=moto_endpoint, mode=mode, max_batch_records=8)
        emitted = emit_all(handler)
        assert handler.flush(60)
        keys = download(s3, bucket, tmp_path)
        assert keys and all(k.endswith(ext) for k in keys)

        frame = spark.read.json(str(tmp_path / "sessions"))
        types = dict(frame.dtypes)
        assert (types["year"], types["month"], types["day"]) == ("int", "int", "int")
        per_day = sorted(tuple(row) for row in
                         frame.groupBy("year", "month", "day").count().collect())
        expected = Counter((t.year, t.month, t.day) for t, _ in emitted)
        assert per_day == sorted((*day, n) for day, n in expected.items())
        assert len(per_day) == len(DAYS) and frame.count() == SESSIONS

        leads = {row.session_id for row in frame.where(
            "discovered_signals.team_size >= 5 OR discovered_signals.monthly_volume >= 100"
        ).select("session_id").collect()}
        assert leads == {p["session_id"] for _, p in emitted
                         if p["discovered_signals"]["team_size"] >= 5
                         or p["discovered_signals"]["monthly_volume"] >= 100}
