"""Keys: ids that cannot leave their partition, UTC date partitions, and S3's key limit."""

from __future__ import annotations

import calendar
import datetime as dt
import re
import time
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s3_log_handler._keys import (
    MAX_ID_CHARS,
    S3_MAX_KEY_BYTES,
    Partition,
    render_key,
    sanitize_id,
)
from s3_log_handler._settings import OBJECT_KEY_TEMPLATE

SAFE_SEGMENT = re.compile(r"[A-Za-z0-9._-]+")
#: Ids that must be kept as they are (readable keys, joins with the source system).
READABLE_ID = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", fullmatch=True)
#: Any text, lone surrogates and control characters included.
ANY_TEXT = st.text(st.characters(codec=None, categories=None), max_size=300) | st.text(
    st.sampled_from("./_\\\x00\n.-aZ9é日"), max_size=40)
HOSTILE = ["../../x", "a/b", "\x00", "..", ".", "_SUCCESS", ".hidden", "é-ü-日本", "x" * 2000,
           "a\\b", "con:1", " ", "\ud800", "/", "//..//", "a\nb"]
#: 2021-12-31T23:30:00Z: the next day (and year) in any time zone east of UTC+00:30.
NEW_YEARS_EVE = float(calendar.timegm((2021, 12, 31, 23, 30, 0)))


def object_key(record_id: str, created: float = NEW_YEARS_EVE) -> str:
    """The default object-mode key of a record."""
    return render_key(OBJECT_KEY_TEMPLATE, prefix="sessions", partition=Partition.of(created),
                      ext=".json.gz", record_id=record_id)


@pytest.fixture
def utc_plus_14(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run with local time 14 hours ahead of UTC (a POSIX TZ string: no tzdata needed)."""
    monkeypatch.setenv("TZ", "XST-14")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


class TestSanitizeId:
    @settings(max_examples=300, deadline=None)
    @given(ANY_TEXT)
    def test_result_is_one_safe_key_segment(self, raw: str) -> None:
        """Any text becomes a non-empty [A-Za-z0-9._-] segment of at most MAX_ID_CHARS."""
        safe = sanitize_id(raw)
        assert SAFE_SEGMENT.fullmatch(safe)
        assert 1 <= len(safe) <= MAX_ID_CHARS
        assert safe not in {".", ".."}

    @settings(max_examples=300, deadline=None)
    @given(ANY_TEXT)
    def test_result_is_never_hidden_from_hive_readers(self, raw: str) -> None:
        """No sanitised id starts with '.' or '_' (Hive-style readers skip such files)."""
        assert sanitize_id(raw)[0] not in "._"

    @settings(max_examples=300, deadline=None)
    @given(st.text(min_size=1, max_size=300))
    def test_same_id_gives_same_segment(self, raw: str) -> None:
        """A non-empty id always maps to the same segment, so a re-send overwrites its object."""
        assert sanitize_id(raw) == sanitize_id(raw)

    @settings(max_examples=300, deadline=None)
    @given(READABLE_ID)
    def test_readable_ids_are_kept_verbatim(self, raw: str) -> None:
        """Ids already safe and short enough are not altered."""
        assert sanitize_id(raw) == raw

    @settings(max_examples=500, deadline=None)
    @given(ANY_TEXT.filter(bool), ANY_TEXT.filter(bool))
    def test_distinct_ids_stay_distinct(self, a: str, b: str) -> None:
        """Two different ids never share a segment (replacement and truncation add a hash)."""
        if a != b:
            assert sanitize_id(a) != sanitize_id(b)

    @pytest.mark.parametrize("raw", HOSTILE, ids=repr)
    def test_hostile_ids_become_one_safe_segment(self, raw: str) -> None:
        """Traversal, separators, NUL, non-ASCII and very long ids stay a single safe segment."""
        safe = sanitize_id(raw)
        assert SAFE_SEGMENT.fullmatch(safe)
        assert safe[0] not in "._"
        assert len(safe) <= MAX_ID_CHARS

    def test_hostile_ids_are_pairwise_distinct(self) -> None:
        """Every hostile id gets its own segment."""
        assert len({sanitize_id(raw) for raw in HOSTILE}) == len(HOSTILE)

    def test_long_ids_sharing_a_prefix_stay_distinct(self) -> None:
        """Ids that only differ after the cut-off still get different segments."""
        assert sanitize_id("x" * 2000) != sanitize_id("x" * 1999 + "y")
        assert sanitize_id("x" * 2000) != sanitize_id("x" * 2001)

    @pytest.mark.parametrize("raw", [None, "", 0, 42, 4.2, b"bytes", ["a"], {"id": "a"}],
                             ids=repr)
    def test_missing_or_non_string_id_gets_a_fresh_unique_id(self, raw: object) -> None:
        """Missing, empty and non-string ids get generated ids, never a shared one."""
        first, second = sanitize_id(raw), sanitize_id(raw)
        assert first != second
        assert SAFE_SEGMENT.fullmatch(first)
        assert first[0] not in "._"
        assert "unknown" not in first


class TestPartition:
    def test_date_parts_are_zero_padded(self) -> None:
        """Month, day and hour are two digits, the year four."""
        created = float(calendar.timegm((2024, 3, 5, 7, 0, 0)))
        assert Partition.of(created) == Partition("2024", "03", "05", "07")

    def test_partition_uses_utc_not_local_time(self, utc_plus_14: None) -> None:
        """A record at 23:30 UTC on Dec 31 is filed under that day even where it is Jan 1."""
        assert time.localtime(NEW_YEARS_EVE).tm_year == 2022  # the fixture took effect
        assert Partition.of(NEW_YEARS_EVE) == Partition("2021", "12", "31", "23")

    @settings(max_examples=300, deadline=None)
    @given(st.floats(min_value=0, max_value=4_102_444_799.999, allow_nan=False))
    def test_partition_matches_the_utc_calendar(self, created: float) -> None:
        """For any time up to 2100 the parts equal the UTC calendar date and hour."""
        when = dt.datetime.fromtimestamp(created, dt.UTC)
        expected = Partition(f"{when.year:04d}", f"{when.month:02d}", f"{when.day:02d}",
                             f"{when.hour:02d}")
        assert Partition.of(created) == expected


class TestRenderKey:
    def test_default_layout_is_hive_partitions_by_utc_day(self) -> None:
        """The default template gives prefix/year=YYYY/month=MM/day=DD/<id>.json.gz."""
        assert object_key("abc-1") == "sessions/year=2021/month=12/day=31/abc-1.json.gz"

    @settings(max_examples=300, deadline=None)
    @given(st.one_of(ANY_TEXT, st.none(), st.integers()))
    def test_any_id_stays_inside_its_partition(self, raw: object) -> None:
        """Whatever the id, the key starts with the partition and has exactly four '/'."""
        key = object_key(sanitize_id(raw))
        assert key.startswith("sessions/year=2021/month=12/day=31/")
        assert key.count("/") == 4
        assert ".." not in key.split("/")
        assert len(key.encode("utf-8")) <= S3_MAX_KEY_BYTES

    def test_other_placeholders_are_filled(self) -> None:
        """hour, host, pid and uuid render; uuid differs per key."""
        template = "{prefix}/{year}/{hour}/{host}-{pid}-{uuid}{ext}"
        first = render_key(template, prefix="p", partition=Partition.of(NEW_YEARS_EVE), ext=".x")
        second = render_key(template, prefix="p", partition=Partition.of(NEW_YEARS_EVE), ext=".x")
        assert first.startswith("p/2021/23/")
        assert first.endswith(".x")
        assert first != second
        assert "{" not in first

    def test_key_over_s3_limit_is_refused(self) -> None:
        """A key longer than 1,024 UTF-8 bytes raises ValueError instead of failing in S3."""
        with pytest.raises(ValueError, match="1024"):
            render_key(OBJECT_KEY_TEMPLATE, prefix="é" * 500, partition=Partition.of(0),
                       ext=".json.gz", record_id="a")
