"""The least-privilege policy: PutObject under the prefix, GenerateDataKey for KMS, nothing else."""

from __future__ import annotations

import json
import uuid
from typing import Any

import boto3
import pytest

from s3_log_handler._cli import main
from s3_log_handler._iam import iam_policy, object_arn
from s3_log_handler._policies import PutPolicy
from s3_log_handler._settings import HandlerConfig
from s3_log_handler._uploader import FailureKind, hint_for

KMS_KEY = "arn:aws:kms:us-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
#: Actions a run-time writer must never be granted.
FORBIDDEN = ("s3:ListBucket", "s3:GetObject", "s3:CreateBucket", "s3:DeleteObject",
             "s3:PutObjectAcl", "s3:GetBucketLocation", "kms:Decrypt", "kms:Encrypt")


def actions(policy: dict[str, Any]) -> list[str]:
    return [a for s in policy["Statement"] for a in s["Action"]]


class TestPolicyShape:
    def test_grants_only_put_object_on_the_prefix(self) -> None:
        """Without KMS the policy is one Allow statement: s3:PutObject on bucket/prefix/*."""
        policy = iam_policy("analytics-bucket", "sessions")
        assert policy["Version"] == "2012-10-17"
        (statement,) = policy["Statement"]
        assert statement["Effect"] == "Allow"
        assert statement["Action"] == ["s3:PutObject"]
        assert statement["Resource"] == "arn:aws:s3:::analytics-bucket/sessions/*"

    def test_kms_key_adds_generate_data_key_on_that_key_only(self) -> None:
        """With a KMS key, a second statement allows kms:GenerateDataKey on exactly that ARN."""
        policy = iam_policy("analytics-bucket", kms_key=KMS_KEY)
        assert actions(policy) == ["s3:PutObject", "kms:GenerateDataKey"]
        assert policy["Statement"][1]["Resource"] == KMS_KEY

    @pytest.mark.parametrize("kms_key", [None, KMS_KEY])
    def test_names_no_read_list_create_or_wildcard_action(self, kms_key: str | None) -> None:
        """No ListBucket/GetObject/CreateBucket/Decrypt, no '*' in any action or S3 resource."""
        policy = iam_policy("b-1", "sessions", kms_key)
        assert not set(actions(policy)) & set(FORBIDDEN)
        assert all("*" not in a for a in actions(policy))
        assert all(s["Effect"] == "Allow" for s in policy["Statement"])
        assert policy["Statement"][0]["Resource"].startswith("arn:aws:s3:::b-1/sessions/")

    @pytest.mark.parametrize(("prefix", "arn"), [
        ("sessions", "arn:aws:s3:::bkt/sessions/*"),
        ("a/b", "arn:aws:s3:::bkt/a/b/*"),
        ("", "arn:aws:s3:::bkt/*"),
    ])
    def test_resource_is_the_prefix_as_written(self, prefix: str, arn: str) -> None:
        """The prefix is checked, never rewritten: the resource is exactly bucket/prefix/*."""
        assert object_arn("bkt", prefix) == arn
        assert iam_policy("bkt", prefix)["Statement"][0]["Resource"] == arn

    @pytest.mark.parametrize(("bucket", "kms_key"), [
        ("", None), ("b/x", None), ("bkt", "alias/analytics"), ("bkt", "1234abcd"),
        ("bkt", "arn:aws:kms:us-west-1:111122223333:alias/analytics")])
    def test_rejects_bad_bucket_or_non_arn_key(self, bucket: str, kms_key: str | None) -> None:
        """IAM resources need a bare bucket name and a full key ARN: anything else is refused."""
        with pytest.raises(ValueError, match=r"bucket|ARN"):
            iam_policy(bucket, kms_key=kms_key)

    def test_access_denied_hint_names_the_same_action_and_resource(self) -> None:
        """The operator hint for AccessDenied asks for exactly what the policy grants."""
        config = HandlerConfig.from_kwargs(env={}, bucket="bkt", prefix="sessions", sse="aws:kms")
        hint = hint_for("AccessDenied", FailureKind.CONFIG, PutPolicy.of(config))
        policy = iam_policy("bkt", "sessions", KMS_KEY)
        assert policy["Statement"][0]["Resource"] in hint
        assert all(action in hint for action in actions(policy))


class TestPolicyValidates:
    def test_iam_accepts_the_policy_document(self, moto_endpoint: str) -> None:
        """IAM's own policy validator (moto's, over HTTP) accepts both variants."""
        iam = boto3.client("iam", endpoint_url=moto_endpoint, region_name="us-east-1")
        for kms_key in (None, KMS_KEY):
            document = json.dumps(iam_policy("analytics-bucket", "sessions", kms_key))
            name = f"s3-log-handler-{uuid.uuid4().hex[:8]}"
            arn = iam.create_policy(PolicyName=name, PolicyDocument=document)["Policy"]["Arn"]
            version = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
            stored = iam.get_policy_version(PolicyArn=arn, VersionId=version)
            assert stored["PolicyVersion"]["Document"] == json.loads(document)


class TestCli:
    def test_iam_policy_command_prints_the_policy_as_json(
            self, capsys: pytest.CaptureFixture[str]) -> None:
        """`s3-log-handler iam-policy` prints exactly iam_policy(...) as JSON."""
        assert main(["iam-policy", "--bucket", "bkt", "--prefix", "p", "--kms-key", KMS_KEY]) == 0
        assert json.loads(capsys.readouterr().out) == iam_policy("bkt", "p", KMS_KEY)


class TestRefusals:
    @pytest.mark.parametrize(("argv", "value"), [
        (["--bucket", "*", "--prefix", ""], "'*'"),
        (["--bucket", "analytics-*"], "'analytics-*'"),
        (["--bucket", "analytics-?"], "'analytics-?'"),
        (["--bucket", "arn:aws:s3:::analytics"], "'arn:aws:s3:::analytics'"),
        (["--bucket", "bkt", "--kms-key", "arn:*"], "'arn:*'"),
        (["--bucket", "bkt", "--kms-key", "*"], "'*'"),
        (["--bucket", "bkt", "--kms-key", "arn:aws:kms:us-east-1:111122223333:key/*"],
         "key/*"),
        (["--bucket", "bkt", "--kms-key", "arn:aws:kms:*:111122223333:key/abc"], "kms:*"),
        (["--bucket", "bkt", "--prefix", "sessions/*"], "'sessions/*'"),
        (["--bucket", "bkt", "--prefix", "../other-team"], "'../other-team'"),
        (["--bucket", "bkt", "--prefix", "/sessions"], "'/sessions'"),
    ])
    def test_wildcards_and_bad_names_exit_2_naming_value_and_rule(
            self, argv: list[str], value: str, capsys: pytest.CaptureFixture[str]) -> None:
        """iam-policy prints no policy for a wildcard or a malformed name: exit status 2, and
        stderr names the value and the rule it breaks."""
        assert main(["iam-policy", *argv]) == 2
        out, err = capsys.readouterr()
        assert out == ""
        assert value in err and " must be " in err
        if "*" in value or "?" in value:
            assert "wildcards" in err

    def test_no_policy_ever_names_a_wildcard_resource(self) -> None:
        """Whatever is accepted, no Resource holds a '*' outside the trailing '/*'."""
        for prefix in ("sessions", "a/b=c", ""):
            policy = iam_policy("analytics-bucket", prefix, KMS_KEY)
            resources = [s["Resource"] for s in policy["Statement"]]
            assert all("*" not in r.removesuffix("/*") for r in resources)
            assert "?" not in json.dumps(policy)
