"""Encoding: one JSON line per payload, non-JSON values, failures, and body compression."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import decimal
import enum
import gzip
import types
import uuid
from typing import Any, NamedTuple

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s3_log_handler._encode import EncodeError, json_line, make_codec
from s3_log_handler._plain import _DROP, Plain, _Walk, to_plain, valid_text

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


class Pair(NamedTuple):
    session_id: str
    n: int


class FloatLike(float):
    pass


class TupleLike(tuple):  # type: ignore[type-arg]
    pass


#: Text around and inside the surrogate range, mixed with ASCII.
SURROGATE_TEXT = st.text(st.characters(min_codepoint=0xD7F0, max_codepoint=0xE010)
                         | st.characters(max_codepoint=0x7F), max_size=6)


class TestValidUtf8:
    @settings(max_examples=200, deadline=None)
    @given(st.dictionaries(SURROGATE_TEXT, SURROGATE_TEXT, max_size=4))
    def test_any_text_gives_valid_utf8(self, payload: dict[str, str]) -> None:
        """Whatever code points a payload's strings hold, the line decodes as strict UTF-8;
        each lone surrogate becomes U+FFFD and is counted."""
        line = json_line(payload)
        decoded_line = orjson.loads(line.body.decode("utf-8", "strict"))
        lone = sum(valid_text(text)[1] for item in payload.items() for text in item)
        assert line.fallbacks == lone
        assert len(decoded_line) <= len(payload)

    def test_a_lone_surrogate_becomes_replacement_and_pairs_are_joined(self) -> None:
        """'\\ud800' -> U+FFFD (counted); a surrogate pair becomes its character."""
        line = json_line({"a": "x\ud800y", "b": "\ud83d\ude00", "\udcff": 1})
        assert orjson.loads(line.body) == {"a": "x\ufffdy", "b": "\U0001f600", "\ufffd": 1}
        assert line.fallbacks == 2

    def test_surrogates_with_huge_integers_and_odd_keys(self) -> None:
        """The slow path handles all three at once (stdlib for the >64-bit integer)."""
        line = json_line({"big": 2**70, "t": "\ud800", (1, 2): "tuple key"})
        assert orjson.loads(line.body) == {"big": 2**70, "t": "\ufffd", "(1, 2)": "tuple key"}
        assert line.fallbacks == 2  # the surrogate and the key without a JSON form


class TestObjects:
    def test_namedtuple_and_mapping_payloads_are_objects(self) -> None:
        """A NamedTuple is its fields by name; any Mapping is an object."""
        assert decoded(Pair("s1", 2)) == {"session_id": "s1", "n": 2}
        assert decoded(types.MappingProxyType({"a": 1})) == {"a": 1}
        assert decoded({"p": [Pair("s", 1)]}) == {"p": [{"session_id": "s", "n": 1}]}


class TestToPlain:
    def test_keys_become_what_orjson_writes(self) -> None:
        """Enum, int, float, bool, None, date and UUID keys: the strings orjson would write."""
        payload = {Color.RED: 1, 5: 2, 1.5: 3, True: 4, None: 5, dt.date(2024, 1, 2): 6,
                   uuid.UUID(int=3): 7}
        plain = to_plain(payload, fail_closed=True)
        assert plain.value == orjson.loads(orjson.dumps(payload,
                                                        option=orjson.OPT_NON_STR_KEYS))
        assert plain.fallbacks == 0

    def test_json_forms_match_the_encoder(self) -> None:
        """What to_plain gives serialises to the same JSON as json_line of the original."""
        payload = {"p": Point(1, dt.date(2024, 1, 2)), "m": Model(), "c": Color.RED,
                   "l": Level.HIGH, "d": decimal.Decimal("1.5"), "s": {"b", "a"},
                   "nan": float("nan"), "t": (1, 2), "nt": Pair("x", 1), "b": b"ab"}
        plain = to_plain(payload, fail_closed=True)
        assert orjson.loads(orjson.dumps(plain.value)) == decoded(payload)

    def test_fail_closed_drops_what_has_no_json_form(self) -> None:
        """Unknown objects are dropped (dict) or nulled (list) and counted; never str()."""
        plain = to_plain({"o": Opaque(), "l": [Opaque(), 1], Opaque(): "key"}, fail_closed=True)
        assert plain.value == {"l": [None, 1]} and plain.fallbacks == 3

    def test_lenient_mode_is_the_encoders_str_fallback(self) -> None:
        """Without fail_closed, unknown objects are str() (counted) and cycles raise."""
        assert to_plain({"o": Opaque()}, fail_closed=False) == Plain({"o": "opaque!"}, 1)
        cyclic: list[Any] = []
        cyclic.append(cyclic)
        with pytest.raises(EncodeError):
            to_plain(cyclic, fail_closed=False)
        assert to_plain(cyclic, fail_closed=True) == Plain([None], 1)

    def test_the_result_shares_no_container_with_the_payload(self) -> None:
        """Changing the converted tree in place leaves the caller's payload alone."""
        payload: dict[str, Any] = {"a": {"b": [1, {"c": 2}]}}
        plain = to_plain(payload, fail_closed=True).value
        plain["a"]["b"][1]["c"] = 3
        assert payload == {"a": {"b": [1, {"c": 2}]}}

    @pytest.mark.parametrize("payload", [
        {"p": Point(1, dt.date(2024, 1, 2)), "m": Model(), "c": Color.RED, "t": (1, (2,)),
         "nt": Pair("x", 1), "o": Opaque(), "l": [Opaque(), {"o": Opaque()}], 5: Level.HIGH},
        [Opaque(), Pair("a", 2)], Opaque(), Pair("s", 3), {Color.RED: {1.5: None}},
        {"f": FloatLike(2.5), "tl": TupleLike((1, 2)), "d": decimal.Decimal("0.1")},
        types.MappingProxyType({"k": {"s": {3, 1}}}),
    ], ids=lambda p: type(p).__name__)
    def test_the_orjson_fast_path_equals_the_walk(self, payload: object) -> None:
        """Fail-closed conversion goes through orjson when it can; the result and count are
        what the Python walk gives (which handles what orjson refuses)."""
        walk = _Walk(fail_closed=True)
        walked = walk.value(payload)
        fast = to_plain(payload, fail_closed=True)
        assert fast == Plain(None if walked is _DROP else walked, walk.fallbacks)
