"""The Athena DDL: parses as Athena SQL, Hive JSON SerDe, projection that matches our keys."""

from __future__ import annotations

import gzip
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlglot
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlglot import expressions as exp

from s3_log_handler import _names
from s3_log_handler._athena import (
    DEFAULT_SESSION_COLUMNS,
    JSON_SERDE,
    athena_ddl,
    athena_type,
    infer_columns,
)
from s3_log_handler._cli import main
from s3_log_handler._keys import Partition, render_key
from s3_log_handler._settings import BATCH_KEY_TEMPLATE, OBJECT_KEY_TEMPLATE

PLAN_PAYLOAD = {
    "session_id": "rm_abc123",
    "user_email": "user@example.com",
    "start_time": "2025-10-29T14:30:00Z",
    "end_time": "2025-10-29T14:35:00Z",
    "duration_seconds": 300,
    "discovered_signals": {"team_size": 7, "monthly_volume": 150,
                           "qualification_tier": "qualified"},
    "tool_calls": [{"tool": "lookup", "timestamp": "2025-10-29T14:31:00Z"},
                   {"tool": "book", "timestamp": "2025-10-29T14:33:00Z", "ok": True}],
    "metrics_summary": {"llm_tokens": 1200, "latency_ms": 350.5},
    "conversation_notes": None,
}


@dataclass
class Table:
    """The parts of a parsed CREATE TABLE that the tests look at."""

    name: str
    database: str
    columns: dict[str, str]
    partitions: dict[str, str]
    serde: str
    location: str
    properties: dict[str, str]


def _type(kind: exp.Expression) -> str:
    return kind.sql("hive").lower().replace(" ", "")


def parse(ddl: str) -> Table:
    """Parse ``ddl`` with sqlglot's Athena dialect (raises on a syntax error)."""
    create = sqlglot.parse_one(ddl, read="athena")
    assert isinstance(create, exp.Create) and create.args["kind"] == "TABLE"
    props = create.args["properties"].expressions
    assert any(isinstance(p, exp.ExternalProperty) for p in props)
    (partitioned,) = [p for p in props if isinstance(p, exp.PartitionedByProperty)]
    (serde,) = [p for p in props if isinstance(p, exp.RowFormatSerdeProperty)]
    (location,) = [p for p in props if isinstance(p, exp.LocationProperty)]
    return Table(
        name=create.this.this.name,
        database=create.this.this.db,
        columns={c.name: _type(c.args["kind"]) for c in create.this.expressions},
        partitions={c.name: _type(c.args["kind"]) for c in partitioned.this.expressions},
        serde=serde.this.name,
        location=location.this.name,
        properties={p.this.name: p.args["value"].name for p in props
                    if type(p) is exp.Property},
    )


class TestDdlShape:
    def test_default_ddl_parses_with_the_expected_shape(self) -> None:
        """Table, database, default columns, int partitions, Hive JSON SerDe and location."""
        table = parse(athena_ddl("analytics-bucket", database="analytics"))
        assert (table.name, table.database) == ("session_analytics", "analytics")
        assert list(table.columns) == [name for name, _ in DEFAULT_SESSION_COLUMNS]
        assert table.columns["discovered_signals"].startswith("struct<team_size:bigint,")
        assert table.partitions == {"year": "int", "month": "int", "day": "int"}
        assert table.serde == JSON_SERDE == "org.apache.hive.hcatalog.data.JsonSerDe"
        assert table.location == "s3://analytics-bucket/sessions/"

    def test_partition_projection_properties_are_complete(self) -> None:
        """Projection is on, integer ranges for all three columns, 2 digits for month/day."""
        props = parse(athena_ddl("bkt", prefix="events/v1")).properties
        assert props["projection.enabled"] == "true"
        for column in ("year", "month", "day"):
            assert props[f"projection.{column}.type"] == "integer"
            low, high = map(int, props[f"projection.{column}.range"].split(","))
            assert low <= high
        assert props["projection.month.range"] == "1,12"
        assert props["projection.day.range"] == "1,31"
        assert props["projection.month.digits"] == props["projection.day.digits"] == "2"
        assert props["storage.location.template"] == (
            "s3://bkt/events/v1/year=${year}/month=${month}/day=${day}/")

    @pytest.mark.parametrize("template", [OBJECT_KEY_TEMPLATE, BATCH_KEY_TEMPLATE])
    def test_projected_location_is_the_folder_the_handler_writes(self, template: str) -> None:
        """Filling the template with 2-digit month/day gives the prefix of a real key."""
        props = parse(athena_ddl("bkt", prefix="sessions")).properties
        created = 1_709_251_200.0  # 2024-03-01T00:00:00Z: single-digit month and day
        key = render_key(template, prefix="sessions", partition=Partition.of(created),
                         ext=".json.gz", record_id="s1", seq=1)
        folder = (props["storage.location.template"].replace("${year}", "2024")
                  .replace("${month}", "03").replace("${day}", "01"))
        assert f"s3://bkt/{key}".startswith(folder)
        assert "/" not in f"s3://bkt/{key}"[len(folder):]

    def test_batch_mode_is_the_same_table_with_a_note(self) -> None:
        """Batch objects are the same rows: only the header comment changes."""
        obj, batch = athena_ddl("bkt"), athena_ddl("bkt", mode="batch")
        assert parse(obj) == parse(batch)
        assert ".ndjson.gz" in batch and ".ndjson.gz" not in obj

    def test_reserved_words_are_backticked(self) -> None:
        """Reserved names (timestamp, date, user) are quoted, at top level and inside structs."""
        ddl = athena_ddl("bkt", sample=None)
        assert "`timestamp`:string" in ddl
        sample = {"date": "2025-01-01", "user": {"timestamp": 1, "plain": "x"}}
        columns, _ = infer_columns([sample])
        assert dict(columns)["user"] == "struct<`timestamp`:bigint,plain:string>"

    @pytest.mark.parametrize(("kwargs", "match"), [
        ({"table": "Session-Analytics"}, "table"),
        ({"database": "my db"}, "database"),
        ({"mode": "stream"}, "mode"),
        ({"years": (2030, 2020)}, "years"),
    ])
    def test_invalid_arguments_raise_value_error(self, kwargs: dict[str, Any], match: str) -> None:
        """Bad names, modes or year ranges fail with a message naming the argument."""
        with pytest.raises(ValueError, match=match):
            athena_ddl("bkt", **kwargs)


class TestInference:
    def test_json_types_map_to_athena_types(self) -> None:
        """bool, int, float, str, null, object, array and empty containers get Athena types."""
        values: tuple[Any, ...] = (True, 3, 2.5, "x", None, {}, [])
        assert [athena_type(v) for v in values] == [
            "boolean", "bigint", "double", "string", "string", "map<string,string>",
            "array<string>"]
        assert athena_type({"a": [1, 2.5]}) == "struct<a:array<double>>"

    def test_sample_file_gives_the_plan_columns(self, tmp_path: Path) -> None:
        """A plan-shaped sample yields its columns, merged array elements and nested types."""
        sample = tmp_path / "session.json"
        sample.write_text(json.dumps(PLAN_PAYLOAD, indent=2))
        columns = parse(athena_ddl("bkt", sample=sample)).columns
        assert list(columns) == list(PLAN_PAYLOAD)
        assert columns["duration_seconds"] == "bigint"
        assert columns["discovered_signals"] == (
            "struct<team_size:bigint,monthly_volume:bigint,qualification_tier:string>")
        assert columns["tool_calls"] == (
            "array<struct<tool:string,`timestamp`:string,ok:boolean>>")
        assert columns["metrics_summary"] == "struct<llm_tokens:bigint,latency_ms:double>"
        assert columns["conversation_notes"] == "string"

    def test_gzip_ndjson_sample_merges_rows(self, tmp_path: Path) -> None:
        """A downloaded .ndjson.gz batch is a valid sample; types merge across its lines."""
        rows = [{"n": 1, "tag": None, "s": {"a": 1}}, {"n": 2.5, "tag": "x", "s": {"b": True}}]
        sample = tmp_path / "batch.ndjson.gz"
        sample.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
        columns = parse(athena_ddl("bkt", mode="batch", sample=sample)).columns
        assert columns == {"n": "double", "tag": "string", "s": "struct<a:bigint,b:boolean>"}

    def test_unusable_keys_are_skipped_and_listed(self) -> None:
        """Keys that cannot be Athena names, or that shadow a partition column, are skipped."""
        columns, skipped = infer_columns([{"ok": 1, "has-dash": 1, "year": 2025,
                                           "Mixed": "x", "nested": {"a.b": 1, "c": 2}}])
        assert dict(columns) == {"ok": "bigint", "mixed": "string", "nested": "struct<c:bigint>"}
        assert skipped == ["has-dash", "year", "nested.a.b"]
        ddl = athena_ddl("bkt", sample=None)
        assert "Skipped" not in ddl

    def test_sample_without_an_object_is_rejected(self, tmp_path: Path) -> None:
        """A sample that holds no JSON object cannot define columns."""
        sample = tmp_path / "list.json"
        sample.write_text("[1, 2]")
        with pytest.raises(ValueError, match="JSON object"):
            athena_ddl("bkt", sample=sample)

    @settings(max_examples=40, deadline=None)
    @given(st.lists(st.dictionaries(
        st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True),
        st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                     | st.text(max_size=5),
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.from_regex(r"[a-z][a-z0-9_]{0,5}", fullmatch=True),
                                       inner, max_size=3),
                     max_leaves=8),
        min_size=1, max_size=6), min_size=1, max_size=3))
    def test_any_json_sample_gives_ddl_that_parses(self, payloads: list[dict[str, Any]]) -> None:
        """Whatever JSON objects the sample holds, the DDL parses and has one column per key."""
        keys = {k for p in payloads for k in p} - {"year", "month", "day"}
        with tempfile.TemporaryDirectory() as folder:
            sample = Path(folder) / "sample.ndjson"
            sample.write_text("".join(json.dumps(p) + "\n" for p in payloads))
            if not keys:
                with pytest.raises(ValueError, match="no key"):
                    athena_ddl("bkt", sample=sample)
                return
            assert set(parse(athena_ddl("bkt", sample=sample)).columns) == keys


class TestCli:
    def test_athena_ddl_command_prints_the_ddl(self, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
        """`s3-log-handler athena-ddl` prints what athena_ddl() returns for the same options."""
        sample = tmp_path / "s.json"
        sample.write_text(json.dumps(PLAN_PAYLOAD))
        argv = ["athena-ddl", "--bucket", "bkt", "--prefix", "p", "--table", "t",
                "--database", "d", "--mode", "batch", "--sample", str(sample)]
        assert main(argv) == 0
        printed = capsys.readouterr().out
        assert printed.rstrip("\n") == athena_ddl("bkt", "p", "t", "d", "batch", str(sample))
        assert parse(printed).name == "t"


HOSTILE_PREFIX = "sessions/', 'projection.enabled'='false', 'x'='"
HOSTILE = [
    ("--prefix", HOSTILE_PREFIX),
    ("--prefix", "sessions/\nLOCATION 's3://evil/'"),
    ("--prefix", "../other-team"),
    ("--prefix", "_staging"),
    ("--prefix", "sessions/"),
    ("--bucket", "bkt/' TBLPROPERTIES ('projection.enabled'='false"),
    ("--bucket", "bkt'"),
    ("--bucket", "Bkt"),
    ("--table", "t\n"),
    ("--table", "t`; DROP TABLE x; --"),
    ("--table", "T"),
    ("--database", "d\n"),
]


def creates(ddl: str) -> list[exp.Create]:
    """Every statement in ``ddl``; each must be a CREATE."""
    statements = [s for s in sqlglot.parse(ddl, read="athena") if s is not None]
    assert all(isinstance(s, exp.Create) for s in statements)
    return [s for s in statements if isinstance(s, exp.Create)]


def projection_enabled(ddl: str) -> list[str]:
    """The values every 'projection.enabled' property has in the parsed DDL."""
    return [p.args["value"].name for create in creates(ddl)
            for p in create.args["properties"].expressions
            if type(p) is exp.Property and p.this.name == "projection.enabled"]


class TestHostileNames:
    @pytest.mark.parametrize(("option", "value"), HOSTILE)
    def test_hostile_values_are_refused_with_exit_2(
            self, option: str, value: str, capsys: pytest.CaptureFixture[str]) -> None:
        """athena-ddl prints nothing for a name that breaks its rule: exit status 2, and
        stderr names the value and the rule."""
        argv = ["athena-ddl", "--bucket", "bkt", option, value]
        assert main(argv) == 2
        out, err = capsys.readouterr()
        assert out == ""
        assert repr(value)[:60] in err and " must be " in err

    @pytest.mark.parametrize("prefix", ["sessions", "events/v1", "a=b/c.d-e_f", ""])
    def test_accepted_values_give_exactly_one_create_with_projection_on(
            self, prefix: str) -> None:
        """What is accepted parses (sqlglot) to one CREATE, projection.enabled once, 'true'."""
        ddl = athena_ddl("analytics-bucket", prefix=prefix, table="t_1", database="db_2")
        assert len(creates(ddl)) == 1
        assert projection_enabled(ddl) == ["true"]
        root = f"s3://analytics-bucket/{prefix}" if prefix else "s3://analytics-bucket"
        assert parse(ddl).location == root + "/"

    @pytest.mark.parametrize(("bucket", "prefix"), [
        ("bkt", HOSTILE_PREFIX), ("bkt' LOCATION 's3://evil", "p"),
        ("bkt", "x'); DROP TABLE session_analytics; --")])
    def test_quoting_alone_keeps_a_hostile_name_inside_its_literal(
            self, bucket: str, prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
        """Defence in depth: with the name checks switched off, doubled quotes still keep
        the text inside LOCATION and the location template (one CREATE, projection on)."""
        monkeypatch.setattr(_names, "bucket", lambda value, *a, **k: value)
        monkeypatch.setattr(_names, "prefix", lambda value, *a, **k: value)
        ddl = athena_ddl(bucket, prefix=prefix)
        assert len(creates(ddl)) == 1
        assert projection_enabled(ddl) == ["true"]
        properties = parse(ddl).properties
        assert set(properties) == {
            "projection.enabled", "projection.year.type", "projection.year.range",
            "projection.month.type", "projection.month.range", "projection.month.digits",
            "projection.day.type", "projection.day.range", "projection.day.digits",
            "storage.location.template"}

    def test_sample_keys_cannot_end_the_header_comment(self, tmp_path: Path) -> None:
        """A skipped key with a newline is JSON-quoted in the comment, not a new statement."""
        sample = tmp_path / "s.json"
        sample.write_text(json.dumps({"ok": 1, "x\nDROP TABLE t; --": 2}))
        ddl = athena_ddl("bkt", sample=sample)
        assert "DROP TABLE t" not in ddl.replace('"x\\nDROP TABLE t; --"', "")
        assert len(creates(ddl)) == 1

    def test_column_names_from_a_sample_use_fullmatch(self) -> None:
        """A key with a trailing newline is skipped, not made a column."""
        columns, skipped = infer_columns([{"ok": 1, "bad\n": 2}])
        assert dict(columns) == {"ok": "bigint"} and skipped == ["bad\n"]
