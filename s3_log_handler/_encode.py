"""Serialisation of payloads into JSON lines, and the compressors for object bodies.

Pure functions: the caller's thread runs :func:`json_line`; worker threads run compressors.
"""

from __future__ import annotations

import gzip
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from ._plain import EncodeError, NoJsonForm, json_form, to_plain

try:  # libdeflate: one standard gzip member, ~2x zlib's speed at the same ratio, GIL released
    import deflate as _libdeflate
except ImportError:  # pragma: no cover - a platform without the wheel
    _libdeflate = None  # type: ignore[assignment]

__all__ = ["Codec", "EncodeError", "JsonLine", "json_line", "make_codec", "plain_line"]

_FAST = orjson.OPT_APPEND_NEWLINE
_OPTIONS = orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def _lenient(fallbacks: list[str]) -> Callable[[Any], Any]:
    def default(value: Any) -> Any:
        try:
            return json_form(value)
        except NoJsonForm:
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
    """Serialise ``payload`` to one line of compact JSON plus ``\\n``, always valid UTF-8.

    Encodes datetime/date/time (ISO 8601), Decimal, UUID, Enum, set/frozenset, bytes
    (base64), dataclasses, NamedTuples (as objects), mappings and objects with
    ``model_dump()``; anything else becomes ``str(value)``, and a lone surrogate in a string
    becomes U+FFFD: each counted in ``fallbacks``. Raises :class:`EncodeError` for cycles
    and encoder failures. The result is a snapshot: later mutation of ``payload`` does not
    change it.
    """
    try:
        # Fast path: no closure to build and no key conversion.
        return JsonLine(_right_sized(orjson.dumps(payload, default=json_form, option=_FAST)), 0)
    except TypeError:
        pass  # a value without a known JSON form, a non-str key, or a cycle: go slow
    fallbacks: list[str] = []
    try:
        body = orjson.dumps(payload, default=_lenient(fallbacks), option=_OPTIONS)
    except TypeError:
        # A lone surrogate, an integer beyond 64 bits, a cycle, an odd key, a str() that
        # raises: convert in Python (raises EncodeError for what has no JSON form at all).
        plain = to_plain(payload, fail_closed=False)
        return JsonLine(_right_sized(plain_line(plain.value)), plain.fallbacks)
    return JsonLine(_right_sized(body), len(fallbacks))


def plain_line(value: object) -> bytes:
    """One JSON line of a value made only of JSON types (see :func:`to_plain`)."""
    try:
        return orjson.dumps(value, option=_FAST)
    except TypeError:  # integers beyond 64 bits, or nesting deeper than orjson's limit
        try:
            text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        except Exception as exc:  # nesting deeper than the interpreter allows
            msg = f"payload is not JSON-serialisable: {exc}"
            raise EncodeError(msg) from exc
        return text.encode("utf-8") + b"\n"


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
    #: Builds an object's body from its key and records when the body depends on the
    #: partition (Parquet's pinned schema), with counters for the ledger; else ``compress``.
    for_key: Callable[[str, bytes], tuple[bytes, dict[str, int]]] | None = None


#: gzip's default level. libdeflate's 5 compresses session records as well as zlib's 6
#: (0.99x its ratio) at 2.5x its speed; its 6 gains 2% for 30% more CPU (bench section 3).
DEFAULT_GZIP_LEVEL = 5
_fallback_reported = False


def gzip_engine() -> str:
    """Which library compresses gzip here: ``libdeflate`` or, without its wheel, ``zlib``."""
    return "zlib" if _libdeflate is None else "libdeflate"


def make_codec(name: str, level: int | None = None) -> Codec:
    """The codec for ``name`` (``gzip``, ``zstd`` or ``none``).

    gzip is one standard gzip member (``mtime`` 0) made by libdeflate (PyPI ``deflate``), or
    by zlib with one INFO line where that wheel cannot be imported; ``level`` 0-9 means the
    same on both (default :data:`DEFAULT_GZIP_LEVEL`). zstd's level defaults to 3. Raises
    ``ValueError`` for an unknown name and ``ImportError`` (with the extra to install) when
    zstd is asked for without the ``zstandard`` package.
    """
    if name == "gzip":
        gzip_level = DEFAULT_GZIP_LEVEL if level is None else level
        if _libdeflate is not None:
            libdeflate = _libdeflate

            def compress_gzip(body: bytes) -> bytes:
                return bytes(libdeflate.gzip_compress(body, gzip_level))

            return Codec("gzip", compress_gzip, ".gz", "gzip")
        _report_fallback()
        return Codec("gzip", lambda b: gzip.compress(b, gzip_level, mtime=0), ".gz", "gzip")
    if name == "zstd":
        try:
            import zstandard
        except ImportError as exc:  # pragma: no cover - exercised only without the extra
            msg = "compression='zstd' needs zstandard: pip install 's3-analytics-handler[zstd]'"
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


def _report_fallback() -> None:
    global _fallback_reported  # once per process, whatever the handler count
    if not _fallback_reported:
        _fallback_reported = True
        logging.getLogger("s3_log_handler").info(
            "libdeflate (PyPI 'deflate') cannot be imported on this platform; gzip uses zlib "
            "(same output format, about half the speed)")
