"""Compacted parts on local disk: rows in, numbered files of about a target size out.

Each part is written to a temporary file (so memory holds a row group or a gzip window,
not the part), handed to an ``upload`` callback once closed, then removed. Parquet parts
use :class:`~._parquet_stream.ParquetStream` (one writer per part, closed at once); NDJSON parts
are one gzip member each (DuckDB before 1.3 read only the first member).
"""

from __future__ import annotations

import gzip
import hashlib
import tempfile
from collections.abc import Callable, Sequence
from typing import IO, Any, Protocol

from ._parquet_schema import SplitCounts, StructShape

#: JSON bytes handed to a part at a time: bounds the Python objects alive while converting.
CHUNK_BYTES = 8 * 1024 * 1024
#: Arrow bytes per compressed byte before a part has written anything to measure it by.
ASSUMED_PARQUET_RATIO = 8
GZIP_LEVEL = 6

#: Called with (part number, the closed file rewound to 0, rows, SHA-256 hex).
Upload = Callable[[int, IO[bytes], int, str], None]


class _Part(Protocol):
    counts: SplitCounts

    def add(self, lines: Sequence[bytes]) -> None: ...
    def estimate(self) -> int: ...
    def close(self) -> int: ...


class _ParquetPart:
    def __init__(self, file: IO[bytes], schema: StructShape, compression: str,
                 target: int) -> None:
        from ._parquet import ROW_GROUP_BYTES
        from ._parquet_stream import ParquetStream

        self._stream = ParquetStream(file, schema, compression, row_group_bytes=min(
            ROW_GROUP_BYTES, max(1, target) * ASSUMED_PARQUET_RATIO))
        self.counts = self._stream.counts

    def add(self, lines: Sequence[bytes]) -> None:
        self._stream.add(lines)

    def estimate(self) -> int:
        written, flushed = self._stream.written(), self._stream.flushed
        ratio = flushed / written if written and flushed else ASSUMED_PARQUET_RATIO
        return written + int(self._stream.pending() / ratio)

    def close(self) -> int:
        return self._stream.close()


class _NdjsonPart:
    def __init__(self, file: IO[bytes]) -> None:
        self.counts = SplitCounts()
        self._file = file
        self._gzip = gzip.GzipFile(fileobj=file, mode="wb", compresslevel=GZIP_LEVEL, mtime=0)
        self._rows = 0
        self._raw = 0

    def add(self, lines: Sequence[bytes]) -> None:
        for line in lines:
            self._gzip.write(line)
            self._raw += len(line)
        self._rows += len(lines)

    def estimate(self) -> int:
        # zlib holds back up to a window of output: count what it has emitted, plus a guess.
        return int(self._file.tell()) + min(self._raw, 32 * 1024) // 4

    def close(self) -> int:
        self._gzip.close()
        return self._rows


class PartWriter:
    """Writes rows into parts of about ``target_bytes`` each, in order, numbered from 0.

    ``schema_for`` gives the Parquet schema from the first lines of the first part (pinned
    for every part of the folder); ``upload`` receives each finished part. A part is closed
    once its estimated size reaches the target, so parts end near it, over it by at most
    one chunk's worth of output.
    """

    def __init__(self, fmt: str, target_bytes: int, upload: Upload,
                 schema_for: Callable[[Sequence[bytes]], StructShape] | None = None,
                 compression: str = "zstd") -> None:
        self._fmt = fmt
        self._target = target_bytes
        self._upload = upload
        self._schema_for = schema_for
        self._compression = compression
        self._schema: StructShape | None = None
        self._file: IO[bytes] | None = None
        self._part: _Part | None = None
        self.parts = 0
        self.rows = 0
        self.counts = SplitCounts()

    def add(self, lines: Sequence[bytes]) -> None:
        """Add JSON lines (each ending in ``\\n``) in their final order."""
        chunk: list[bytes] = []
        size = 0
        limit = max(1024, min(CHUNK_BYTES, self._target))
        for line in lines:
            chunk.append(line)
            size += len(line)
            if size >= limit:
                self._add_chunk(chunk)
                chunk, size = [], 0
        if chunk:
            self._add_chunk(chunk)

    def _add_chunk(self, chunk: list[bytes]) -> None:
        if self._part is None:
            self._file = tempfile.TemporaryFile()  # noqa: SIM115 - closed in _finish/abandon
            self._part = self._open(self._file, chunk)
        self._part.add(chunk)
        self.rows += len(chunk)
        if self._part.estimate() >= self._target:
            self._finish()

    def _open(self, file: IO[bytes], first: Sequence[bytes]) -> _Part:
        if self._fmt == "ndjson":
            return _NdjsonPart(file)
        if self._schema is None:
            assert self._schema_for is not None, "parquet parts need schema_for"
            self._schema = self._schema_for(first)
        return _ParquetPart(file, self._schema, self._compression, self._target)

    def _finish(self) -> None:
        part, file = self._part, self._file
        if part is None or file is None:
            return
        self._part, self._file = None, None
        try:
            rows = part.close()
            self.counts.add(part.counts)
            file.seek(0)
            digest = _sha256(file)
            file.seek(0)
            self._upload(self.parts, file, rows, digest)
            self.parts += 1
        finally:
            file.close()

    def close(self) -> int:
        """Finish the last part; return how many parts were uploaded."""
        self._finish()
        return self.parts

    def abandon(self) -> None:
        """Drop a part in progress (after an error) without uploading it."""
        if self._file is not None:
            self._file.close()
        self._part, self._file = None, None


def _sha256(file: IO[bytes]) -> str:
    digest = hashlib.sha256()
    for block in iter(lambda: file.read(1 << 20), b""):
        digest.update(block)
    return digest.hexdigest()


def describe(fmt: str) -> dict[str, Any]:
    """Content headers for a part of ``fmt`` (``parquet`` or ``ndjson``)."""
    if fmt == "parquet":
        return {"ContentType": "application/vnd.apache.parquet"}
    return {"ContentType": "application/x-ndjson", "ContentEncoding": "gzip"}
