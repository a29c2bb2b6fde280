"""Dead letters: records that can never be uploaded, kept as JSON files with their reason.

``spool_dir/dead/<ms>-<rand>.json`` holds ``{"reason", "key", "record_id", "created",
"body"}``; ``body`` is the record's JSON line (or, for an ``encode_error``, the payload's
``repr``). A letter holds the full payload, PII included: it is created ``0600`` (whatever
the umask), never over an existing name nor through a symlink. The area is capped so a flood
of bad records cannot fill the disk.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from ._records import Entry

#: The dead-letter area keeps at most this many records; past it they are only counted.
DEAD_LETTER_CAP = 10_000
#: Letters ``replay --dead-letters`` never sends again: their line failed its HMAC, so what
#: it says cannot be trusted (they stay in ``dead/`` for a person to look at).
NOT_REPLAYED = frozenset({"tampered"})
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead letter read back: its file, its payload (a JSON object) and record time."""

    path: str
    payload: dict[str, Any]
    created: float


def write_dead_letter(dead_dir: str, entry: Entry, reason: str) -> bool:
    """Keep ``entry`` in ``dead_dir`` with ``reason``; False when the area is full or fails."""
    try:
        if len(os.listdir(dead_dir)) >= DEAD_LETTER_CAP:
            return False
        name = f"{int(time.time() * 1000):013d}-{uuid.uuid4().hex[:12]}.json"
        document = {
            "reason": reason,
            "key": entry.key,
            "record_id": entry.record_id,
            "created": entry.created,
            "body": entry.body.decode("utf-8", "replace").rstrip("\n"),
        }
        _write_private(os.path.join(dead_dir, name), orjson.dumps(document))
    except OSError:
        return False
    return True


def _write_private(path: str, data: bytes) -> None:
    """Create ``path`` (``0600``) holding ``data``; on failure no partial letter is left."""
    fd = os.open(path, _CREATE, 0o600)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            if written <= 0:
                raise OSError(errno.ENOSPC, "short write of a dead letter", path)
            view = view[written:]
    except BaseException:
        with contextlib.suppress(Exception):
            os.unlink(path)
        raise
    finally:
        os.close(fd)


def replayable_dead_letters(dead_dir: str,
                            skip: frozenset[str] = NOT_REPLAYED) -> Iterator[DeadLetter]:
    """The dead letters whose body is a JSON object, oldest first (others are skipped:
    an ``encode_error`` letter keeps only a ``repr``, which cannot be sent as the record),
    except those whose reason is in ``skip`` (by default ``tampered`` ones: untrusted)."""
    for name in sorted(os.listdir(dead_dir)):
        path = os.path.join(dead_dir, name)
        try:
            letter = orjson.loads(_read_letter(path))
            if letter.get("reason") in skip:
                continue
            payload = orjson.loads(letter["body"])
        except (OSError, orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            continue
        if isinstance(payload, dict):
            yield DeadLetter(path, payload, float(letter.get("created") or 0.0))


def _read_letter(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    owned = False  # once open() has it, closing the file closes the descriptor
    try:
        with open(fd, "rb") as f:
            owned = True
            return f.read()
    finally:
        if not owned:
            os.close(fd)
