"""Partition values from record fields, and record times from a payload field."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from s3_log_handler._athena_layout import layout
from s3_log_handler._fields import (
    DEFAULT_VALUE,
    MAX_VALUE_CHARS,
    FieldReader,
    is_field_path,
    partition_value,
    record_time,
)
from s3_log_handler._keys import Partition, render_key

SAFE = re.compile(r"[A-Za-z0-9-][A-Za-z0-9._-]*")
scalars = st.one_of(st.text(min_size=1), st.integers(), st.booleans(),
                    st.floats(allow_nan=False, allow_infinity=False))


class TestPartitionValue:
    @given(scalars)
    def test_any_scalar_becomes_a_visible_bounded_segment(self, raw: object) -> None:
        """No '/', no '..', no control character, no leading '.' or '_', at most 64 chars."""
        value = partition_value(raw)
        assert value is not None and SAFE.fullmatch(value), value
        assert len(value) <= MAX_VALUE_CHARS and value not in (".", "..")

    @given(st.text(min_size=1), st.text(min_size=1))
    def test_distinct_texts_stay_distinct(self, a: str, b: str) -> None:
        """Two different texts never share a partition (a changed text gets a hash)."""
        if a != b:
            assert partition_value(a) != partition_value(b)

    @pytest.mark.parametrize("raw", [None, "", {"a": 1}, [1], float("nan"), float("inf")])
    def test_values_without_a_scalar_form_have_none(self, raw: object) -> None:
        """The caller puts these in the default partition (and counts them)."""
        assert partition_value(raw) is None

    def test_the_default_value_itself_is_told_apart(self) -> None:
        """A record whose value is the text 'missing' does not join the default partition."""
        assert partition_value(DEFAULT_VALUE) != DEFAULT_VALUE
        assert partition_value("enterprise") == "enterprise"
        assert partition_value(True) == "true" and partition_value(42) == "42"


class TestRecordTime:
    @pytest.mark.parametrize(("raw", "expected"), [
        ("2026-11-29T10:00:00Z", datetime(2026, 11, 29, 10, tzinfo=UTC)),
        ("2026-11-29T10:00:00", datetime(2026, 11, 29, 10, tzinfo=UTC)),  # no zone: UTC
        ("2026-11-29T12:00:00+02:00", datetime(2026, 11, 29, 10, tzinfo=UTC)),
        (1795946400, datetime(2026, 11, 29, 10, tzinfo=UTC)),
        (1795946400000, datetime(2026, 11, 29, 10, tzinfo=UTC)),  # milliseconds
        ("1795946400.5", datetime(2026, 11, 29, 10, 0, 0, 500000, tzinfo=UTC)),
    ])
    def test_iso_8601_and_epoch_seconds_or_milliseconds(self, raw: object,
                                                          expected: datetime) -> None:
        assert record_time(raw) == expected.timestamp()

    @pytest.mark.parametrize("raw", ["soon", "", None, True, [1], {"t": 1}, float("nan")])
    def test_anything_else_has_no_time(self, raw: object) -> None:
        assert record_time(raw) is None


class TestFieldReader:
    def test_reads_nested_paths_in_template_order_and_counts_defaults(self) -> None:
        reader = FieldReader("{prefix}/t={field:event_type}/q={field:signals.tier}/{uuid}{ext}",
                             "end_time")
        assert reader.values({"event_type": "turn", "signals": {"tier": "a/b"}})[0][0] == "turn"
        assert reader.values({"signals": "flat"}) == ((DEFAULT_VALUE, DEFAULT_VALUE), 2)
        assert reader.values_of_line(b'{"event_type":"x"}\n')[0] == "x"
        assert reader.values_of_line(b"not json\n") == (DEFAULT_VALUE, DEFAULT_VALUE)

    @pytest.mark.parametrize(("path", "ok"), [("a", True), ("a.b.c", True), ("", False),
                                              ("a..b", False), (".a", False), ("a:b", False)])
    def test_field_paths_are_dotted_names(self, path: str, ok: bool) -> None:
        assert is_field_path(path) is ok

    def test_render_key_fills_each_path_once_in_order(self) -> None:
        key = render_key("{prefix}/a={field:x}/b={field:y}/c={field:x}/{id}{ext}", prefix="p",
                         partition=Partition.day_of(0), ext=".json", record_id="r",
                         fields=("1", "2"))
        assert key == "p/a=1/b=2/c=1/r.json"


class TestAthenaLayout:
    def test_hourly_template_with_a_bare_field_segment(self) -> None:
        """A bare {field:a.tier} directory is a column named after the last name."""
        parts = layout("{prefix}/{field:a.tier}/year={year}/month={month}/day={day}/"
                       "hour={hour}/{uuid}{ext}", "s3://b/p", (2024, 2030))
        assert parts.columns == (("tier", "string"), ("year", "int"), ("month", "int"),
                                 ("day", "int"), ("hour", "int"))
        assert parts.properties["storage.location.template"] == (
            "s3://b/p/${tier}/year=${year}/month=${month}/day=${day}/hour=${hour}/")
        assert parts.properties["projection.hour.range"] == "0,23"

    def test_enum_values_are_made_safe_like_the_keys(self) -> None:
        parts = layout("{prefix}/t={field:t}/year={year}/month={month}/day={day}/{uuid}{ext}",
                       "s3://b/p", (2024, 2030), {"t": ["ok", "a/b"]})
        assert parts.properties["projection.t.values"] == "ok," + str(partition_value("a/b"))

    @pytest.mark.parametrize("template", [
        "{prefix}/bad-name={field:t}/{uuid}{ext}",
        "{prefix}/t={field:t}/t={field:u}/{uuid}{ext}",
    ])
    def test_refuses_columns_athena_cannot_have(self, template: str) -> None:
        with pytest.raises(ValueError, match="partition column"):
            layout(template, "s3://b/p", (2024, 2030))

    def test_refuses_values_for_a_column_the_template_lacks(self) -> None:
        with pytest.raises(ValueError, match="partition-values"):
            layout("{prefix}/year={year}/{uuid}{ext}", "s3://b/p", (2024, 2030), {"x": ["1"]})
