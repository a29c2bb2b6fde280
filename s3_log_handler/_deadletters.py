"""Dead letters: records that can never be uploaded, kept as JSON files with their reason.

``spool_dir/dead/<ms>-<rand>.json`` holds ``{"reason", "key", "record_id", "created",
"put", "body"}``: ``body`` is the record's JSON line (or, for an ``encode_error``, the
payload's ``repr``) and ``put`` the put settings it was written with (see
:mod:`._spool_meta`). A ``too_large`` letter also holds the record's full ``size`` and its
``sha256``; past :data:`HEAD_BYTES` it keeps only the first bytes as ``head`` (with
``"truncated": true``), never the whole payload. A letter ``replay`` tried again and that
was dead-lettered again keeps its file and gains ``attempts``, ``last_reason`` and
``last_attempt``.

A letter holds PII: it is created ``0600`` (whatever the umask), never over an existing
name nor through a symlink, and replaced only by a rename. :mod:`._letter_area` bounds the
area and does the accounting; this module is the format and the file operations.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from ._records import Entry

#: The dead-letter area keeps at most this many letters; past it they are only counted.
DEAD_LETTER_CAP = 10_000
#: A ``too_large`` letter keeps at most this much of the record (plus its size and sha256).
HEAD_BYTES = 64 * 1024
#: Letters ``replay --dead-letters`` never sends again: their line failed its HMAC, so what
#: it says cannot be trusted (they stay in ``dead/`` for a person to look at).
NOT_REPLAYED = frozenset({"tampered"})
LETTER_SUFFIX = ".json"
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead letter read back: its file, its payload (a JSON object), record time, the
    put settings it was written with and how often ``replay`` tried it again."""

    path: str
    payload: dict[str, Any]
    created: float
    reason: str = ""
    put: Mapping[str, str] | None = None
    attempts: int = 0


def letter_document(entry: Entry, reason: str, put: Mapping[str, str] | None = None) -> bytes:
    """The letter for ``entry`` dead-lettered with ``reason``, as the bytes of its file."""
    document: dict[str, Any] = {"reason": reason, "key": entry.key,
                                "record_id": entry.record_id, "created": entry.created}
    if put:
        document["put"] = dict(put)
    body = entry.body
    if reason == "too_large":
        document["size"] = len(body)
        document["sha256"] = hashlib.sha256(body).hexdigest()
        if len(body) > HEAD_BYTES:
            document["truncated"] = True
            return _with_head(document, body[:HEAD_BYTES].decode("utf-8", "ignore"))
    document["body"] = body.decode("utf-8", "replace").rstrip("\n")
    return orjson.dumps(document)


def _with_head(document: dict[str, Any], head: str) -> bytes:
    """``document`` with ``head``, cut further if JSON escaping (quotes, backslashes) would
    take the letter past :data:`HEAD_BYTES` plus a little."""
    limit = HEAD_BYTES + 4096
    while True:
        document["head"] = head
        data = orjson.dumps(document)
        if len(data) <= limit or not head:
            return data
        head = head[:max(0, len(head) * HEAD_BYTES // len(data) - 64)]


def again(old: bytes, reason: str) -> bytes:
    """Letter ``old`` after ``replay`` tried it once more and it was dead-lettered again
    with ``reason``: the same letter (first reason kept) with its attempt count raised."""
    document = orjson.loads(old)
    if not isinstance(document, dict):
        raise ValueError("not a dead letter")
    document["attempts"] = int(document.get("attempts") or 0) + 1
    document["last_reason"] = reason
    document["last_attempt"] = round(time.time(), 3)
    return orjson.dumps(document)


def new_letter_path(dead_dir: str) -> str:
    """A fresh letter name in ``dead_dir``, oldest first when sorted."""
    return os.path.join(dead_dir, f"{int(time.time() * 1000):013d}-{uuid.uuid4().hex[:12]}"
                        f"{LETTER_SUFFIX}")


def write_private(path: str, data: bytes) -> None:
    """Create ``path`` (``0600``) holding ``data``; on failure no partial letter is left."""
    fd = os.open(path, _CREATE, 0o600)
    try:
        os.fchmod(fd, 0o600)
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            if written <= 0:
                raise OSError(errno.ENOSPC, "short write of a dead letter", path)
            view = view[written:]
    except BaseException:
        os.close(fd)
        with contextlib.suppress(Exception):
            os.unlink(path)
        raise
    os.close(fd)


def replace_private(path: str, data: bytes) -> None:
    """Replace the letter at ``path`` by ``data`` through a new private file and a rename."""
    tmp = f"{path}.{uuid.uuid4().hex[:12]}.tmp"
    write_private(tmp, data)
    try:
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(Exception):
            os.unlink(tmp)
        raise


def read_letter(path: str) -> bytes:
    """The bytes of the letter at ``path`` (never through a symlink nor from a FIFO)."""
    fd = os.open(path, _READ)
    owned = False  # once open() has it, closing the file closes the descriptor
    try:
        with open(fd, "rb") as f:
            owned = True
            return f.read()
    finally:
        if not owned:
            os.close(fd)


def letter_names(dead_dir: str) -> list[str]:
    """The names of the letters in ``dead_dir``, oldest first (temporary files left out)."""
    return sorted(n for n in os.listdir(dead_dir) if n.endswith(LETTER_SUFFIX))


def replayable_dead_letters(dead_dir: str, skip: frozenset[str] = NOT_REPLAYED,
                            skipped: Counter[str] | None = None) -> Iterator[DeadLetter]:
    """The dead letters whose body is a JSON object, oldest first, except those whose
    reason is in ``skip`` (by default ``tampered`` ones: untrusted). Every other letter is
    counted in ``skipped`` by why: ``tampered`` (or another reason in ``skip``),
    ``truncated`` (a ``too_large`` letter that kept only the head), ``not_an_object``,
    ``not_json`` (an ``encode_error`` letter keeps only a ``repr``) or ``unreadable``."""
    tally: Counter[str] = Counter() if skipped is None else skipped
    for name in letter_names(dead_dir):
        path = os.path.join(dead_dir, name)
        try:
            letter = orjson.loads(read_letter(path))
            reason = str(letter.get("reason"))
        except (OSError, orjson.JSONDecodeError, AttributeError):
            tally["unreadable"] += 1
            continue
        if reason in skip:
            tally[reason] += 1
            continue
        if "body" not in letter:
            tally["truncated" if letter.get("truncated") else "unreadable"] += 1
            continue
        try:
            payload = orjson.loads(letter["body"])
        except (orjson.JSONDecodeError, TypeError):
            tally["not_json"] += 1
            continue
        if not isinstance(payload, dict):
            tally["not_an_object"] += 1
            continue
        put = letter.get("put")
        yield DeadLetter(path, payload, float(letter.get("created") or 0.0), reason,
                         put if isinstance(put, dict) else None,
                         int(letter.get("attempts") or 0))
