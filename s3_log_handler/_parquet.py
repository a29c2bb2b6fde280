"""JSON lines to Parquet bytes and back: one file per call, its writer closed at once.

Pure (no I/O but the in-memory file). pyarrow is imported on first use so that the package
works without it; without the ``parquet`` extra, :func:`require_pyarrow` raises an
``ImportError`` naming it. Columns follow a pinned schema per partition
(:class:`ParquetSchemas`); values without a column of their type go to ``extra_json``
(see :mod:`._parquet_schema`), each case counted.

Row groups: up to :data:`ROW_GROUP_BYTES` (64 MiB) of Arrow data each, about 25,000
records of ~3 KB and ~6 MiB once compressed. A batch object (10,000 records / 8 MiB of
JSON by default) is one row group; compacted objects get one per 64 MiB. Engines split
work and skip data per row group (min/max statistics) and read per column chunk: groups
much smaller mean more requests and worse compression, much larger mean more memory in
the writer (it holds a whole group before writing it) and fewer parallel splits.
"""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ._encode import plain_line
from ._parquet_columns import load_schema
from ._parquet_schema import (
    EXTRA_COLUMN,
    ListShape,
    MapShape,
    Shape,
    SplitCounts,
    StructShape,
    infer_schema,
    merge_extra,
    split_row,
)

INSTALL_HINT = "pip install 's3-analytics-handler[parquet]'"
COMPRESSIONS = ("zstd", "snappy")
#: Arrow bytes per row group (in memory, before encoding and compression).
ROW_GROUP_BYTES = 64 * 1024 * 1024
#: What a non-object line is kept under in ``extra_json``.
VALUE_KEY = "$value"
#: A JSON integer of 16+ digits may exceed 2**53, which Arrow's JSON reader would round into
#: a double column: such batches take the exact (Python) path.
_LONG_INTEGER = re.compile(rb"[:,\[]\s*-?\d{16}")


def require_pyarrow() -> Any:
    """The ``pyarrow`` module, or ``ImportError`` saying which extra installs it."""
    try:
        import pyarrow
        import pyarrow.parquet  # loads the Parquet bindings (pyarrow.parquet) once
    except ImportError as exc:
        msg = f"format='parquet' needs pyarrow: {INSTALL_HINT}"
        raise ImportError(msg) from exc
    return pyarrow


def arrow_type(shape: Shape) -> Any:
    """The Arrow type of one column shape (bigint -> int64, double -> float64, ...)."""
    pa = require_pyarrow()
    if isinstance(shape, StructShape):
        return pa.struct([pa.field(n, arrow_type(s)) for n, s in shape.fields])
    if isinstance(shape, ListShape):
        return pa.list_(arrow_type(shape.item))
    if isinstance(shape, MapShape):
        return pa.map_(pa.string(), arrow_type(shape.value))
    return {"boolean": pa.bool_(), "bigint": pa.int64(), "double": pa.float64(),
            "string": pa.string()}[shape]


def arrow_schema(schema: StructShape) -> Any:
    """The Arrow schema of a file: ``schema``'s columns plus ``extra_json`` (string)."""
    pa = require_pyarrow()
    return pa.schema([*(pa.field(n, arrow_type(s)) for n, s in schema.fields),
                      pa.field(EXTRA_COLUMN, pa.string())])


def parse_lines(lines: Iterable[bytes]) -> list[Any]:
    """Each JSON line parsed; a line that does not parse stays as its ``bytes``."""
    out: list[Any] = []
    for line in lines:
        try:
            out.append(orjson.loads(line))
        except orjson.JSONDecodeError:  # deeper than orjson reads, or not JSON at all
            out.append(bytes(line).rstrip(b"\n"))
    return out


def rows_table(rows: Sequence[Any], schema: StructShape, counts: SplitCounts) -> Any:
    """An Arrow table of ``rows`` (parsed lines) in ``schema`` plus ``extra_json``."""
    pa = require_pyarrow()
    kept_rows: list[dict[str, Any]] = []
    for row in rows:
        if isinstance(row, Mapping):
            kept, extra = split_row(row, schema, counts)
            if extra is not None:
                kept[EXTRA_COLUMN] = _json_text(extra)
        else:
            counts.unparsed += 1
            counts.rows_with_extra += 1
            text = (row.decode("utf-8", "replace") if isinstance(row, bytes)
                    else _json_text({VALUE_KEY: row}))
            kept = {EXTRA_COLUMN: text}
        kept_rows.append(kept)
    return pa.Table.from_pylist(kept_rows, schema=arrow_schema(schema))


def lines_table(lines: Sequence[bytes], schema: StructShape, counts: SplitCounts) -> Any:
    """:func:`rows_table` of JSON lines, through Arrow's JSON reader when every value fits.

    The reader refuses a field outside the schema and a value of another type, and then
    the lines take the Python path that splits rows; it is used only when no line names
    ``extra_json`` and none has a 16-digit integer (which it would round into a double).
    """
    return blob_table(b"".join(lines), len(lines), schema, counts)


def blob_table(data: bytes, rows: int, schema: StructShape, counts: SplitCounts) -> Any:
    """:func:`lines_table` of ``rows`` JSON lines already joined (each ends in ``\\n``)."""
    pa = require_pyarrow()
    if data and f'"{EXTRA_COLUMN}"'.encode() not in data and not _LONG_INTEGER.search(data):
        import pyarrow.json as pa_json

        try:
            table = pa_json.read_json(
                io.BytesIO(data),
                read_options=pa_json.ReadOptions(use_threads=False,
                                                 block_size=max(1 << 20, len(data) + 1)),
                parse_options=pa_json.ParseOptions(explicit_schema=arrow_schema(schema),
                                                   unexpected_field_behavior="error"))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass  # a value outside its column (or a map column): split the rows in Python
        else:
            if table.num_rows == rows:
                return table
    return rows_table(parse_lines(data.split(b"\n")[:rows]), schema, counts)


def _json_text(value: Any) -> str:
    return plain_line(value).decode("utf-8").rstrip("\n")


def write_options(compression: str, level: int | None = None) -> dict[str, Any]:
    """Keyword arguments for ``pyarrow.parquet.ParquetWriter``: codec, level, statistics.

    Raises ``ValueError`` for a codec other than zstd or snappy.
    """
    if compression not in COMPRESSIONS:
        msg = f"parquet_compression must be one of {', '.join(COMPRESSIONS)}, got {compression!r}"
        raise ValueError(msg)
    options: dict[str, Any] = {"compression": compression, "write_statistics": True}
    if level is not None and compression == "zstd":
        options["compression_level"] = level
    return options


def row_group_rows(table: Any) -> int:
    """Rows per row group so a group holds about :data:`ROW_GROUP_BYTES` of Arrow data."""
    per_row = max(1, int(table.nbytes) // max(1, int(table.num_rows)))
    return max(1, min(1024 * 1024, ROW_GROUP_BYTES // per_row))


@dataclass(slots=True)
class ParquetFile:
    """One Parquet file's bytes, its row count and what went to ``extra_json``."""

    body: bytes
    rows: int
    counts: SplitCounts = field(default_factory=SplitCounts)


def encode_parquet(lines: Sequence[bytes], schema: StructShape, compression: str = "zstd",
                   level: int | None = None) -> ParquetFile:
    """One Parquet file of ``lines`` (JSON objects, one per line) in ``schema``.

    A writer is opened for this file and closed before returning (long-lived pyarrow
    writers grow in memory: apache/arrow#44295, #45971).
    """
    pa = require_pyarrow()
    counts = SplitCounts()
    table = lines_table(lines, schema, counts)
    sink = pa.BufferOutputStream()
    with pa.parquet.ParquetWriter(sink, table.schema, **write_options(compression, level)) \
            as writer:
        writer.write_table(table, row_group_size=row_group_rows(table))
    return ParquetFile(sink.getvalue().to_pybytes(), table.num_rows, counts)


def records(table: Any) -> list[dict[str, Any]]:
    """The records a Parquet table holds: columns with ``extra_json`` merged back in.

    Null columns are left out (a field sent as ``null`` and a missing one read the same).
    """
    out = []
    maps = any(_has_map(f.type) for f in table.schema)
    for row in table.to_pylist(maps_as_pydicts="strict") if maps else table.to_pylist():
        extra_text = row.pop(EXTRA_COLUMN, None)
        kept = _without_nulls(row)
        extra = orjson.loads(extra_text) if extra_text else None
        if isinstance(extra, Mapping) and set(extra) == {VALUE_KEY} and not kept:
            out.append(extra[VALUE_KEY])
            continue
        out.append(merge_extra(kept, extra if isinstance(extra, Mapping) else None))
    return out


def _has_map(kind: Any) -> bool:
    pa = require_pyarrow()
    if pa.types.is_map(kind):
        return True
    if pa.types.is_struct(kind):
        return any(_has_map(kind.field(i).type) for i in range(kind.num_fields))
    if pa.types.is_list(kind):
        return _has_map(kind.value_type)
    return False


def _without_nulls(value: dict[str, Any]) -> dict[str, Any]:
    return {k: (_without_nulls(v) if isinstance(v, dict) else v)
            for k, v in value.items() if v is not None}


class ParquetSchemas:
    """The schema of each partition, pinned for the process; safe to share between threads.

    With ``given`` (a :class:`StructShape`, or a path for :func:`load_schema`) every
    partition uses it. Otherwise a partition's schema is inferred from the first batch that
    reaches it and kept, so later batches with new fields or other types put those values
    in ``extra_json`` instead of changing the table.
    """

    def __init__(self, given: StructShape | str | Path | None = None) -> None:
        self._given = load_schema(given) if isinstance(given, str | Path) else given
        self._pinned: dict[str, StructShape] = {}
        self._lock = threading.Lock()

    def schema_for(self, partition: str, lines: Sequence[bytes]) -> StructShape:
        """The pinned schema of ``partition``, inferred from ``lines`` on first use."""
        if self._given is not None:
            return self._given
        with self._lock:
            pinned = self._pinned.get(partition)
        if pinned is not None:
            return pinned
        inferred = infer_schema(r for r in parse_lines(lines) if isinstance(r, Mapping))
        with self._lock:  # two threads may infer at once: the first one to pin wins
            return self._pinned.setdefault(partition, inferred)

    def encode(self, partition: str, lines: Sequence[bytes], compression: str = "zstd",
               level: int | None = None) -> ParquetFile:
        """:func:`encode_parquet` of ``lines`` with ``partition``'s pinned schema."""
        return encode_parquet(lines, self.schema_for(partition, lines), compression, level)

    def partitions(self) -> int:
        """How many partitions have a pinned schema."""
        with self._lock:
            return len(self._pinned)
