"""The partition columns and projection an Athena table needs for a handler's key template.

Pure functions. Each directory segment of the template after ``{prefix}`` that holds a
placeholder becomes a partition column: ``year=`` / ``month=`` / ``day=`` / ``hour=`` integer
ranges, and ``name={field:path}`` a string column, projected ``injected`` (Athena then needs
``name = '...'`` or ``name IN (...)`` in every query) or ``enum`` when its values are given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from . import _names as names
from ._fields import partition_value
from ._keys import FIELD

#: Integer projection of the time placeholders: (range, digits).
_TIME_RANGES = {"month": ("1,12", "2"), "day": ("1,31", "2"), "hour": ("0,23", "2")}


@dataclass(frozen=True, slots=True)
class Layout:
    """Partition columns ``(name, type)`` in key order, their projection properties and the
    ``storage.location.template`` of the table."""

    columns: tuple[tuple[str, str], ...]
    properties: dict[str, str]


def layout(template: str, root: str, years: tuple[int, int],
           partition_values: Mapping[str, Sequence[str]] | None = None) -> Layout:
    """The partition layout of keys made from ``template`` under ``root`` (``s3://B/P``).

    ``partition_values`` maps a field column to its values (made safe exactly as the
    handler makes them): that column is projected ``enum``; other field columns
    ``injected``. Raises ``ValueError`` for a segment whose column is not a valid name, a
    column named twice, a year range that is not an increasing pair of positive years, and
    ``partition_values`` for a column the template does not have.
    """
    first, last = years
    if not 0 < first <= last:
        msg = f"years must be an increasing pair of positive years, got {years!r}"
        raise ValueError(msg)
    given = dict(partition_values or {})
    columns: list[tuple[str, str]] = []
    props: dict[str, str] = {"projection.enabled": "true"}
    location = [root]
    for segment in template.split("/")[1:-1]:  # {prefix}/ ... /<file name>
        name, _, value = segment.partition("=")
        field = FIELD.fullmatch(value or segment)
        if field is not None:
            column = (name if value else field.group(1).rsplit(".", 1)[-1]).lower()
            names.identifier(column, "partition column")
            values = given.pop(column, None)
            if values is None:
                props[f"projection.{column}.type"] = "injected"
            else:
                safe = [partition_value(v) for v in values]
                props[f"projection.{column}.type"] = "enum"
                props[f"projection.{column}.values"] = ",".join(v for v in safe if v)
            kind = "string"
        elif value in ("{year}", "{month}", "{day}", "{hour}") and name == value[1:-1]:
            column, kind = name, "int"
            props[f"projection.{column}.type"] = "integer"
            low_high, digits = _TIME_RANGES.get(column, (f"{first},{last}", ""))
            props[f"projection.{column}.range"] = low_high
            if digits:
                props[f"projection.{column}.digits"] = digits
        else:
            location.append(segment)
            continue
        if any(column == c for c, _ in columns):
            msg = f"key_template names partition column {column!r} twice: {template!r}"
            raise ValueError(msg)
        columns.append((column, kind))
        location.append(f"{name}=${{{column}}}" if value else f"${{{column}}}")
    if given:
        msg = (f"--partition-values names {', '.join(sorted(given))}, which the key template "
               f"has no {{field:...}} column for")
        raise ValueError(msg)
    props["storage.location.template"] = "/".join(location) + "/"
    return Layout(tuple(columns), props)
