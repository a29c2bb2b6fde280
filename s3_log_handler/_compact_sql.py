"""``athena-ddl --compact-sql``: the Athena ``INSERT INTO`` that compacts one day on Athena.

For buckets larger than one machine should read: Athena reads the day's JSON partition of
the table ``athena-ddl`` creates and writes it into a Parquet table with the same columns
(``athena-ddl --format parquet``). One day is one partition of that table, far below
Athena's limit of 100 partitions written per ``INSERT INTO``
(docs.aws.amazon.com/athena/latest/ug/ctas-insert-into.html). The target columns are named,
so a Parquet table with more columns (``extra_json``) gets nulls there.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from . import _names as names
from ._athena import DEFAULT_SESSION_COLUMNS, PARTITION_COLUMNS, infer_columns, load_sample

#: Athena allows at most this many partitions to be written by one INSERT INTO.
MAX_PARTITIONS_PER_INSERT = 100


def compact_sql(day: date, table: str = "session_analytics", parquet_table: str | None = None,
                database: str | None = None, sample: str | Path | None = None) -> str:
    """``INSERT INTO <parquet_table> (cols, year, month, day) SELECT ... WHERE year=...``.

    Columns come from ``sample`` (as in ``athena-ddl``) or the default session columns;
    ``parquet_table`` defaults to ``<table>_parquet``. Identifiers are double-quoted
    (Athena's DML quoting); names are checked by :func:`~._names.identifier`, so quoting
    never has to escape anything. Raises ``ValueError`` for a refused name or sample.
    """
    names.identifier(table, "table")
    target = names.identifier(parquet_table or f"{table}_parquet", "parquet_table")
    if database is not None:
        names.identifier(database, "database")
    if sample is None:
        columns = [name for name, _ in DEFAULT_SESSION_COLUMNS]
    else:
        columns = [name for name, _ in infer_columns(load_sample(sample))[0]]
        if not columns:
            msg = f"{sample}: no key can be an Athena column"
            raise ValueError(msg)
    every = [*columns, *PARTITION_COLUMNS]

    def qualified(name: str) -> str:
        return f'"{database}"."{name}"' if database else f'"{name}"'

    listed = ", ".join(f'"{c}"' for c in every)
    return "\n".join([
        f"-- Compacts {day.isoformat()} on Athena: one partition, below the limit of "
        f"{MAX_PARTITIONS_PER_INSERT} per INSERT INTO.",
        "-- Run once per day; a second run inserts the rows again (INSERT INTO appends).",
        f"INSERT INTO {qualified(target)} ({listed})",
        f"SELECT {listed}",
        f"FROM {qualified(table)}",
        f"WHERE \"year\" = {day.year} AND \"month\" = {day.month} AND \"day\" = {day.day}",
    ]) + ";"
