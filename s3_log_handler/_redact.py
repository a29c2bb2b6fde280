"""PII controls applied before serialisation: remove fields, or replace them by a keyed hash.

Pure functions over the payload; the caller's original dict is never modified (only the
dicts along a redacted path are copied).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

from ._diagnostics import Reports

HASH_KEY_VAR = "ANALYTICS_HASH_KEY"
Redactor = Callable[[Any], Any]
_warnings = Reports()


def keyed_hash(value: object, key: bytes) -> str:
    """HMAC-SHA256 of ``str(value)`` under ``key``, hex: stable for joins, not reversible."""
    return hmac.new(key, str(value).encode("utf-8"), hashlib.sha256).hexdigest()


def make_redactor(settings: Any, environ: Mapping[str, str] | None = None) -> Redactor:
    """The function that applies ``settings.redact_fields``/``hash_fields`` to a payload.

    Fields are dotted paths (``discovered_signals.contact.phone``). Hashing uses the key in
    ``$ANALYTICS_HASH_KEY``; when it is missing the hashed fields are *removed* instead
    (fail closed: an unkeyed hash of an email is reversed by a dictionary) and one warning
    names the variable. Returns the identity when nothing is configured.
    """
    redact = [tuple(p.split(".")) for p in settings.redact_fields]
    hashed = [tuple(p.split(".")) for p in settings.hash_fields]
    if not redact and not hashed:
        return identity
    secret = (os.environ if environ is None else environ).get(HASH_KEY_VAR, "")
    if hashed and not secret:
        _warnings.report("no-hash-key", logging.WARNING,
                         "hash_fields is set but %s is not: removing %s instead of hashing",
                         HASH_KEY_VAR, ", ".join(".".join(p) for p in hashed))
        redact, hashed = redact + hashed, []
    key = secret.encode("utf-8")

    def apply(payload: Any) -> Any:
        if not isinstance(payload, Mapping):
            return payload
        for path in redact:
            payload = _rewrite(payload, path, None)
        for path in hashed:
            payload = _rewrite(payload, path, lambda v: keyed_hash(v, key))
        return payload

    return apply


def identity(payload: Any) -> Any:
    """The redactor when nothing is configured: the payload unchanged (the handler then
    skips the call altogether)."""
    return payload


def _rewrite(node: Mapping[str, Any], path: tuple[str, ...],
             replace: Callable[[Any], Any] | None) -> Mapping[str, Any]:
    """A copy of ``node`` with ``path`` removed (``replace is None``) or replaced.

    A path runs through lists too: ``tool_calls.args.email`` reaches every element's field.
    """
    head, rest = path[0], path[1:]
    if head not in node:
        return node
    copy = dict(node)
    if rest:
        copy[head] = _rewrite_child(node[head], rest, replace)
        return copy
    if replace is None:
        del copy[head]
    else:
        copy[head] = replace(node[head])
    return copy


def _rewrite_child(child: Any, rest: tuple[str, ...],
                   replace: Callable[[Any], Any] | None) -> Any:
    if isinstance(child, Mapping):
        return _rewrite(child, rest, replace)
    if isinstance(child, list | tuple):
        return [_rewrite_child(item, rest, replace) for item in child]
    return child
