"""``s3-log-handler athena-ddl``'s layout options: the key template, enum partition values,
the data format, or all of them read from a handler in a logging configuration."""

from __future__ import annotations

import argparse

from ._athena import athena_ddl


def add_layout_arguments(ddl: argparse.ArgumentParser) -> None:
    """``--key-template``, ``--partition-values``, ``--format``, ``--config``, ``--handler``."""
    ddl.add_argument("--key-template", default=None,
                     help="the handler's key_template (default: the mode's default); each "
                          "name={field:path} directory becomes a partition column")
    ddl.add_argument("--partition-values", action="append", default=[], metavar="COL=A,B,C",
                     help="project field column COL as enum with these values (default: "
                          "injected, which every query must filter with = or IN)")
    ddl.add_argument("--format", choices=("json", "parquet"), default=None,
                     help="json (default) or parquet (STORED AS PARQUET)")
    ddl.add_argument("--config", default=None, metavar="LOGGING_YAML",
                     help="take mode, key_template and format from this logging configuration's "
                          "S3Handler (${VAR} expanded as configure() does)")
    ddl.add_argument("--handler", default=None, help="which handler of --config")


def ddl_from_args(args: argparse.Namespace) -> str:
    """The DDL the parsed ``args`` ask for. Raises ``ValueError`` with a sentence for a
    refused name, template or option (the CLI prints it and exits 2)."""
    mode, template, data_format = args.mode, args.key_template, args.format
    if args.config:
        from ._replay_options import handler_settings

        settings = handler_settings(args.config, args.handler)
        mode = str(settings.get("mode") or mode)
        template = template or settings.get("key_template") or None
        data_format = data_format or settings.get("format") or None
    elif args.handler:
        raise ValueError("--handler needs --config")
    values: dict[str, list[str]] = {}
    for item in args.partition_values:
        column, sep, listed = item.partition("=")
        if not sep or not column or not listed:
            msg = f"--partition-values takes COLUMN=A,B,C, got {item!r}"
            raise ValueError(msg)
        values[column.strip().lower()] = [v for v in listed.split(",") if v]
    return athena_ddl(bucket=args.bucket, prefix=args.prefix, table=args.table,
                      database=args.database, mode=mode, sample=args.sample,
                      key_template=template, partition_values=values,
                      data_format="json" if data_format in (None, "ndjson") else data_format)
