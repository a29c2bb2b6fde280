"""The spool's line format: one record per line, ``<header json>\\t<body json>\\n``.

Pure functions over bytes. The header holds the object key (object mode), the sanitised id
and the record's creation time; the body is the record's JSON line as it will be uploaded.
orjson escapes tabs and newlines inside strings, so neither can occur unescaped in a line.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import orjson

from ._records import Entry


def encode_line(entry: Entry) -> bytes:
    """One spool line for ``entry`` (the body already ends in ``\\n`` and holds no tab)."""
    header = orjson.dumps({"k": entry.key, "i": entry.record_id, "t": entry.created})
    return header + b"\t" + entry.body


def decode_lines(data: bytes) -> Iterator[tuple[int, Entry | None]]:
    """Parse a segment's bytes into ``(index, entry)``; ``entry`` is ``None`` for a torn line."""
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    last = len(lines) - 1
    for index, line in enumerate(lines):
        header, sep, body = line.partition(b"\t")
        meta = _header(header) if sep and (index < last or data.endswith(b"\n")) else None
        if meta is None:
            yield index, None
            continue
        key = meta["k"]
        yield index, Entry(body + b"\n", float(meta["t"]), str(meta["i"]),
                           key if isinstance(key, str) else None)


def _header(raw: bytes) -> dict[str, Any] | None:
    try:
        meta = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(meta, dict) or not {"t", "i", "k"} <= meta.keys():
        return None
    created = meta["t"]
    valid = isinstance(created, int | float) and math.isfinite(created)
    return meta if valid else None


def without_lines(data: bytes, indices: set[int]) -> bytes:
    """A segment's bytes with the lines numbered ``indices`` left out; a torn last line (no
    final newline) is kept as it is, so line numbers of the rest stay meaningful."""
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" after a final newline, else the torn last line
    return b"".join(line + b"\n" for i, line in enumerate(lines) if i not in indices) + tail
