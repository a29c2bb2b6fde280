"""HandlerConfig: defaults, environment fallbacks (bucket, AWS_REGION) and validation."""

from __future__ import annotations

import dataclasses
import gc
import logging
import logging.config
import math
import pathlib
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.config import Config
from test_names import INVALID_BUCKETS, INVALID_PREFIXES

from s3_log_handler import S3Handler
from s3_log_handler._settings import BATCH_KEY_TEMPLATE, OBJECT_KEY_TEMPLATE, HandlerConfig


def config(env: dict[str, str] | None = None, **kwargs: object) -> HandlerConfig:
    """Settings built against an explicit environment (never the real one)."""
    return HandlerConfig.from_kwargs(env={} if env is None else env, **kwargs)


class TestDefaults:
    def test_documented_defaults(self) -> None:
        """Without arguments the public defaults of the issue apply."""
        c = config(bucket="bkt")
        assert (c.prefix, c.attribute, c.id_field) == ("sessions", "analytics_data", "session_id")
        assert c.key_template == OBJECT_KEY_TEMPLATE
        assert (c.workers, c.close_timeout) == (4, 5.0)
        assert (c.region_name, c.endpoint_url, c.profile_name) == (None, None, None)

    def test_none_arguments_mean_default(self) -> None:
        """A keyword passed as None (as dictConfig templates often do) keeps the default."""
        assert config(bucket="bkt", prefix=None, workers=None) == config(bucket="bkt")

    def test_batch_mode_gets_the_batch_template(self) -> None:
        """mode='batch' without a template names objects host-pid-seq-uuid."""
        assert config(bucket="bkt", mode="batch").key_template == BATCH_KEY_TEMPLATE

    def test_settings_are_frozen(self) -> None:
        """Settings cannot change after validation."""
        with pytest.raises(dataclasses.FrozenInstanceError):
            config(bucket="bkt").workers = 1  # type: ignore[misc]


class TestBucket:
    def test_bucket_comes_from_the_environment(self) -> None:
        """Without a bucket argument ANALYTICS_S3_BUCKET is used."""
        c = config({"ANALYTICS_S3_BUCKET": "from-env"})
        assert (c.bucket, c.enabled) == ("from-env", True)

    def test_argument_wins_over_the_environment(self) -> None:
        """An explicit bucket overrides ANALYTICS_S3_BUCKET."""
        assert config({"ANALYTICS_S3_BUCKET": "from-env"}, bucket="arg").bucket == "arg"

    @pytest.mark.parametrize("env", [{}, {"ANALYTICS_S3_BUCKET": ""}])
    def test_no_bucket_disables_the_handler(self, env: dict[str, str]) -> None:
        """Neither argument nor a non-empty variable: the handler is disabled, not an error."""
        c = config(env)
        assert (c.bucket, c.enabled) == (None, False)


class TestRegion:
    def test_aws_region_is_used_when_nothing_else_sets_one(self) -> None:
        """AWS_REGION fills region_name when no region is given and AWS_DEFAULT_REGION is unset."""
        assert config({"AWS_REGION": "eu-west-1"}, bucket="bkt").region_name == "eu-west-1"

    def test_aws_default_region_is_left_to_botocore(self) -> None:
        """With AWS_DEFAULT_REGION set, botocore's own chain decides (region_name stays None)."""
        env = {"AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "ap-south-1"}
        assert config(env, bucket="bkt").region_name is None

    def test_explicit_region_wins(self) -> None:
        """region_name given as an argument is used as is."""
        assert config({"AWS_REGION": "eu-west-1"}, bucket="bkt",
                      region_name="us-west-2").region_name == "us-west-2"

    def test_no_region_anywhere_stays_none(self) -> None:
        """Without any region setting region_name is None (boto3's chain applies)."""
        assert config(bucket="bkt").region_name is None

    def test_handler_reads_aws_region_from_the_process_environment(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """S3Handler built with no region picks AWS_REGION up from os.environ."""
        monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
        monkeypatch.setenv("AWS_REGION", "eu-central-1")
        handler = S3Handler("bkt")
        try:
            assert handler.config.region_name == "eu-central-1"
        finally:
            handler.close()


class TestValidation:
    @pytest.mark.parametrize(("kwargs", "names"), [
        ({"workers": 0}, "workers"),
        ({"close_timeout": -1}, "close_timeout"),
        ({"mode": "stream"}, "mode"),
        ({"compression": "lz4"}, "compression"),
        ({"when_full": "spool"}, "spool_dir"),
        ({"key_template": "fixed/{id}{ext}"}, "{prefix}"),
        ({"key_template": "{prefix}/{year}/data{ext}"}, "{id}"),
        ({"max_record_bytes": 0}, "max_record_bytes"),
        ({"sse": "rot13"}, "sse"),
    ])
    def test_invalid_values_raise_value_error_naming_the_setting(
        self, kwargs: dict[str, object], names: str
    ) -> None:
        """Every invalid value fails at construction with a message naming what to fix."""
        with pytest.raises(ValueError, match=names.replace("{", r"\{").replace("}", r"\}")):
            HandlerConfig.from_kwargs(env={}, bucket="bkt", **kwargs)

    def test_unknown_keyword_raises_type_error(self) -> None:
        """A misspelt option is a TypeError, not silently ignored."""
        with pytest.raises(TypeError):
            config(bucket="bkt", buckt="typo")

    def test_handler_refuses_a_prefix_that_cannot_fit_a_key(self) -> None:
        """A prefix so long that keys would pass 1,024 bytes fails when the handler is built."""
        with pytest.raises(ValueError, match="1024"):
            S3Handler("bkt", prefix="p" * 1000)

    def test_field_paths_accept_a_comma_separated_string(self) -> None:
        """redact_fields/hash_fields take a list or an env-friendly comma-separated string."""
        assert config(bucket="bkt", redact_fields="a.b, c ,").redact_fields == ("a.b", "c")


class TestNumbersFromText:
    def test_numeric_strings_become_numbers(self) -> None:
        """Values from ini files or ${VAR} expansion arrive as text and are converted once."""
        config = HandlerConfig.from_kwargs(env={}, bucket="bkt", close_timeout="2.5", workers="3")
        assert (config.close_timeout, config.workers) == (2.5, 3)

    def test_a_non_number_is_a_clear_error(self) -> None:
        """Text that is not a number fails at construction, naming the setting."""
        with pytest.raises(ValueError, match="workers must be a number"):
            HandlerConfig.from_kwargs(env={}, bucket="bkt", workers="lots")


def build(**options: object) -> S3Handler:
    """An S3Handler (bucket "bkt" unless given) built directly (no network I/O), closed."""
    handler = S3Handler(**{"bucket": "bkt", **options})  # type: ignore[arg-type]
    handler.close()
    return handler


_DICTCONFIG_LOGGER = "tests.test_settings.dictconfig"


@pytest.fixture(autouse=True)
def _collect_half_built_handlers() -> Iterator[None]:
    """Free handlers whose __init__ raised once each test is done with the exception.

    S3Handler registers with logging (Handler.__init__) before its settings are checked, so
    a refused handler lingers in logging's handler list while a traceback keeps it alive;
    the next dictConfig (or exit) would flush it. Collecting the cycles drops it.
    """
    yield
    gc.collect()


def dict_configure(**options: object) -> S3Handler:
    """An S3Handler for bucket "bkt" built by ``logging.config.dictConfig``, detached and closed."""
    logging.config.dictConfig({
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"s3": {"class": "s3_log_handler.S3Handler", "bucket": "bkt", **options}},
        "loggers": {_DICTCONFIG_LOGGER: {"handlers": ["s3"], "propagate": False}},
    })
    logger = logging.getLogger(_DICTCONFIG_LOGGER)
    (handler,) = logger.handlers
    logger.removeHandler(handler)
    handler.close()
    assert isinstance(handler, S3Handler)
    return handler


_INTEGER_SETTINGS = ("workers", "max_batch_records", "max_batch_bytes", "max_record_bytes",
                     "max_queue_bytes", "max_spool_bytes", "max_dead_letter_bytes",
                     "target_object_bytes", "max_open_partitions")
_SECONDS_SETTINGS = ("close_timeout", "max_batch_age", "block_timeout", "retry_base",
                     "retry_cap", "config_error_retry", "metrics_interval")
_STRING_SETTINGS = ("bucket", "prefix", "attribute", "id_field", "key_template", "region_name",
                    "endpoint_url", "profile_name", "spool_dir", "sse_kms_key_id",
                    "expected_bucket_owner", "storage_class", "acl", "spool_hmac_key",
                    "time_field")
_ENUM_SETTINGS = ("mode", "when_full", "spool_fsync", "compression", "sse", "checksum_algorithm")

#: (setting, a value that cannot work, the exception it must raise).
INVALID: list[tuple[str, object, type[Exception]]] = [
    *[(name, value, ValueError) for name in _INTEGER_SETTINGS
      for value in (0, -1, 2.5, 4.0, "2.5", "abc", "", math.nan, math.inf)],
    *[(name, value, TypeError) for name in _INTEGER_SETTINGS
      for value in (True, False, [4], {"n": 4}, object())],
    *[(name, value, ValueError) for name in _SECONDS_SETTINGS
      for value in (-1, -0.5, math.nan, math.inf, -math.inf, "soon", "nan", "inf", "-1")],
    *[(name, value, TypeError) for name in _SECONDS_SETTINGS
      for value in (True, False, [1], {"s": 1}, object())],
    *[(name, 0, ValueError) for name in ("max_batch_age", "retry_base", "retry_cap",
                                          "config_error_retry")],
    ("retry_cap", 0.1, ValueError),  # below the default retry_base (0.5)
    ("time_field", "end_time.", ValueError),  # not a dotted path
    ("key_template", "{prefix}/t={field}/{id}{ext}", ValueError),  # a field without a path
    ("key_template", "{prefix}/t={field:a..b}/{id}{ext}", ValueError),
    ("compress_level", 42, ValueError),  # gzip takes 0..9
    ("compress_level", -1, ValueError),
    ("compress_level", 2.5, ValueError),
    ("compress_level", "high", ValueError),
    ("compress_level", math.nan, ValueError),
    ("compress_level", True, TypeError),
    ("compress_level", [6], TypeError),
    *[(name, value, TypeError) for name in _STRING_SETTINGS
      for value in (5, ["a"], {"a": 1}, True, 1.5)],
    ("spool_dir", b"/tmp/spool", TypeError),
    ("bucket", "s3://b", ValueError),
    ("bucket", "my bucket", ValueError),
    ("bucket", "b/sessions", ValueError),
    ("bucket", "b", ValueError),  # S3's rules: 3 to 63 characters
    ("bucket", "My_Bucket", ValueError),
    ("bucket", "arn:*", ValueError),
    ("prefix", "sessions/", ValueError),  # the DDL's location template would not look there
    ("prefix", "../other-team", ValueError),  # outside the IAM resource
    ("prefix", "", ValueError),  # the default key_template has {prefix}: keys would start '/'
    ("sse_kms_key_id", "arn:aws:kms:us-east-1:111122223333:alias/logs", ValueError),
    ("attribute", "", ValueError),
    ("endpoint_url", "localhost:9000", ValueError),
    ("endpoint_url", "ftp://example.com", ValueError),
    ("key_template", "fixed/{id}{ext}", ValueError),  # no {prefix}
    ("key_template", "{prefix}/{year}/data{ext}", ValueError),  # objects overwrite each other
    ("key_template", "{prefix}/{date}/{id}{ext}", ValueError),  # unknown placeholder
    ("key_template", "{prefix}/{id{ext}", ValueError),  # unbalanced brace
    ("key_template", "", ValueError),
    ("sse_kms_key_id", "alias/logs", ValueError),  # not a full key ARN
    *[(name, value, TypeError) for name in _ENUM_SETTINGS for value in (1, ["gzip"], True)],
    ("mode", "stream", ValueError),
    ("when_full", "wait", ValueError),
    ("when_full", "spool", ValueError),  # without spool_dir
    ("spool_fsync", "sometimes", ValueError),
    ("compression", "lz4", ValueError),
    ("format", "orc", ValueError),
    ("format", "parquet", ValueError),  # object mode
    ("parquet_compression", "gzip", ValueError),
    ("parquet_schema", 5, TypeError),
    ("sse", "rot13", ValueError),
    ("checksum_algorithm", "MD5", ValueError),
    *[(name, value, TypeError) for name in ("redact_fields", "hash_fields")
      for value in ([1], ["a", None], ("a", 2))],
    # Neither a list nor a string stays a ValueError, as AnalyticsJsonFormatter's tests expect.
    *[(name, value, ValueError) for name in ("redact_fields", "hash_fields")
      for value in (5, {"a": 1}, {"a"}, "a..b", [".a"], ["a."])],
    ("boto3_session", object(), TypeError),
    ("boto3_session", "default", TypeError),
    ("botocore_config", {"retries": {"mode": "standard"}}, TypeError),
    ("botocore_config", object(), TypeError),
]


def _case_id(case: tuple[str, object, type[Exception]]) -> str:
    name, value, exc = case
    return f"{name}={type(value).__name__}:{str(value)[:20]}-{exc.__name__}"


def test_the_table_covers_every_setting() -> None:
    """Each HandlerConfig field has at least one invalid value in INVALID."""
    fields = {f.name for f in dataclasses.fields(HandlerConfig)}
    assert fields == {name for name, _, _ in INVALID}


class TestEverySettingRefusesWhatCannotWork:
    @pytest.mark.parametrize("case", INVALID, ids=_case_id)
    def test_direct(self, case: tuple[str, object, type[Exception]]) -> None:
        """S3Handler(...) raises the table's exception, naming the setting and the value."""
        name, value, exc = case
        with pytest.raises((ValueError, TypeError)) as info:
            build(**{name: value})
        assert type(info.value) is exc
        message = str(info.value)
        assert name in message
        items = list(value) if isinstance(value, list | tuple) else []  # a bad item is shown alone
        assert any(repr(item)[:77] in message for item in [value, *items])
        assert "HandlerConfig" not in message

    @pytest.mark.parametrize("case", INVALID, ids=_case_id)
    def test_through_dictconfig(self, case: tuple[str, object, type[Exception]]) -> None:
        """dictConfig wraps the error; the chained text still names the setting."""
        name, value, _ = case
        with pytest.raises(ValueError, match="Unable to configure handler 's3'") as info:
            dict_configure(**{name: value})
        assert isinstance(info.value.__cause__, ValueError | TypeError)
        assert name in str(info.value) + str(info.value.__cause__)

    @pytest.mark.parametrize(("kwargs", "name", "exc"), [
        ({"compression": "zstd", "compress_level": 0}, "compress_level for zstd", ValueError),
        ({"compression": "zstd", "compress_level": 23}, "compress_level for zstd", ValueError),
        ({"compression": "gzip", "compress_level": 10}, "compress_level for gzip", ValueError),
        ({"compression": "none", "compress_level": 1}, "compress_level", ValueError),
        ({"retry_base": 2, "retry_cap": 1}, "retry_cap", ValueError),
        ({"sse": "AES256", "sse_kms_key_id": "k"}, "sse_kms_key_id", ValueError),
        ({"mode": "batch", "key_template": "{prefix}/{id}{ext}"}, "key_template", ValueError),
    ])
    def test_settings_that_cannot_work_together(
        self, kwargs: dict[str, object], name: str, exc: type[Exception]
    ) -> None:
        """Valid values alone, invalid together: the message names the setting."""
        with pytest.raises(exc, match=name):
            build(**kwargs)

    def test_messages_say_what_is_accepted(self) -> None:
        """Messages read `<setting> must be <accepted>, got <value> (<type>)`."""
        with pytest.raises(ValueError) as info:
            build(workers=2.5)
        assert str(info.value) == "workers must be a positive integer, got 2.5 (float)"
        with pytest.raises(ValueError) as info:
            build(compress_level=42)
        assert str(info.value) == (
            "compress_level for gzip must be an integer from 0 to 9, got 42 (int)")
        with pytest.raises(ValueError) as info:
            build(mode="stream")
        assert str(info.value) == "mode must be one of 'object', 'batch', got 'stream' (str)"


class TestUnknownKeywords:
    def test_message_names_the_keyword_as_python_does(self) -> None:
        """A misspelt keyword reads like Python's own error, naming S3Handler."""
        with pytest.raises(TypeError) as info:
            build(buckt="typo")
        assert str(info.value) == "S3Handler() got an unexpected keyword argument 'buckt'"

    def test_several_unknown_keywords_name_the_first_sorted(self) -> None:
        """With several unknown keywords the first in sorted order is named."""
        with pytest.raises(TypeError) as info:
            build(zeta=1, alpha=2, workers=2)
        assert str(info.value) == "S3Handler() got an unexpected keyword argument 'alpha'"

    def test_through_dictconfig(self) -> None:
        """dictConfig chains the same TypeError."""
        with pytest.raises(ValueError) as info:
            dict_configure(buckt="typo")
        assert str(info.value.__cause__) == (
            "S3Handler() got an unexpected keyword argument 'buckt'")


class TestValidValues:
    TEXT: dict[str, Any] = {  # noqa: RUF012 - read only
        "workers": "4", "max_batch_records": " 100 ", "max_batch_bytes": "2048",
        "max_record_bytes": "1024", "max_queue_bytes": "4096", "compress_level": "9",
        "close_timeout": "2.5", "max_batch_age": "0.5", "block_timeout": "0",
        "retry_base": "1e-2", "retry_cap": "3", "config_error_retry": " 30 ",
    }
    EXPECTED: dict[str, Any] = {  # noqa: RUF012 - read only
        "workers": 4, "max_batch_records": 100, "max_batch_bytes": 2048,
        "max_record_bytes": 1024, "max_queue_bytes": 4096, "compress_level": 9,
        "close_timeout": 2.5, "max_batch_age": 0.5, "block_timeout": 0.0,
        "retry_base": 0.01, "retry_cap": 3.0, "config_error_retry": 30.0,
    }

    def test_numeric_text_is_accepted(self) -> None:
        """Text from ${VAR} expansion: integral text for integers, any number for seconds."""
        config = build(**self.TEXT).config
        assert {name: getattr(config, name) for name in self.EXPECTED} == self.EXPECTED
        assert isinstance(config.workers, int)
        assert isinstance(config.close_timeout, float)

    def test_numeric_text_through_dictconfig(self) -> None:
        """The same text values work from a dictConfig document."""
        config = dict_configure(**self.TEXT).config
        assert {name: getattr(config, name) for name in self.EXPECTED} == self.EXPECTED

    def test_numbers_and_limits_are_accepted(self) -> None:
        """ints for seconds, 0 where it makes sense, each codec's level range ends."""
        config = build(close_timeout=0, block_timeout=0, retry_base=1, retry_cap=1,
                       max_batch_age=1).config
        assert (config.close_timeout, config.retry_cap) == (0.0, 1.0)
        assert build(compress_level=0).config.compress_level == 0
        assert build(compression="zstd", compress_level=22).config.compress_level == 22
        assert build(compression="none").config.compress_level is None

    def test_blank_optional_strings_mean_unset(self) -> None:
        """"" (an empty ${VAR:-}) for an optional string keeps the default, like bucket."""
        config = build(sse="", storage_class="", endpoint_url="", region_name="us-east-1").config
        assert (config.sse, config.storage_class, config.endpoint_url) == (None, None, None)

    def test_friendly_forms(self, tmp_path: pathlib.Path) -> None:
        """checksum_algorithm in any case; spool_dir as a Path; access point ARNs as bucket."""
        assert build(checksum_algorithm="crc32c").config.checksum_algorithm == "CRC32C"
        assert build(spool_dir=tmp_path).config.spool_dir == str(tmp_path)
        arn = "arn:aws:s3:us-west-2:123456789012:accesspoint/logs"
        assert config(bucket=arn).bucket == arn

    def test_boto_objects_are_accepted(self) -> None:
        """A session-like object and a botocore Config pass through unchanged."""
        class Session:
            def client(self, *args: object, **kwargs: object) -> object:
                raise AssertionError("never called at construction")

        session, botocore_config = Session(), Config(connect_timeout=1)
        c = config(bucket="bkt", boto3_session=session, botocore_config=botocore_config)
        assert (c.boto3_session, c.botocore_config) == (session, botocore_config)

    def test_the_environment_bucket_is_checked_too(self) -> None:
        """ANALYTICS_S3_BUCKET=s3://x fails like the argument would."""
        with pytest.raises(ValueError, match="bucket"):
            config({"ANALYTICS_S3_BUCKET": "s3://x"})


class TestNames:
    @pytest.mark.parametrize(("prefix", "why"), INVALID_PREFIXES)
    def test_every_invalid_prefix_is_refused_at_construction(self, prefix: str,
                                                             why: str) -> None:
        """S3Handler(prefix=...) raises ValueError naming the setting, the value and why,
        before the handler exists (so no record can be written under it)."""
        with pytest.raises(ValueError) as info:
            build(prefix=prefix)
        message = str(info.value)
        assert message.startswith("prefix must be") and repr(prefix) in message
        assert why in message

    @pytest.mark.parametrize(("bucket", "why"), INVALID_BUCKETS)
    def test_every_invalid_bucket_is_refused_at_construction(self, bucket: str,
                                                             why: str) -> None:
        """The bucket follows S3's naming rules (an access point alias or directory bucket
        name is a valid target too); anything else fails when the handler is built."""
        if bucket.endswith(("-s3alias", "--x-s3")) or not bucket:
            return  # write targets (see test_names), and "" means "no bucket: disabled"
        with pytest.raises(ValueError, match="bucket must be") as info:
            build(bucket=bucket)
        assert repr(bucket) in str(info.value) and why in str(info.value)

    def test_the_environment_bucket_follows_the_same_rules(self) -> None:
        """ANALYTICS_S3_BUCKET is checked by the same rule as the argument."""
        with pytest.raises(ValueError, match="3 to 63"):
            config({"ANALYTICS_S3_BUCKET": "ab"})

    def test_empty_prefix_is_allowed_only_without_prefix_in_the_template(self) -> None:
        """A key template without {prefix} takes prefix='' (keys at the bucket's root)."""
        c = config(bucket="bkt", prefix="", key_template="year={year}/{id}{ext}")
        assert c.prefix == ""
        with pytest.raises(ValueError, match="prefix must be a non-empty key prefix"):
            config(bucket="bkt", prefix="")

    def test_kms_key_must_be_a_full_arn(self) -> None:
        """sse_kms_key_id takes a full key ARN only (the ARN S3 reports and IAM grants)."""
        arn = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
        assert config(bucket="bkt", sse="aws:kms", sse_kms_key_id=arn).sse_kms_key_id == arn
        for value in ("1234abcd", "alias/logs", "arn:*"):
            with pytest.raises(ValueError, match=r"sse_kms_key_id must be a full KMS key ARN"):
                config(bucket="bkt", sse="aws:kms", sse_kms_key_id=value)
