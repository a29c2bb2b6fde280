"""Schemas given as files (``parquet_schema=``): a column list with Athena types, or a sample.

Pure functions but for reading the file. See :func:`load_schema`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ._athena import read_documents, read_text
from ._parquet_schema import RESERVED, ListShape, MapShape, Shape, StructShape, infer_schema

_TYPE_NAMES = {"string": "string", "varchar": "string", "char": "string", "bigint": "bigint",
               "int": "bigint", "integer": "bigint", "smallint": "bigint", "tinyint": "bigint",
               "double": "double", "float": "double", "real": "double", "boolean": "boolean",
               "bool": "boolean"}
_TOKEN = re.compile(r"\s*(`[^`]+`|[A-Za-z_][A-Za-z0-9_]*|[<>,:])")


def parse_type(text: str) -> Shape:
    """An Athena/Hive type (``bigint``, ``array<string>``, ``struct<a:int,b:double>``).

    Integer types become ``bigint``, float/real ``double``, varchar/char ``string``. Raises
    ``ValueError`` naming the type for anything else (map, timestamp, decimal).
    """
    tokens = [m.group(1) for m in _TOKEN.finditer(text)]
    if "".join(tokens).replace("`", "") != re.sub(r"\s", "", text).replace("`", ""):
        msg = f"column type {text!r} has characters outside names, '<', '>', ',' and ':'"
        raise ValueError(msg)
    shape, rest = _parse(tokens, text)
    if rest:
        msg = f"column type {text!r} has text after the type: {''.join(rest)!r}"
        raise ValueError(msg)
    return shape


def _parse(tokens: list[str], text: str) -> tuple[Shape, list[str]]:
    if not tokens:
        msg = f"column type {text!r} ends too early"
        raise ValueError(msg)
    head, rest = tokens[0].lower(), tokens[1:]
    if head in _TYPE_NAMES:
        return _TYPE_NAMES[head], rest
    if head in ("array", "struct", "map") and rest[:1] == ["<"]:
        rest = rest[1:]
        if head == "map":
            key, rest = _parse(rest, text)
            if key != "string":
                msg = f"column type {text!r}: map keys must be string"
                raise ValueError(msg)
            value, rest = _parse(_expect(rest, ",", text), text)
            return MapShape(value), _expect(rest, ">", text)
        if head == "array":
            item, rest = _parse(rest, text)
            return ListShape(item), _expect(rest, ">", text)
        fields: list[tuple[str, Shape]] = []
        while True:
            name, rest = rest[0].strip("`") if rest else "", _expect(rest[1:], ":", text)
            kind, rest = _parse(rest, text)
            fields.append((name, kind))
            if rest[:1] != [","]:
                return StructShape(fields), _expect(rest, ">", text)
            rest = rest[1:]
    msg = (f"column type {text!r}: {tokens[0]!r} is not supported (use string, bigint, "
           "double, boolean, array<...>, map<string,...> or struct<...>; keep timestamps "
           "as ISO strings)")
    raise ValueError(msg)


def _expect(tokens: list[str], token: str, text: str) -> list[str]:
    if tokens[:1] != [token]:
        msg = f"column type {text!r}: expected {token!r}"
        raise ValueError(msg)
    return tokens[1:]


def load_schema(path: str | Path) -> StructShape:
    """The schema a ``parquet_schema=`` file gives.

    Either a column list (YAML or JSON: ``{"columns": {"name": "type", ...}}`` or
    ``{"columns": [{"name": ..., "type": ...}, ...]}``, types as :func:`parse_type` reads
    them) or a sample payload (a JSON object, or NDJSON; gzip read transparently) whose
    columns are inferred. Raises ``ValueError`` naming the file for anything else.
    """
    try:
        docs = read_documents(path)
    except json.JSONDecodeError:
        docs = [yaml.safe_load(read_text(path))]
    if len(docs) == 1 and isinstance(docs[0], Mapping) and set(docs[0]) == {"columns"}:
        return _columns(docs[0]["columns"], path)
    rows = [d for d in docs if isinstance(d, Mapping)]
    schema = infer_schema(rows)
    if not schema.fields:
        msg = (f"{path}: expected a sample JSON payload or a column list "
               "({'columns': {name: type}}) with at least one usable column")
        raise ValueError(msg)
    return schema


def _columns(spec: Any, path: str | Path) -> StructShape:
    if isinstance(spec, Mapping):
        pairs = list(spec.items())
    elif isinstance(spec, list) and all(isinstance(c, Mapping) for c in spec):
        pairs = [(c.get("name"), c.get("type")) for c in spec]
    else:
        pairs = []
    if not pairs or not all(isinstance(n, str) and n and isinstance(t, str) for n, t in pairs):
        msg = f"{path}: 'columns' must map names to types, or list {{name, type}} entries"
        raise ValueError(msg)
    reserved = [n for n, _ in pairs if n in RESERVED]
    if reserved:
        msg = f"{path}: {', '.join(reserved)} cannot be columns (partition or JSON column)"
        raise ValueError(msg)
    return StructShape([(n, parse_type(t)) for n, t in pairs])
