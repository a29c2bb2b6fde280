"""A spool no one else can read or write into (issue 14), over real HTTP against moto.

What someone else might leave in or around a spool directory — a planted segment with a key
outside the prefix, a directory owned by another user, a 0777 directory, a symlinked
directory or ``dead/``, a forged or changed line — is refused or dead-lettered, never
uploaded. Every test ends by checking that the bucket holds only the objects the test's own
records should have made (no foreign object).
"""

from __future__ import annotations

import functools
import gzip
import json
import logging
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import free_port, wait_until

from s3_log_handler import S3Handler, _keeper
from s3_log_handler._keys import Partition
from s3_log_handler._records import Entry
from s3_log_handler._segment_lines import encode_line
from s3_log_handler.counters import balance

CHILD = Path(__file__).parent / "children" / "spool_user_child.py"
KEY = b"spool-hmac-key-for-tests"
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown, setuid)")


# -- helpers --------------------------------------------------------------------------------


def object_key(record_id: str, created: float, prefix: str = "sessions") -> str:
    """The key the default object-mode template gives ``record_id`` logged at ``created``."""
    p = Partition.of(created)
    return f"{prefix}/year={p.year}/month={p.month}/day={p.day}/{record_id}.json.gz"


def line(record_id: str, key: str | None, created: float | None = None,
         mac_key: bytes | None = None, **payload: object) -> bytes:
    """One spool line as the handler writes it (or as someone forging one would)."""
    body = orjson.dumps({"session_id": record_id, **payload}) + b"\n"
    entry = Entry(body, time.time() if created is None else created, record_id, key)
    return encode_line(entry, mac_key)


def plant(directory: Path, *lines: bytes, mode: int = 0o600) -> Path:
    """A segment file nobody holds, as a dead owner (or an intruder) would leave it."""
    path = directory / f"{int(time.time() * 1000):013d}-99999-{uuid.uuid4().hex[:8]}.seg"
    path.write_bytes(b"".join(lines))
    path.chmod(mode)
    return path


def bucket_keys(s3: Any, bucket: str) -> set[str]:
    keys: set[str] = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys.update(item["Key"] for item in page.get("Contents", []))
    return keys


def assert_no_foreign_object(s3: Any, bucket: str, expected: set[str]) -> None:
    """The bucket holds exactly the objects this test's own records make."""
    found = bucket_keys(s3, bucket)
    assert found == expected, (f"foreign: {sorted(found - expected)}; "
                               f"missing: {sorted(expected - found)}")


def emit(lg: logging.Logger, *ids: str) -> float:
    """Log one record per id through the ordinary call; returns the time just before."""
    before = time.time()
    for record_id in ids:
        lg.info("Session analytics data", extra={"analytics_data": {"session_id": record_id}})
    return before


def expected_keys(created: float, *ids: str) -> set[str]:
    """Keys for ``ids`` logged at about ``created`` (records logged within the same day)."""
    return {object_key(i, created) for i in ids}


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "s3_log_handler" and r.levelno >= logging.ERROR]


def letters(dead: Path) -> list[dict[str, Any]]:
    return [orjson.loads(p.read_bytes()) for p in sorted(dead.iterdir())]


def attach(lg: logging.Logger, handler: S3Handler) -> logging.Logger:
    lg.addHandler(handler)
    return lg


def settled(handler: S3Handler, records: int, timeout: float = 20) -> dict[str, Any]:
    """Wait until ``records`` records have an outcome (the segments a closed handler left
    stay locked until its last upload attempt ends: adopted at a later round)."""
    def done() -> bool:
        stats = handler.stats()
        return bool(stats["delivered"] + stats["dead_lettered"] >= records
                    and stats["queued"] == stats["spooled"] == 0)

    assert wait_until(done, timeout), handler.stats()
    return handler.stats()


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    """A private spool directory (0700, ours) with its dead/, as the library makes it."""
    path = tmp_path / "spool"
    path.mkdir(mode=0o700)
    (path / "dead").mkdir(mode=0o700)
    return path


@pytest.fixture
def shared_base() -> Iterator[Path]:
    """A directory outside pytest's private tmp tree that other uids can reach."""
    base = Path(tempfile.mkdtemp(prefix="spool-users-"))
    base.chmod(0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def adopt_every_round(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_keeper, "ADOPT_INTERVAL", 0.0)


def cli(*args: str, endpoint: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "AWS_ENDPOINT_URL_S3": endpoint, **env}
    if "ANALYTICS_SPOOL_KEY" not in env:
        environ.pop("ANALYTICS_SPOOL_KEY", None)
    return subprocess.run([sys.executable, "-m", "s3_log_handler._cli", *args], env=environ,
                          capture_output=True, text=True, timeout=120, check=False)


# -- planted lines ----------------------------------------------------------------------------


class TestPlantedSegments:
    def test_a_planted_segment_with_keys_outside_the_prefix_is_dead_lettered_not_uploaded(
        self, spool_dir: Path, moto_endpoint: str, s3: Any, bucket: str,
        analytics_logger: logging.Logger, caplog: pytest.LogCaptureFixture,
    ) -> None:
        """The issue's reproduction, and its neighbours: a key outside the prefix, a key
        inside it but not of the template's shape, a key naming another id, a key in another
        day than the line's time, and an id the emit path would have sanitised. Each is
        dead-lettered foreign_key with its payload; none is uploaded; the handler's own
        records are."""
        now = time.time()
        planted = plant(
            spool_dir,
            line("injected", "anywhere/else/injected.json.gz", now),
            line("evil", "sessions/evil.json.gz", now),
            line("mine", object_key("someone-else", now), now),
            line("yesterday", object_key("yesterday", now - 86400), now),
            line("../../etc/passwd", None, now),
        )
        handler = S3Handler(bucket, endpoint_url=moto_endpoint, spool_dir=str(spool_dir))
        lg = attach(analytics_logger, handler)
        created = emit(lg, "own-1", "own-2")
        assert handler.flush(10)
        assert handler.wait_idle(10)
        stats = handler.stats()
        handler.close()
        assert stats["dead_letter_reasons"] == {"foreign_key": 5}, stats
        assert (stats["recovered"], stats["delivered"]) == (5, 2), stats
        assert balance(stats) == 0
        kept = letters(spool_dir / "dead")
        assert sorted(d["record_id"] for d in kept) == sorted(
            ["injected", "evil", "mine", "yesterday", "../../etc/passwd"])
        assert {d["reason"] for d in kept} == {"foreign_key"}
        assert not planted.exists()  # settled: the segment is gone
        [report] = [m for m in errors(caplog) if "foreign_key" in m]
        assert "dead-lettered 5 record(s)" in report and "not uploaded" in report
        assert_no_foreign_object(s3, bucket, expected_keys(created, "own-1", "own-2"))

    def test_with_a_field_template_planted_keys_are_checked_value_by_value(
        self, spool_dir: Path, moto_endpoint: str, s3: Any, bucket: str,
    ) -> None:
        """Dynamic partitions ({field:event_type}): once seen, such a template was not
        modelled and only key.startswith(prefix) was checked, so a planted
        'sessions-other/...' or 'sessions/../...' key was uploaded as it stood. Now only the
        line whose key this template could have made is sent."""
        template = "{prefix}/{field:event_type}/year={year}/month={month}/day={day}/{id}{ext}"
        now = time.time()
        p = Partition.of(now)
        good = f"sessions/call/year={p.year}/month={p.month}/day={p.day}/fine.json.gz"
        plant(spool_dir,
              line("fine", good, now, event_type="call"),
              line("lookalike", "sessions-other/lookalike.json.gz", now),
              line("climb", f"sessions/../year={p.year}/month={p.month}/day={p.day}/"
                            "climb.json.gz", now),
              line("hidden", good.replace("call", "_hidden").replace("fine", "hidden"), now),
              line("deep", good.replace("call", "a/b").replace("fine", "deep"), now))
        handler = S3Handler(bucket, endpoint_url=moto_endpoint, spool_dir=str(spool_dir),
                            key_template=template)
        assert handler.wait_idle(10)
        stats = handler.stats()
        handler.close()
        assert stats["dead_letter_reasons"] == {"foreign_key": 4}, stats
        assert (stats["recovered"], stats["delivered"]) == (5, 1), stats
        assert sorted(d["record_id"] for d in letters(spool_dir / "dead")) == [
            "climb", "deep", "hidden", "lookalike"]
        assert_no_foreign_object(s3, bucket, {good})

    def test_in_batch_mode_a_line_keyed_outside_the_prefix_is_dead_lettered(
        self, spool_dir: Path, moto_endpoint: str, s3: Any, bucket: str,
    ) -> None:
        """Batch mode never uses a line's key, but a line keyed outside the prefix was not
        written by this handler's kind: it is dead-lettered too; a keyless line is sent."""
        now = time.time()
        plant(spool_dir, line("injected", "anywhere/else/injected.json.gz", now),
              line("keyless", None, now))
        handler = S3Handler(bucket, endpoint_url=moto_endpoint, spool_dir=str(spool_dir),
                            mode="batch")
        assert handler.wait_idle(10)
        stats = handler.stats()
        handler.close()
        assert stats["dead_letter_reasons"] == {"foreign_key": 1}, stats
        assert stats["delivered"] == 1
        [key] = bucket_keys(s3, bucket)
        assert key.startswith("sessions/year=") and key.endswith(".ndjson.gz")
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert orjson.loads(gzip.decompress(body))["session_id"] == "keyless"

    def test_a_symlink_fifo_or_foreign_owned_file_named_like_a_segment_is_not_adopted(
        self, spool_dir: Path, tmp_path: Path, moto_endpoint: str, s3: Any, bucket: str,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Only regular files owned by our euid are adopted: a symlink to a valid segment,
        a FIFO (which would hang a blocking open) and, as root, a file of another uid are
        left alone with a warning."""
        now = time.time()
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        target = plant(elsewhere, line("via-link", object_key("via-link", now), now))
        (spool_dir / "1-1-link.seg").symlink_to(target)
        os.mkfifo(spool_dir / "2-2-fifo.seg", 0o600)
        if os.geteuid() == 0:
            other = plant(spool_dir, line("other-uid", None, now))
            os.chown(other, 4242, 4242)
        started = time.monotonic()
        handler = S3Handler(bucket, endpoint_url=moto_endpoint, spool_dir=str(spool_dir))
        assert time.monotonic() - started < 5  # the FIFO did not block start-up
        assert handler.wait_idle(5)
        stats = handler.stats()
        handler.close()
        assert stats["recovered"] == 0, stats
        warnings = [r.getMessage() for r in caplog.records
                    if r.name == "s3_log_handler" and r.levelno == logging.WARNING]
        assert any("1-1-link" in m and "symbolic link" in m for m in warnings), warnings
        assert any("2-2-fifo" in m and "not a regular file" in m for m in warnings), warnings
        if os.geteuid() == 0:
            assert any("owned by uid 4242" in m for m in warnings), warnings
        assert target.exists()
        assert_no_foreign_object(s3, bucket, set())


# -- directories that are not ours ------------------------------------------------------------


def _refused_once(caplog: pytest.LogCaptureFixture, *needles: str) -> str:
    [message] = [m for m in errors(caplog) if "refused" in m]
    for needle in needles:
        assert needle in message, message
    assert "held in memory only" in message
    return message


class TestDirectoriesNotOurs:
    @root_only
    def test_a_planted_segment_in_a_directory_owned_by_another_user_is_never_read(
        self, spool_dir: Path, moto_endpoint: str, s3: Any, bucket: str,
        analytics_logger: logging.Logger, caplog: pytest.LogCaptureFixture,
    ) -> None:
        """A directory another uid owns, holding a segment with a valid-looking key: the
        spool is switched off with one ERROR that says chown; the segment stays unread;
        records still flow (in memory) and arrive."""
        now = time.time()
        planted = plant(spool_dir, line("victim", object_key("victim", now), now))
        os.chown(spool_dir, 4242, 4242)
        handler = S3Handler(bucket, endpoint_url=moto_endpoint, spool_dir=str(spool_dir))
        lg = attach(analytics_logger, handler)
        created = emit(lg, "still-flows")
        assert handler.flush(10)
        stats = handler.stats()
        handler.close()
        _refused_once(caplog, str(spool_dir), "owned by uid 4242", "chown 0")
        assert (stats["recovered"], stats["delivered"], stats["spooled"]) == (0, 1, 0)
        assert planted.exists() and sorted(spool_dir.glob("*.seg")) == [planted]
        assert_no_foreign_object(s3, bucket, expected_keys(created, "still-flows"))

    def test_a_0777_spool_directory_is_refused(
        self, spool_dir: Path, moto_endpoint: str, s3: Any, bucket: str,
        analytics_logger: logging.Logger, caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Writable by everyone: refused with one ERROR that says chmod 700; nothing in it
        is read or written; records are delivered from memory."""
        now = time.time()
        planted = plant(spool_dir, line("victim", object_key("victim", now), now))
        spool_dir.chmod(0o777)
        handler = S3Handler(bucket, endpoint_url=moto_endpoint, spool_dir=str(spool_dir))
        lg = attach(analytics_logger, handler)
        created = emit(lg, "a", "b")
        assert handler.flush(10)
        stats = handler.stats()
        handler.close()
        _refused_once(caplog, "writable by group and others", "mode 0777",
                      f"chmod 700 {spool_dir}")
        assert (stats["recovered"], stats["delivered"]) == (0, 2)
        assert sorted(spool_dir.glob("*.seg")) == [planted]
        assert_no_foreign_object(s3, bucket, expected_keys(created, "a", "b"))

    def test_a_symlinked_spool_directory_is_refused(
        self, spool_dir: Path, tmp_path: Path, moto_endpoint: str, s3: Any, bucket: str,
        analytics_logger: logging.Logger, caplog: pytest.LogCaptureFixture,
    ) -> None:
        """spool_dir is a symlink (to a directory that would pass every other check)."""
        now = time.time()
        plant(spool_dir, line("victim", object_key("victim", now), now))
        link = tmp_path / "link-to-spool"
        link.symlink_to(spool_dir)
        handler = S3Handler(bucket, endpoint_url=moto_endpoint, spool_dir=str(link))
        lg = attach(analytics_logger, handler)
        created = emit(lg, "c")
        assert handler.flush(10)
        stats = handler.stats()
        handler.close()
        _refused_once(caplog, str(link), "symbolic link")
        assert (stats["recovered"], stats["delivered"]) == (0, 1)
        assert_no_foreign_object(s3, bucket, expected_keys(created, "c"))

    def test_a_symlinked_dead_directory_is_refused(
        self, spool_dir: Path, tmp_path: Path, moto_endpoint: str, s3: Any, bucket: str,
        analytics_logger: logging.Logger, caplog: pytest.LogCaptureFixture,
    ) -> None:
        """dead/ is a symlink (letters would be written wherever it points): refused, and no
        letter lands at its target, even for a record that is dead-lettered."""
        (spool_dir / "dead").rmdir()
        target = tmp_path / "somewhere-readable"
        target.mkdir(mode=0o755)
        (spool_dir / "dead").symlink_to(target)
        now = time.time()
        plant(spool_dir, line("victim", object_key("victim", now), now))
        handler = S3Handler(bucket, endpoint_url=moto_endpoint, spool_dir=str(spool_dir),
                            max_record_bytes=200)
        lg = attach(analytics_logger, handler)
        created = emit(lg, "d")
        lg.info("big", extra={"analytics_data": {"session_id": "big", "pad": "x" * 300}})
        handler.flush(10)
        stats = handler.stats()
        handler.close()
        _refused_once(caplog, str(spool_dir / "dead"), "symbolic link")
        assert stats["dead_letter_reasons"] == {"too_large": 1}
        assert list(target.iterdir()) == []
        assert_no_foreign_object(s3, bucket, expected_keys(created, "d"))

    def test_a_directory_that_stops_being_ours_switches_the_spool_off_at_the_next_adoption(
        self, spool_dir: Path, moto_endpoint: str, s3: Any, bucket: str,
        analytics_logger: logging.Logger, caplog: pytest.LogCaptureFixture,
        adopt_every_round: None,
    ) -> None:
        """Checked before every adoption, not only at start: made 0777 while the handler
        runs, the spool goes off with one ERROR, a segment planted then is never adopted,
        and later records are not written there but still arrive."""
        handler = S3Handler(bucket, endpoint_url=moto_endpoint, spool_dir=str(spool_dir))
        lg = attach(analytics_logger, handler)
        created = emit(lg, "before")
        assert handler.flush(10)
        try:
            spool_dir.chmod(0o777)
            now = time.time()
            planted = plant(spool_dir, line("victim", object_key("victim", now), now))
            assert wait_until(lambda: any("refused" in m for m in errors(caplog)), 10)
            emit(lg, "after-1", "after-2")
            assert sorted(spool_dir.glob("*.seg")) == [planted]  # not written to the spool
            assert handler.flush(10)
            time.sleep(1.5)  # another adoption round or two: still off, still one ERROR
            stats = handler.stats()
        finally:
            handler.close()
            spool_dir.chmod(0o700)
        _refused_once(caplog, "mode 0777", "chmod 700")
        assert (stats["recovered"], stats["delivered"]) == (0, 3), stats
        assert balance(stats) == 0
        assert_no_foreign_object(s3, bucket,
                                 expected_keys(created, "before", "after-1", "after-2"))


# -- replay ------------------------------------------------------------------------------------


class TestReplay:
    def test_replay_refuses_a_foreign_key_in_the_directory_it_is_pointed_at(
        self, spool_dir: Path, moto_endpoint: str, s3: Any, bucket: str,
    ) -> None:
        """`s3-log-handler replay DIR`: the planted line keyed outside the prefix is
        dead-lettered foreign_key; the legitimate one is delivered under its own key."""
        now = time.time()
        plant(spool_dir, line("injected", "anywhere/else/injected.json.gz", now),
              line("left-behind", None, now))
        done = cli("replay", str(spool_dir), "--bucket", bucket, "--timeout", "20",
                   endpoint=moto_endpoint)
        assert done.returncode == 0, done.stderr
        stats = json.loads(done.stdout)
        assert stats["dead_letter_reasons"] == {"foreign_key": 1}, stats
        assert stats["delivered"] == 1
        assert [d["record_id"] for d in letters(spool_dir / "dead")] == ["injected"]
        assert "foreign_key" in done.stderr
        assert_no_foreign_object(s3, bucket, {object_key("left-behind", now)})

    def test_replay_refuses_a_directory_that_is_not_ours(
        self, spool_dir: Path, moto_endpoint: str, s3: Any, bucket: str,
    ) -> None:
        """A 0777 directory: exit 2 with the reason and the fix, nothing read."""
        now = time.time()
        plant(spool_dir, line("victim", object_key("victim", now), now))
        spool_dir.chmod(0o777)
        done = cli("replay", str(spool_dir), "--bucket", bucket, endpoint=moto_endpoint)
        assert done.returncode == 2
        assert "refused" in done.stderr and "chmod 700" in done.stderr, done.stderr
        assert_no_foreign_object(s3, bucket, set())

    def test_replay_with_a_spool_key_dead_letters_forged_lines_and_never_resends_them(
        self, spool_dir: Path, moto_endpoint: str, s3: Any, bucket: str,
    ) -> None:
        """With $ANALYTICS_SPOOL_KEY, a line without a valid HMAC is dead-lettered tampered,
        and `replay --dead-letters` leaves such letters in dead/ (it re-sends others)."""
        now = time.time()
        plant(spool_dir, line("signed", None, now, mac_key=KEY),
              line("forged", None, now),
              line("forged-with-wrong-key", None, now, mac_key=b"not-the-key"))
        first = cli("replay", str(spool_dir), "--bucket", bucket, "--timeout", "20",
                    endpoint=moto_endpoint, ANALYTICS_SPOOL_KEY=KEY.decode())
        assert first.returncode == 0, first.stderr
        stats = json.loads(first.stdout)
        assert stats["dead_letter_reasons"] == {"tampered": 2}, stats
        assert stats["delivered"] == 1
        again = cli("replay", str(spool_dir), "--bucket", bucket, "--dead-letters",
                    "--timeout", "20", endpoint=moto_endpoint,
                    ANALYTICS_SPOOL_KEY=KEY.decode())
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["dead_letters_retried"] == 0
        assert sorted(d["record_id"] for d in letters(spool_dir / "dead")) == [
            "forged", "forged-with-wrong-key"]
        assert_no_foreign_object(s3, bucket, {object_key("signed", now)})


    def test_resend_tampered_sends_such_letters_under_keys_made_afresh(
        self, spool_dir: Path, moto_endpoint: str, s3: Any, bucket: str,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Turning the key on over an old backlog dead-letters its unsigned lines tampered;
        once looked at, replay(resend_tampered=True) sends their payloads under keys made
        from the payload (inside the prefix), never the key their line named."""
        from s3_log_handler._replay import replay

        monkeypatch.setenv("ANALYTICS_SPOOL_KEY", KEY.decode())
        now = time.time()
        plant(spool_dir, line("old-unsigned", "anywhere/else/x.json.gz", now))
        first = replay(str(spool_dir), bucket=bucket, endpoint_url=moto_endpoint, timeout=10)
        assert first["dead_letter_reasons"] == {"tampered": 1}
        assert_no_foreign_object(s3, bucket, set())
        again = replay(str(spool_dir), bucket=bucket, endpoint_url=moto_endpoint, timeout=10,
                       retry_dead_letters=True, resend_tampered=True)
        assert (again["dead_letters_retried"], again["dead_letters_left"]) == (1, 0)
        assert_no_foreign_object(s3, bucket, {object_key("old-unsigned", now)})


# -- modes -------------------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


class TestModes:
    def test_under_umask_000_files_are_0600_and_created_directories_0700(
        self, tmp_path: Path, moto_endpoint: str, s3: Any, bucket: str,
        analytics_logger: logging.Logger, permissive_umask: None, adopt_every_round: None,
    ) -> None:
        """Every directory the library creates (three levels here, and dead/) is 0700;
        segments and dead letters are 0600, also when the umask is 0o000. The records left
        on disk are then delivered by the next handler."""
        spool = tmp_path / "a" / "b" / "spool"
        dead_end = f"http://127.0.0.1:{free_port()}"  # nothing listens: records stay
        first = S3Handler(bucket, endpoint_url=dead_end, spool_dir=str(spool),
                          max_record_bytes=200, close_timeout=0.3, retry_base=0.05,
                          retry_cap=0.1)
        lg = attach(analytics_logger, first)
        created = emit(lg, "m-1", "m-2")
        lg.info("big", extra={"analytics_data": {"session_id": "big", "pad": "x" * 300}})
        segments = sorted(spool.glob("*.seg"))
        dead = sorted((spool / "dead").iterdir())
        modes = {
            "a": _mode(tmp_path / "a"), "b": _mode(tmp_path / "a" / "b"),
            "spool": _mode(spool), "dead/": _mode(spool / "dead"),
            **{f"segment {p.name}": _mode(p) for p in segments},
            **{f"letter {p.name}": _mode(p) for p in dead},
        }
        lg.removeHandler(first)
        first.close()
        assert len(segments) == 1 and len(dead) == 1, (segments, dead)
        assert modes == {**dict.fromkeys(("a", "b", "spool", "dead/"), 0o700),
                         **{k: 0o600 for k in modes if " " in k}}, {
            k: f"{v:04o}" for k, v in modes.items()}
        second = S3Handler(bucket, endpoint_url=moto_endpoint, spool_dir=str(spool))
        assert settled(second, 2)["delivered"] == 2
        second.close()
        assert_no_foreign_object(s3, bucket, expected_keys(created, "m-1", "m-2"))

    def test_under_umask_000_the_default_directory_is_created_0700(
        self, tmp_path: Path, moto_endpoint: str, s3: Any, bucket: str,
        analytics_logger: logging.Logger, permissive_umask: None,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """spool_dir="auto" under an $XDG_STATE_HOME that does not exist yet: every level
        the library creates is 0700."""
        state = tmp_path / "state"
        monkeypatch.setenv("XDG_STATE_HOME", str(state))
        handler = S3Handler(bucket, endpoint_url=moto_endpoint, spool_dir="auto")
        lg = attach(analytics_logger, handler)
        created = emit(lg, "auto-1")
        assert handler.flush(10)
        handler.close()
        made = [state, state / "s3-analytics", state / "s3-analytics" / bucket,
                state / "s3-analytics" / bucket / "dead"]
        assert {str(p): f"{_mode(p):04o}" for p in made} == {str(p): "0700" for p in made}
        assert_no_foreign_object(s3, bucket, expected_keys(created, "auto-1"))


# -- tamper evidence -----------------------------------------------------------------------------


class TestHmac:
    def test_untouched_lines_are_delivered_and_changed_or_forged_ones_dead_lettered_tampered(
        self, spool_dir: Path, moto_endpoint: str, s3: Any, bucket: str,
        analytics_logger: logging.Logger, adopt_every_round: None,
    ) -> None:
        """A handler with spool_hmac_key leaves 4 records on disk (S3 down). Then one line's
        payload is changed (same key), an unsigned line is appended, and an unsigned segment
        planted. The next handler with the key delivers the 3 untouched records only."""
        dead_end = f"http://127.0.0.1:{free_port()}"
        first = S3Handler(bucket, endpoint_url=dead_end, spool_dir=str(spool_dir),
                          spool_hmac_key=KEY.decode(), close_timeout=0.3)
        lg = attach(analytics_logger, first)
        created = emit(lg, "h-0", "h-1", "h-2", "h-3")
        lg.removeHandler(first)
        first.close()
        [segment] = spool_dir.glob("*.seg")
        settings, *lines = segment.read_bytes().splitlines(keepends=True)
        assert settings.startswith(b"#") and b'"h":"' not in settings  # no secret in it
        assert all(b'"h":"' in raw.partition(b"\t")[0] for raw in lines)
        lines[1] = lines[1].replace(b'"session_id":"h-1"', b'"session_id":"h-1","vip":true')
        segment.write_bytes(settings + b"".join(lines) + line("appended", None, created))
        plant(spool_dir, line("planted", None, created))
        second = S3Handler(bucket, endpoint_url=moto_endpoint, spool_dir=str(spool_dir),
                           spool_hmac_key=KEY.decode())
        stats = settled(second, 6)
        second.close()
        assert stats["dead_letter_reasons"] == {"tampered": 3}, stats
        assert (stats["recovered"], stats["delivered"]) == (6, 3)
        assert balance(stats) == 0
        assert sorted(d["record_id"] for d in letters(spool_dir / "dead")) == [
            "appended", "h-1", "planted"]
        assert_no_foreign_object(s3, bucket, expected_keys(created, "h-0", "h-2", "h-3"))

    def test_the_key_can_come_from_ANALYTICS_SPOOL_KEY(
        self, spool_dir: Path, moto_endpoint: str, s3: Any, bucket: str,
        analytics_logger: logging.Logger, monkeypatch: pytest.MonkeyPatch,
        adopt_every_round: None,
    ) -> None:
        """$ANALYTICS_SPOOL_KEY alone turns the HMAC on: lines are signed, and a planted
        unsigned segment is dead-lettered tampered."""
        monkeypatch.setenv("ANALYTICS_SPOOL_KEY", KEY.decode())
        now = time.time()
        plant(spool_dir, line("unsigned", None, now))
        dead_end = f"http://127.0.0.1:{free_port()}"
        first = S3Handler(bucket, endpoint_url=dead_end, spool_dir=str(spool_dir),
                          close_timeout=0.3)
        lg = attach(analytics_logger, first)
        created = emit(lg, "env-signed")
        stats = first.stats()
        lg.removeHandler(first)
        first.close()
        assert stats["dead_letter_reasons"] == {"tampered": 1}, stats
        [segment] = spool_dir.glob("*.seg")
        assert b'"h":"' in segment.read_bytes()
        second = S3Handler(bucket, endpoint_url=moto_endpoint, spool_dir=str(spool_dir))
        assert settled(second, 1)["delivered"] == 1
        second.close()
        assert_no_foreign_object(s3, bucket, expected_keys(created, "env-signed"))


# -- the shipped default, per user ------------------------------------------------------------


def _run_as(uid: int, *, home: str, tmpdir: Path, warmup: Path, endpoint: str, bucket: str,
            other: str = "") -> tuple[dict[str, Any], str]:
    env = {**os.environ, "ANALYTICS_S3_BUCKET": bucket, "AWS_ENDPOINT_URL_S3": endpoint,
           "ANALYTICS_CLOSE_TIMEOUT": "2"}
    for name in ("ANALYTICS_SPOOL_DIR", "ANALYTICS_SPOOL_KEY", "XDG_STATE_HOME",
                 "ANALYTICS_LOG_GROUP"):
        env.pop(name, None)
    done = subprocess.run(
        [sys.executable, str(CHILD), "--uid", str(uid), "--home", home, "--tmpdir",
         str(tmpdir), "--warmup-state", str(warmup), "--other", other],
        env=env, capture_output=True, text=True, timeout=120, check=False, cwd="/")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


@root_only
def test_the_shipped_default_spool_dir_is_private_to_each_user(
    shared_base: Path, moto_endpoint: str, s3: Any, bucket: str,
) -> None:
    """logging.yaml's `spool_dir: auto`, run by three uids through os.setuid:

    * homes that are not writable (HOME=/root): each user gets its own
      `$TMPDIR/s3-analytics-<uid>/<bucket>`, 0700, owned by that user, and the other cannot
      even list it;
    * a writable home: `~/.local/state/s3-analytics/<bucket>`, 0700;
    * a user whose `$TMPDIR/s3-analytics-<uid>` another user created first: refused with one
      ERROR (chown), and the record is still delivered.
    """
    tmpdir = shared_base / "tmp"
    tmpdir.mkdir()
    tmpdir.chmod(0o1777)  # like /tmp
    warmup = shared_base / "root-state"
    a, b, c, d = 4201, 4202, 4203, 4204
    run_as = functools.partial(_run_as, tmpdir=tmpdir, warmup=warmup, endpoint=moto_endpoint,
                               bucket=bucket)

    first, _ = run_as(a, home="/root")
    second, _ = run_as(b, home="/root", other=str(first["spool_dir"]))
    assert first["spool_dir"] == str(tmpdir / f"s3-analytics-{a}" / bucket)
    assert second["spool_dir"] == str(tmpdir / f"s3-analytics-{b}" / bucket)
    for got, uid in ((first, a), (second, b)):
        assert (got["euid"], got["owner"], got["mode"], got["dead_mode"], got["flushed"]) == (
            uid, uid, "0700", "0700", True), got
    assert second["other"] == "denied"

    home = shared_base / "home-c"
    home.mkdir(mode=0o700)
    os.chown(home, c, c)
    third, _ = run_as(c, home=str(home))
    assert third["spool_dir"] == str(home / ".local" / "state" / "s3-analytics" / bucket)
    assert (third["owner"], third["mode"], third["flushed"]) == (c, "0700", True), third
    assert {f"{stat.S_IMODE(p.stat().st_mode):04o}" for p in (
        home / ".local", home / ".local" / "state", home / ".local" / "state" / "s3-analytics",
    )} == {"0700"}

    squatted = tmpdir / f"s3-analytics-{d}"
    squatted.mkdir(mode=0o755)
    os.chown(squatted, b, b)  # user b got there first
    fourth, stderr = run_as(d, home="/root")
    assert (fourth["spool_dir"], fourth["flushed"]) == (None, True), fourth
    refusals = [ln for ln in stderr.splitlines() if "ERROR" in ln and "refused" in ln]
    assert len(refusals) == 1, stderr
    assert f"owned by uid {b}" in refusals[0] and f"chown {d}" in refusals[0]
    assert list(squatted.iterdir()) == []

    made = {f"warmup-{u}" for u in (a, b, c, d)} | {f"user-{u}" for u in (a, b, c, d)}
    found = bucket_keys(s3, bucket)
    assert {k.rsplit("/", 1)[1].removesuffix(".json.gz") for k in found} == made, found
    assert all(k.startswith("sessions/year=") for k in found)
