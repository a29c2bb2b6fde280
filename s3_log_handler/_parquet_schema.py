"""Column shapes for Parquet output: inferred from records, read from a file, matched per row.

Pure functions, no pyarrow: a shape is a scalar name (``boolean``, ``bigint``, ``double``,
``string``, Athena's names), a :class:`ListShape` or a :class:`StructShape`. A record is
split against a schema into what fits the columns and the leftovers, which go to the
``extra_json`` column, so no value is ever lost (see :func:`split_row`). Schemas given in
a file are read by :mod:`._parquet_columns`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: The JSON text column that holds, per row, every value that has no column of its type.
EXTRA_COLUMN = "extra_json"
#: Top-level names never given a column: the Hive partition columns and our JSON column.
RESERVED = frozenset({"year", "month", "day", EXTRA_COLUMN})
#: Nesting deeper than this (objects and lists) is kept in ``extra_json``, not in columns:
#: engines read deep Parquet nesting slowly and some (Hive, older Athena) refuse it.
MAX_DEPTH = 12
SCALARS = ("boolean", "bigint", "double", "string")
#: A double holds every integer up to 2**53 exactly; beyond that an int stays in extra_json.
_EXACT_FLOAT_INT = 2**53
_INT64 = (-(2**63), 2**63 - 1)



@dataclass(frozen=True, slots=True)
class ListShape:
    """A list column whose elements all have ``item``'s shape."""

    item: Shape


@dataclass(frozen=True, slots=True)
class MapShape:
    """A map column: string keys, values of ``value``'s shape (only from a given schema,
    e.g. Athena's ``map<string,double>``; inference makes structs)."""

    value: Shape


class StructShape:
    """A struct (or the top-level row) with named fields in a fixed order."""

    __slots__ = ("fields", "lookup")

    def __init__(self, fields: Sequence[tuple[str, Shape]]) -> None:
        self.fields: tuple[tuple[str, Shape], ...] = tuple(fields)
        self.lookup: dict[str, Shape] = dict(self.fields)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StructShape) and self.fields == other.fields

    def __hash__(self) -> int:
        return hash(self.fields)

    def __repr__(self) -> str:
        return f"StructShape({list(self.fields)!r})"


Shape = str | ListShape | MapShape | StructShape


@dataclass(slots=True)
class SplitCounts:
    """What :func:`split_row` kept out of the columns, added up over many rows.

    ``outside_schema``: fields with no column; ``type_mismatch``: values whose type does not
    match their column (a whole list when one element does not); ``unparsed``: lines that
    are not a JSON object (kept whole); ``rows_with_extra``: rows with a non-empty
    ``extra_json``.
    """

    outside_schema: int = 0
    type_mismatch: int = 0
    unparsed: int = 0
    rows_with_extra: int = 0

    def add(self, other: SplitCounts) -> None:
        """Add ``other``'s counts to these."""
        self.outside_schema += other.outside_schema
        self.type_mismatch += other.type_mismatch
        self.unparsed += other.unparsed
        self.rows_with_extra += other.rows_with_extra


def infer_schema(rows: Iterable[Mapping[str, Any]],
                 reserved: frozenset[str] = RESERVED) -> StructShape:
    """The columns that hold every value of ``rows`` whose type is consistent.

    Field order is first appearance. A field whose values disagree (a string here, a number
    there; objects mixed with lists; a list mixing types), nests deeper than
    :data:`MAX_DEPTH`, or is an empty object everywhere gets no column: its values will go
    to ``extra_json``. int mixed with float becomes ``double``; a field that is always
    ``null`` or an empty list becomes ``string`` / ``array<string>``. ``reserved`` names
    (partition columns, ``extra_json``) and names equal but for case (Athena folds case)
    get no column either.
    """
    shape = _struct([r for r in rows if isinstance(r, Mapping)], 0, reserved)
    return shape if shape is not None else StructShape(())


def _struct(objects: Sequence[Mapping[str, Any]], depth: int,
            reserved: frozenset[str] = frozenset()) -> StructShape | None:
    if depth >= MAX_DEPTH:
        return None
    values: dict[str, list[Any]] = {}
    folded: set[str] = set()
    for obj in objects:
        for key, value in obj.items():
            if key not in values:
                if not isinstance(key, str) or not key or key in reserved \
                        or key.lower() in folded:
                    continue
                folded.add(key.lower())
                values[key] = []
            values[key].append(value)
    fields = [(k, s) for k, seen in values.items() if (s := _shape(seen, depth + 1)) is not None]
    return StructShape(fields) if fields else None


def _shape(values: Sequence[Any], depth: int) -> Shape | None:
    present = [v for v in values if v is not None]
    if not present:
        return "string"
    if all(isinstance(v, Mapping) for v in present):
        return _struct(present, depth)
    if all(isinstance(v, list) for v in present):
        if depth >= MAX_DEPTH:
            return None
        items = [x for v in present for x in v]
        item = _shape(items, depth + 1) if items else "string"
        return ListShape(item) if item is not None else None
    kinds = {_scalar(v) for v in present}
    if len(kinds) == 1 and None not in kinds:
        return kinds.pop()
    if kinds == {"bigint", "double"}:
        return "double"
    return None


def _scalar(value: Any) -> str | None:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "bigint" if _INT64[0] <= value <= _INT64[1] else None
    if isinstance(value, float):
        return "double"
    if isinstance(value, str):
        return "string"
    return None


def split_row(row: Mapping[str, Any], schema: StructShape,
              counts: SplitCounts) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """``row`` as (the values that fit ``schema``'s columns, the leftovers or ``None``).

    Leftovers keep their place: ``{"signals": {"new": 1}}`` for a new nested field, so
    merging the two back (:func:`merge_extra`) gives the row again. ``null`` values and
    missing fields both read back as null columns. Adds to ``counts``.
    """
    kept, extra = _split_struct(row, schema, counts, top=True)
    if extra is not None:
        counts.rows_with_extra += 1
    return kept, extra


def _split_struct(obj: Mapping[str, Any], shape: StructShape, counts: SplitCounts,
                  top: bool = False) -> tuple[dict[str, Any], dict[str, Any] | None]:
    kept: dict[str, Any] = {}
    extra: dict[str, Any] | None = None
    for key, value in obj.items():
        column = shape.lookup.get(key)
        if column is None:
            counts.outside_schema += 1
            extra = extra if extra is not None else {}
            extra[key] = value
            continue
        if value is None:
            continue
        fits, left = _fit(value, column, counts)
        if fits is not None:
            kept[key] = fits
        if left is not None:
            extra = extra if extra is not None else {}
            extra[key] = left
    return kept, extra


def _fit(value: Any, shape: Shape, counts: SplitCounts) -> tuple[Any, Any]:
    # (what goes in the column, what goes to extra_json): one of them is None.
    if isinstance(shape, StructShape):
        if isinstance(value, Mapping):
            kept, extra = _split_struct(value, shape, counts)
            return (kept or None), extra
    elif isinstance(shape, MapShape):
        if _fits_whole(value, shape):
            return value, None
    elif isinstance(shape, ListShape):
        if isinstance(value, list) and _list_fits(value, shape.item):
            return ([_cast(v, shape.item) for v in value] if shape.item == "double"
                    else value), None
    elif _scalar_fits(value, shape):
        return _cast(value, shape), None
    counts.type_mismatch += 1
    return None, value


def _list_fits(values: list[Any], item: Shape) -> bool:
    # A list goes to its column whole or not at all: a struct element with a field outside
    # the schema would otherwise be split across two places inside one list.
    for v in values:
        if v is None:
            continue
        if isinstance(item, StructShape):
            if not isinstance(v, Mapping) or not all(
                    k in item.lookup and (x is None or _fits_whole(x, item.lookup[k]))
                    for k, x in v.items()):
                return False
        elif not _fits_whole(v, item):
            return False
    return True


def _fits_whole(value: Any, shape: Shape) -> bool:
    if isinstance(shape, MapShape):
        return isinstance(value, Mapping) and all(
            isinstance(k, str) and (v is None or _fits_whole(v, shape.value))
            for k, v in value.items())
    if isinstance(shape, ListShape):
        return isinstance(value, list) and _list_fits(value, shape.item)
    if isinstance(shape, StructShape):
        return _list_fits([value], shape)
    return _scalar_fits(value, shape)


def _scalar_fits(value: Any, shape: str) -> bool:
    kind = _scalar(value)
    if kind == shape:
        return True
    return shape == "double" and kind == "bigint" and abs(value) <= _EXACT_FLOAT_INT


def _cast(value: Any, shape: Shape) -> Any:
    return float(value) if shape == "double" and isinstance(value, int) else value


def merge_extra(kept: dict[str, Any], extra: Mapping[str, Any] | None) -> dict[str, Any]:
    """``kept`` with ``extra``'s values put back where :func:`split_row` took them from."""
    if not extra:
        return kept
    out = dict(kept)
    for key, value in extra.items():
        here = out.get(key)
        if isinstance(here, dict) and isinstance(value, Mapping):
            out[key] = merge_extra(here, value)
        else:
            out[key] = value
    return out
