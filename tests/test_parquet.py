"""JSON lines to Parquet: pinned schemas, drift into extra_json, nothing lost, files readable."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from s3_log_handler._encode import plain_line
from s3_log_handler._parquet import ParquetSchemas, encode_parquet, records, write_options
from s3_log_handler._parquet_columns import load_schema, parse_type
from s3_log_handler._parquet_schema import (
    EXTRA_COLUMN,
    MAX_DEPTH,
    ListShape,
    MapShape,
    StructShape,
    infer_schema,
)
from s3_log_handler._parquet_stream import ParquetStream, slices


def session(i: int, **changes: Any) -> dict[str, Any]:
    """A plan-shaped session payload, with ``changes`` applied on top."""
    base: dict[str, Any] = {
        "session_id": f"rm_{i:04d}",
        "duration_seconds": 300.5 + i,
        "discovered_signals": {"team_size": i % 9, "qualification_tier": "qualified"},
        "tool_calls": [{"tool": "lookup", "ms": 40 + i}],
        "notes": f"note {i}",
    }
    return {**base, **changes}


def lines(*payloads: dict[str, Any]) -> list[bytes]:
    """Each payload as the handler serialises it (deep nesting and big ints included)."""
    return [plain_line(p) for p in payloads]


def read_back(body: bytes) -> list[dict[str, Any]]:
    return records(pq.read_table(pa.BufferReader(body)))


class TestSchemaInference:
    def test_nested_objects_become_structs_and_lists_lists(self) -> None:
        """Objects are structs, lists are lists, int+float is double, order is first seen."""
        schema = infer_schema([session(1), session(2, duration_seconds=7)])
        assert [n for n, _ in schema.fields] == ["session_id", "duration_seconds",
                                                 "discovered_signals", "tool_calls", "notes"]
        assert schema.lookup["duration_seconds"] == "double"
        assert schema.lookup["discovered_signals"] == StructShape(
            [("team_size", "bigint"), ("qualification_tier", "string")])
        assert schema.lookup["tool_calls"] == ListShape(
            StructShape([("tool", "string"), ("ms", "bigint")]))

    def test_inconsistent_deep_and_reserved_fields_get_no_column(self) -> None:
        """Mixed types, mixed lists, too-deep nesting, partition names and case twins."""
        deep: Any = 1
        for _ in range(MAX_DEPTH + 2):
            deep = [deep]
        schema = infer_schema([{"mixed": 1, "mixed_list": [1, "a"], "deep": deep, "year": 2025,
                                "Name": "a", "name": "b", "extra_json": "x", "empty": {}},
                               {"mixed": "one"}])
        assert [n for n, _ in schema.fields] == ["Name"]


class TestDrift:
    def test_a_batch_adding_a_field_keeps_it_in_extra_json(self) -> None:
        """The pinned schema does not grow: the new field is counted and kept as JSON."""
        schemas = ParquetSchemas()
        first = schemas.encode("day=01", lines(session(1), session(2)))
        second = schemas.encode("day=01", lines(session(3, channel="phone"),
                                                session(4, discovered_signals={
                                                    "team_size": 2, "budget": 9})))
        assert (first.counts.outside_schema, second.counts.outside_schema) == (0, 2)
        assert second.counts.rows_with_extra == 2
        table = pq.read_table(pa.BufferReader(second.body))
        assert table.schema.names == pq.read_table(pa.BufferReader(first.body)).schema.names
        assert json.loads(table.column(EXTRA_COLUMN)[0].as_py()) == {"channel": "phone"}
        assert read_back(second.body) == [session(3, channel="phone"), session(
            4, discovered_signals={"team_size": 2, "budget": 9})]

    def test_a_batch_changing_a_field_type_keeps_the_value_in_extra_json(self) -> None:
        """A string where a number was pinned goes to extra_json, the column stays typed."""
        schemas = ParquetSchemas()
        schemas.encode("p", lines(session(1)))
        changed = [session(2, duration_seconds="about five minutes"),
                   session(3, discovered_signals={"team_size": "big"}),
                   session(4, tool_calls=[{"tool": "x", "ms": "slow"}]),
                   session(5, duration_seconds=9)]
        out = schemas.encode("p", lines(*changed))
        assert out.counts.type_mismatch == 3
        table = pq.read_table(pa.BufferReader(out.body))
        assert table.schema.field("duration_seconds").type == pa.float64()
        assert table.column("duration_seconds").to_pylist() == [None, 303.5, 304.5, 9.0]
        assert read_back(out.body) == changed

    def test_a_deeply_nested_list_and_a_mixed_list_are_kept_whole(self) -> None:
        """Nesting past the limit and mixed-type lists never crash and are never lost."""
        deep: Any = [1, 2]
        for _ in range(300):  # deeper than orjson writes (254)
            deep = [deep]
        odd = session(1, deep=deep, mixed=[1, "two", {"three": 3}, [4]], huge=2**70)
        out = encode_parquet(lines(session(0), odd), infer_schema([session(0)]))
        assert out.rows == 2 and out.counts.outside_schema == 3
        assert read_back(out.body) == [session(0), odd]

    def test_a_line_that_is_not_an_object_is_kept(self) -> None:
        """A JSON array or scalar line is a row with only extra_json."""
        out = encode_parquet([b"[1, 2]\n", b"\"text\"\n", *lines(session(1))],
                             infer_schema([session(1)]))
        assert out.counts.unparsed == 2
        assert read_back(out.body) == [[1, 2], "text", session(1)]

    def test_big_integers_in_a_double_column_stay_exact(self) -> None:
        """An int beyond 2**53 is not rounded into a double column: it goes to extra_json."""
        schema = infer_schema([session(1)])
        out = encode_parquet(lines(session(2, duration_seconds=2**60 + 1)), schema)
        assert read_back(out.body) == [session(2, duration_seconds=2**60 + 1)]


class TestFiles:
    def test_zstd_by_default_snappy_on_request(self) -> None:
        """Every column chunk uses the codec asked for."""
        schema = infer_schema([session(1)])
        for codec in ("zstd", "snappy"):
            body = encode_parquet(lines(session(1)), schema, codec).body
            meta = pq.ParquetFile(pa.BufferReader(body)).metadata
            assert {meta.row_group(0).column(c).compression
                    for c in range(meta.num_columns)} == {codec.upper()}
        with pytest.raises(ValueError, match="parquet_compression"):
            write_options("gzip")

    def test_stream_cuts_row_groups_and_duckdb_reads_every_row(self, tmp_path: Path) -> None:
        """A streamed file has several row groups, and DuckDB sums every row."""
        rows = [session(i) for i in range(3000)]
        path = tmp_path / "x.parquet"
        with path.open("wb") as sink:
            stream = ParquetStream(sink, infer_schema(rows), row_group_bytes=32 * 1024)
            for start in range(0, 3000, 500):
                stream.add(lines(*rows[start:start + 500]))
            assert stream.close() == 3000
        assert pq.ParquetFile(path).metadata.num_row_groups > 1
        ((count, total),) = duckdb.sql(
            f"SELECT count(*), sum(duration_seconds) FROM read_parquet('{path}')").fetchall()
        assert (count, total) == (3000, pytest.approx(sum(r["duration_seconds"] for r in rows)))

    def test_a_batch_is_converted_a_slice_at_a_time(self) -> None:
        """Slices end at line ends and cover the batch; a file built slice by slice holds
        every record, drift within any slice included."""
        rows = [session(i) for i in range(500)] + [session(500, late_field=[1, "x"])]
        raw = b"".join(lines(*rows))
        pieces = list(slices(raw, 4096))
        assert len(pieces) > 10 and b"".join(pieces) == raw
        assert all(p.endswith(b"\n") for p in pieces)
        sink = pa.BufferOutputStream()
        stream = ParquetStream(sink, infer_schema(rows[:10]))
        for piece in pieces:
            stream.add_blob(piece)
        assert stream.close() == 501 and stream.counts.outside_schema == 1
        assert read_back(sink.getvalue().to_pybytes()) == rows

    def test_threads_pin_one_schema_per_partition(self) -> None:
        """Upload threads encoding one partition at once all get the first pinned schema."""
        schemas = ParquetSchemas()
        seen: list[StructShape] = []
        batches = [lines(session(i, **{f"f{i}": i})) for i in range(8)]
        threads = [threading.Thread(target=lambda b=b: seen.append(schemas.schema_for("p", b)))
                   for b in batches]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len({id(s) for s in seen}) == 1 and schemas.partitions() == 1


class TestHandlerCodec:
    def test_the_codec_pins_per_key_folder_and_sizes_samples_unpinned(self) -> None:
        """for_key pins the schema of the key's folder; compress (batch sizing) pins none."""
        from s3_log_handler._parquet_codec import codec_for
        from s3_log_handler._settings import HandlerConfig

        codec = codec_for(HandlerConfig.from_kwargs(bucket="some-bucket", mode="batch",
                                                    format="parquet"))
        assert (codec.name, codec.suffix, codec.content_encoding) == ("parquet", ".parquet", None)
        assert read_back(codec.compress(b"".join(lines(session(9, odd=1))))) == [
            session(9, odd=1)]
        body, counts = codec.for_key("events/day=01/a.parquet", b"".join(lines(session(1))))
        assert counts["parquet_outside_schema"] == 0
        body, counts = codec.for_key("events/day=01/b.parquet",
                                     b"".join(lines(session(2, odd=1))))
        assert counts["parquet_outside_schema"] == 1 and read_back(body) == [session(2, odd=1)]
        _, counts = codec.for_key("events/day=02/c.parquet", b"".join(lines(session(3, odd=1))))
        assert counts["parquet_outside_schema"] == 0


class TestGivenSchema:
    def test_a_column_list_in_yaml(self, tmp_path: Path) -> None:
        """Athena-style types; a value outside the list goes to extra_json."""
        spec = tmp_path / "columns.yaml"
        spec.write_text("columns:\n  session_id: string\n  duration_seconds: double\n"
                        "  discovered_signals: struct<team_size:int,qualification_tier:string>\n")
        schemas = ParquetSchemas(str(spec))
        out = schemas.encode("p", lines(session(1)))
        table = pq.read_table(pa.BufferReader(out.body))
        assert table.schema.names == ["session_id", "duration_seconds", "discovered_signals",
                                      EXTRA_COLUMN]
        assert read_back(out.body) == [session(1)]

    def test_athena_default_columns_with_maps(self, tmp_path: Path) -> None:
        """The athena-ddl default columns (maps included) as a column list: map values of
        the right type stay in the map column, a map with a string value goes whole to
        extra_json, and DuckDB reads the map."""
        from s3_log_handler._athena import DEFAULT_SESSION_COLUMNS

        spec = tmp_path / "columns.json"
        spec.write_text(json.dumps({"columns": dict(DEFAULT_SESSION_COLUMNS)}))
        good = {"session_id": "a", "cost_summary": {"llm_usd": 0.5, "tts_usd": 1},
                "tool_calls": [{"tool": "x", "timestamp": "t"}]}
        bad = {"session_id": "b", "cost_summary": {"llm_usd": "free"}}
        out = ParquetSchemas(str(spec)).encode("p", lines(good, bad))
        assert out.counts.type_mismatch == 1
        assert read_back(out.body) == [good, bad]
        path = tmp_path / "x.parquet"
        path.write_bytes(out.body)
        assert duckdb.sql(f"SELECT cost_summary['tts_usd'] FROM read_parquet('{path}')"
                          ).fetchall() == [(1.0,), (None,)]

    def test_a_sample_payload(self, tmp_path: Path) -> None:
        """A sample JSON payload gives the columns it has."""
        sample = tmp_path / "sample.json"
        sample.write_text(json.dumps(session(1)))
        assert load_schema(sample) == infer_schema([session(1)])

    def test_unsupported_types_are_refused_by_name(self) -> None:
        """Maps need string keys; a timestamp column is refused with the type named."""
        assert parse_type("array<struct<`a`:bigint,b:array<string>>>") == ListShape(
            StructShape([("a", "bigint"), ("b", ListShape("string"))]))
        assert parse_type("map<string,double>") == MapShape("double")
        for bad in ("map<int,int>", "timestamp", "struct<a:int", "array<int>>"):
            with pytest.raises(ValueError, match="column type"):
                parse_type(bad)
