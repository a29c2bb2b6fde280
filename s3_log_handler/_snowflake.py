"""``s3-log-handler snowflake-ddl``: load the handler's objects into Snowflake, keys never inline.

The plan's stage embeds ``CREDENTIALS = (AWS_KEY_ID = ... AWS_SECRET_KEY = ...)``; this prints
a storage integration that assumes an IAM role instead (``STORAGE_AWS_ROLE_ARN``), a file
format, a stage through that integration, a table holding each record as ``VARIANT`` with
``year``/``month``/``day`` parsed from ``METADATA$FILENAME``, a one-off ``COPY INTO ...
PATTERN`` and a Snowpipe (``AUTO_INGEST = TRUE``) running the same COPY on every new object.
Every name is checked first (:mod:`._names`): a refused one raises ``ValueError`` and nothing
is printed.
"""

from __future__ import annotations

import re

from . import _names as names

DEFAULT_INTEGRATION = "s3_analytics_integration"
DEFAULT_TABLE = "session_analytics"
#: Printed when no --role-arn is given: Snowflake refuses it, so nothing half-works.
PLACEHOLDER_ROLE_ARN = "arn:aws:iam::ACCOUNT_ID:role/snowflake-s3-analytics"
ROLE_ARN_RULE = "an IAM role ARN (arn:aws:iam::ACCOUNT:role/[PATH/]NAME)"
_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role/(?:[\w+=,.@-]+/)*[\w+=,.@-]{1,64}")
FORMATS = ("json", "parquet")
#: What the handler names its objects: .json/.ndjson, optionally .gz or .zst; or .parquet.
#: The name may not start with '_' or '.', which Hive-style readers hide.
_OBJECT_NAME = {"json": r"[^/_.][^/]*[.](nd)?json([.](gz|zst))?",
                "parquet": r"[^/_.][^/]*[.]parquet"}


def table_name(value: str, name: str = "table") -> str:
    """``value`` if it is ``table``, ``schema.table`` or ``db.schema.table`` of plain names."""
    parts = value.split(".")
    if not 1 <= len(parts) <= 3 or not all(names.is_identifier(p) for p in parts):
        raise names.refuse(name, "[database.][schema.]table, each matching [a-z_][a-z0-9_]*",
                           value)
    return value


def role_arn(value: str, name: str = "role_arn") -> str:
    """``value`` if it is an IAM role ARN (no wildcard, no quote, no user or account root)."""
    if not _ROLE_ARN.fullmatch(value):
        raise names.refuse(name, ROLE_ARN_RULE, value)
    return value


def snowflake_ddl(bucket: str, prefix: str = "sessions", *,
                  integration: str = DEFAULT_INTEGRATION, role: str | None = None,
                  file_format: str = "json", table: str = DEFAULT_TABLE) -> str:
    """The Snowflake statements, ``;``-terminated, with comments saying what to do between.

    Raises ``ValueError`` naming the value and the rule for a bucket, prefix, integration,
    table or role ARN that breaks its rule, or a format other than ``json``/``parquet``.
    """
    names.bucket(bucket)
    if prefix:
        names.prefix(prefix)
    names.identifier(integration, "integration")
    table_name(table)
    if file_format not in FORMATS:
        raise names.refuse("format", "json or parquet", file_format)
    arn = role_arn(role) if role is not None else PLACEHOLDER_ROLE_ARN
    schema, _, base = table.rpartition(".")
    qualify = f"{schema}." if schema else ""
    stage, fmt, pipe = (f"{qualify}{base}_stage", f"{qualify}{base}_{file_format}",
                        f"{qualify}{base}_pipe")
    pattern = names.sql_literal(r".*year=[0-9]{4}/month=[0-9]{2}/day=[0-9]{2}/(.*/)?"
                                + _OBJECT_NAME[file_format])
    format_options = ("TYPE = JSON\n  COMPRESSION = AUTO" if file_format == "json"
                      else "TYPE = PARQUET")
    url = names.sql_literal(f"s3://{bucket}/{prefix}/" if prefix else f"s3://{bucket}/")
    copy = _copy(table, stage, pattern)
    placeholder = ("-- Replace ACCOUNT_ID (or pass --role-arn): Snowflake refuses this "
                   "placeholder.\n" if role is None else "")
    where = f"s3://{bucket}/{prefix}/" if prefix else f"s3://{bucket}/"
    return f"""-- Snowflake objects for {where} written by S3Handler.
-- No AWS keys: the integration assumes an IAM role that may read the prefix
-- (`s3-log-handler iam-policy --reader` prints that policy).
{placeholder}CREATE STORAGE INTEGRATION IF NOT EXISTS {integration}
  TYPE = EXTERNAL_STAGE
  STORAGE_PROVIDER = 'S3'
  ENABLED = TRUE
  STORAGE_AWS_ROLE_ARN = {names.sql_literal(arn)}
  STORAGE_ALLOWED_LOCATIONS = ({url});

-- Then run DESC INTEGRATION {integration}; and let its STORAGE_AWS_IAM_USER_ARN
-- assume the role, with its STORAGE_AWS_EXTERNAL_ID as sts:ExternalId (trust policy).

CREATE FILE FORMAT IF NOT EXISTS {fmt}
  {format_options};

CREATE STAGE IF NOT EXISTS {stage}
  STORAGE_INTEGRATION = {integration}
  URL = {url}
  FILE_FORMAT = (FORMAT_NAME = {names.sql_literal(fmt)});

-- One row per record: the payload as VARIANT, the partition date from the object's key.
CREATE TABLE IF NOT EXISTS {table} (
  payload VARIANT,
  year NUMBER(4, 0),
  month NUMBER(2, 0),
  day NUMBER(2, 0),
  file_name VARCHAR
);

-- Load what is there now (COPY skips files it loaded in the last 64 days).
{copy};

-- Or load each new object as it lands: after creating the pipe, SHOW PIPES and send the
-- bucket's s3:ObjectCreated:* events for the prefix to the pipe's notification_channel.
CREATE PIPE IF NOT EXISTS {pipe}
  AUTO_INGEST = TRUE
  AS
{copy};
"""


def _copy(table: str, stage: str, pattern: str) -> str:
    """``COPY INTO table`` from the stage: ``$1`` plus year/month/day from the file name."""
    parts = ",\n".join(
        f"         TO_NUMBER(REGEXP_SUBSTR(METADATA$FILENAME, '(^|/){part}=([0-9]+)/', 1, 1, "
        "'e', 2))"
        for part in ("year", "month", "day"))
    return f"""COPY INTO {table} (payload, year, month, day, file_name)
FROM (
  SELECT $1,
{parts},
         METADATA$FILENAME
  FROM @{stage}
)
PATTERN = {pattern}"""
