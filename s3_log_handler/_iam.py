"""The least-privilege IAM policy an S3Handler needs at run time, as a plain dict.

The handler only ever calls ``PutObject`` (no ListBucket, HeadBucket, CreateBucket or
GetObject), so that is all the policy grants, scoped to the handler's prefix.
"""

from __future__ import annotations

from typing import Any

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
    prefix = prefix.strip("/")
    return f"arn:aws:s3:::{bucket}/{prefix}/*" if prefix else f"arn:aws:s3:::{bucket}/*"


def iam_policy(bucket: str, prefix: str = "sessions", kms_key: str | None = None) -> dict[str, Any]:
    """The identity policy an S3Handler writing to ``s3://bucket/prefix/`` needs, as JSON data.

    One statement allows ``s3:PutObject`` on :func:`object_arn`; when ``kms_key`` (a key
    ARN) is given, a second allows ``kms:GenerateDataKey`` on that key only. Raises
    ``ValueError`` for an empty bucket name or a key that is not an ARN (IAM resources
    need the full ARN, not a key id or alias name).
    """
    if not bucket or "/" in bucket:
        msg = f"bucket must be a bare bucket name, got {bucket!r}"
        raise ValueError(msg)
    statements: list[dict[str, Any]] = [{
        "Sid": "WriteAnalyticsObjects",
        "Effect": "Allow",
        "Action": list(S3_ACTIONS),
        "Resource": object_arn(bucket, prefix),
    }]
    if kms_key:
        if not kms_key.startswith("arn:"):
            msg = f"kms_key must be a KMS key ARN (arn:aws:kms:...), got {kms_key!r}"
            raise ValueError(msg)
        statements.append({
            "Sid": "EncryptAnalyticsObjects",
            "Effect": "Allow",
            "Action": list(KMS_ACTIONS),
            "Resource": kms_key,
        })
    return {"Version": POLICY_VERSION, "Statement": statements}
