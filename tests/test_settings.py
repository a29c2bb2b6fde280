"""HandlerConfig: defaults, environment fallbacks (bucket, AWS_REGION) and validation."""

from __future__ import annotations

import dataclasses

import pytest

from s3_log_handler import S3Handler
from s3_log_handler._settings import BATCH_KEY_TEMPLATE, OBJECT_KEY_TEMPLATE, HandlerConfig


def config(env: dict[str, str] | None = None, **kwargs: object) -> HandlerConfig:
    """Settings built against an explicit environment (never the real one)."""
    return HandlerConfig.from_kwargs(env={} if env is None else env, **kwargs)


class TestDefaults:
    def test_documented_defaults(self) -> None:
        """Without arguments the public defaults of the issue apply."""
        c = config(bucket="b")
        assert (c.prefix, c.attribute, c.id_field) == ("sessions", "analytics_data", "session_id")
        assert c.key_template == OBJECT_KEY_TEMPLATE
        assert (c.workers, c.close_timeout) == (4, 5.0)
        assert (c.region_name, c.endpoint_url, c.profile_name) == (None, None, None)

    def test_none_arguments_mean_default(self) -> None:
        """A keyword passed as None (as dictConfig templates often do) keeps the default."""
        assert config(bucket="b", prefix=None, workers=None) == config(bucket="b")

    def test_batch_mode_gets_the_batch_template(self) -> None:
        """mode='batch' without a template names objects host-pid-seq-uuid."""
        assert config(bucket="b", mode="batch").key_template == BATCH_KEY_TEMPLATE

    def test_settings_are_frozen(self) -> None:
        """Settings cannot change after validation."""
        with pytest.raises(dataclasses.FrozenInstanceError):
            config(bucket="b").workers = 1  # type: ignore[misc]


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
        assert config({"AWS_REGION": "eu-west-1"}, bucket="b").region_name == "eu-west-1"

    def test_aws_default_region_is_left_to_botocore(self) -> None:
        """With AWS_DEFAULT_REGION set, botocore's own chain decides (region_name stays None)."""
        env = {"AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "ap-south-1"}
        assert config(env, bucket="b").region_name is None

    def test_explicit_region_wins(self) -> None:
        """region_name given as an argument is used as is."""
        assert config({"AWS_REGION": "eu-west-1"}, bucket="b",
                      region_name="us-west-2").region_name == "us-west-2"

    def test_no_region_anywhere_stays_none(self) -> None:
        """Without any region setting region_name is None (boto3's chain applies)."""
        assert config(bucket="b").region_name is None

    def test_handler_reads_aws_region_from_the_process_environment(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """S3Handler built with no region picks AWS_REGION up from os.environ."""
        monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
        monkeypatch.setenv("AWS_REGION", "eu-central-1")
        handler = S3Handler("b")
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
            HandlerConfig.from_kwargs(env={}, bucket="b", **kwargs)

    def test_unknown_keyword_raises_type_error(self) -> None:
        """A misspelt option is a TypeError, not silently ignored."""
        with pytest.raises(TypeError):
            config(bucket="b", buckt="typo")

    def test_handler_refuses_a_prefix_that_cannot_fit_a_key(self) -> None:
        """A prefix so long that keys would pass 1,024 bytes fails when the handler is built."""
        with pytest.raises(ValueError, match="1024"):
            S3Handler("b", prefix="p" * 1000)

    def test_field_paths_accept_a_comma_separated_string(self) -> None:
        """redact_fields/hash_fields take a list or an env-friendly comma-separated string."""
        assert config(bucket="b", redact_fields="a.b, c ,").redact_fields == ("a.b", "c")


class TestNumbersFromText:
    def test_numeric_strings_become_numbers(self) -> None:
        """Values from ini files or ${VAR} expansion arrive as text and are converted once."""
        config = HandlerConfig.from_kwargs(env={}, bucket="b", close_timeout="2.5", workers="3")
        assert (config.close_timeout, config.workers) == (2.5, 3)

    def test_a_non_number_is_a_clear_error(self) -> None:
        """Text that is not a number fails at construction, naming the setting."""
        with pytest.raises(ValueError, match="workers must be a number"):
            HandlerConfig.from_kwargs(env={}, bucket="b", workers="lots")
