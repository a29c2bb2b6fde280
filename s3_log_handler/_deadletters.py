"""Dead letters: records that can never be uploaded, kept as JSON files with their reason.

``spool_dir/dead/<ms>-<rand>.json`` holds ``{"reason", "key", "record_id", "created",
"body"}``; ``body`` is the record's JSON line (or, for an ``encode_error``, the payload's
``repr``). The area is capped so a flood of bad records cannot fill the disk.
"""

from __future__ import annotations

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
        with open(os.path.join(dead_dir, name), "wb") as f:
            f.write(orjson.dumps(document))
    except OSError:
        return False
    return True


def replayable_dead_letters(dead_dir: str) -> Iterator[DeadLetter]:
    """The dead letters whose body is a JSON object, oldest first (others are skipped:
    an ``encode_error`` letter keeps only a ``repr``, which cannot be sent as the record)."""
    for name in sorted(os.listdir(dead_dir)):
        path = os.path.join(dead_dir, name)
        try:
            with open(path, "rb") as f:
                letter = orjson.loads(f.read())
            payload = orjson.loads(letter["body"])
        except (OSError, orjson.JSONDecodeError, KeyError, TypeError):
            continue
        if isinstance(payload, dict):
            yield DeadLetter(path, payload, float(letter.get("created") or 0.0))
