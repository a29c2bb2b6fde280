"""Serialisation of payloads into JSON lines, and the compressors for object bodies.

Pure functions: the caller's thread runs :func:`json_line`; worker threads run compressors.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import decimal
import enum
import gzip
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

_FAST = orjson.OPT_APPEND_NEWLINE
_OPTIONS = orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


class EncodeError(ValueError):
    """The payload cannot be represented as JSON (a cycle, or an encoder failure)."""


class _NoJsonForm(TypeError):
    """Raised by the strict encoder for a value it has no JSON form for."""


def _json_form(value: Any) -> Any:
    """The JSON form of a known non-JSON type; raises :class:`_NoJsonForm` otherwise."""
    if isinstance(value, dt.date | dt.time):  # datetime is a date
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return _decimal_json(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    model_dump = getattr(value, "model_dump", None)
    if callable(model_dump):
        try:
            return model_dump(mode="json")
        except TypeError:  # a model_dump() without pydantic's mode= keyword
            return model_dump()
    raise _NoJsonForm(type(value).__name__)


def _lenient(fallbacks: list[str]) -> Callable[[Any], Any]:
    def default(value: Any) -> Any:
        try:
            return _json_form(value)
        except _NoJsonForm:
            fallbacks.append(type(value).__name__)
            return str(value)

    return default


@dataclass(frozen=True, slots=True)
class JsonLine:
    """One payload serialised as a single JSON line ending in ``\\n``.

    ``fallbacks`` counts values that had no JSON form and were written as ``str(value)``.
    """

    body: bytes
    fallbacks: int


def json_line(payload: object) -> JsonLine:
    """Serialise ``payload`` to one line of compact JSON plus ``\\n``.

    Encodes datetime/date/time (ISO 8601), Decimal, UUID, Enum, set/frozenset, bytes
    (base64), dataclasses and objects with ``model_dump()``; anything else becomes
    ``str(value)`` and is counted in ``fallbacks``. Raises :class:`EncodeError` for cycles
    and encoder failures. The result is a snapshot: later mutation of ``payload`` does not
    change it.
    """
    try:
        # Fast path: no closure to build and no key conversion.
        return JsonLine(_right_sized(orjson.dumps(payload, default=_json_form, option=_FAST)), 0)
    except TypeError:
        pass  # a value without a known JSON form, a non-str key, or a cycle: go slow
    fallbacks: list[str] = []
    try:
        body = orjson.dumps(payload, default=_lenient(fallbacks), option=_OPTIONS)
    except TypeError:
        # orjson refuses integers beyond 64 bits before any hook runs; the stdlib does not.
        fallbacks.clear()
        body = _stdlib_line(payload, _lenient(fallbacks))
    return JsonLine(_right_sized(body), len(fallbacks))


def _stdlib_line(payload: object, default: Callable[[Any], Any]) -> bytes:
    try:
        text = json.dumps(payload, default=default, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False)
    except Exception as exc:  # cycles, NaN, a default() whose str() raises: all encoder failures
        msg = f"payload is not JSON-serialisable: {exc}"
        raise EncodeError(msg) from exc
    return text.encode("utf-8", "surrogatepass") + b"\n"


def _decimal_json(value: decimal.Decimal) -> float | str:
    """A JSON number when the float is exact, else the decimal's string (no silent rounding)."""
    if value.is_finite():
        as_float = float(value)
        if decimal.Decimal(repr(as_float)) == value:
            return as_float
    return str(value)


def _right_sized(body: bytes) -> bytes:
    # orjson >= 3.12 returns bytes whose allocation is never trimmed (at least 4 KiB, else
    # the next power of two): a queue of small records would pin many times the bytes that
    # max_queue_bytes counts. A copy is ~0.2 us (see home-assistant/core#181245).
    return bytes(memoryview(body))


@dataclass(frozen=True, slots=True)
class Codec:
    """How object bodies are compressed: the function, the file extension, the header."""

    name: str
    compress: Callable[[bytes], bytes]
    suffix: str
    content_encoding: str | None


def make_codec(name: str, level: int | None = None) -> Codec:
    """The codec for ``name`` (``gzip``, ``zstd`` or ``none``).

    ``level`` defaults to 6 for gzip and 3 for zstd. Raises ``ValueError`` for an unknown
    name and ``ImportError`` (with the extra to install) when zstd is asked for without
    the ``zstandard`` package.
    """
    if name == "gzip":
        gzip_level = 6 if level is None else level
        return Codec("gzip", lambda b: gzip.compress(b, gzip_level, mtime=0), ".gz", "gzip")
    if name == "zstd":
        try:
            import zstandard
        except ImportError as exc:  # pragma: no cover - exercised only without the extra
            msg = "compression='zstd' needs zstandard: pip install 's3_log_handler[zstd]'"
            raise ImportError(msg) from exc
        zstd_level = 3 if level is None else level

        def compress_zstd(body: bytes) -> bytes:
            # A ZstdCompressor must not be shared between threads, and workers run in parallel.
            return bytes(zstandard.ZstdCompressor(level=zstd_level).compress(body))

        return Codec("zstd", compress_zstd, ".zst", "zstd")
    if name == "none":
        return Codec("none", bytes, "", None)
    msg = f"unknown compression {name!r}; use 'gzip', 'zstd' or 'none'"
    raise ValueError(msg)
