"""Deliver what a spool directory holds: segments left by dead processes, and dead letters."""

from __future__ import annotations

import logging
import os
from typing import Any

from ._deadletters import NOT_REPLAYED, replayable_dead_letters
from ._handler import S3Handler
from ._spool_dir import spool_problem


def replay(spool_dir: str, *, retry_dead_letters: bool = False, timeout: float = 60.0,
           resend_tampered: bool = False, **handler_options: Any) -> dict[str, Any]:
    """Upload every abandoned segment in ``spool_dir`` and return the handler's counters.

    With ``retry_dead_letters``, dead letters whose body is a JSON object are re-emitted
    (through the spool, so none is lost if this run dies) and their dead-letter files removed.
    Waits at most ``timeout`` seconds; whatever is not delivered stays in the spool.

    Nothing read from the directory is trusted: every line's key is checked against the
    handler's prefix and key template (a line that fails is dead-lettered ``foreign_key``),
    and with ``spool_hmac_key`` or ``$ANALYTICS_SPOOL_KEY`` its HMAC (``tampered``).
    Dead letters kept as ``tampered`` are re-sent only with ``resend_tampered`` (for lines
    written before the key was set, once a person has looked at them): under a key made
    afresh from their payload, never the one their line named.

    Raises ``ValueError`` when ``spool_dir`` is not a directory, is not ours (a symlink,
    another owner, writable by group or others: the message says how to fix it) or no
    bucket is configured (a disabled handler would upload nothing and report success).
    """
    if not os.path.lexists(spool_dir):
        msg = f"spool directory {spool_dir!r} does not exist"
        raise ValueError(msg)
    problem = spool_problem(spool_dir)
    if problem is not None:
        msg = f"spool directory refused: {problem}"
        raise ValueError(msg)
    # An absolute path: a directory named "auto" is that directory, not the default one.
    handler = S3Handler(spool_dir=os.path.abspath(spool_dir), **handler_options)
    if not handler.config.enabled:
        handler.close()
        msg = "no bucket: pass --bucket or set ANALYTICS_S3_BUCKET"
        raise ValueError(msg)
    if handler._spool is None:  # refused or unusable after all: its ERROR says why
        handler.close()
        msg = f"spool directory {spool_dir!r} cannot be used (see the error above)"
        raise ValueError(msg)
    skip = frozenset() if resend_tampered else NOT_REPLAYED
    retried = _re_emit_dead_letters(handler, os.path.join(spool_dir, "dead"), skip) if (
        retry_dead_letters) else 0
    handler.wait_idle(timeout)
    handler.close()
    stats = handler.stats()
    stats["dead_letters_retried"] = retried
    stats["dead_letters_left"] = len(os.listdir(os.path.join(spool_dir, "dead")))
    return stats


def _re_emit_dead_letters(handler: S3Handler, dead_dir: str, skip: frozenset[str]) -> int:
    retried = 0
    for letter in replayable_dead_letters(dead_dir, skip):
        record = logging.makeLogRecord({
            "name": "analytics.replay", "levelno": logging.INFO, "levelname": "INFO",
            "msg": "replayed dead letter", "created": letter.created,
            handler.config.attribute: letter.payload,
        })
        before = handler.stats()["dead_lettered"]
        handler.handle(record)
        if handler.stats()["dead_lettered"] == before:
            os.unlink(letter.path)
            retried += 1
    return retried
