"""Spool: segment format, write-ahead, adoption under file locks, deletion, dead letters."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import orjson
import pytest

from s3_log_handler import _deadletters as deadletters
from s3_log_handler import _spool as spool_module
from s3_log_handler._records import Entry, SpoolRef
from s3_log_handler._segment_lines import (
    decode_lines,
    encode_line,
    settings_line,
    split_settings,
    without_lines,
)
from s3_log_handler._spool import Spool

CHILD = Path(__file__).parent / "children" / "durability_child.py"


def entry(n: int, key: str | None = "sessions/k.json.gz", size: int = 0) -> Entry:
    """A record whose body is one JSON line (padded to about ``size`` bytes)."""
    body = orjson.dumps({"session_id": f"s-{n}", "pad": "p" * size}) + b"\n"
    return Entry(body, 1_700_000_000.5 + n, f"s-{n}", key)


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.seg"))


def dead_letters(directory: Path) -> list[dict[str, object]]:
    return [orjson.loads(p.read_bytes()) for p in sorted((directory / "dead").iterdir())]


class TestSegmentFormat:
    def test_a_line_round_trips_key_id_time_and_body(self) -> None:
        """What encode_line writes, decode_lines reads back unchanged."""
        original = entry(1, key="sessions/year=2023/month=11/day=14/s-1.json.gz")
        [(index, decoded)] = list(decode_lines(encode_line(original)))
        assert index == 0
        assert decoded is not None
        assert (decoded.body, decoded.created, decoded.record_id, decoded.key) == (
            original.body, original.created, original.record_id, original.key)

    def test_batch_mode_records_have_no_key(self) -> None:
        """A record without a key (batch mode) comes back without one."""
        [(_, decoded)] = list(decode_lines(encode_line(entry(2, key=None))))
        assert decoded is not None
        assert decoded.key is None

    def test_a_line_cut_short_is_torn_and_the_others_survive(self) -> None:
        """A crash mid-write leaves a last line without newline: only that one is torn."""
        data = encode_line(entry(1)) + encode_line(entry(2)) + encode_line(entry(3))[:-7]
        decoded = list(decode_lines(data))
        assert [i for i, e in decoded] == [0, 1, 2]
        assert [e is None for _, e in decoded] == [False, False, True]

    def test_a_line_with_an_unreadable_header_is_torn(self) -> None:
        """Garbage (zeros after a machine crash, a missing tab) is torn, not a record."""
        data = b"\x00\x00\x00\n" + b"no tab here\n" + encode_line(entry(4))
        decoded = list(decode_lines(data))
        assert [e is None for _, e in decoded] == [True, True, False]


    def test_a_settings_line_is_read_apart_and_kept_by_compaction(self) -> None:
        """The first line records the put settings; record lines are numbered after it."""
        head = settings_line({"sse": "AES256"})
        data = head + encode_line(entry(0)) + encode_line(entry(1))
        assert split_settings(data) == ({"sse": "AES256"}, data[len(head):])
        assert split_settings(encode_line(entry(0)))[0] is None
        assert [e.record_id for _, e in decode_lines(data) if e] == ["s-0", "s-1"]
        assert without_lines(data, {0}) == head + encode_line(entry(1))


class TestWriteAhead:
    def test_a_record_is_on_disk_when_append_returns(self, tmp_path: Path) -> None:
        """Another reader sees the full line as soon as append() returns (no user buffer)."""
        spool = Spool(str(tmp_path))
        written = spool.append(entry(1))
        [segment] = segments(tmp_path)
        assert written.ref is not None
        assert written.ref.segment + ".seg" == segment.name
        assert segment.read_bytes() == settings_line({}) + encode_line(entry(1))
        spool.close()

    def test_segment_is_deleted_once_every_record_is_resolved(self, tmp_path: Path) -> None:
        """Resolving the last record removes the segment; new records start a new one."""
        spool = Spool(str(tmp_path))
        refs = [spool.append(entry(n)).ref for n in range(3)]
        for ref in refs[:2]:
            assert ref is not None
            spool.resolve(ref)
        assert len(segments(tmp_path)) == 1
        assert refs[2] is not None
        spool.resolve(refs[2])
        assert segments(tmp_path) == []
        spool.append(entry(4))
        assert len(segments(tmp_path)) == 1
        spool.close()

    def test_close_leaves_unresolved_records_on_disk(self, tmp_path: Path) -> None:
        """What is not delivered by close stays for the next start; what was delivered is
        left out, so the next owner never sends it again."""
        spool = Spool(str(tmp_path))
        ref = spool.append(entry(1)).ref
        spool.append(entry(2))
        assert ref is not None
        spool.resolve(ref)
        spool.close()
        [segment] = segments(tmp_path)
        [(_, kept)] = list(decode_lines(segment.read_bytes()))
        assert kept is not None and kept.record_id == entry(2).record_id
        successor = Spool(str(tmp_path))
        assert successor.adopt_abandoned()[0] == 1
        successor.close()

    def test_a_full_segment_is_sealed_and_a_new_one_started(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Past SEGMENT_BYTES the next record goes to a fresh segment."""
        monkeypatch.setattr(spool_module, "SEGMENT_BYTES", 1000)
        spool = Spool(str(tmp_path))
        refs = [spool.append(entry(n, size=300)).ref for n in range(7)]
        assert len({r.segment for r in refs if r is not None}) >= 2
        assert len(segments(tmp_path)) >= 2
        for ref in refs:
            assert ref is not None
            spool.resolve(ref)
        assert segments(tmp_path) == []
        spool.close()

    @pytest.mark.parametrize(("policy", "syncs_per_append", "directory_syncs"),
                             [("never", 0, 0), ("always", 1, 1)])
    def test_fsync_policy_decides_syncs_per_record(
        self, policy: str, syncs_per_append: int, directory_syncs: int, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """``always`` syncs each record (and the new segment's directory entry) before append
        returns; ``never`` leaves it all to the OS."""
        calls: list[int] = []
        real_fsync = os.fsync

        def counting_fsync(fd: int) -> None:
            calls.append(fd)
            real_fsync(fd)

        monkeypatch.setattr(os, "fsync", counting_fsync)
        spool = Spool(str(tmp_path), fsync=policy)
        for n in range(5):
            spool.append(entry(n))
        spool.sync_if_due()
        assert len(calls) == 5 * syncs_per_append + directory_syncs
        spool.close()

    def test_interval_policy_syncs_at_most_once_a_second(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """``interval`` syncs from the worker's schedule, not per record."""
        calls: list[int] = []
        monkeypatch.setattr(os, "fsync", calls.append)
        monkeypatch.setattr(spool_module, "FSYNC_INTERVAL", 0.0)
        spool = Spool(str(tmp_path), fsync="interval")
        spool.append(entry(1))
        spool.append(entry(2))
        assert len(calls) == 1  # the new segment's directory entry, once
        spool.sync_if_due()
        assert len(calls) == 2
        monkeypatch.setattr(spool_module, "FSYNC_INTERVAL", 3600.0)
        spool.sync_if_due()
        assert len(calls) == 2
        spool.close()


class TestAdoption:
    def test_a_live_owners_segment_is_not_adopted(self, tmp_path: Path) -> None:
        """Two spools on one directory: the second cannot take the first one's records."""
        owner = Spool(str(tmp_path))
        owner.append(entry(1))
        other = Spool(str(tmp_path))
        assert other.adopt_abandoned() == (0, [])
        owner.close()
        other.close()

    def test_a_closed_owners_segment_is_adopted_exactly_once(self, tmp_path: Path) -> None:
        """After close, one spool adopts the records; a second live spool finds none."""
        owner = Spool(str(tmp_path))
        for n in range(5):
            owner.append(entry(n))
        owner.close()
        first, second = Spool(str(tmp_path)), Spool(str(tmp_path))
        assert first.adopt_abandoned() == (5, [])
        assert second.adopt_abandoned() == (0, [])
        assert len(first.load_backlog(1 << 20)) == 5
        first.close()
        second.close()

    def test_racing_adopters_split_segments_without_overlap(self, tmp_path: Path) -> None:
        """Many abandoned segments, two spools adopting at once: each record is taken once."""
        for n in range(20):
            dead = Spool(str(tmp_path))
            dead.append(entry(n))
            dead.close()
        adopters = [Spool(str(tmp_path)) for _ in range(2)]
        results: list[int] = []
        barrier = threading.Barrier(2)

        def adopt(spool: Spool) -> None:
            barrier.wait()
            results.append(spool.adopt_abandoned()[0])

        threads = [threading.Thread(target=adopt, args=(s,)) for s in adopters]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sum(results) == 20
        loaded = [e.record_id for s in adopters for e in s.load_backlog(1 << 20)]
        assert sorted(loaded) == sorted(f"s-{n}" for n in range(20))
        for s in adopters:
            s.close()

    def test_another_process_segment_is_adopted_only_after_it_dies(self, tmp_path: Path) -> None:
        """The flock follows the owning process: locked while it lives, free once it is killed."""
        child = subprocess.Popen(
            [sys.executable, str(CHILD), "hold", "--spool-dir", str(tmp_path), "--count", "7"],
            stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "READY"
            spool = Spool(str(tmp_path))
            assert spool.adopt_abandoned() == (0, [])
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(10)
        assert spool.adopt_abandoned() == (7, [])
        spool.close()

    def test_adopted_records_reload_oldest_first_within_the_byte_budget(
        self, tmp_path: Path,
    ) -> None:
        """load_backlog hands back at most about ``max_bytes`` per call, in write order."""
        owner = Spool(str(tmp_path))
        for n in range(10):
            owner.append(entry(n, size=100))
        owner.close()
        spool = Spool(str(tmp_path))
        spool.adopt_abandoned()
        cost = entry(0, size=100).memory_cost
        first = spool.load_backlog(3 * cost)
        rest = spool.load_backlog(1 << 20)
        assert [e.record_id for e in first] == ["s-0", "s-1", "s-2"]
        assert [e.record_id for e in rest] == [f"s-{n}" for n in range(3, 10)]
        assert all(e.seq == -1 for e in first + rest)
        assert spool.load_backlog(1 << 20) == []
        spool.close()

    def test_adopted_segment_is_deleted_after_its_records_resolve(self, tmp_path: Path) -> None:
        """Recovered records leave the disk once delivered, and not before."""
        owner = Spool(str(tmp_path))
        for n in range(3):
            owner.append(entry(n))
        owner.close()
        spool = Spool(str(tmp_path))
        spool.adopt_abandoned()
        loaded = spool.load_backlog(1 << 20)
        for e in loaded[:2]:
            assert e.ref is not None
            spool.resolve(e.ref)
        assert len(segments(tmp_path)) == 1
        assert loaded[2].ref is not None
        spool.resolve(loaded[2].ref)
        assert segments(tmp_path) == []
        spool.close()

    def test_a_torn_line_is_returned_for_dead_lettering(self, tmp_path: Path) -> None:
        """Adoption reports the torn line; dead-lettering it lets the segment go."""
        owner = Spool(str(tmp_path))
        owner.append(entry(1))
        owner.close()
        [segment] = segments(tmp_path)
        with segment.open("ab") as f:
            f.write(encode_line(entry(2))[:10])
        spool = Spool(str(tmp_path))
        adopted, torn = spool.adopt_abandoned()
        assert adopted == 1
        assert len(torn) == 1
        spool.keep_letters(torn, "torn_write")
        assert torn[0].ref is not None
        spool.resolve(torn[0].ref)
        [good] = spool.load_backlog(1 << 20)
        assert good.ref is not None
        spool.resolve(good.ref)
        assert segments(tmp_path) == []
        assert [d["reason"] for d in dead_letters(tmp_path)] == ["torn_write"]
        spool.close()


class TestDeadLetters:
    def test_a_dead_letter_keeps_reason_key_id_and_body(self, tmp_path: Path) -> None:
        """One JSON file per record in dead/, readable by a person and by replay."""
        spool = Spool(str(tmp_path))
        spool.keep_letters([entry(9)], "too_large")
        [letter] = dead_letters(tmp_path)
        assert letter["reason"] == "too_large"
        assert letter["record_id"] == "s-9"
        assert letter["key"] == "sessions/k.json.gz"
        assert orjson.loads(str(letter["body"])) == {"session_id": "s-9", "pad": ""}
        spool.close()

    def test_dead_lettering_a_spooled_record_releases_its_segment(self, tmp_path: Path) -> None:
        """A record with a final outcome in dead/ no longer holds its segment on disk."""
        spool = Spool(str(tmp_path))
        written = spool.append(entry(1))
        assert written.ref is not None
        spool.keep_letters([written], "AccessControlListNotSupported")
        spool.release([written.ref])
        assert segments(tmp_path) == []
        assert [d["reason"] for d in dead_letters(tmp_path)] == ["AccessControlListNotSupported"]
        spool.close()

    def test_the_dead_letter_area_is_capped(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Past DEAD_LETTER_CAP files nothing more is written, and that is reported once."""
        monkeypatch.setattr(deadletters, "DEAD_LETTER_CAP", 3)
        spool = Spool(str(tmp_path))
        spool.keep_letters([entry(n) for n in range(5)], "encode_error")
        assert len(dead_letters(tmp_path)) == 3
        assert [r.getMessage() for r in caplog.records if "is full" in r.getMessage()] == [
            f"dead-letter area {tmp_path / 'dead'} is full or unwritable; record kept only in "
            "the counters"]
        spool.close()


class TestDiskFull:
    def test_a_short_write_leaves_no_half_line_for_the_next_record_to_join(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """A write cut short by a full disk leaves the record in memory only (no ref), and
        the segment keeps only whole lines."""
        spool = Spool(str(tmp_path))
        first = spool.append(entry(1))
        assert first.ref is not None
        [segment] = segments(tmp_path)
        real_write = os.write

        def short_write(fd: int, data: bytes) -> int:
            return real_write(fd, data[: len(data) // 2])

        monkeypatch.setattr(os, "write", short_write)
        assert spool.append(entry(2)).ref is None
        monkeypatch.setattr(os, "write", real_write)
        third = spool.append(entry(3))
        assert third.ref is not None
        decoded = list(decode_lines(segment.read_bytes()))
        assert [(i, e.record_id if e else None) for i, e in decoded] == [(0, "s-1"), (1, "s-3")]
        assert third.ref.index == 1
        spool.close()


class TestWithoutLines:
    def test_leaves_out_the_given_lines_and_keeps_a_torn_tail(self) -> None:
        """Resolved lines go; the others keep their order; a torn last line stays as is."""
        data = b"a\nb\nc\ntorn"
        assert without_lines(data, {0, 2}) == b"b\ntorn"
        assert without_lines(b"a\nb\n", {1}) == b"a\n"
        assert without_lines(b"a\nb\n", {0, 1}) == b""


class TestUntrustedDisk:
    """Issue 14: what the spool reads back is checked; a directory not ours is not used."""

    @staticmethod
    def only_sessions(e: Entry) -> bool:
        return e.key is None or e.key.startswith("sessions/")

    def test_a_line_changed_in_place_after_adoption_is_rejected_when_reloaded(
        self, tmp_path: Path,
    ) -> None:
        """Adopted (checked) first, then rewritten in place with a foreign key before the
        reload: the reload checks again, so the line is set aside, never handed back."""
        owner = Spool(str(tmp_path))
        for n in range(3):
            owner.append(entry(n))
        owner.close()
        spool = Spool(str(tmp_path), key_check=self.only_sessions)
        assert spool.adopt_abandoned() == (3, [])
        [segment] = segments(tmp_path)
        with segment.open("r+b") as f:  # same file, same inode
            data = f.read().replace(b"sessions/k.json.gz", b"elsewhere/k.json.gz", 1)
            f.seek(0)
            f.write(data)
        loaded = spool.load_backlog(1 << 20)
        assert [e.record_id for e in loaded] == ["s-1", "s-2"]
        rejected = spool.rejected.take()
        assert list(rejected) == ["foreign_key"]
        [bad] = rejected["foreign_key"]
        assert (bad.record_id, bad.state, bad.ref) == ("s-0", "spooled",
                                                        SpoolRef(segment.stem, 0))
        assert spool.rejected.take() == {}
        spool.close()

    def test_a_segment_replaced_by_another_file_after_adoption_is_not_read(
        self, tmp_path: Path,
    ) -> None:
        """A different file renamed over an adopted segment is refused (it is not the file
        the spool holds locked); its records stay on disk, nothing is handed back."""
        owner = Spool(str(tmp_path))
        owner.append(entry(1))
        owner.close()
        spool = Spool(str(tmp_path))
        assert spool.adopt_abandoned() == (1, [])
        [segment] = segments(tmp_path)
        forged = tmp_path / "forged"
        forged.write_bytes(encode_line(entry(9, key="elsewhere/x.json.gz")))
        os.replace(forged, segment)
        with pytest.raises(OSError, match="replaced by another file"):
            spool.load_backlog(1 << 20)
        spool.close()

    def test_a_directory_that_stops_being_ours_switches_the_spool_off(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Made 0777 after start: the next adoption refuses it (one ERROR), adopts nothing,
        and from then on nothing is written there: no segment, no dead letter."""
        spool = Spool(str(tmp_path))
        dead = Spool(str(tmp_path))
        dead.append(entry(1))
        dead.close()
        tmp_path.chmod(0o777)
        try:
            assert spool.adopt_abandoned() == (0, [])
            assert spool.adopt_abandoned() == (0, [])
            assert spool.append(entry(2)).ref is None
            spool.keep_letters([entry(3)], "too_large")
        finally:
            tmp_path.chmod(0o700)
        assert len(segments(tmp_path)) == 1
        assert dead_letters(tmp_path) == []
        refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
        assert len(refusals) == 1 and "chmod 700" in refusals[0]
        spool.close()

    def test_a_symlinked_directory_is_refused_at_construction(self, tmp_path: Path) -> None:
        from s3_log_handler._spool_dir import UnsafeSpoolDir

        (tmp_path / "real").mkdir()
        (tmp_path / "link").symlink_to(tmp_path / "real")
        with pytest.raises(UnsafeSpoolDir, match="symbolic link"):
            Spool(str(tmp_path / "link"))

    def test_with_a_mac_key_every_line_is_signed_and_a_forged_one_rejected(
        self, tmp_path: Path,
    ) -> None:
        """Lines written with mac_key carry an HMAC; an unsigned line appended to an
        abandoned segment is set aside as tampered at adoption; signed ones are adopted."""
        owner = Spool(str(tmp_path), mac_key=b"secret")
        owner.append(entry(1))
        owner.close()
        [segment] = segments(tmp_path)
        assert b'"h":"' in segment.read_bytes()
        with segment.open("ab") as f:
            f.write(encode_line(entry(2)))
        spool = Spool(str(tmp_path), mac_key=b"secret")
        assert spool.adopt_abandoned() == (1, [])
        assert [e.record_id for e in spool.rejected.take()["tampered"]] == ["s-2"]
        spool.close()

    def test_dead_letters_are_0600_and_tampered_ones_are_not_replayable(
        self, tmp_path: Path,
    ) -> None:
        spool = Spool(str(tmp_path))
        spool.keep_letters([entry(1)], "too_large")
        spool.keep_letters([entry(2)], "tampered")
        modes = {stat_mode(p) for p in (tmp_path / "dead").iterdir()}
        assert modes == {0o600}
        assert [d.payload["session_id"] for d in
                deadletters.replayable_dead_letters(str(tmp_path / "dead"))] == ["s-1"]
        spool.close()


def stat_mode(path: Path) -> int:
    return path.stat().st_mode & 0o777
