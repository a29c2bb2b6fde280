"""What ``replay`` runs with: the handler's settings from --config, flags over them, and
which recorded settings a run must keep."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from s3_log_handler._config import ConfigError
from s3_log_handler._replay_options import add_replay_arguments, replay_settings
from s3_log_handler._spool_meta import describe, flags, unmet

YAML = """\
version: 1
handlers:
  s3:
    class: s3_log_handler.S3Handler
    bucket: "${BUCKET:-from-file}"
    sse: aws:kms
    sse_kms_key_id: "arn:aws:kms:us-east-1:111122223333:key/abc"
    spool_dir: "${SPOOL:-auto}"
    level: INFO
    formatter: plain
  other:
    class: s3_log_handler.S3Handler
    bucket: second-bucket
  console: {class: logging.StreamHandler}
"""


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_replay_arguments(parser)
    return parser.parse_args(argv)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "logging.yaml"
    path.write_text(YAML)
    return path


def test_config_settings_with_variables_expanded_and_flags_winning(config: Path) -> None:
    spool, options = replay_settings(
        parse("/spool", "--config", str(config), "--handler", "s3", "--bucket", "flag-bucket"),
        environ={})
    assert spool == "/spool"
    assert options == {"bucket": "flag-bucket", "sse": "aws:kms",
                       "sse_kms_key_id": "arn:aws:kms:us-east-1:111122223333:key/abc"}


def test_the_spool_directory_comes_from_the_handler_when_not_given(
    config: Path, tmp_path: Path,
) -> None:
    spool, options = replay_settings(parse("--config", str(config), "--handler", "s3"),
                                     environ={"SPOOL": str(tmp_path / "s"), "BUCKET": "b-1"})
    assert spool == str(tmp_path / "s") and options["bucket"] == "b-1"
    state = tmp_path / "state"
    spool, _ = replay_settings(parse("--config", str(config), "--handler", "s3"),
                               environ={"XDG_STATE_HOME": str(state), "BUCKET": "b-2"})
    assert spool == str(state / "s3-analytics" / "b-2")


@pytest.mark.parametrize(("argv", "message"), [
    (("--handler", "s3"), "--handler needs --config"),
    ((), "no spool directory"),
])
def test_what_cannot_run_says_why(argv: tuple[str, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        replay_settings(parse(*argv), environ={})


def test_a_config_with_several_s3_handlers_needs_handler(config: Path) -> None:
    with pytest.raises(ConfigError, match=r"pass --handler .*found: other, s3"):
        replay_settings(parse("/spool", "--config", str(config)), environ={})
    with pytest.raises(ConfigError, match="'console' is not an S3Handler"):
        replay_settings(parse("/spool", "--config", str(config), "--handler", "console"),
                        environ={})


class TestRecordedSettings:
    def test_only_security_settings_that_would_be_dropped_or_changed_block(self) -> None:
        recorded = {"sse": "AES256", "expected_bucket_owner": "111122223333",
                    "storage_class": "GLACIER_IR", "checksum_algorithm": "SHA256"}
        assert unmet(recorded, {"sse": "AES256", "expected_bucket_owner": "111122223333"}) == {}
        missing = unmet(recorded, {"sse": "aws:kms"})
        assert missing == {"sse": "AES256", "expected_bucket_owner": "111122223333"}
        assert describe(missing, {"sse": "aws:kms"}) == (
            "expected_bucket_owner='111122223333' (this run: none), "
            "sse='AES256' (this run: 'aws:kms')")
        assert flags(missing) == "--expected-bucket-owner 111122223333 --sse AES256"

    def test_records_with_nothing_recorded_may_go_with_any_settings(self) -> None:
        assert unmet(None, {}) == {} and unmet({}, {"sse": "AES256"}) == {}
        assert unmet({"storage_class": "STANDARD_IA"}, {}) == {}
