"""Child for tests/test_e2e_spool_security.py: the shipped logging.yaml run as another user.

Started as root. It first runs the shipped configuration once as root (so every module the
handler needs is imported while the interpreter's own files, under /root, are readable),
then drops to ``--uid`` with ``os.setuid`` and applies the shipped ``logging.yaml`` again
with ``ANALYTICS_SPOOL_DIR`` unset: the default ``spool_dir: auto``. It logs one record,
flushes, and prints one JSON line: the spool directory the handler chose (or ``null`` when
it refused one), its owner and modes, whether the flush delivered, and whether this user
can list ``--other`` (another user's spool directory).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import stat
import sys
import tempfile
from importlib import resources

from s3_log_handler import S3Handler, configure

SHIPPED = str(resources.files("s3_log_handler") / "logging.yaml")


def _s3_handler() -> S3Handler:
    return next(h for h in logging.getLogger("analytics").handlers if isinstance(h, S3Handler))


def _send(record_id: str) -> S3Handler:
    configure(SHIPPED)
    handler = _s3_handler()
    logging.getLogger("analytics").info(
        "Session analytics data", extra={"analytics_data": {"session_id": record_id}})
    return handler


def _mode(path: str) -> str | None:
    try:
        return f"{stat.S_IMODE(os.lstat(path).st_mode):04o}"
    except OSError:
        return None


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--uid", type=int, required=True)
    parser.add_argument("--home", required=True)
    parser.add_argument("--tmpdir", required=True)
    parser.add_argument("--warmup-state", required=True)
    parser.add_argument("--other", default="")
    args = parser.parse_args()
    os.environ["TMPDIR"] = args.tmpdir
    tempfile.tempdir = None
    os.environ.pop("ANALYTICS_SPOOL_DIR", None)
    os.environ.pop("ANALYTICS_LOG_GROUP", None)

    # As root, into a spool of root's own: imports everything, delivers one record.
    os.environ.update({"HOME": "/root", "XDG_STATE_HOME": args.warmup_state})
    warm = _send(f"warmup-{args.uid}")
    warm.flush(10)
    warm.close()

    os.setgroups([])
    os.setgid(args.uid)
    os.setuid(args.uid)
    os.environ.pop("XDG_STATE_HOME")
    os.environ["HOME"] = args.home
    handler = _send(f"user-{args.uid}")
    flushed = handler.flush(10)
    spool = handler._spool
    directory = None if spool is None else spool.directory
    owner = None if directory is None else os.lstat(directory).st_uid
    other = "absent"
    if args.other:
        try:
            os.listdir(args.other)
            other = "listed"
        except PermissionError:
            other = "denied"
        except FileNotFoundError:
            other = "absent"
    print(json.dumps({
        "euid": os.geteuid(), "spool_dir": directory, "owner": owner,
        "mode": None if directory is None else _mode(directory),
        "dead_mode": None if directory is None else _mode(os.path.join(directory, "dead")),
        "flushed": flushed, "other": other,
    }), flush=True)
    handler.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
