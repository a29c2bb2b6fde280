"""One Parquet file written from many chunks of JSON lines: ``compact``'s writer.

Memory holds one row group of Arrow data (plus the chunk being converted), never the file;
the writer is opened for one file and closed with it (see :mod:`._parquet`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._parquet import ROW_GROUP_BYTES, arrow_schema, lines_table, require_pyarrow, write_options
from ._parquet_schema import SplitCounts, StructShape


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
        if not lines:
            return
        table = lines_table(lines, self.schema, self.counts)
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
