"""What ``compact`` reads: a day's objects under a prefix, found by Hive partitions.

Sources are object-mode ``.json.gz`` (or ``.json``) and batch ``.ndjson`` / ``.ndjson.gz``
/ ``.ndjson.zst`` objects, in any mix, under ``PREFIX/[name=value/...]year=YYYY/month=MM/
day=DD[/name=value...]/``. Listing walks the partition folders with a delimiter, so only
the asked day's folders are listed in full, not the whole prefix.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

from ._encode import plain_line

#: File names compaction reads, and the codec each ending implies.
SOURCE_ENDINGS = {".json.gz": "gzip", ".ndjson.gz": "gzip", ".ndjson.zst": "zstd",
                  ".json": "none", ".ndjson": "none"}
_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*=[^/]*")


@dataclass(frozen=True, slots=True)
class Source:
    """One object to compact: its key, size, ETag and partition folder below the prefix.

    ``folder`` is e.g. ``tenant=a/year=2025/month=11/day=01`` (no slashes at either end).
    """

    key: str
    size: int
    etag: str
    folder: str

    @property
    def codec(self) -> str:
        """``gzip``, ``zstd`` or ``none``, from the key's ending."""
        return next((c for end, c in SOURCE_ENDINGS.items() if self.key.endswith(end)), "none")


def is_source_name(name: str) -> bool:
    """True for a file name compaction reads (not hidden, a known ending)."""
    return not name.startswith(("_", ".")) and name.endswith(tuple(SOURCE_ENDINGS))


def day_segments(day: date) -> tuple[str, str, str]:
    """``('year=2025', 'month=11', 'day=01')`` for ``day``."""
    return f"year={day.year:04d}", f"month={day.month:02d}", f"day={day.day:02d}"


def list_sources(s3: Any, bucket: str, prefix: str, day: date) -> list[Source]:
    """Every source object of ``day`` under ``prefix``, sorted by key.

    ``name=value`` folders before ``year=`` are walked one level at a time; below
    ``day=DD`` everything is listed (further ``name=value`` folders included). Folders
    that are not partitions (a ``compacted`` folder under the prefix, say) are skipped.
    """
    return list_day_objects(s3, bucket, prefix, day, is_source_name)


def list_day_objects(s3: Any, bucket: str, prefix: str, day: date,
                     accept: Callable[[str], bool]) -> list[Source]:
    """Like :func:`list_sources` for the objects whose file name ``accept`` takes."""
    base = f"{prefix}/" if prefix else ""
    found = [s for folder in _day_folders(s3, bucket, base, day)
             for s in _objects(s3, bucket, base, folder, accept)]
    return sorted(found, key=lambda s: s.key)


def _day_folders(s3: Any, bucket: str, base: str, day: date) -> Iterator[str]:
    year, month, dday = day_segments(day)
    for sub in _subfolders(s3, bucket, base):
        segment = sub[len(base):].rstrip("/")
        if segment == year:
            yield f"{sub}{month}/{dday}/"
        elif not segment.startswith("year=") and _SEGMENT.fullmatch(segment):
            yield from _day_folders(s3, bucket, sub, day)


def _subfolders(s3: Any, bucket: str, base: str) -> Iterator[str]:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=base,
                                                             Delimiter="/"):
        for common in page.get("CommonPrefixes", []):
            yield common["Prefix"]


def _objects(s3: Any, bucket: str, base: str, folder: str,
             accept: Callable[[str], bool]) -> Iterator[Source]:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=folder):
        for item in page.get("Contents", []):
            key = item["Key"]
            parent, _, name = key.rpartition("/")
            below_day = parent[len(folder):].split("/") if parent + "/" != folder else []
            if accept(name) and all(_SEGMENT.fullmatch(s) for s in below_day):
                yield Source(key, int(item["Size"]), item["ETag"].strip('"'),
                             parent[len(base):])


def read_lines(s3: Any, bucket: str, source: Source) -> list[bytes]:
    """The JSON lines of one source object, each ending in ``\\n`` (blank lines dropped)."""
    body = s3.get_object(Bucket=bucket, Key=source.key)["Body"].read()
    return split_lines(decompress(body, source.codec))


def decompress(body: bytes, codec: str) -> bytes:
    """``body`` decompressed by ``codec`` (``gzip``, ``zstd`` or ``none``)."""
    if codec == "gzip":
        return gzip.decompress(body)
    if codec == "zstd":
        try:
            import zstandard
        except ImportError as exc:  # pragma: no cover - exercised only without the extra
            msg = "reading .zst objects needs zstandard: pip install 's3-analytics-handler[zstd]'"
            raise ImportError(msg) from exc
        return bytes(zstandard.ZstdDecompressor().decompressobj().decompress(body))
    return body


def split_lines(text: bytes) -> list[bytes]:
    """Non-blank lines of ``text``, each ending in ``\\n``."""
    return [line + b"\n" for line in text.split(b"\n") if line.strip()]


def part_lines(s3: Any, bucket: str, key: str) -> Iterator[list[bytes]]:
    """The JSON lines of a compacted part, in chunks (Parquet: per 10,000 rows, with
    ``extra_json`` merged back; NDJSON: all at once)."""
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    if not key.endswith(".parquet"):
        yield split_lines(decompress(body, "gzip"))
        return
    from ._parquet import records, require_pyarrow

    pa = require_pyarrow()
    reader = pa.parquet.ParquetFile(pa.BufferReader(body))
    for batch in reader.iter_batches(batch_size=10_000):
        yield [plain_line(r) for r in records(pa.Table.from_batches([batch]))]


def count_rows(key: str, body: bytes) -> int:
    """Rows in a part's body: the Parquet footer's count, or NDJSON lines."""
    if key.endswith(".parquet"):
        from ._parquet import require_pyarrow

        pa = require_pyarrow()
        return int(pa.parquet.ParquetFile(pa.BufferReader(body)).metadata.num_rows)
    return len(split_lines(decompress(body, "gzip")))
