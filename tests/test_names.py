"""Name rules (bucket, prefix, KMS key, Athena names, SQL literals): what passes, what is
refused, and that each refusal names the value and the rule."""

from __future__ import annotations

import pytest

from s3_log_handler import _names as names

VALID_BUCKETS = ["abc", "my-analytics", "logs.example.com", "a" * 63, "0-analytics-9",
                 "sessions2025"]
#: (bucket, words of the reason)
INVALID_BUCKETS = [
    ("b", "3 to 63"), ("a" * 64, "3 to 63"), ("My-Bucket", "character"),
    ("my_bucket", "character"), ("-bucket", "character"), ("bucket-", "character"),
    ("bucket.", "character"), ("my bucket", "character"), ("bu'ck", "character"),
    ("s3://bkt", "character"), ("bkt/sessions", "character"), ("a..b", "adjacent"),
    ("192.168.5.4", "IP address"), ("xn--bucket", "prefix"), ("sthree-bucket", "prefix"),
    ("amzn-s3-demo-bucket", "prefix"), ("bucket-s3alias", "suffix"),
    ("bucket--ol-s3", "suffix"), ("bucket.mrap", "suffix"), ("bucket--x-s3", "suffix"),
    ("bucket--table-s3", "suffix"), ("*", "wildcards"), ("bucket-*", "wildcards"),
    ("bucket?", "wildcards"), ("", "3 to 63"), ("bkt\n", "character"),
]
VALID_PREFIXES = ["sessions", "events/v1", "a", "year=2025", "team-a/sessions.v2",
                  "Sessions/Calls_2025"]
#: (prefix, words of the reason): every case the issue lists, and then some.
INVALID_PREFIXES = [
    ("_staging", "character"), (".hidden", "character"), ("sessions/_tmp", "segment"),
    ("sessions/.cache", "segment"), ("../other-team", "character"),
    ("sessions/../other", "'..'"), ("/sessions", "character"), ("sessions/", "ends with"),
    ("a//b", "'//'"), ("sessions\r\n", "character"), ("ses\nsions", "character"),
    ("sessions?x", "wildcards"), ("sess*", "wildcards"), ("sess ions", "character"),
    ("sessions#1", "character"), ("séssions", "character"), ("a..b", "'..'"),
    ("sessions', 'x'='", "character"),
]


class TestBuckets:
    @pytest.mark.parametrize("value", VALID_BUCKETS)
    def test_general_purpose_names_pass(self, value: str) -> None:
        """Names that follow S3's general purpose rules are returned unchanged."""
        assert names.bucket(value) == value

    @pytest.mark.parametrize(("value", "why"), INVALID_BUCKETS)
    def test_every_rule_is_enforced_and_named(self, value: str, why: str) -> None:
        """Each broken rule is refused with the value, the rule and the reason."""
        with pytest.raises(ValueError) as info:
            names.bucket(value)
        message = str(info.value)
        assert message.startswith("bucket must be an S3 bucket name (3-63 characters")
        assert repr(value) in message and why in message

    @pytest.mark.parametrize("value", [
        "arn:aws:s3:us-west-2:123456789012:accesspoint/logs",
        "arn:aws-cn:s3:cn-north-1:123456789012:accesspoint/my-ap",
        "arn:aws:s3-outposts:us-east-1:123456789012:outpost/op-01ac5d28a6a232904/accesspoint/ap1",
        "my-ap-abcdefghijklmnopqrstuvwxyz-s3alias", "base--usw2-az1--x-s3"])
    def test_a_handler_may_also_write_to_access_points_and_directory_buckets(
            self, value: str) -> None:
        """Write targets that are not general purpose buckets pass only with writable=True."""
        assert names.bucket(value, writable=True) == value
        with pytest.raises(ValueError, match="bucket"):
            names.bucket(value)

    @pytest.mark.parametrize("value", ["arn:*", "arn:aws:s3:::bkt",
                                       "arn:aws:s3:us-west-2:123456789012:accesspoint/*",
                                       "arn:aws:s3:us-west-2:123456789012:accesspoint/a'b"])
    def test_arns_must_be_access_points_without_wildcards(self, value: str) -> None:
        """Anything else that starts with arn: is refused, wildcards named as such."""
        with pytest.raises(ValueError, match="access point ARN") as info:
            names.bucket(value, writable=True)
        assert ("wildcards" in str(info.value)) == ("*" in value)


class TestPrefixes:
    @pytest.mark.parametrize("value", VALID_PREFIXES)
    def test_valid_prefixes_pass(self, value: str) -> None:
        """Letters, digits and . _ = / - in the documented shape are returned unchanged."""
        assert names.prefix(value) == value

    @pytest.mark.parametrize(("value", "why"), INVALID_PREFIXES)
    def test_invalid_prefixes_are_refused_naming_value_and_rule(self, value: str,
                                                                 why: str) -> None:
        """Hidden folders, escapes from the IAM resource, CR/LF, trailing '/': all refused."""
        with pytest.raises(ValueError) as info:
            names.prefix(value)
        message = str(info.value)
        assert message.startswith("prefix must be a key prefix matching "
                                  "[A-Za-z0-9][A-Za-z0-9._=/-]*")
        assert repr(value) in message and why in message


class TestKmsKeys:
    def test_full_key_arns_pass(self) -> None:
        """Key ARNs in every partition, single- and multi-region key ids."""
        for arn in ("arn:aws:kms:us-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
                    "arn:aws-us-gov:kms:us-gov-west-1:111122223333:key/mrk-1234abcd",
                    "arn:aws-cn:kms:cn-north-1:111122223333:key/abc"):
            assert names.kms_key_arn(arn) == arn

    @pytest.mark.parametrize("value", [
        "1234abcd-12ab", "alias/logs", "arn:aws:kms:us-west-1:111122223333:alias/logs",
        "arn:*", "arn:aws:kms:*:111122223333:key/abc", "arn:aws:kms:us-west-1:1:key/abc",
        "arn:aws:kms:us-west-1:111122223333:key/*", "arn:aws:kms:us-west-1:111122223333:key/"])
    def test_anything_else_is_refused(self, value: str) -> None:
        """Ids, aliases, short accounts and wildcards are refused, naming the rule."""
        with pytest.raises(ValueError, match=r"full KMS key ARN") as info:
            names.kms_key_arn(value, "kms_key")
        assert str(info.value).startswith("kms_key must be") and repr(value) in str(info.value)


class TestSql:
    @pytest.mark.parametrize("value", ["t\n", "T", "1t", "t-1", "t;drop", "`t`", "", "t t",
                                       "t\u0131"])
    def test_identifiers_use_fullmatch(self, value: str) -> None:
        """A trailing newline no longer slips past '$' (re.fullmatch, not match)."""
        with pytest.raises(ValueError, match=r"table must be an Athena name"):
            names.identifier(value, "table")
        assert not names.is_identifier(value)

    def test_literals_double_quotes_and_refuse_escapes(self) -> None:
        """Quotes are doubled; backslashes and control characters never reach the DDL."""
        assert names.sql_literal("s3://bkt/x") == "'s3://bkt/x'"
        assert names.sql_literal("a'b") == "'a''b'"
        for value in ("a\\", "a\nb", "a\x00"):
            with pytest.raises(ValueError, match="SQL string literal"):
                names.sql_literal(value)
