"""The least-privilege IAM policy an S3Handler needs at run time, as a plain dict.

The handler only ever calls ``PutObject`` (no ListBucket, HeadBucket, CreateBucket or
GetObject), so that is all the policy grants, scoped to the handler's prefix.
"""

from __future__ import annotations

from typing import Any

from . import _names as names

POLICY_VERSION = "2012-10-17"
#: botocore's flexible checksums (CRC32 by default) and ``ExpectedBucketOwner`` need no
#: permission beyond ``s3:PutObject``.
S3_ACTIONS = ("s3:PutObject",)
# A single-part PutObject with SSE-KMS needs only kms:GenerateDataKey: S3 asks KMS for a data
# key on the caller's behalf. kms:Decrypt is needed for multipart uploads (which the handler
# never makes) and for reading; kms:Encrypt is never called by S3 for a PUT. See
# https://repost.aws/knowledge-center/s3-large-file-encryption-kms-key and
# https://docs.aws.amazon.com/AmazonS3/latest/userguide/UsingKMSEncryption.html
KMS_ACTIONS = ("kms:GenerateDataKey",)


def object_arn(bucket: str, prefix: str) -> str:
    """The ARN of every object under ``prefix`` in ``bucket``: ``arn:aws:s3:::B/P/*``."""
    return f"arn:aws:s3:::{bucket}/{prefix}/*" if prefix else f"arn:aws:s3:::{bucket}/*"


def iam_policy(bucket: str, prefix: str = "sessions", kms_key: str | None = None) -> dict[str, Any]:
    """The identity policy an S3Handler writing to ``s3://bucket/prefix/`` needs, as JSON data.

    One statement allows ``s3:PutObject`` on :func:`object_arn`; when ``kms_key`` is given, a
    second allows ``kms:GenerateDataKey`` on that key only. Raises ``ValueError`` naming the
    value and the rule for a bucket that is not an S3 bucket name, a prefix the handler
    would refuse (an empty prefix grants the whole bucket) and a key that is not a full key
    ARN (IAM resources need it, not a key id or alias); wildcards are refused in all three.
    """
    names.bucket(bucket)
    if prefix:
        names.prefix(prefix)
    statements: list[dict[str, Any]] = [{
        "Sid": "WriteAnalyticsObjects",
        "Effect": "Allow",
        "Action": list(S3_ACTIONS),
        "Resource": object_arn(bucket, prefix),
    }]
    if kms_key is not None:
        statements.append({
            "Sid": "EncryptAnalyticsObjects",
            "Effect": "Allow",
            "Action": list(KMS_ACTIONS),
            "Resource": names.kms_key_arn(kms_key, "kms_key"),
        })
    return {"Version": POLICY_VERSION, "Statement": statements}


#: What ``inspect`` calls: ListObjectsV2 (authorised by s3:ListBucket) and GetObject.
READER_ACTIONS = ("s3:ListBucket", "s3:GetObject")


def reader_policy(bucket: str, prefix: str = "sessions",
                  kms_key: str | None = None) -> dict[str, Any]:
    """The read-only policy ``s3-log-handler inspect`` needs on ``s3://bucket/prefix/``.

    ``s3:ListBucket`` on the bucket, limited by an ``s3:prefix`` condition to ``prefix/*``,
    and ``s3:GetObject`` on :func:`object_arn`; with ``kms_key``, ``kms:Decrypt`` on that key
    (reading an SSE-KMS object needs it). Nothing that writes or deletes. Raises
    ``ValueError`` for the same names :func:`iam_policy` refuses.
    """
    names.bucket(bucket)
    if prefix:
        names.prefix(prefix)
    listing: dict[str, Any] = {"Sid": "ListAnalyticsObjects", "Effect": "Allow",
                               "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{bucket}"}
    if prefix:
        listing["Condition"] = {"StringLike": {"s3:prefix": [f"{prefix}/*"]}}
    statements: list[dict[str, Any]] = [listing, {
        "Sid": "ReadAnalyticsObjects", "Effect": "Allow", "Action": "s3:GetObject",
        "Resource": object_arn(bucket, prefix)}]
    if kms_key is not None:
        statements.append({"Sid": "DecryptAnalyticsObjects", "Effect": "Allow",
                           "Action": "kms:Decrypt",
                           "Resource": names.kms_key_arn(kms_key, "kms_key")})
    return {"Version": POLICY_VERSION, "Statement": statements}


def compactor_policy(bucket: str, prefix: str = "sessions", dest_prefix: str | None = None,
                     kms_key: str | None = None) -> dict[str, Any]:
    """The policy ``s3-log-handler compact`` needs: read sources, write and check parts.

    ``s3:ListBucket`` limited to both prefixes (it finds the day's folders and old parts);
    ``s3:GetObject`` on both (sources, parts read back, manifests); ``s3:PutObject`` and
    ``s3:DeleteObject`` on the destination only (parts, manifests, superseded parts); and
    ``s3:DeleteObject`` on the sources in a statement of its own, used only with
    ``--delete-sources`` (drop it to make that flag fail). With ``kms_key``: ``kms:Decrypt``
    (reading) and ``kms:GenerateDataKey`` (writing). ``dest_prefix`` defaults to
    ``PREFIX-compacted`` as in ``compact``. Raises ``ValueError`` like :func:`iam_policy`.
    """
    names.bucket(bucket)
    names.prefix(prefix)
    dest = names.prefix(dest_prefix or f"{prefix}-compacted", "dest_prefix")
    statements: list[dict[str, Any]] = [
        {"Sid": "ListSourcesAndParts", "Effect": "Allow", "Action": "s3:ListBucket",
         "Resource": f"arn:aws:s3:::{bucket}",
         "Condition": {"StringLike": {"s3:prefix": [f"{prefix}/*", f"{dest}/*"]}}},
        {"Sid": "ReadSourcesAndParts", "Effect": "Allow", "Action": "s3:GetObject",
         "Resource": [object_arn(bucket, prefix), object_arn(bucket, dest)]},
        {"Sid": "WriteParts", "Effect": "Allow", "Action": ["s3:PutObject", "s3:DeleteObject"],
         "Resource": object_arn(bucket, dest)},
        {"Sid": "DeleteCompactedSources", "Effect": "Allow", "Action": "s3:DeleteObject",
         "Resource": object_arn(bucket, prefix)},
    ]
    if kms_key is not None:
        statements.append({"Sid": "EncryptAndDecryptObjects", "Effect": "Allow",
                           "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
                           "Resource": names.kms_key_arn(kms_key, "kms_key")})
    return {"Version": POLICY_VERSION, "Statement": statements}
