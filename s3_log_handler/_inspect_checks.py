"""The red flags ``inspect`` looks for, as pure functions of a key or an object's bytes.

Key checks (every listed object): a path segment below the prefix that Hive-style readers hide
(it starts with ``_`` or ``.``: Athena, Spark and DuckDB skip such files and folders) and an
object outside any date partition (no ``year=``/``month=``/``day=`` folders forming a date).
Body checks (a sample): the object is not one JSON object per line (what both Athena JSON
SerDes need), or a record misses ``session_id``, has empty ``discovered_signals`` or a null
``duration_seconds`` (the plan's data-validation red flags).
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Callable
from datetime import date
from typing import Any

#: Flag names, as they appear in text and ``--json`` output.
HIDDEN = "hidden_by_hive"
OUTSIDE_PARTITION = "outside_partition"
NOT_JSON_LINES = "not_json_lines"
MISSING_SESSION_ID = "missing_session_id"
EMPTY_SIGNALS = "empty_discovered_signals"
NULL_DURATION = "null_duration_seconds"

#: The plan's data-validation red flags: (flag, what is wrong, the test of one record).
_RECORD_CHECKS: tuple[tuple[str, str, Callable[[dict[str, Any]], bool]], ...] = (
    (MISSING_SESSION_ID, "session_id missing or empty",
     lambda r: r.get("session_id") in (None, "")),
    (EMPTY_SIGNALS, "discovered_signals missing or empty",
     lambda r: not r.get("discovered_signals")),
    (NULL_DURATION, "duration_seconds missing or null",
     lambda r: r.get("duration_seconds") is None),
)


class Unreadable(Exception):
    """An object whose body ``inspect`` cannot check here (e.g. zstd without zstandard)."""


def relative_segments(key: str, prefix: str) -> list[str]:
    """The ``/``-separated segments of ``key`` below ``prefix`` (the file name last)."""
    rest = key[len(prefix) + 1:] if prefix else key
    return rest.split("/")


def partition_date(key: str, prefix: str) -> date | None:
    """The date of the partition ``key`` lies in, or None when it lies outside any.

    Every folder below the prefix must be a ``name=value`` segment (extra ones such as
    ``env=prod/`` or ``hour=07/`` are fine) and ``year``, ``month`` and ``day`` must be among
    them and form a real date.
    """
    folders = relative_segments(key, prefix)[:-1]
    values: dict[str, str] = {}
    for folder in folders:
        name, sep, value = folder.partition("=")
        if not sep or not name or not value:
            return None
        values[name] = value
    try:
        return date(int(values["year"]), int(values["month"]), int(values["day"]))
    except (KeyError, ValueError):
        return None


def key_flags(key: str, prefix: str) -> list[tuple[str, str]]:
    """``(flag, detail)`` for what is wrong with ``key`` itself (empty when nothing)."""
    flags = []
    hidden = [s for s in relative_segments(key, prefix) if s[:1] in ("_", ".")]
    if hidden:
        flags.append((HIDDEN, f"segment {hidden[0]!r} starts with '_' or '.': Athena, Spark "
                              "and DuckDB skip it"))
    if partition_date(key, prefix) is None:
        flags.append((OUTSIDE_PARTITION, "not under year=/month=/day= folders forming a date"))
    return flags


def decompress(key: str, body: bytes) -> bytes:
    """``body`` decompressed as its extension says: ``.gz`` gzip, ``.zst`` zstd, else as is.

    Raises :class:`Unreadable` for zstd without the zstandard package and for ``.parquet``
    (a columnar file is not checked line by line), ``ValueError`` for a corrupt body.
    """
    name = key.rsplit("/", 1)[-1]
    if name.endswith(".parquet"):
        raise Unreadable("Parquet objects are not checked line by line")
    if name.endswith(".gz"):
        try:
            return gzip.decompress(body)
        except (OSError, EOFError, zlib.error) as exc:
            msg = f"the .gz body is not valid gzip ({exc})"
            raise ValueError(msg) from exc
    if name.endswith(".zst"):
        try:
            import zstandard
        except ImportError as exc:
            msg = "a .zst body needs zstandard: pip install 's3-analytics-handler[zstd]'"
            raise Unreadable(msg) from exc
        try:
            data: bytes = zstandard.ZstdDecompressor().decompressobj().decompress(body)
        except zstandard.ZstdError as exc:
            msg = f"the .zst body is not valid zstd ({exc})"
            raise ValueError(msg) from exc
        return data
    return body


def body_flags(key: str, body: bytes) -> list[tuple[str, str]]:
    """``(flag, detail)`` for what is wrong with the records in one object's bytes.

    Raises :class:`Unreadable` when the body cannot be checked here.
    """
    try:
        text = decompress(key, body)
    except ValueError as exc:
        return [(NOT_JSON_LINES, str(exc))]
    lines = text.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if not lines:
        return [(NOT_JSON_LINES, "the object is empty")]
    records: list[dict[str, Any]] = []
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except ValueError:
            return [(NOT_JSON_LINES, f"line {number} is not a JSON document (pretty-printed "
                                     "JSON or a concatenation fails Athena's JSON SerDe)")]
        if not isinstance(record, dict):
            return [(NOT_JSON_LINES, f"line {number} is a JSON {type(record).__name__}, "
                                     "not an object")]
        records.append(record)
    return record_flags(records)


def record_flags(records: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The plan's red flags over the records of one object, each with how many records."""
    flags = []
    for flag, what, bad in _RECORD_CHECKS:
        lines = [n for n, record in enumerate(records, 1) if bad(record)]
        if lines:
            flags.append((flag, f"{what} in {len(lines)} of {len(records)} record(s) "
                                f"(first at line {lines[0]})"))
    return flags
