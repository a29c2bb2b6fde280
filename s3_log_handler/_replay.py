"""Deliver what a spool directory holds: segments left by dead processes, and dead letters."""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Mapping
from typing import Any

from ._deadletters import NOT_REPLAYED, letter_names, replayable_dead_letters
from ._handler import S3Handler
from ._letter_area import REMOVED, WAIT, LetterArea
from ._records import Entry
from ._segment_files import SEGMENT_SUFFIX, read_settings
from ._settings import HandlerConfig
from ._spool_dir import spool_problem
from ._spool_meta import describe, flags, put_settings, unmet


class ReplayRefused(ValueError):
    """``replay`` would weaken the protection the spool's records were written with."""


def replay(spool_dir: str, *, retry_dead_letters: bool = False, timeout: float = 60.0,
           resend_tampered: bool = False, **handler_options: Any) -> dict[str, Any]:
    """Upload every abandoned segment in ``spool_dir`` and return the handler's counters.

    ``handler_options`` are the handler's settings (``s3-log-handler replay --config``
    takes them from its logging configuration). Records written with security settings
    (``sse``, ``sse_kms_key_id``, ``expected_bucket_owner``; recorded in each segment and
    dead letter) that these options would not keep are never uploaded: :class:`ReplayRefused`
    says which settings to pass, before anything is sent.

    With ``retry_dead_letters``, dead letters whose body is a JSON object are re-emitted
    (through the spool, so none is lost if this run dies). A letter is removed only once its
    record is delivered or safely queued (in the spool); one dead-lettered again keeps its
    file and gains an attempt count; one whose re-emit raised stays. The counts come back
    by reason (``dead_letters_kept``, ``dead_letters_skipped``, ``dead_letters_errors``).
    Waits at most ``timeout`` seconds; whatever is not delivered stays in the spool.

    Nothing read from the directory is trusted: every line's key is checked against the
    handler's prefix and key template (a line that fails is dead-lettered ``foreign_key``),
    and with ``spool_hmac_key`` or ``$ANALYTICS_SPOOL_KEY`` its HMAC (``tampered``).
    Dead letters kept as ``tampered`` are re-sent only with ``resend_tampered`` (for lines
    written before the key was set, once a person has looked at them): under a key made
    afresh from their payload, never the one their line named.

    Raises ``ValueError`` when ``spool_dir`` is not a directory, is not ours (a symlink,
    another owner, writable by group or others: the message says how to fix it), no
    bucket is configured (a disabled handler would upload nothing and report success), or
    (:class:`ReplayRefused`) the settings would weaken the records' protection.
    """
    if not os.path.lexists(spool_dir):
        msg = f"spool directory {spool_dir!r} does not exist"
        raise ValueError(msg)
    problem = spool_problem(spool_dir)
    if problem is not None:
        msg = f"spool directory refused: {problem}"
        raise ValueError(msg)
    # An absolute path: a directory named "auto" is that directory, not the default one.
    directory = os.path.abspath(spool_dir)
    ours = put_settings(HandlerConfig.from_kwargs(spool_dir=directory, **handler_options))
    skip = frozenset() if resend_tampered else NOT_REPLAYED
    refuse_weaker_settings(directory, ours, skip if retry_dead_letters else None)
    handler = S3Handler(spool_dir=directory, **handler_options)
    if not handler.config.enabled:
        handler.close()
        msg = "no bucket: pass --bucket or set ANALYTICS_S3_BUCKET"
        raise ValueError(msg)
    spool = handler._spool
    if spool is None:  # refused or unusable after all: its ERROR says why
        handler.close()
        msg = f"spool directory {spool_dir!r} cannot be used (see the error above)"
        raise ValueError(msg)
    letters = _LetterRun(handler, spool.letters)
    if retry_dead_letters:
        letters.re_emit(skip)
    handler.wait_idle(timeout)
    letters.finish()
    handler.close()
    stats = handler.stats()
    stats.update(letters.counts())
    stats["dead_letters_left"] = len(letter_names(spool.dead_dir))
    return stats


def refuse_weaker_settings(directory: str, ours: Mapping[str, str],
                           letter_skip: frozenset[str] | None) -> None:
    """Raise :class:`ReplayRefused` when a segment in ``directory`` (or, unless
    ``letter_skip`` is ``None``, a dead letter replay would re-send) records a security
    setting that ``ours`` would not keep."""
    missing: dict[str, str] = {}
    holders = 0
    for name in sorted(os.listdir(directory)):
        if name.endswith(SEGMENT_SUFFIX):
            found = unmet(read_settings(os.path.join(directory, name)), ours)
            missing.update(found)
            holders += bool(found)
    if letter_skip is not None:
        for letter in replayable_dead_letters(os.path.join(directory, "dead"), letter_skip):
            found = unmet(letter.put, ours)
            missing.update(found)
            holders += bool(found)
    if not missing:
        return
    msg = (f"spool {directory} holds records written with {describe(missing, ours)} "
           f"({holders} segment(s) or letter(s)); replay would upload them without that "
           f"protection. Run it with the handler's settings: --config LOGGING_YAML, or "
           f"{flags(missing)}")
    raise ReplayRefused(msg)


class _LetterRun:
    """One ``--dead-letters`` pass: re-emit each letter's record and settle its file."""

    def __init__(self, handler: S3Handler, area: LetterArea) -> None:
        self._handler = handler
        self._area = area
        self.retried = 0
        self.errors = 0
        self.kept: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()
        self._waiting: list[tuple[Entry, str]] = []

    def re_emit(self, skip: frozenset[str]) -> None:
        """Re-emit every replayable letter; what is not safely queued yet waits."""
        handler = self._handler
        for letter in replayable_dead_letters(self._area.dead_dir, skip, self.skipped):
            record = logging.makeLogRecord({
                "name": "analytics.replay", "levelno": logging.INFO, "levelname": "INFO",
                "msg": "replayed dead letter", "created": letter.created,
                handler.config.attribute: letter.payload,
            })
            before = handler.stats()
            try:
                entry = handler._ship(record, letter.path)
            except Exception:  # the letter stays where it is
                self.errors += 1
                self.kept["error"] += 1
                continue
            fate = self._area.settle_retry(entry, letter.path)
            if fate == REMOVED:
                self.retried += 1
            elif fate == WAIT and entry is not None:
                self._waiting.append((entry, letter.path))
            else:
                self.kept[_why(before, handler.stats())] += 1

    def finish(self) -> None:
        """Settle the letters whose records were queued in memory only (after the wait)."""
        for entry, path in self._waiting:
            if self._area.settle_retry(entry, path) == REMOVED:
                self.retried += 1
            else:
                self.kept["undelivered"] += 1
        self._waiting = []

    def counts(self) -> dict[str, Any]:
        """What became of the letters, by reason."""
        return {"dead_letters_retried": self.retried, "dead_letters_errors": self.errors,
                "dead_letters_kept": dict(self.kept), "dead_letters_skipped": dict(self.skipped)}


def _why(before: Mapping[str, Any], after: Mapping[str, Any]) -> str:
    """The reason a re-emitted record was dead-lettered or dropped, from the counters."""
    for name in ("dead_letter_reasons", "dropped_reasons"):
        grown = Counter(after[name])
        grown.subtract(before[name])
        reasons = [str(reason) for reason, n in grown.items() if n > 0]
        if reasons:
            return reasons[0]
    return "unknown"
