"""Deliver what a spool directory holds: segments left by dead processes, and dead letters."""

from __future__ import annotations

import logging
import os
from typing import Any

from ._deadletters import replayable_dead_letters
from ._handler import S3Handler


def replay(spool_dir: str, *, retry_dead_letters: bool = False, timeout: float = 60.0,
           **handler_options: Any) -> dict[str, Any]:
    """Upload every abandoned segment in ``spool_dir`` and return the handler's counters.

    With ``retry_dead_letters``, dead letters whose body is a JSON object are re-emitted
    (through the spool, so none is lost if this run dies) and their dead-letter files removed.
    Waits at most ``timeout`` seconds; whatever is not delivered stays in the spool. Raises
    ``ValueError`` when ``spool_dir`` is not a directory or no bucket is configured (a
    disabled handler would upload nothing and report success).
    """
    if not os.path.isdir(spool_dir):
        msg = f"spool directory {spool_dir!r} does not exist"
        raise ValueError(msg)
    handler = S3Handler(spool_dir=spool_dir, **handler_options)
    if not handler.config.enabled:
        handler.close()
        msg = "no bucket: pass --bucket or set ANALYTICS_S3_BUCKET"
        raise ValueError(msg)
    retried = _re_emit_dead_letters(handler, os.path.join(spool_dir, "dead")) if (
        retry_dead_letters) else 0
    handler.wait_idle(timeout)
    handler.close()
    stats = handler.stats()
    stats["dead_letters_retried"] = retried
    stats["dead_letters_left"] = len(os.listdir(os.path.join(spool_dir, "dead")))
    return stats


def _re_emit_dead_letters(handler: S3Handler, dead_dir: str) -> int:
    retried = 0
    for letter in replayable_dead_letters(dead_dir):
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
