"""The dead-letter area: counted in memory, bounded by letters and bytes, one fate per letter."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import orjson
import pytest

from s3_log_handler import _deadletters as deadletters
from s3_log_handler import _letter_area as letter_area
from s3_log_handler._letter_area import KEPT, REMOVED, WAIT, LetterArea
from s3_log_handler._records import DEAD_LETTERED, DELIVERED, QUEUED, SPOOLED, Entry, SpoolRef

KIB = 1024


def entry(record_id: str = "s-1", size: int = 10, letter: str | None = None) -> Entry:
    body = orjson.dumps({"session_id": record_id, "pad": "p" * size}) + b"\n"
    return Entry(body, 1_700_000_000.0, record_id, None, letter=letter)


@pytest.fixture
def dead(tmp_path: Path) -> Path:
    path = tmp_path / "dead"
    path.mkdir(mode=0o700)
    return path


def files(dead: Path) -> list[Path]:
    return sorted(dead.glob("*.json"))


class TestBounds:
    def test_letters_stop_at_max_bytes_and_the_count_is_rebuilt_at_start(
        self, dead: Path,
    ) -> None:
        area = LetterArea(str(dead), max_bytes=2 * KIB)
        kept = [area.keep(entry(f"s-{n}", 300), "too_large") for n in range(10)]
        assert kept[0] and not kept[-1]
        assert area.bytes == sum(p.stat().st_size for p in files(dead)) <= 2 * KIB
        again = LetterArea(str(dead), max_bytes=2 * KIB)
        assert (again.count, again.bytes) == (area.count, area.bytes) == (
            len(files(dead)), sum(p.stat().st_size for p in files(dead)))
        assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files(dead))

    def test_a_full_area_is_counted_again_by_the_keeper_after_a_clean_up(
        self, dead: Path, monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setattr(deadletters, "DEAD_LETTER_CAP", 2)
        monkeypatch.setattr(letter_area, "RECOUNT_INTERVAL", 0.0)
        area = LetterArea(str(dead), max_bytes=1 << 20)
        assert [area.keep(entry(f"s-{n}"), "encode_error") for n in range(3)] == [
            True, True, False]
        for path in files(dead):  # a person cleans up
            path.unlink()
        assert area.full
        area.recount_if_full()
        assert not area.full and area.keep(entry("s-3"), "encode_error")

    def test_a_too_large_letter_keeps_a_bounded_head_whatever_the_escaping(
        self, dead: Path,
    ) -> None:
        """A payload of quotes doubles in JSON escaping: the head is cut to stay bounded."""
        area = LetterArea(str(dead), max_bytes=1 << 30)
        big = Entry(orjson.dumps({"session_id": "q", "quotes": '"' * (2 << 20)}) + b"\n",
                    1.0, "q", None)
        assert area.keep(big, "too_large")
        [path] = files(dead)
        letter = orjson.loads(path.read_bytes())
        assert path.stat().st_size <= 70 * KIB
        assert letter["size"] == len(big.body) and letter["truncated"] is True
        assert big.body.decode().startswith(letter["head"])


class TestOneFate:
    def test_dead_lettered_again_updates_the_letter_in_place(self, dead: Path) -> None:
        area = LetterArea(str(dead), max_bytes=1 << 20)
        area.keep(entry("s-1", 2048), "too_large")
        [path] = files(dead)
        for attempt in (1, 2):
            assert area.keep(entry("s-1", 2048, letter=str(path)), "too_large")
            assert files(dead) == [path]
            letter = orjson.loads(path.read_bytes())
            assert (letter["attempts"], letter["reason"], letter["last_reason"]) == (
                attempt, "too_large", "too_large")
        assert area.count == 1 and area.bytes == path.stat().st_size
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert not [n for n in os.listdir(dead) if not n.endswith(".json")]

    def test_a_letter_gone_meanwhile_gets_a_new_one(self, dead: Path) -> None:
        area = LetterArea(str(dead), max_bytes=1 << 20)
        assert area.keep(entry("s-1", letter=str(dead / "gone.json")), "too_large")
        [path] = files(dead)
        assert orjson.loads(path.read_bytes())["record_id"] == "s-1"

    @pytest.mark.parametrize(("state", "on_disk", "fate"), [
        (DELIVERED, False, REMOVED), (SPOOLED, True, REMOVED), (QUEUED, True, REMOVED),
        (QUEUED, False, WAIT), (DEAD_LETTERED, False, KEPT), ("dropped", False, KEPT),
    ])
    def test_a_letter_is_removed_only_once_its_record_is_delivered_or_safely_queued(
        self, dead: Path, state: str, on_disk: bool, fate: str,
    ) -> None:
        area = LetterArea(str(dead), max_bytes=1 << 20)
        area.keep(entry(), "too_large")
        [path] = files(dead)
        again = entry(letter=str(path))
        again.state = state
        again.ref = SpoolRef("seg", 0) if on_disk else None
        assert area.settle_retry(again, str(path)) == fate
        assert path.exists() == (fate != REMOVED)
        assert (again.letter is None) == (fate == REMOVED)
        assert area.count == (0 if fate == REMOVED else 1)
        assert area.settle_retry(None, str(path)) == KEPT
