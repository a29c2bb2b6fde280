"""One Parquet file written from many chunks of JSON lines: ``compact``'s writer.

Memory holds one row group of Arrow data (plus the chunk being converted), never the file;
the writer is opened for one file and closed with it (see :mod:`._parquet`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from ._parquet import (
    ROW_GROUP_BYTES,
    arrow_schema,
    blob_table,
    lines_table,
    require_pyarrow,
    write_options,
)
from ._parquet_schema import SplitCounts, StructShape

#: JSON bytes converted to Arrow at a time by :func:`slices`.
SLICE_BYTES = 8 * 1024 * 1024


class ParquetStream:
    """One Parquet file written from many chunks of rows, in row groups of about
    ``row_group_bytes`` of Arrow data: memory holds one row group, not the file.

    Chunks are converted to Arrow as they come (their Python objects can then be freed);
    :meth:`close` writes what is left and closes the writer. ``sink`` is a binary file.
    """

    def __init__(self, sink: Any, schema: StructShape, compression: str = "zstd",
                 level: int | None = None, row_group_bytes: int = ROW_GROUP_BYTES) -> None:
        pa = require_pyarrow()
        self.schema = schema
        self.row_group_bytes = row_group_bytes
        self.flushed = 0
        self.counts = SplitCounts()
        self.rows = 0
        self._sink = sink
        self._pending: list[Any] = []
        self._pending_bytes = 0
        self._writer = pa.parquet.ParquetWriter(sink, arrow_schema(schema),
                                                **write_options(compression, level))

    def add(self, lines: Sequence[bytes]) -> None:
        """Add JSON lines; writes a row group once one is full."""
        if lines:
            self._add_table(lines_table(lines, self.schema, self.counts))

    def add_blob(self, data: bytes) -> None:
        """Add JSON lines joined into one ``bytes`` (each line ending in ``\\n``)."""
        if data:
            self._add_table(blob_table(data, data.count(b"\n"), self.schema, self.counts))

    def _add_table(self, table: Any) -> None:
        self.rows += table.num_rows
        self._pending.append(table)
        self._pending_bytes += table.nbytes
        if self._pending_bytes >= self.row_group_bytes:
            self._flush()

    def written(self) -> int:
        """Bytes written to the sink so far (rows still pending are not counted)."""
        return int(self._sink.tell())

    def pending(self) -> int:
        """Arrow bytes waiting for the next row group."""
        return self._pending_bytes

    def _flush(self) -> None:
        if self._pending:
            pa = require_pyarrow()
            table = pa.concat_tables(self._pending)
            self.flushed += self._pending_bytes
            self._pending, self._pending_bytes = [], 0
            self._writer.write_table(table, row_group_size=table.num_rows)

    def close(self) -> int:
        """Write the last row group, close the writer (not the sink); return the rows."""
        self._flush()
        self._writer.close()
        return self.rows


def slices(raw: bytes, size: int = SLICE_BYTES) -> Iterator[bytes]:
    """``raw`` (JSON lines, each ending in ``\\n``) in pieces of about ``size`` bytes, each
    ending at a line's end, so no more than one piece is converted at a time."""
    start = 0
    while start < len(raw):
        cut = raw.find(b"\n", min(len(raw) - 1, start + size - 1))
        end = len(raw) if cut < 0 else cut + 1
        yield raw[start:end]
        start = end
