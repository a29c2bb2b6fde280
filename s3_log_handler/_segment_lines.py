"""The spool's line format: one record per line, ``<header json>\\t<body json>\\n``.

A segment may start with one settings line, ``#<json>\\n``, written before the segment
is visible: the put settings in force when its records were written (never secrets), so
whoever uploads them later can check it does so with the same protection. Record lines are
numbered from 0 after it.

Pure functions over bytes. The header holds the object key (object mode), the sanitised id
and the record's creation time; the body is the record's JSON line as it will be uploaded.
orjson escapes tabs and newlines inside strings, so neither can occur unescaped in a line.

With a spool HMAC key the header also holds ``"h"``: HMAC-SHA256 (hex) over the key, id,
time and body, so a line changed or written by anyone without the key is detected when it is
read back (reason ``tampered``).
"""

from __future__ import annotations

import hmac
import math
from collections.abc import Container, Iterator, Mapping
from typing import Any

import orjson

from ._records import Entry

TORN_WRITE = "torn_write"
#: What the first line of a segment starts with when it records settings.
SETTINGS_MARK = b"#"
TAMPERED = "tampered"
#: Bytes hashed per call, so hashing never releases the GIL (see :func:`line_mac`).
_PIECE = 2000
#: One decoded line: its index, its record (``None`` when torn) and what is wrong with it.
Line = tuple[int, Entry | None, str | None]


def encode_line(entry: Entry, mac_key: bytes | None = None) -> bytes:
    """One spool line for ``entry`` (the body already ends in ``\\n`` and holds no tab),
    carrying an HMAC when ``mac_key`` is given."""
    if mac_key is None:
        header = orjson.dumps({"k": entry.key, "i": entry.record_id, "t": entry.created})
    else:
        mac = line_mac(mac_key, entry.key, entry.record_id, entry.created, entry.body)
        header = orjson.dumps({"k": entry.key, "i": entry.record_id, "t": entry.created,
                               "h": mac})
    return header + b"\t" + entry.body


def line_mac(mac_key: bytes, key: object, record_id: object, created: object,
             body: bytes) -> str:
    """The HMAC a line with these header values and ``body`` (ending in ``\\n``) carries.

    Fed in pieces below hashlib's 2,047-byte threshold for releasing the GIL: on the
    caller's thread a release hands the GIL to a busy upload thread, and getting it back
    can take a whole switch interval (measured: p99 5 ms instead of 60 µs)."""
    mac = hmac.new(mac_key, orjson.dumps([key, record_id, created]) + b"\t", "sha256")
    view = memoryview(body)
    for start in range(0, len(view), _PIECE):
        mac.update(view[start:start + _PIECE])
    return mac.hexdigest()


def decode_lines(data: bytes) -> Iterator[tuple[int, Entry | None]]:
    """Parse a segment's bytes into ``(index, entry)``; ``entry`` is ``None`` for a torn line."""
    for index, entry, problem in check_lines(data):
        yield index, None if problem else entry


def check_lines(data: bytes, mac_key: bytes | None = None) -> Iterator[Line]:
    """Parse a segment's bytes into ``(index, entry, problem)``: ``problem`` is ``None``,
    :data:`TORN_WRITE` (``entry`` is ``None``) or, with ``mac_key``, :data:`TAMPERED` for a
    line whose HMAC is missing or wrong (``entry`` holds what the line says)."""
    _, data = split_settings(data)
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    last = len(lines) - 1
    for index, line in enumerate(lines):
        header, sep, body = line.partition(b"\t")
        meta = _header(header) if sep and (index < last or data.endswith(b"\n")) else None
        if meta is None:
            yield index, None, TORN_WRITE
            continue
        key = meta["k"]
        entry = Entry(body + b"\n", float(meta["t"]), str(meta["i"]),
                      key if isinstance(key, str) else None)
        problem = None
        if mac_key is not None and not _mac_matches(mac_key, meta, entry.body):
            problem = TAMPERED
        yield index, entry, problem


def _mac_matches(mac_key: bytes, meta: dict[str, Any], body: bytes) -> bool:
    found = meta.get("h")
    if not isinstance(found, str):
        return False
    expected = line_mac(mac_key, meta["k"], meta["i"], meta["t"], body)
    return hmac.compare_digest(found.encode("utf-8", "replace"), expected.encode("ascii"))


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


def without_lines(data: bytes, indices: Container[int]) -> bytes:
    """A segment's bytes with the record lines numbered ``indices`` left out (its settings
    line kept); a torn last line (no final newline) is kept as it is, so line numbers of the
    rest stay meaningful."""
    settings = b""
    if data.startswith(SETTINGS_MARK):
        end = data.find(b"\n") + 1 or len(data)
        settings, data = data[:end], data[end:]
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" after a final newline, else the torn last line
    return settings + b"".join(
        line + b"\n" for i, line in enumerate(lines) if i not in indices) + tail


def settings_line(settings: Mapping[str, str]) -> bytes:
    """The first line of a new segment: the put ``settings`` its records are written with."""
    return SETTINGS_MARK + orjson.dumps({"v": 1, "put": dict(settings)}) + b"\n"


def split_settings(data: bytes) -> tuple[dict[str, str] | None, bytes]:
    """The put settings a segment's first line records (``None`` when it has no settings
    line: written by an older version) and the bytes of its record lines."""
    if not data.startswith(SETTINGS_MARK):
        return None, data
    raw, _, rest = data.partition(b"\n")
    try:
        meta = orjson.loads(raw[len(SETTINGS_MARK):])
    except orjson.JSONDecodeError:
        meta = None
    put = meta.get("put") if isinstance(meta, dict) else None
    if not isinstance(put, dict):
        return {}, rest
    return {str(k): str(v) for k, v in put.items() if v}, rest
