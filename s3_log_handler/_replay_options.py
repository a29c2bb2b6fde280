"""The settings ``s3-log-handler replay`` runs with: the handler's own, and explicit flags.

``--config logging.yaml [--handler s3]`` takes the keyword arguments of an ``S3Handler`` in
that file, with ``${VAR}`` expanded exactly as :func:`~._config.configure` does; flags
(``--bucket``, ``--sse``, ``--expected-bucket-owner``, ...) override them. The spool
directory is the positional argument, else the handler's ``spool_dir`` (``auto`` resolved
as the handler resolves it).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from typing import Any

from ._config import ConfigError, load_config
from ._spool_dir import resolve_spool_dir

#: ``class:`` values that name an S3Handler.
HANDLER_CLASSES = frozenset({"s3_log_handler.S3Handler", "s3_log_handler._handler.S3Handler"})
#: Keys of a handler entry that are dictConfig's, not S3Handler keyword arguments.
_DICTCONFIG_KEYS = frozenset({"class", "()", ".", "level", "formatter", "filters"})
#: Replay flags that set a handler keyword argument of the same name (dashes for underscores).
FLAGS = ("bucket", "prefix", "mode", "sse", "sse_kms_key_id", "expected_bucket_owner",
         "storage_class", "checksum_algorithm", "acl", "max_record_bytes", "endpoint_url",
         "region_name")


def add_replay_arguments(replay: argparse.ArgumentParser) -> None:
    """The ``replay`` subcommand's arguments."""
    replay.add_argument("spool_dir", nargs="?", default=None,
                        help="default: the spool_dir of the --config handler")
    replay.add_argument("--config", default=None, metavar="LOGGING_YAML",
                        help="take the S3Handler settings from this logging configuration "
                             "(${VAR} expanded as configure() does)")
    replay.add_argument("--handler", default=None, metavar="NAME",
                        help="which handler of --config (default: its only S3Handler)")
    replay.add_argument("--dead-letters", action="store_true", help="also retry dead letters")
    replay.add_argument("--timeout", type=float, default=60.0)
    replay.add_argument("--bucket", default=None, help="default: $ANALYTICS_S3_BUCKET")
    replay.add_argument("--prefix", default=None, help="default: sessions")
    replay.add_argument("--mode", choices=("object", "batch"), default=None,
                        help="default: object")
    replay.add_argument("--sse", choices=("AES256", "aws:kms"), default=None)
    replay.add_argument("--sse-kms-key-id", default=None, metavar="KEY_ARN")
    replay.add_argument("--expected-bucket-owner", default=None, metavar="ACCOUNT_ID")
    replay.add_argument("--storage-class", default=None)
    replay.add_argument("--checksum-algorithm", default=None)
    replay.add_argument("--acl", default=None)
    replay.add_argument("--max-record-bytes", type=int, default=None)
    replay.add_argument("--endpoint-url", default=None)
    replay.add_argument("--region-name", default=None)


def replay_settings(args: argparse.Namespace,
                    environ: Mapping[str, str] | None = None) -> tuple[str, dict[str, Any]]:
    """The spool directory and the ``S3Handler`` keyword arguments ``args`` ask for.

    Raises ``ValueError`` (:class:`~._config.ConfigError` for the file) with a sentence to
    show the user."""
    options: dict[str, Any] = {}
    if args.config:
        options = handler_settings(args.config, args.handler, environ)
    elif args.handler:
        raise ValueError("--handler needs --config")
    for name in FLAGS:
        value = getattr(args, name)
        if value is not None:
            options[name] = value
    configured_dir = options.pop("spool_dir", None)
    spool_dir = args.spool_dir
    if spool_dir is None:
        if not configured_dir:
            raise ValueError("no spool directory: pass SPOOL_DIR, or --config with a handler "
                             "that has spool_dir")
        bucket = options.get("bucket") or (environ or os.environ).get("ANALYTICS_S3_BUCKET")
        spool_dir = resolve_spool_dir(str(configured_dir), str(bucket or ""), environ)
    return spool_dir, options


def handler_settings(path: str, name: str | None = None,
                     environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The keyword arguments of handler ``name`` in the logging configuration at ``path``
    (by default its only S3Handler), ``${VAR}`` expanded."""
    document = load_config(path, environ)
    handlers = document.get("handlers")
    if not isinstance(handlers, dict):
        raise ConfigError(f"{path}: no handlers")
    ours = sorted(n for n, h in handlers.items()
                  if isinstance(h, dict) and str(h.get("class", "")) in HANDLER_CLASSES)
    if name is None:
        if len(ours) != 1:
            found = ", ".join(ours) or "none"
            raise ConfigError(f"{path}: pass --handler to choose one S3Handler (found: {found})")
        name = ours[0]
    if name not in ours:
        raise ConfigError(f"{path}: handler {name!r} is not an S3Handler (S3Handlers: "
                          f"{', '.join(ours) or 'none'})")
    entry: dict[str, Any] = handlers[name]
    return {str(k): v for k, v in entry.items() if k not in _DICTCONFIG_KEYS}
