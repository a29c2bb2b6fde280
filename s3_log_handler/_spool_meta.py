"""Which put settings a spool records, and whether an uploader keeps their protection.

Every segment starts with a settings line, and every dead letter carries a ``put`` field:
the put settings in force when its records were written (names and values such as
``sse="aws:kms"``, a KMS key ARN or an account id; never a secret). Before records read back
from disk are uploaded (a handler adopting a dead owner's segment, ``s3-log-handler
replay``), the uploader's own settings must keep every *security* setting recorded there:
the same server-side encryption, KMS key and expected bucket owner. A record written with
SSE is never re-sent without it, and a record written with ``expected_bucket_owner`` never
goes to a bucket nobody checked the owner of. Storage class, ACL and checksum are recorded
too, for a person to read, but do not block an upload.
"""

from __future__ import annotations

from collections.abc import Mapping

from ._settings import HandlerConfig

#: Settings whose absence would weaken what the records were written with.
SECURITY = ("sse", "sse_kms_key_id", "expected_bucket_owner")
#: Every put setting recorded with the records.
RECORDED = (*SECURITY, "storage_class", "acl", "checksum_algorithm")
#: The ``replay`` flag that sets each security setting.
FLAGS = {"sse": "--sse", "sse_kms_key_id": "--sse-kms-key-id",
         "expected_bucket_owner": "--expected-bucket-owner"}


def put_settings(config: HandlerConfig) -> dict[str, str]:
    """The put settings of ``config`` that are set, by name (what the spool records)."""
    values = {name: getattr(config, name) for name in RECORDED}
    return {name: str(value) for name, value in values.items() if value}


def unmet(recorded: Mapping[str, str] | None, ours: Mapping[str, str]) -> dict[str, str]:
    """The security settings ``recorded`` with some records that ``ours`` does not keep
    (missing, or another value), by name; empty when uploading them with ``ours`` is fine.

    Records with nothing recorded (written by an older version, or with no such setting)
    may be uploaded with any settings."""
    if not recorded:
        return {}
    return {name: recorded[name] for name in SECURITY
            if recorded.get(name) and ours.get(name) != recorded[name]}


def describe(missing: Mapping[str, str], ours: Mapping[str, str]) -> str:
    """``sse='AES256' (this run: none)``, for each setting in ``missing``."""
    return ", ".join(
        f"{name}={value!r} (this run: {repr(ours[name]) if ours.get(name) else 'none'})"
        for name, value in sorted(missing.items()))


def flags(missing: Mapping[str, str]) -> str:
    """The ``replay`` flags that set ``missing`` (``--sse AES256 ...``)."""
    return " ".join(f"{FLAGS[name]} {value}" for name, value in sorted(missing.items()))
