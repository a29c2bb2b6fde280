"""Recovery paths keep every guarantee (issue 16), over real HTTP against moto.

``replay`` uploads with the handler's own settings (and refuses to weaken what the records
were written with); every dead letter has one fate (removed only once its record is
delivered or safely queued, updated in place when dead-lettered again, left in place when
re-emitting fails); dead letters are bounded by bytes and a ``too_large`` one keeps only a
head, the size and a sha256; compaction writes private temporary files and follows no
symlink; a long outage keeps memory (child processes, RSS) and disk bounded with every drop
counted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
import orjson
import pytest
from conftest import free_port, wait_until

from s3_log_handler import S3Handler, _segment_files
from s3_log_handler import _letter_area as letter_area
from s3_log_handler._replay import ReplayRefused, replay
from s3_log_handler._snapshot import Snapshotter
from s3_log_handler.counters import balance

CHILD = Path(__file__).parent / "children" / "outage_child.py"
KIB, MIB = 1024, 1024 * 1024


# -- helpers --------------------------------------------------------------------------------


def dead_end() -> str:
    """An endpoint nothing listens on: every upload is refused, records stay."""
    return f"http://127.0.0.1:{free_port()}"


def attach(lg: logging.Logger, handler: S3Handler) -> logging.Logger:
    lg.handlers[:] = [handler]
    lg.setLevel(logging.INFO)
    lg.propagate = False
    return lg


def emit(lg: logging.Logger, *ids: str, **extra: object) -> None:
    for record_id in ids:
        lg.info("Session analytics data",
                extra={"analytics_data": {"session_id": record_id, **extra}})


def cli(*args: str, endpoint: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "AWS_ENDPOINT_URL_S3": endpoint, **env}
    environ.pop("ANALYTICS_SPOOL_KEY", None)
    return subprocess.run([sys.executable, "-m", "s3_log_handler._cli", *args], env=environ,
                          capture_output=True, text=True, timeout=120, check=False)


def keys(s3: Any, bucket: str) -> list[str]:
    found: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        found.extend(item["Key"] for item in page.get("Contents", []))
    return sorted(found)


def letter_files(spool: Path) -> list[Path]:
    return sorted((spool / "dead").glob("*.json"))


def letters(spool: Path) -> list[dict[str, Any]]:
    return [orjson.loads(p.read_bytes()) for p in letter_files(spool)]


def leave_records(bucket: str, spool: Path, *ids: str, **options: Any) -> None:
    """A handler that cannot reach S3 closes with ``ids`` on disk in ``spool``."""
    handler = S3Handler(bucket, endpoint_url=dead_end(), spool_dir=str(spool),
                        close_timeout=0.3, **options)
    emit(attach(logging.getLogger("analytics.recovery.leave"), handler), *ids)
    handler.close()
    # Until its last upload attempts end, the closed handler keeps their segments locked.
    assert wait_until(lambda: handler.stats()["queued"] == 0, 30), handler.stats()
    assert handler.stats()["spooled"] == len(ids)


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    path = tmp_path / "spool"
    path.mkdir(mode=0o700)
    return path


# -- replay runs with the handler's settings ---------------------------------------------------


class TestReplaySettings:
    def test_replay_keeps_sse_or_refuses_to_run(
        self, spool: Path, moto_endpoint: str, s3: Any, bucket: str,
    ) -> None:
        """Records written with sse=AES256: replay without it exits 2 and uploads nothing;
        with --sse AES256 every object comes back with ServerSideEncryption."""
        leave_records(bucket, spool, "enc-1", "enc-2", sse="AES256")
        refused = cli("replay", str(spool), "--bucket", bucket, endpoint=moto_endpoint)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert "sse='AES256' (this run: none)" in refused.stderr
        assert "--sse AES256" in refused.stderr
        assert keys(s3, bucket) == []
        assert list(spool.glob("*.seg"))

        run = cli("replay", str(spool), "--bucket", bucket, "--sse", "AES256",
                  endpoint=moto_endpoint)
        assert run.returncode == 0, run.stdout + run.stderr
        assert json.loads(run.stdout)["delivered"] == 2
        found = keys(s3, bucket)
        assert [k.rsplit("/", 1)[1] for k in found] == ["enc-1.json.gz", "enc-2.json.gz"]
        assert {s3.head_object(Bucket=bucket, Key=k)["ServerSideEncryption"]
                for k in found} == {"AES256"}
        assert list(spool.glob("*.seg")) == []

    def test_replay_config_takes_the_handlers_settings_with_variables_expanded(
        self, tmp_path: Path, spool: Path, moto_endpoint: str, s3: Any, bucket: str,
    ) -> None:
        """--config reads the S3Handler of a logging.yaml (${VAR} expanded as configure()
        does), spool_dir included: the objects carry its SSE and its prefix."""
        leave_records(bucket, spool, "cfg-1", prefix="events", sse="AES256")
        config = tmp_path / "logging.yaml"
        config.write_text(
            "version: 1\n"
            "handlers:\n"
            "  console: {class: logging.StreamHandler}\n"
            "  s3:\n"
            "    class: s3_log_handler.S3Handler\n"
            '    bucket: "${REPLAY_TEST_BUCKET}"\n'
            '    prefix: "${REPLAY_TEST_PREFIX:-events}"\n'
            '    sse: "${REPLAY_TEST_SSE:-AES256}"\n'
            '    spool_dir: "${REPLAY_TEST_SPOOL}"\n'
            '    close_timeout: "${REPLAY_TEST_CLOSE:-5}"\n'
            "root: {handlers: [console]}\n")
        run = cli("replay", "--config", str(config), endpoint=moto_endpoint,
                  REPLAY_TEST_BUCKET=bucket, REPLAY_TEST_SPOOL=str(spool))
        assert run.returncode == 0, run.stdout + run.stderr
        [key] = keys(s3, bucket)
        assert key.startswith("events/") and key.endswith("/cfg-1.json.gz")
        assert s3.head_object(Bucket=bucket, Key=key)["ServerSideEncryption"] == "AES256"

        leave_records(bucket, spool, "cfg-2", prefix="events", sse="AES256")
        weaker = cli("replay", "--config", str(config), endpoint=moto_endpoint,
                     REPLAY_TEST_BUCKET=bucket, REPLAY_TEST_SPOOL=str(spool),
                     REPLAY_TEST_SSE="aws:kms")  # a flag or the file may change it, visibly
        assert weaker.returncode == 2 and "sse='AES256' (this run: 'aws:kms')" in weaker.stderr
        unknown = cli("replay", "--config", str(config), "--handler", "console",
                      endpoint=moto_endpoint, REPLAY_TEST_BUCKET=bucket,
                      REPLAY_TEST_SPOOL=str(spool))
        assert unknown.returncode == 2 and "is not an S3Handler" in unknown.stderr

    def test_expected_bucket_owner_is_kept_and_dead_letters_are_checked_too(
        self, spool: Path, moto_endpoint: str, s3: Any, bucket: str,
    ) -> None:
        """Letters record the settings too: --dead-letters without the owner check exits
        2; with it the letter's record goes out carrying ExpectedBucketOwner."""
        owner = boto3.client("sts", endpoint_url=moto_endpoint,
                             region_name="us-east-1").get_caller_identity()["Account"]
        handler = S3Handler(bucket, endpoint_url=dead_end(), spool_dir=str(spool),
                            expected_bucket_owner=owner, max_record_bytes=200,
                            close_timeout=0.3)
        emit(attach(logging.getLogger("analytics.recovery.owner"), handler), "big",
             pad="p" * 300)
        handler.close()
        [letter] = letters(spool)
        assert letter["put"] == {"expected_bucket_owner": owner, "checksum_algorithm": "CRC32"}
        refused = cli("replay", str(spool), "--bucket", bucket, "--dead-letters",
                      endpoint=moto_endpoint)
        assert refused.returncode == 2 and "expected_bucket_owner" in refused.stderr
        assert f"--expected-bucket-owner {owner}" in refused.stderr
        run = cli("replay", str(spool), "--bucket", bucket, "--dead-letters",
                  "--expected-bucket-owner", owner, endpoint=moto_endpoint)
        assert run.returncode == 0, run.stdout + run.stderr
        assert json.loads(run.stdout)["dead_letters_retried"] == 1
        assert [k.rsplit("/", 1)[1] for k in keys(s3, bucket)] == ["big.json.gz"]

    def test_a_handler_without_sse_leaves_a_segment_written_with_sse_alone(
        self, spool: Path, moto_endpoint: str, s3: Any, bucket: str,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """A reload that dropped sse: the new handler does not adopt the old records (one
        WARNING says how to deliver them); a handler with SSE does."""
        leave_records(bucket, spool, "sse-only", sse="AES256")
        plain = S3Handler(bucket, endpoint_url=moto_endpoint, spool_dir=str(spool))
        stats = plain.stats()
        plain.close()
        assert stats["recovered"] == 0 and keys(s3, bucket) == []
        assert any("not adopting segment" in r.getMessage() and "--sse AES256" in
                   r.getMessage() for r in caplog.records)
        encrypted = S3Handler(bucket, endpoint_url=moto_endpoint, spool_dir=str(spool),
                              sse="AES256")
        assert encrypted.wait_idle(20) and encrypted.stats()["delivered"] == 1
        encrypted.close()
        [key] = keys(s3, bucket)
        assert s3.head_object(Bucket=bucket, Key=key)["ServerSideEncryption"] == "AES256"


# -- every dead letter has one fate --------------------------------------------------------------


class TestDeadLetterFates:
    def test_letters_still_too_large_keep_their_files_and_count_attempts(
        self, spool: Path, moto_endpoint: str, s3: Any, bucket: str,
    ) -> None:
        """Three replays with the same 1 KiB limit: still two files (no copies), each with
        attempts 3; a replay with the default limit delivers and removes them."""
        handler = S3Handler(bucket, endpoint_url=dead_end(), spool_dir=str(spool),
                            max_record_bytes=1024, close_timeout=0.3)
        emit(attach(logging.getLogger("analytics.recovery.big"), handler), "big-1", "big-2",
             pad="p" * 2048)
        handler.close()
        names = [p.name for p in letter_files(spool)]
        assert len(names) == 2
        for run in range(1, 4):
            result = cli("replay", str(spool), "--bucket", bucket, "--dead-letters",
                         "--max-record-bytes", "1024", endpoint=moto_endpoint)
            assert result.returncode == 0, result.stderr
            counts = json.loads(result.stdout)
            assert counts["dead_letters_kept"] == {"too_large": 2}, counts
            assert (counts["dead_letters_retried"], counts["dead_letters_left"]) == (0, 2)
            assert [p.name for p in letter_files(spool)] == names
            assert [d["attempts"] for d in letters(spool)] == [run, run]
            assert {d["reason"] for d in letters(spool)} == {"too_large"}
            assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in letter_files(spool))
        assert keys(s3, bucket) == []
        final = cli("replay", str(spool), "--bucket", bucket, "--dead-letters",
                    endpoint=moto_endpoint)
        counts = json.loads(final.stdout)
        assert (counts["dead_letters_retried"], counts["dead_letters_left"]) == (2, 0), counts
        assert [k.rsplit("/", 1)[1] for k in keys(s3, bucket)] == ["big-1.json.gz",
                                                                   "big-2.json.gz"]

    def test_a_letter_whose_re_emit_fails_stays_and_is_counted(
        self, spool: Path, moto_endpoint: str, s3: Any, bucket: str,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Re-emitting one letter raises: that letter stays (counted as an error), the
        others are delivered and removed; letters replay cannot send are counted by why."""
        handler = S3Handler(bucket, endpoint_url=dead_end(), spool_dir=str(spool),
                            max_record_bytes=100, close_timeout=0.3)
        lg = attach(logging.getLogger("analytics.recovery.fail"), handler)
        emit(lg, "fine", "boom", pad="p" * 200)
        lg.info("not a dict", extra={"analytics_data": ["a", "list"]})
        handler.close()
        assert len(letter_files(spool)) == 3
        take = Snapshotter.take

        def failing(self: Snapshotter, record: logging.LogRecord, payload: object,
                    letter: str | None = None) -> Any:
            if isinstance(payload, dict) and payload.get("session_id") == "boom":
                raise RuntimeError("injected")
            return take(self, record, payload, letter)

        monkeypatch.setattr(Snapshotter, "take", failing)
        stats = replay(str(spool), retry_dead_letters=True, timeout=20, bucket=bucket,
                       endpoint_url=moto_endpoint)
        assert stats["dead_letters_retried"] == 1
        assert stats["dead_letters_errors"] == 1
        assert stats["dead_letters_kept"] == {"error": 1}
        assert stats["dead_letters_skipped"] == {"not_an_object": 1}
        assert stats["dead_letters_left"] == 2
        assert sorted(d["reason"] for d in letters(spool)) == ["not_an_object", "too_large"]
        assert [d["record_id"] for d in letters(spool) if d["reason"] == "too_large"] == [
            "boom"]
        assert [k.rsplit("/", 1)[1] for k in keys(s3, bucket)] == ["fine.json.gz"]


# -- dead letters bounded by bytes ---------------------------------------------------------------


class TestDeadLetterBounds:
    def test_a_20_mib_record_leaves_a_letter_of_at_most_70_kib_with_size_and_sha256(
        self, spool: Path, moto_endpoint: str, bucket: str,
    ) -> None:
        handler = S3Handler(bucket, endpoint_url=moto_endpoint, spool_dir=str(spool),
                            max_record_bytes=MIB)
        payload = {"session_id": "huge", "transcript": "t" * (20 * MIB)}
        attach(logging.getLogger("analytics.recovery.huge"), handler).info(
            "Session analytics data", extra={"analytics_data": payload})
        handler.close()
        assert handler.stats()["dead_letter_reasons"] == {"too_large": 1}
        [path] = letter_files(spool)
        body = orjson.dumps(payload) + b"\n"
        letter = orjson.loads(path.read_bytes())
        assert path.stat().st_size <= 70 * KIB
        assert (letter["size"], letter["sha256"]) == (len(body),
                                                      hashlib.sha256(body).hexdigest())
        assert letter["truncated"] is True and "body" not in letter
        assert body.decode().startswith(letter["head"]) and len(letter["head"]) >= 60 * KIB

    def test_the_area_is_bounded_by_bytes_and_the_callers_thread_never_lists_it(
        self, spool: Path, moto_endpoint: str, bucket: str, monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """max_dead_letter_bytes=20 KiB and 2 KB refused records: letters stop at the bound,
        every record is still counted, and no emit lists dead/ (the count is in memory,
        made when the spool opened)."""
        handler = S3Handler(bucket, endpoint_url=moto_endpoint, spool_dir=str(spool),
                            max_record_bytes=1024, max_dead_letter_bytes=20 * KIB)
        listings: list[str] = []
        real_scandir, real_listdir = os.scandir, os.listdir

        def scandir(path: Any = ".") -> Any:
            listings.append(str(path))
            return real_scandir(path)

        def listdir(path: Any = ".") -> list[str]:
            listings.append(str(path))
            return real_listdir(path)

        monkeypatch.setattr(letter_area.os, "scandir", scandir)
        monkeypatch.setattr(os, "listdir", listdir)
        lg = attach(logging.getLogger("analytics.recovery.area"), handler)
        for n in range(30):
            emit(lg, f"refused-{n}", pad="p" * 2048)
        monkeypatch.undo()
        stats = handler.stats()
        handler.close()
        assert stats["dead_letter_reasons"] == {"too_large": 30} and balance(stats) == 0
        sizes = [p.stat().st_size for p in letter_files(spool)]
        assert 0 < sum(sizes) <= 20 * KIB and len(sizes) < 30
        assert not [p for p in listings if p.rstrip("/").endswith("dead")], listings


# -- compaction: private and safe ----------------------------------------------------------------


class _FailSome:
    """A boto3 session whose PutObject fails for keys containing ``stuck`` (before it is
    sent): those records stay queued, the rest are delivered."""

    def __init__(self) -> None:
        self._session = boto3.session.Session()

    def client(self, *args: Any, **kwargs: Any) -> Any:
        client = self._session.client(*args, **kwargs)
        client.meta.events.register("before-call.s3.PutObject", self._before_put)
        return client

    @staticmethod
    def _before_put(params: Any = None, **_: Any) -> None:
        if "stuck" in str((params or {}).get("url_path", "")):
            raise ConnectionError("injected: stuck")


def _one_stuck_three_sent(spool: Path, endpoint: str, bucket: str,
                          name: str) -> tuple[S3Handler, logging.Logger]:
    """A spooled handler whose first four records are one that cannot be sent and three that
    are delivered (waited for), so its segment holds a pending line beside delivered ones."""
    handler = S3Handler(bucket, endpoint_url=endpoint, spool_dir=str(spool),
                        boto3_session=_FailSome(), close_timeout=1.0, retry_base=0.05,
                        retry_cap=0.1)
    lg = attach(logging.getLogger(f"analytics.recovery.{name}"), handler)
    # One stuck record among the first (four upload threads take them at once; failed jobs
    # go first in line again, so more stuck ones could starve the rest).
    emit(lg, "stuck-1", "sent-1", "sent-2", "sent-3")
    assert wait_until(lambda: handler.stats()["delivered"] == 3, 20), handler.stats()
    return handler, lg


class TestCompaction:
    def test_a_close_with_records_pending_leaves_0600_files_and_follows_no_symlink(
        self, spool: Path, moto_endpoint: str, s3: Any, bucket: str, tmp_path: Path,
        permissive_umask: None, monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Under umask 0o000, a handler closes with some records delivered and some not:
        the segment is rewritten without the delivered ones through a 0600 temporary file
        under a random name; a symlink planted at the old fixed temporary name is left
        alone, and so is the file it points to."""
        victim = tmp_path / "victim.txt"
        victim.write_text("keep me\n")
        victim.chmod(0o644)
        temp_modes: list[int] = []
        real_rename = os.rename

        def rename(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
            if str(src).endswith(_segment_files.COMPACT_SUFFIX):
                temp_modes.append(stat.S_IMODE(os.lstat(src).st_mode))
            real_rename(src, dst, *args, **kwargs)

        monkeypatch.setattr(_segment_files.os, "rename", rename)
        handler, lg = _one_stuck_three_sent(spool, moto_endpoint, bucket, "compact")
        emit(lg, "stuck-2")
        [segment] = spool.glob("*.seg")
        planted = spool / (segment.stem + ".compact")
        planted.symlink_to(victim)
        handler.close()
        monkeypatch.undo()
        assert temp_modes == [0o600]
        assert victim.read_text() == "keep me\n" and planted.is_symlink()
        [kept] = spool.glob("*.seg")
        assert stat.S_IMODE(kept.stat().st_mode) == 0o600
        lines = kept.read_bytes().splitlines()
        assert lines[0].startswith(b"#") and len(lines) == 3
        assert [b"stuck" in line for line in lines[1:]] == [True, True]
        assert not [p for p in spool.iterdir() if p.name.endswith(".tmp")]


    def test_a_symlink_planted_at_the_temporary_name_itself_is_not_followed(
        self, spool: Path, moto_endpoint: str, s3: Any, bucket: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
    ) -> None:
        """The random name is pinned, and a symlink to a victim file waits exactly there:
        the O_EXCL | O_NOFOLLOW open refuses it, so the victim is unchanged; the rewrite
        fails and is reported, and the segment is handed on whole (nothing lost)."""
        victim = tmp_path / "victim.txt"
        victim.write_text("keep me\n")
        pinned = "f" * 32
        monkeypatch.setattr(_segment_files.uuid, "uuid4",
                            lambda: type("Pinned", (), {"hex": pinned})())
        handler, _ = _one_stuck_three_sent(spool, moto_endpoint, bucket, "pinned")
        [segment] = spool.glob("*.seg")
        planted = spool / f"{segment.stem}.{pinned}{_segment_files.COMPACT_SUFFIX}"
        planted.symlink_to(victim)
        handler.close()
        assert victim.read_text() == "keep me\n" and planted.is_symlink()
        [kept] = spool.glob("*.seg")
        assert stat.S_IMODE(kept.stat().st_mode) == 0o600
        lines = kept.read_bytes().splitlines()
        assert sum(b"stuck-1" in line for line in lines) == 1  # handed on whole
        assert any(r.levelno >= logging.WARNING and "File exists" in r.getMessage()
                   for r in caplog.records), [r.getMessage() for r in caplog.records]


# -- a long outage: bounded memory and disk ------------------------------------------------------


def run_outage(**args: object) -> dict[str, Any]:
    command = [sys.executable, str(CHILD), "--endpoint", dead_end()]
    for name, value in args.items():
        command += [f"--{name.replace('_', '-')}", str(value)]
    out = subprocess.run(command, capture_output=True, text=True, timeout=300, check=True)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


class TestOutage:
    def test_300k_refused_records_without_a_spool_grow_rss_less_than_16_mib(self) -> None:
        """S3 refused, 1 MiB queue, no spool, 300,000 records of 1 KB: RSS (measured in the child)
        grows < 16 MiB and every record is counted (queued or dropped queue_full)."""
        result = run_outage(records=300_000, queue_bytes=MIB)
        stats = result["stats"]
        print(f"\nno spool: RSS +{result['growth_kib'] / 1024:.1f} MiB, "
              f"{stats['dropped']:,} dropped")
        assert result["growth_kib"] < 16 * 1024, result
        assert stats["emitted"] == 300_001 and result["balance"] == 0
        assert stats["dropped_reasons"] == {"queue_full": stats["dropped"]}
        assert stats["dropped"] + stats["queued"] == 300_001

    def test_with_a_spool_disk_stays_under_max_spool_bytes_and_drops_are_spool_full(
        self, spool: Path,
    ) -> None:
        """The same with a spool capped at 10 MiB: the segments never exceed 10 MiB plus
        one segment, the rest is dropped spool_full, RSS still grows < 16 MiB."""
        result = run_outage(records=300_000, queue_bytes=MIB, spool_dir=spool,
                            max_spool_bytes=10 * MIB)
        stats = result["stats"]
        print(f"\nspool 10 MiB: RSS +{result['growth_kib'] / 1024:.1f} MiB, disk "
              f"{result['most_on_disk'] / MIB:.1f} MiB, {stats['dropped']:,} dropped")
        assert result["most_on_disk"] <= 10 * MIB + 4 * MIB, result
        assert stats["dropped_reasons"] == {"spool_full": stats["dropped"]}
        assert stats["dropped"] > 250_000 and result["balance"] == 0
        assert stats["spooled"] + stats["queued"] + stats["dropped"] == 300_001
        assert result["growth_kib"] < 16 * 1024, result


def test_a_spool_over_its_limit_holds_records_in_memory_then_drops_them_spool_full(
    spool: Path, moto_endpoint: str, s3: Any, bucket: str,
) -> None:
    """In-process and quick: a 64 KiB spool and an 8 KiB queue while S3 is refused; the
    spool stays within its bound, later records are dropped spool_full, and once S3 is
    reachable (a new handler on the directory) everything that was kept arrives."""
    handler = S3Handler(bucket, endpoint_url=dead_end(), spool_dir=str(spool),
                        max_spool_bytes=64 * KIB, max_queue_bytes=8 * KIB, close_timeout=0.3)
    lg = attach(logging.getLogger("analytics.recovery.full"), handler)
    emit(lg, *(f"f-{n}" for n in range(300)), pad="p" * 900)
    on_disk = sum(p.stat().st_size for p in spool.glob("*.seg"))
    stats = handler.stats()
    handler.close()
    assert on_disk <= 64 * KIB
    assert stats["dropped_reasons"] == {"spool_full": stats["dropped"]} and stats["dropped"]
    assert balance(stats) == 0
    kept = stats["queued"] + stats["spooled"]
    later = S3Handler(bucket, endpoint_url=moto_endpoint, spool_dir=str(spool))
    assert wait_until(lambda: later.stats()["delivered"] == kept, 30), later.stats()
    later.close()
    assert len(keys(s3, bucket)) == kept


def test_replay_refuses_before_sending_anything(spool: Path, bucket: str) -> None:
    """The Python entry point raises ReplayRefused (a ValueError) up front."""
    leave_records(bucket, spool, "x-1", sse="AES256")
    started = time.monotonic()
    with pytest.raises(ReplayRefused, match="--sse AES256"):
        replay(str(spool), bucket=bucket, endpoint_url=dead_end())
    assert time.monotonic() - started < 5
