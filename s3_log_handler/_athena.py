"""Athena ``CREATE EXTERNAL TABLE`` for what an S3Handler writes, with partition projection.

Pure functions: the column list comes from a sample payload (types inferred from its JSON
values) or from :data:`DEFAULT_SESSION_COLUMNS`. Both key layouts (``.json.gz`` objects and
``.ndjson.gz`` batches) hold one JSON document per line, so one table reads either.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from . import _names as names
from ._athena_layout import layout

#: Athena documents that the OpenX SerDe can return non-deterministic rows; this one cannot.
JSON_SERDE = "org.apache.hive.hcatalog.data.JsonSerDe"
#: Hadoop's text input picks the codec from the object's extension (.gz, .zst), so compressed
#: and uncompressed objects share one table.
INPUT_FORMAT = "org.apache.hadoop.mapred.TextInputFormat"
OUTPUT_FORMAT = "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat"
PARTITION_COLUMNS = ("year", "month", "day")

#: The session payload of the original plan. Types follow its JSON; timestamps stay ISO 8601
#: strings (query them with ``from_iso8601_timestamp``) because the Hive JSON SerDe only
#: parses ``yyyy-MM-dd HH:mm:ss``. The summaries are maps so new metric names need no DDL.
DEFAULT_SESSION_COLUMNS: tuple[tuple[str, str], ...] = (
    ("session_id", "string"),
    ("user_email", "string"),
    ("start_time", "string"),
    ("end_time", "string"),
    ("duration_seconds", "double"),
    ("discovered_signals",
     "struct<team_size:bigint,monthly_volume:bigint,qualification_tier:string>"),
    ("tool_calls", "array<struct<tool:string,`timestamp`:string>>"),
    ("metrics_summary", "map<string,double>"),
    ("cost_summary", "map<string,double>"),
    ("conversation_notes", "string"),
)

# Athena's DDL reserved keywords (docs.aws.amazon.com/athena/latest/ug/reserved-words.html):
# such names must be quoted with backticks wherever they appear, struct fields included.
_DDL_RESERVED_TEXT = """
ALL ALTER AND ARRAY AS AUTHORIZATION BETWEEN BIGINT BINARY BOOLEAN BOTH BY CASE CASHE CAST CHAR
COLUMN CONF CONSTRAINT COMMIT CREATE CROSS CUBE CURRENT CURRENT_DATE CURRENT_TIMESTAMP CURSOR
DATABASE DATE DAYOFWEEK DECIMAL DELETE DESCRIBE DISTINCT DIV DOUBLE DROP ELSE END EXCHANGE EXISTS
EXTENDED EXTERNAL EXTRACT FALSE FETCH FLOAT FLOOR FOLLOWING FOR FOREIGN FROM FULL FUNCTION GRANT
GROUP GROUPING HAVING IF IMPORT IN INNER INSERT INT INTEGER INTERSECT INTERVAL INTO IS JOIN
LATERAL LEFT LESS LIKE LOCAL MACRO MAP MORE NONE NOT NULL NUMERIC OF ON ONLY OR ORDER OUT OUTER
OVER PARTIALSCAN PARTITION PERCENT PRECEDING PRECISION PRESERVE PRIMARY PROCEDURE RANGE READS
REDUCE REGEXP REFERENCES REVOKE RIGHT RLIKE ROLLBACK ROLLUP ROW ROWS SELECT SET SMALLINT START
TABLE TABLESAMPLE THEN TIME TIMESTAMP TO TRANSFORM TRIGGER TRUE TRUNCATE UNBOUNDED UNION
UNIQUEJOIN UPDATE USER USING UTC_TIMESTAMP VALUES VARCHAR VIEWS WHEN WHERE WINDOW WITH
"""
_DDL_RESERVED = frozenset(_DDL_RESERVED_TEXT.split())
_UNKNOWN = "string"


def quote_name(name: str) -> str:
    """``name`` as a DDL identifier: backticked when it is a reserved keyword."""
    return f"`{name}`" if name.upper() in _DDL_RESERVED else name


def athena_type(value: Any) -> str:
    """The Athena type of one JSON value (``null`` and empty objects read as strings).

    bool -> boolean, int -> bigint, float -> double, str -> string, object ->
    ``struct<...>`` (keys that cannot be Athena names are left out), array -> ``array<T>``
    with ``T`` merged over its elements.
    """
    return _merged_type([value], "")[0]


def infer_columns(payloads: Iterable[Mapping[str, Any]]) -> tuple[list[tuple[str, str]], list[str]]:
    """Columns that read every payload in ``payloads``, and the keys that had to be skipped.

    Column order is first appearance. Values of one key are merged across payloads (and
    across array elements): objects become one struct with every field seen, int with float
    becomes ``double``, any other disagreement ``string``, ``null`` defers to other values.
    Skipped keys (dotted paths) cannot be Athena names or clash with a partition column.
    """
    return _fields(list(payloads), path="")


def read_text(path: str | Path) -> str:
    """A sample file's text; gzip (an object downloaded from the bucket) read transparently."""
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return raw.decode("utf-8")


def read_documents(path: str | Path) -> list[Any]:
    """The JSON documents of a file: one JSON value, or one per line (NDJSON). Raises
    ``json.JSONDecodeError`` when it is neither."""
    text = read_text(path)
    try:
        return [json.loads(text)]
    except json.JSONDecodeError:
        return [json.loads(line) for line in text.splitlines() if line.strip()]


def load_sample(path: str | Path) -> list[dict[str, Any]]:
    """The payloads in a sample file: one JSON object, or NDJSON (what S3Handler writes).

    Gzip files (``.json.gz``/``.ndjson.gz`` objects downloaded from the bucket) are read
    transparently. Raises ``ValueError`` when the file holds no JSON object.
    """
    payloads = [d for d in read_documents(path) if isinstance(d, dict)]
    if not payloads:
        msg = f"{path}: expected a JSON object (or NDJSON objects) to infer columns from"
        raise ValueError(msg)
    return payloads


def athena_ddl(bucket: str, prefix: str = "sessions", table: str = "session_analytics",
               database: str | None = None, mode: str = "object",
               sample: str | Path | None = None, years: tuple[int, int] = (2024, 2099),
               key_template: str | None = None,
               partition_values: Mapping[str, Sequence[str]] | None = None,
               data_format: str = "json") -> str:
    """A ``CREATE EXTERNAL TABLE`` statement for ``s3://bucket/prefix/``.

    The table uses the Hive JSON SerDe, ``PARTITIONED BY (year int, month int, day int)``
    and partition projection (integer ranges, ``digits`` = 2 for the zero-padded month and
    day, ``storage.location.template`` matching the handler's keys), so Athena never needs
    ``MSCK REPAIR TABLE``. ``years`` is the inclusive projected year range. Columns come from
    ``sample`` (see :func:`load_sample`) or :data:`DEFAULT_SESSION_COLUMNS`. ``mode`` only
    changes the header comment: object (``.json.gz``) and batch (``.ndjson.gz``) objects are
    the same rows. Raises ``ValueError`` naming the value and the rule for a bucket that is
    not an S3 bucket name, a prefix the handler would refuse, a table/database name that is
    not ``[a-z_][a-z0-9_]*``, a mode or year range, and for a sample with no usable key.
    Every string literal has its quotes doubled (:func:`~s3_log_handler._names.sql_literal`).

    ``key_template`` (default: the handler's for ``mode``) gives the partition columns and
    ``storage.location.template`` (see :func:`~s3_log_handler._athena_layout.layout`:
    ``{field:...}`` columns are projected ``injected``, or ``enum`` with their
    ``partition_values``); a payload key with a partition column's name is left out of the
    columns. ``data_format="parquet"`` makes the table ``STORED AS PARQUET``.
    """
    if data_format not in ("json", "parquet"):
        msg = f"format must be 'json' or 'parquet', got {data_format!r}"
        raise ValueError(msg)
    if mode not in ("object", "batch"):
        msg = f"mode must be 'object' or 'batch', got {mode!r}"
        raise ValueError(msg)
    names.bucket(bucket)
    if prefix:
        names.prefix(prefix)
    names.identifier(table, "table")
    if database is not None:
        names.identifier(database, "database")
    skipped: list[str] = []
    if sample is None:
        columns = list(DEFAULT_SESSION_COLUMNS)
    else:
        columns, skipped = infer_columns(load_sample(sample))
        if not columns:
            msg = f"{sample}: no key can be an Athena column (skipped: {', '.join(skipped)})"
            raise ValueError(msg)
    root = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
    if key_template is None:
        from ._settings import BATCH_KEY_TEMPLATE, OBJECT_KEY_TEMPLATE

        key_template = BATCH_KEY_TEMPLATE if mode == "batch" else OBJECT_KEY_TEMPLATE
    parts = layout(key_template, root, years, partition_values)
    taken = {name for name, _ in parts.columns}
    skipped += [name for name, _ in columns if name in taken and name not in skipped]
    columns = [(name, kind) for name, kind in columns if name not in taken]
    if data_format == "parquet" and all(name != "extra_json" for name, _ in columns):
        columns.append(("extra_json", "string"))  # what had no column of its type (JSON)
    qualified = f"`{database}`.`{table}`" if database else f"`{table}`"
    written = ("one .ndjson.gz object per batch, one session per line" if mode == "batch"
               else "one .json.gz object per session")
    if data_format == "parquet":
        written = "one .parquet object per batch"
    header = [f"-- Written by S3Handler(mode={mode!r}): {written}.",
              "-- Partition projection: no MSCK REPAIR TABLE or ALTER TABLE ADD PARTITION needed."]
    injected = [c for c, _ in parts.columns
                if parts.properties.get(f"projection.{c}.type") == "injected"]
    if injected:
        header.append("-- Injected partition columns: every query must filter them with = or "
                      "IN: " + ", ".join(injected))
    if skipped:
        # JSON-quoted (ASCII): a key from the sample cannot end the comment with a newline.
        header.append("-- Skipped keys (not valid Athena column names, or a partition column): "
                      + ", ".join(json.dumps(k) for k in skipped))
    body = ",\n".join(f"  `{name}` {kind}" for name, kind in columns)
    literal = names.sql_literal
    storage = (["STORED AS PARQUET"] if data_format == "parquet" else [
        f"ROW FORMAT SERDE {literal(JSON_SERDE)}",
        f"STORED AS INPUTFORMAT {literal(INPUT_FORMAT)}",
        f"OUTPUTFORMAT {literal(OUTPUT_FORMAT)}"])
    return "\n".join([
        *header,
        f"CREATE EXTERNAL TABLE IF NOT EXISTS {qualified} (",
        body,
        ")",
        "PARTITIONED BY (" + ", ".join(f"`{c}` {kind}" for c, kind in parts.columns) + ")",
        *storage,
        f"LOCATION {literal(root + '/')}",
        "TBLPROPERTIES (",
        ",\n".join(f"  {literal(k)}={literal(v)}" for k, v in parts.properties.items()),
        ");",
    ])


def _fields(objects: Sequence[Mapping[str, Any]], path: str) -> (
    tuple[list[tuple[str, str]], list[str]]
):
    values: dict[str, list[Any]] = {}
    skipped: list[str] = []
    for obj in objects:
        for key, value in obj.items():
            name = str(key).lower()
            if not names.is_identifier(name) or (not path and name in PARTITION_COLUMNS):
                if path + str(key) not in skipped:
                    skipped.append(path + str(key))
                continue
            values.setdefault(name, []).append(value)
    columns = []
    for name, seen in values.items():
        kind, nested_skips = _merged_type(seen, f"{path}{name}.")
        columns.append((name, kind))
        skipped.extend(s for s in nested_skips if s not in skipped)
    return columns, skipped


def _merged_type(values: Sequence[Any], path: str) -> tuple[str, list[str]]:
    present = [v for v in values if v is not None]
    if not present:
        return _UNKNOWN, []
    if all(isinstance(v, Mapping) for v in present):
        fields, skipped = _fields(present, path)
        if not fields:
            return "map<string,string>", skipped
        return "struct<" + ",".join(f"{quote_name(n)}:{t}" for n, t in fields) + ">", skipped
    if all(isinstance(v, list) for v in present):
        element, skipped = _merged_type([x for v in present for x in v], path)
        return f"array<{element}>", skipped
    kinds = {_scalar_type(v) for v in present}
    if len(kinds) == 1:
        return kinds.pop(), []
    return ("double" if kinds <= {"bigint", "double"} else _UNKNOWN), []


def _scalar_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "bigint"
    if isinstance(value, float):
        return "double"
    return _UNKNOWN
