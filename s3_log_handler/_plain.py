"""Payloads as plain JSON types: the conversion every sink and the PII controls share.

Pure functions. :func:`to_plain` is what the redactor runs before it removes or hashes a
field (so a dataclass, a model or a NamedTuple cannot hide one), and what :func:`json_line`
falls back to when orjson refuses a payload (lone surrogates, huge integers, odd keys).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import decimal
import enum
import math
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson


class EncodeError(ValueError):
    """The payload cannot be represented as JSON (a cycle, or an encoder failure)."""


class NoJsonForm(TypeError):
    """Raised by the strict encoder for a value it has no JSON form for."""


def json_form(value: Any) -> Any:
    """The JSON form of a known non-JSON type; raises :class:`NoJsonForm` otherwise."""
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
    asdict = getattr(value, "_asdict", None)
    if isinstance(value, tuple) and callable(asdict):
        return asdict()  # a NamedTuple is an object: its field names are the keys
    if isinstance(value, Mapping):
        return dict(value)
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
    raise NoJsonForm(type(value).__name__)


def _decimal_json(value: decimal.Decimal) -> float | str:
    """A JSON number when the float is exact, else the decimal's string (no silent rounding)."""
    if value.is_finite():
        as_float = float(value)
        if decimal.Decimal(repr(as_float)) == value:
            return as_float
    return str(value)


_SURROGATE = re.compile("[\ud800-\udfff]")
_LONE_SURROGATE = re.compile("[\ud800-\udbff](?![\udc00-\udfff])"
                             "|(?<![\ud800-\udbff])[\udc00-\udfff]")
#: What :func:`to_plain` returns for a value it dropped (fail closed).
_DROP: Any = object()


@dataclass(frozen=True, slots=True)
class Plain:
    """A payload as plain JSON types (dict with str keys, list, str, int, float, bool, None).

    ``fallbacks`` counts what conversion changed: values without a JSON form (dropped, or
    written as ``str(value)``), keys that could not be converted, lone surrogates replaced.
    """

    value: Any
    fallbacks: int


def valid_text(text: str) -> tuple[str, int]:
    """``text`` as valid Unicode: surrogate pairs joined, every lone surrogate replaced by
    U+FFFD; and how many were replaced."""
    if text.isascii() or not _SURROGATE.search(text):
        return text, 0
    lone = len(_LONE_SURROGATE.findall(text))
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace"), lone


def to_plain(payload: object, fail_closed: bool) -> Plain:
    """``payload`` converted to plain JSON types, as the encoder would write it.

    Dataclasses, NamedTuples, mappings and ``model_dump()`` objects become dicts; keys
    become the strings they serialise to (enum, int, UUID, date keys); tuples and sets
    become lists; NaN and infinities become ``None`` (orjson writes ``null``). Strings are
    made valid Unicode (:func:`valid_text`). The result shares no container with
    ``payload``, so it may be changed in place.

    A value with no JSON form (unknown type, a ``model_dump()`` or ``str()`` that raises, a
    reference cycle, an unconvertible key) is counted and, with ``fail_closed``, dropped
    (a dict item is left out, a list item becomes ``None``): nothing is rendered through
    ``str()``. Otherwise it becomes ``str(value)``, and a cycle or failing ``str()`` raises
    :class:`EncodeError`, as :func:`json_line` does.
    """
    if fail_closed:
        fast = _through_orjson(payload)
        if fast is not None:
            return fast
    walk = _Walk(fail_closed)
    try:
        value = walk.value(payload)
    except RecursionError as exc:
        msg = f"payload is not JSON-serialisable: nested too deeply ({exc})"
        raise EncodeError(msg) from exc
    return Plain(None if value is _DROP else value, walk.fallbacks)


#: Stands for a dropped value inside orjson's output: random, so no payload can hold it.
_MARK = f"\x00s3lh-dropped-{uuid.uuid4().hex}\x00"
_PLAIN_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def _through_orjson(payload: object) -> Plain | None:
    """The fail-closed conversion done by orjson (dumps, then loads): same result as the
    walk, several times faster. ``None`` when orjson refuses the payload (a lone surrogate,
    a cycle, an integer beyond 64 bits, an odd key, a raising ``model_dump()``)."""
    dropped = 0

    def default(value: Any) -> Any:
        nonlocal dropped
        try:
            return json_form(value)
        except NoJsonForm:
            if isinstance(value, float):  # orjson takes subclasses of str, int, dict, list
                return float(value)
            if isinstance(value, list | tuple):
                return list(value)
            dropped += 1
            return _MARK

    try:
        value = orjson.loads(orjson.dumps(payload, default=default, option=_PLAIN_OPTIONS))
    except TypeError:
        return None
    if dropped:
        value = _unmarked(value)
    return Plain(None if value is _DROP else value, dropped)


def _unmarked(value: Any) -> Any:
    if value == _MARK:
        return _DROP
    if type(value) is dict:
        return {k: v for k, v in ((k, _unmarked(v)) for k, v in value.items()) if v is not _DROP}
    if type(value) is list:
        return [None if v is _DROP else v for v in map(_unmarked, value)]
    return value


class _Walk:
    """One conversion: the fallback count and the containers on the current path."""

    __slots__ = ("fail_closed", "fallbacks", "open")

    def __init__(self, fail_closed: bool) -> None:
        self.fail_closed = fail_closed
        self.fallbacks = 0
        self.open: set[int] = set()

    def value(self, value: Any) -> Any:
        kind = type(value)
        if kind is str:
            return value if value.isascii() else self.text(value)
        if kind is int or kind is bool or value is None:
            return value
        if kind is float:
            return value if math.isfinite(value) else None
        if kind is dict:
            return self.mapping(value, value.items())
        if kind is list or kind is tuple:
            return self.sequence(value, value)
        return self.other(value)

    def text(self, value: str) -> str:
        text, replaced = valid_text(value)
        self.fallbacks += replaced
        return text

    def other(self, value: Any) -> Any:
        if isinstance(value, enum.Enum):  # before str and int: StrEnum, IntEnum
            return self.value(value.value)
        if isinstance(value, str):
            return self.text(str(value))
        if isinstance(value, bool):
            return bool(value)
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float):
            return self.value(float(value))
        if isinstance(value, Mapping):
            return self.mapping(value, value.items())
        if isinstance(value, list | tuple):
            asdict = getattr(value, "_asdict", None)
            if callable(asdict):  # a NamedTuple: an object
                return self.mapping(value, asdict().items())
            return self.sequence(value, value)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return self.mapping(value, ((f.name, getattr(value, f.name))
                                        for f in dataclasses.fields(value)))
        if type(value).__module__ == "numpy" and callable(getattr(value, "tolist", None)):
            return self.value(value.tolist())
        try:
            form = json_form(value)
        except NoJsonForm:
            return self.unknown(value)
        except Exception as exc:  # a model_dump() that raises
            return self.failed(value, exc)
        if isinstance(form, dict):  # model_dump(): walked as the object's own
            return self.mapping(value, form.items())
        return self.value(form)

    def mapping(self, owner: object, items: Iterable[tuple[Any, Any]]) -> Any:
        if id(owner) in self.open:
            return self.failed(owner, ValueError("circular reference"))
        self.open.add(id(owner))
        out: dict[str, Any] = {}
        try:
            for key, item in items:
                name = key if type(key) is str and key.isascii() else self.key(key)
                if name is None:
                    continue
                converted = self.value(item)
                if converted is not _DROP:
                    out[name] = converted
        finally:
            self.open.discard(id(owner))
        return out

    def sequence(self, owner: object, items: Iterable[Any]) -> Any:
        if id(owner) in self.open:
            return self.failed(owner, ValueError("circular reference"))
        self.open.add(id(owner))
        try:
            out = [self.value(item) for item in items]
        finally:
            self.open.discard(id(owner))
        return [None if item is _DROP else item for item in out] if _DROP in out else out

    def key(self, key: Any) -> str | None:
        """The string a key serialises to (orjson's OPT_NON_STR_KEYS), or None: dropped."""
        if isinstance(key, enum.Enum):
            return self.key(key.value)
        if isinstance(key, str):
            return self.text(str(key))
        if key is None or isinstance(key, bool):
            return "null" if key is None else "true" if key else "false"
        if isinstance(key, int):
            return str(int(key))
        if isinstance(key, float):
            return str(float(key)) if math.isfinite(key) else "null"
        if isinstance(key, dt.date | dt.time | uuid.UUID):
            return str(json_form(key))
        converted = self.unknown(key)
        return None if converted is _DROP else str(converted)

    def unknown(self, value: Any) -> Any:
        self.fallbacks += 1
        if self.fail_closed:
            return _DROP
        try:
            return self.text(str(value))
        except Exception as exc:
            msg = f"payload is not JSON-serialisable: str() of {type(value).__name__}: {exc}"
            raise EncodeError(msg) from exc

    def failed(self, value: Any, exc: Exception) -> Any:
        if self.fail_closed:
            self.fallbacks += 1
            return _DROP
        msg = f"payload is not JSON-serialisable: {type(value).__name__}: {exc}"
        raise EncodeError(msg) from exc
