"""Names that end up in S3 keys, IAM policies and SQL: each rule in one place.

Every check returns the value unchanged or raises ``ValueError`` naming the setting, the
value and the rule it breaks, e.g. ``prefix must be a key prefix ([A-Za-z0-9][A-Za-z0-9._=/-]*
...), got 'sessions/' (str): it ends with '/'``. Used by the handler's settings (at
construction), ``athena-ddl`` and ``iam-policy`` (exit status 2).
"""

from __future__ import annotations

import re

BUCKET_RULE = ("an S3 bucket name (3-63 characters of a-z, 0-9, '.' and '-', starting and "
               "ending with a letter or digit)")
PREFIX_RULE = ("a key prefix matching [A-Za-z0-9][A-Za-z0-9._=/-]* with no '//', no '..', no "
               "segment starting with '_' or '.' and no trailing '/'")
KMS_KEY_RULE = "a full KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/KEY-ID)"
IDENTIFIER_RULE = "an Athena name matching [a-z_][a-z0-9_]*"

_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_IP_ADDRESS = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
#: Reserved for access point aliases, Object Lambda aliases, Multi-Region Access Points,
#: directory buckets and table buckets: no general purpose bucket has them.
_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
#: What a handler may also write to: an access point alias or a directory bucket.
_WRITABLE_SUFFIXES = ("-s3alias", "--x-s3")
_ACCESS_POINT_ARN = re.compile(
    r"arn:aws[a-z-]*:s3:[a-z0-9-]*:\d{12}:accesspoint/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]"
    r"|arn:aws[a-z-]*:s3-outposts:[a-z0-9-]+:\d{12}:outpost/[a-z0-9-]+/accesspoint/"
    r"[a-z0-9][a-z0-9-]{1,48}[a-z0-9]")
_PREFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9._=/-]*")
_KMS_KEY_ARN = re.compile(r"arn:aws[a-z-]*:kms:[a-z]{2}(?:-[a-z]+)+-\d+:\d{12}:key/[A-Za-z0-9-]+")
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")
_WILDCARDS = "*?"


def refuse(name: str, rule: str, value: object, why: str = "") -> ValueError:
    """``<name> must be <rule>, got <value> (<type>)[: why]`` as a ValueError."""
    shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
    return ValueError(f"{name} must be {rule}, got {shown} ({type(value).__name__})"
                      + (f": {why}" if why else ""))


def bucket(value: str, name: str = "bucket", *, writable: bool = False) -> str:
    """``value`` if it is a general purpose bucket name by S3's rules.

    With ``writable`` (the handler's target), an access point ARN, an access point alias
    (``...-s3alias``) and a directory bucket (``...--x-s3``) are accepted too.
    """
    if writable and value.startswith("arn:"):
        if not _ACCESS_POINT_ARN.fullmatch(value):
            raise refuse(name, "an S3 access point ARN (arn:aws:s3:REGION:ACCOUNT:"
                         "accesspoint/NAME)", value, _wildcards(value))
        return value
    suffixes = tuple(s for s in _RESERVED_SUFFIXES if not (writable and s in _WRITABLE_SUFFIXES))
    why = _wildcards(value)
    if not why and not 3 <= len(value) <= 63:
        why = "it is not 3 to 63 characters long"
    elif not why and not _BUCKET.fullmatch(value):
        why = "it has a character other than a-z, 0-9, '.' and '-', or starts or ends with one"
    elif not why and ".." in value:
        why = "it has two adjacent periods"
    elif not why and _IP_ADDRESS.fullmatch(value):
        why = "it is formatted as an IP address"
    elif not why and value.startswith(_RESERVED_PREFIXES):
        why = "it starts with a prefix S3 reserves (" + ", ".join(_RESERVED_PREFIXES) + ")"
    elif not why and value.endswith(suffixes):
        why = "it ends with a suffix S3 reserves (" + ", ".join(suffixes) + ")"
    if why:
        raise refuse(name, BUCKET_RULE, value, why)
    return value


def prefix(value: str, name: str = "prefix") -> str:
    """``value`` if it is a key prefix Hive, Athena and IAM all read as written."""
    segments = value.split("/")
    why = ""
    if not _PREFIX.fullmatch(value):
        why = _wildcards(value) or ("it does not start with a letter or digit, or has a "
                                    "character outside A-Z a-z 0-9 . _ = / -")
    elif "//" in value:
        why = "it has an empty segment ('//')"
    elif ".." in value:
        why = "it has '..'"
    elif value.endswith("/"):
        why = "it ends with '/'"
    elif any(s[:1] in ("_", ".") for s in segments):
        why = "a segment starts with '_' or '.' (Hive and Athena skip such folders)"
    if why:
        raise refuse(name, PREFIX_RULE, value, why)
    return value


def kms_key_arn(value: str, name: str = "sse_kms_key_id") -> str:
    """``value`` if it is a full KMS key ARN (no key id, alias or wildcard)."""
    if not _KMS_KEY_ARN.fullmatch(value):
        raise refuse(name, KMS_KEY_RULE, value, _wildcards(value))
    return value


def identifier(value: str, name: str) -> str:
    """``value`` if it is a table, database or column name Athena takes unquoted."""
    if not _IDENTIFIER.fullmatch(value):
        raise refuse(name, IDENTIFIER_RULE, value)
    return value


def is_identifier(value: str) -> bool:
    """True when ``value`` passes :func:`identifier`."""
    return _IDENTIFIER.fullmatch(value) is not None


def sql_literal(value: str) -> str:
    """``value`` as a single-quoted SQL string literal, its quotes doubled.

    Refuses backslashes and control characters, which Hive DDL reads as escapes.
    """
    if "\\" in value or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise refuse("a SQL string literal", "text without backslashes or control characters",
                     value)
    return "'" + value.replace("'", "''") + "'"


def _wildcards(value: str) -> str:
    found = [c for c in _WILDCARDS if c in value]
    return f"wildcards ({' '.join(found)}) are not allowed" if found else ""
