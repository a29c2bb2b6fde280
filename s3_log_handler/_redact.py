"""PII controls: convert a payload to plain JSON types, then remove fields or replace them by
a keyed hash, before anything is serialised.

Paths match keys as the query engines see them: case-insensitively (Athena's Hive JSON SerDe
lowercases keys into one column), through lists, and across literal dotted keys
(``{"contact.phone": ...}`` is matched by ``contact.phone``). Conversion comes first, so a
dataclass, a ``model_dump()`` model, a NamedTuple or an enum/int key cannot hide a field.
The caller's payload is never modified: conversion builds a new tree, changed in place.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
from collections.abc import Mapping
from typing import Any

import orjson

from ._diagnostics import Reports
from ._plain import to_plain

HASH_KEY_VAR = "ANALYTICS_HASH_KEY"
#: A shorter key could be found by trying keys against a list of known values.
MIN_HASH_KEY_BYTES = 32
_REMOVE, _HASH = "remove", "hash"
_warnings = Reports()


def canonical(value: Any) -> bytes:
    """The type-tagged canonical form that is hashed: compact JSON with sorted keys.

    ``5`` is ``5`` and ``"5"`` is ``"5"`` (with its quotes), ``None`` is ``null``: values of
    different types never share a form. Non-JSON values are converted first (as stored).
    """
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # not plain yet, or an integer beyond 64 bits
        plain = to_plain(value, fail_closed=False).value
        try:
            return orjson.dumps(plain, option=orjson.OPT_SORT_KEYS)
        except TypeError:
            return json.dumps(plain, sort_keys=True, separators=(",", ":"),
                              ensure_ascii=False).encode("utf-8")


def keyed_hash(value: object, key: bytes) -> str:
    """HMAC-SHA256 of ``canonical(value)`` under ``key``, hex: stable for joins, not
    reversible without the key."""
    return hmac.new(key, canonical(value), hashlib.sha256).hexdigest()


class _Node:
    """One step of the compiled paths: children by lowercased key, and what to do here."""

    __slots__ = ("action", "children")

    def __init__(self) -> None:
        self.action: str | None = None
        self.children: dict[str, _Node] = {}


class Redactor:
    """Applies compiled ``redact``/``hash`` paths. Build it with :func:`make_redactor`.

    Calling it returns the converted, redacted payload; :meth:`apply` also returns how many
    values conversion dropped or changed (for the ``fallbacks`` counter).
    """

    def __init__(self, redact: tuple[str, ...] = (), hashed: tuple[str, ...] = (),
                 key: bytes = b"") -> None:
        self.redact_fields, self.hash_fields = redact, hashed
        self._key = key
        self._root = _Node()
        for paths, action in ((hashed, _HASH), (redact, _REMOVE)):  # remove wins
            for path in paths:
                node = self._root
                for part in path.lower().split("."):
                    node = node.children.setdefault(part, _Node())
                node.action = action

    @property
    def active(self) -> bool:
        """False for the identity: nothing configured, payloads pass through untouched."""
        return bool(self._root.children)

    def __call__(self, payload: Any) -> Any:
        return self.apply(payload)[0]

    def apply(self, payload: Any) -> tuple[Any, int]:
        """``(converted and redacted payload, fallbacks)``; the identity when not active.
        Raises :class:`~s3_log_handler._plain.EncodeError` only for nesting deeper than the
        interpreter can walk."""
        if not self._root.children:
            return payload, 0
        plain = to_plain(payload, fail_closed=True)
        self.strip(plain.value)
        return plain.value, plain.fallbacks

    def strip(self, value: Any, node: _Node | None = None) -> None:
        """Remove or hash, in place, what the paths reach in ``value`` (plain JSON types)."""
        node = self._root if node is None else node
        if type(value) is list:
            for item in value:
                self.strip(item, node)
            return
        if type(value) is not dict:
            return
        for key in list(value):
            lowered = key.lower()
            target = node.children.get(lowered)
            if target is None and "." in lowered:  # a literal dotted key
                target = node
                for part in lowered.split("."):
                    target = target.children.get(part) if target is not None else None
            if target is None:
                continue
            if target.action == _REMOVE:
                del value[key]
            elif target.action == _HASH:
                value[key] = keyed_hash(value[key], self._key)
            else:
                self.strip(value[key], target)


#: The redactor when nothing is configured (the handler then skips the call altogether).
identity = Redactor()


def make_redactor(settings: Any, environ: Mapping[str, str] | None = None) -> Redactor:
    """The :class:`Redactor` for ``settings.redact_fields``/``hash_fields`` (checked paths).

    Hashing uses the key in ``$ANALYTICS_HASH_KEY``, which must be at least
    :data:`MIN_HASH_KEY_BYTES` bytes (UTF-8). When it is missing or shorter, the hashed
    fields are *removed* instead (fail closed: an unkeyed or short-keyed hash of an email is
    reversed by trying a dictionary) and one warning says why, naming the variable but never
    its value. Returns :data:`identity` when nothing is configured.
    """
    redact, hashed = tuple(settings.redact_fields), tuple(settings.hash_fields)
    if not redact and not hashed:
        return identity
    key = (os.environ if environ is None else environ).get(HASH_KEY_VAR, "").encode("utf-8")
    if hashed and len(key) < MIN_HASH_KEY_BYTES:
        why = "is not set" if not key else (
            f"is shorter than {MIN_HASH_KEY_BYTES} bytes ({len(key)})")
        _warnings.report("no-hash-key", logging.WARNING,
                         "hash_fields is set but %s %s: removing %s instead of hashing",
                         HASH_KEY_VAR, why, ", ".join(hashed))
        redact, hashed, key = redact + hashed, (), b""
    return Redactor(redact, hashed, key)
