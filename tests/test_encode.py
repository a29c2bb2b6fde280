"""Encoding: one JSON line per payload, non-JSON values, failures, and body compression."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import decimal
import enum
import gzip
import uuid
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s3_log_handler._encode import EncodeError, json_line, make_codec

#: JSON-native payloads (ints inside orjson's 64-bit range).
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=30,
)


class Color(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


@dataclasses.dataclass
class Point:
    x: int
    when: dt.date


class Model:
    """Quacks like a pydantic v2 model."""

    def model_dump(self, mode: str = "python") -> dict[str, Any]:
        return {"mode": mode, "n": 1}


class Opaque:
    def __str__(self) -> str:
        return "opaque!"


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no str for you")


def decoded(payload: object) -> Any:
    """The JSON value ``json_line`` produces for ``payload``."""
    return orjson.loads(json_line(payload).body)


class TestJsonLine:
    @settings(max_examples=200, deadline=None)
    @given(st.dictionaries(st.text(), JSON_VALUES, max_size=8))
    def test_json_payload_is_byte_identical_to_orjson(self, payload: dict[str, Any]) -> None:
        """A JSON-native payload is exactly ``orjson.dumps(payload) + b"\\n"``, nothing counted."""
        line = json_line(payload)
        assert line.body == orjson.dumps(payload) + b"\n"
        assert line.fallbacks == 0

    @settings(max_examples=200, deadline=None)
    @given(JSON_VALUES)
    def test_output_is_exactly_one_line(self, payload: object) -> None:
        """The body is one line ending in a newline (Athena's SerDe reads one object a line)."""
        body = json_line(payload).body
        assert body.endswith(b"\n")
        assert body.count(b"\n") == 1
        assert orjson.loads(body) == payload

    def test_body_is_a_snapshot(self) -> None:
        """Mutating the payload after serialising changes nothing already serialised."""
        payload: dict[str, Any] = {"session_id": "s", "events": [1, 2]}
        line = json_line(payload)
        payload["events"].append(3)
        payload["session_id"] = "changed"
        assert orjson.loads(line.body) == {"session_id": "s", "events": [1, 2]}

    @pytest.mark.parametrize(("value", "expected"), [
        (dt.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC), "2024-01-02T03:04:05.000006+00:00"),
        (dt.datetime(2024, 1, 2, 3, 4, 5), "2024-01-02T03:04:05"),
        (dt.date(2024, 1, 2), "2024-01-02"),
        (dt.time(13, 14, 15), "13:14:15"),
        (decimal.Decimal("1.5"), 1.5),
        (decimal.Decimal("NaN"), "NaN"),
        (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
        (Color.RED, "red"),
        (Level.HIGH, 3),
        ({"b", "a", "c"}, ["a", "b", "c"]),
        (frozenset({2, 1}), [1, 2]),
        (b"\x00\xffbin", base64.b64encode(b"\x00\xffbin").decode()),
        (bytearray(b"ab"), "YWI="),
        (memoryview(b"ab"), "YWI="),
        (Point(1, dt.date(2024, 1, 2)), {"x": 1, "when": "2024-01-02"}),
        (Model(), {"mode": "json", "n": 1}),
    ], ids=lambda v: type(v).__name__)
    def test_known_non_json_values_are_encoded(self, value: object, expected: object) -> None:
        """Each supported non-JSON type has a JSON form and is not counted as a fallback."""
        line = json_line({"v": value})
        assert orjson.loads(line.body) == {"v": expected}
        assert line.fallbacks == 0

    def test_unknown_objects_fall_back_to_str_and_are_counted(self) -> None:
        """Anything else is written as ``str(value)``, each occurrence counted."""
        line = json_line({"a": Opaque(), "nested": [Opaque(), {"x": 1}]})
        assert orjson.loads(line.body) == {"a": "opaque!", "nested": ["opaque!", {"x": 1}]}
        assert line.fallbacks == 2

    def test_non_string_keys_become_strings(self) -> None:
        """Dict keys that are not strings are written as strings rather than failing."""
        assert decoded({1: "a", uuid.UUID(int=2): "b"}) == {
            "1": "a", "00000000-0000-0000-0000-000000000002": "b"}

    def test_cycle_raises_encode_error(self) -> None:
        """A self-referencing payload raises EncodeError (the handler turns it into a count)."""
        cyclic: dict[str, Any] = {"session_id": "c"}
        cyclic["self"] = cyclic
        with pytest.raises(EncodeError):
            json_line(cyclic)

    def test_failing_str_raises_encode_error(self) -> None:
        """An object whose ``str()`` raises is an encoder failure, not a crash of another kind."""
        with pytest.raises(EncodeError):
            json_line({"bad": Unprintable()})


class TestCodec:
    def test_gzip_round_trips_and_names_itself(self) -> None:
        """gzip bodies decompress to the input; extension .gz and Content-Encoding gzip."""
        codec = make_codec("gzip")
        body = b'{"a":1}\n' * 100
        assert gzip.decompress(codec.compress(body)) == body
        assert (codec.suffix, codec.content_encoding) == (".gz", "gzip")

    def test_gzip_is_deterministic(self) -> None:
        """Equal input gives equal bytes (no timestamp in the header), so re-sends are identical."""
        codec = make_codec("gzip")
        assert codec.compress(b"same\n") == codec.compress(b"same\n")

    def test_zstd_round_trips(self) -> None:
        """zstd bodies decompress to the input; extension .zst."""
        zstandard = pytest.importorskip("zstandard")
        codec = make_codec("zstd")
        body = b'{"a":1}\n' * 100
        assert zstandard.ZstdDecompressor().decompress(codec.compress(body)) == body
        assert codec.suffix == ".zst"

    def test_none_leaves_the_body_alone(self) -> None:
        """compression='none' stores the JSON as is, with no Content-Encoding."""
        codec = make_codec("none")
        assert codec.compress(b"x\n") == b"x\n"
        assert (codec.suffix, codec.content_encoding) == ("", None)

    def test_unknown_compression_is_refused(self) -> None:
        """An unknown codec name raises ValueError naming the choices."""
        with pytest.raises(ValueError, match="gzip"):
            make_codec("lz4")
