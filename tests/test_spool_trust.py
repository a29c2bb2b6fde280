"""Unit tests for issue 14's pieces: the default private spool directory and its checks
(_spool_dir), the key check and HMAC of lines read back (_spool_trust, _segment_lines)."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import orjson
import pytest

from s3_log_handler._keys import Partition, render_key, template_fields
from s3_log_handler._records import Entry
from s3_log_handler._segment_lines import TAMPERED, TORN_WRITE, check_lines, encode_line
from s3_log_handler._settings import BATCH_KEY_TEMPLATE, OBJECT_KEY_TEMPLATE
from s3_log_handler._spool_dir import (
    UnsafeSpoolDir,
    default_spool_dir,
    dir_problem,
    prepare_spool_dir,
    resolve_spool_dir,
    spool_problem,
)
from s3_log_handler._spool_trust import KeyCheck, spool_mac_key

T = 1_700_000_000.5  # 2023-11-14T22:13:20Z
KEY = b"k" * 32


def entry(record_id: str = "s-1", key: str | None = None, created: float = T) -> Entry:
    body = orjson.dumps({"session_id": record_id}) + b"\n"
    return Entry(body, created, record_id, key)


def rendered(template: str, record_id: str = "s-1", created: float = T,
             prefix: str = "sessions", ext: str = ".json.gz") -> str:
    return render_key(template, prefix=prefix, partition=Partition.of(created), ext=ext,
                      record_id=record_id)


class TestKeyCheck:
    check = KeyCheck(OBJECT_KEY_TEMPLATE, "sessions", ".json.gz", "object")

    def test_the_key_the_handler_makes_passes_and_no_key_passes(self) -> None:
        assert self.check(entry(key=rendered(OBJECT_KEY_TEMPLATE)))
        assert self.check(entry(key=None))
        assert self.check(entry("gen-" + "a" * 32, key=None))

    @pytest.mark.parametrize("key", [
        "anywhere/else/injected.json.gz",                                # outside the prefix
        "sessions/injected.json.gz",                                     # not the shape
        "sessions/year=2023/month=11/day=14/other.json.gz",              # another id
        "sessions/year=2023/month=11/day=15/s-1.json.gz",                # another day
        "sessions/year=2023/month=11/day=14/s-1.json",                   # another extension
        "sessions/year=2023/month=11/day=14/s-1.json.gz/../../x",        # a tail
        "sessions-evil/year=2023/month=11/day=14/s-1.json.gz",           # prefix look-alike
        "sessions/year=2023/month=11/day=14/" + "s" * 1100 + ".json.gz",  # too long
    ])
    def test_a_key_this_handler_could_not_have_made_fails(self, key: str) -> None:
        assert not self.check(entry(key=key))

    @pytest.mark.parametrize("record_id", ["../../etc", "", "a/b", ".hidden", "_tmp", "x" * 200,
                                           "caf\u00e9"])
    def test_an_id_that_emit_would_have_sanitised_fails(self, record_id: str) -> None:
        assert not self.check(entry(record_id, key=None))

    @pytest.mark.parametrize("created", [1e20, -1e20, 253_402_300_800.0])
    def test_a_time_without_a_utc_partition_fails(self, created: float) -> None:
        assert not self.check(entry(key=None, created=created))

    @pytest.mark.parametrize("template", [
        "{prefix}/{year}/{month}/{day}/{hour}/{id}-{uuid}{ext}",
        "{prefix}/dt={year}-{month}-{day}/{host}/{pid}/{id}-{seq}{ext}",
        "{prefix}/{id}/{id}{ext}",
    ])
    def test_templates_with_per_process_parts_check_their_form(self, template: str) -> None:
        check = KeyCheck(template, "events", ".json.gz", "object")
        good = rendered(template, prefix="events")
        assert check(entry(key=good))
        assert not check(entry(key=good.replace("events/", "other/", 1)))
        assert not check(entry("s-2", key=good))  # the key names s-1
        assert not check(entry(key=good + "x"))

    @pytest.mark.parametrize("template", [
        "{prefix}/{field:event_type}/year={year}/month={month}/day={day}/{id}{ext}",
        "{prefix}/type={field:event_type}/tier={field:signals.tier}/{year}/{id}-{uuid}{ext}",
        "{prefix}/{field:a}/{field:a}/{id}{ext}",
    ])
    def test_field_templates_check_the_form_of_each_value(self, template: str) -> None:
        """Once seen: a {field:...} template was not modelled, and only key.startswith(prefix)
        was checked, so sessions-other/..., sessionsX/... and sessions/../x passed."""
        check = KeyCheck(template, "sessions", ".json.gz", "object")
        paths = template_fields(template)
        good = render_key(template, prefix="sessions", partition=Partition.of(T),
                          ext=".json.gz", record_id="s-1", fields=("call",) * len(paths))
        assert check(entry(key=good))
        assert check(entry(key=good.replace("call", "missing-" + "0" * 16)))
        for bad in ("sessions-other/evil.json.gz", "sessionsX/anything",
                    "sessions/../x/y.json.gz", good.replace("call", ".."),
                    good.replace("call", "_hidden"), good.replace("call", "a/b"),
                    good.replace("call", "c" * 65), good.replace("sessions/", "other/", 1)):
            assert not check(entry(key=bad)), bad

    def test_a_template_that_cannot_be_modelled_still_checks_every_segment(self) -> None:
        check = KeyCheck("{prefix}/{year!s}/{id}{ext}", "sessions", ".json.gz", "object")
        assert check(entry(key="sessions/2023/s-1.json.gz"))
        for bad in ("sessions-other/x.json.gz", "sessions/../x.json.gz", "sessions//x",
                    "sessions/.hidden/x", "sessions/_tmp/x", "other/sessions/x"):
            assert not check(entry(key=bad)), bad

    def test_batch_mode_checks_only_the_prefix_and_segments_of_a_key_it_never_uses(
            self) -> None:
        check = KeyCheck(BATCH_KEY_TEMPLATE, "sessions", ".ndjson.gz", "batch")
        assert check(entry(key=rendered(OBJECT_KEY_TEMPLATE)))  # an object-mode spool
        assert check(entry(key=None))
        for bad in ("anywhere/else/injected.json.gz", "sessionsX/y", "sessions/../y"):
            assert not check(entry(key=bad)), bad


class TestLineHmac:
    def test_a_signed_line_verifies_and_every_change_is_tampered(self) -> None:
        good = encode_line(entry(key="sessions/k.json.gz"), KEY)
        changes = {
            "body": good.replace(b'"s-1"}', b'"s-1","x":1}'),
            "key": good.replace(b"sessions/k.json.gz", b"sessions/z.json.gz"),
            "time": good.replace(b"1700000000.5", b"1700000001.5"),
            "unsigned": encode_line(entry(key="sessions/k.json.gz")),
            "other key": encode_line(entry(key="sessions/k.json.gz"), b"other"),
            "mac not a string": good.replace(b'"h":"', b'"h":1,"x":"'),
        }
        [(_, ok, problem)] = list(check_lines(good, KEY))
        assert problem is None and ok is not None and ok.key == "sessions/k.json.gz"
        for what, data in changes.items():
            [(_, seen, problem)] = list(check_lines(data, KEY))
            assert problem == TAMPERED, what
            assert seen is not None  # kept whole for the dead letter
        assert [p for _, _, p in check_lines(good[:-3], KEY)] == [TORN_WRITE]

    def test_without_a_key_signed_lines_read_as_plain_ones(self) -> None:
        [(_, seen, problem)] = list(check_lines(encode_line(entry(), KEY)))
        assert problem is None and seen is not None and seen.record_id == "s-1"

    def test_the_key_comes_from_the_setting_else_the_environment(self) -> None:
        assert spool_mac_key("abc", {"ANALYTICS_SPOOL_KEY": "env"}) == b"abc"
        assert spool_mac_key(None, {"ANALYTICS_SPOOL_KEY": "env"}) == b"env"
        assert spool_mac_key(None, {"ANALYTICS_SPOOL_KEY": ""}) is None
        assert spool_mac_key(None, {}) is None


class TestDefaultDirectory:
    def test_xdg_state_home_first(self, tmp_path: Path) -> None:
        env = {"XDG_STATE_HOME": str(tmp_path / "state"), "HOME": str(tmp_path / "home")}
        assert default_spool_dir("my-bucket", env) == str(
            tmp_path / "state" / "s3-analytics" / "my-bucket")
        assert stat.S_IMODE((tmp_path / "state" / "s3-analytics").stat().st_mode) == 0o700

    def test_then_the_home_and_a_relative_xdg_value_is_ignored(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setenv("HOME", str(tmp_path / "home"))
        assert default_spool_dir("b", {"XDG_STATE_HOME": "relative/state"}) == str(
            tmp_path / "home" / ".local" / "state" / "s3-analytics" / "b")

    def test_a_home_that_cannot_be_written_falls_back_to_a_uid_suffixed_temp_dir(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        blocked = tmp_path / "not-a-dir"
        blocked.write_text("a file where the state directory would go")
        monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
        (tmp_path / "tmp").mkdir()
        monkeypatch.setattr("tempfile.tempdir", None)
        path = default_spool_dir("b", {"XDG_STATE_HOME": str(blocked)})
        assert path == str(tmp_path / "tmp" / f"s3-analytics-{os.geteuid()}" / "b")

    def test_the_bucket_becomes_a_safe_path_segment(self, tmp_path: Path) -> None:
        env = {"XDG_STATE_HOME": str(tmp_path)}
        path = default_spool_dir("arn:aws:s3:us-east-1:123:accesspoint/ap", env)
        assert os.path.dirname(path) == str(tmp_path / "s3-analytics")
        assert "/" not in os.path.basename(path) and ":" not in os.path.basename(path)

    def test_only_auto_means_the_default(self, tmp_path: Path) -> None:
        env = {"XDG_STATE_HOME": str(tmp_path)}
        assert resolve_spool_dir("auto", "b", env) == str(tmp_path / "s3-analytics" / "b")
        assert resolve_spool_dir("/var/spool/x", "b", env) == "/var/spool/x"

    def test_a_temp_dir_someone_else_made_first_is_refused(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
        (tmp_path / "file").write_text("no state directory can be made under a file")
        squatted = tmp_path / f"s3-analytics-{os.geteuid()}"
        squatted.mkdir()
        squatted.chmod(0o777)
        expected = "chmod 700"
        if os.geteuid() == 0:
            os.chown(squatted, 4242, 4242)
            expected = "owned by uid 4242"
        with pytest.raises(UnsafeSpoolDir, match=expected):
            default_spool_dir("b", {"XDG_STATE_HOME": str(tmp_path / "file")})
        assert list(squatted.iterdir()) == []


class TestDirectoryChecks:
    def test_a_private_directory_passes(self, tmp_path: Path) -> None:
        prepare_spool_dir(str(tmp_path / "s"))
        assert spool_problem(str(tmp_path / "s")) is None

    @pytest.mark.parametrize(("mode", "words"), [
        (0o770, "writable by group (mode 0770)"), (0o707, "writable by others (mode 0707)"),
        (0o777, "writable by group and others (mode 0777)"),
    ])
    def test_group_or_other_writable_is_refused_with_chmod(
        self, tmp_path: Path, mode: int, words: str,
    ) -> None:
        tmp_path.chmod(mode)
        problem = dir_problem(str(tmp_path))
        assert problem is not None and words in problem and "chmod 700" in problem

    def test_a_symlink_and_a_file_are_refused(self, tmp_path: Path) -> None:
        (tmp_path / "real").mkdir()
        (tmp_path / "link").symlink_to(tmp_path / "real")
        (tmp_path / "file").write_text("x")
        assert "symbolic link" in str(dir_problem(str(tmp_path / "link")))
        assert "not a directory" in str(dir_problem(str(tmp_path / "file")))
        with pytest.raises(UnsafeSpoolDir, match="symbolic link"):
            prepare_spool_dir(str(tmp_path / "link"))
        assert not (tmp_path / "real" / "dead").exists()  # nothing created through it

    @pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown")
    def test_another_owner_is_refused_with_chown(self, tmp_path: Path) -> None:
        os.chown(tmp_path, 4242, 4242)
        problem = str(dir_problem(str(tmp_path)))
        assert "owned by uid 4242" in problem and f"chown {os.geteuid()}" in problem

    def test_dead_is_checked_too(self, tmp_path: Path) -> None:
        prepare_spool_dir(str(tmp_path / "s"))
        (tmp_path / "s" / "dead").chmod(0o777)
        assert "dead" in str(spool_problem(str(tmp_path / "s")))
        with pytest.raises(UnsafeSpoolDir):
            prepare_spool_dir(str(tmp_path / "s"))


def test_line_times_round_trip_for_the_hmac() -> None:
    """The HMAC is recomputed from the parsed header: every time a record can carry must
    serialise back to the same bytes."""
    for created in (T, 0.0, 1.0, 1e-7, time.time(), 253_402_300_799.999, -62_135_596_800.0):
        [(_, seen, problem)] = list(check_lines(encode_line(entry(created=created), KEY), KEY))
        assert problem is None and seen is not None and seen.created == created
