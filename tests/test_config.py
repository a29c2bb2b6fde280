"""configure(): ${VAR} expansion, typed defaults, and the shipped logging.yaml."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import Collect

from s3_log_handler import S3Handler, configure
from s3_log_handler._config import (
    ConfigError,
    EnvText,
    MissingVariableError,
    default_config,
    expand_env,
    load_config,
    packaged_config,
)

REPO_YAML = Path(__file__).resolve().parents[1] / "logging.yaml"
SOURCE = "conf/logging.yaml"
#: Documents written by these tests must not disable the loggers other tests rely on.
HEADER = "version: 1\ndisable_existing_loggers: false\n"


def expand(value: Any, **environ: str) -> Any:
    return expand_env(value, environ, SOURCE)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "logging.yaml"
    path.write_text(text, encoding="utf-8")
    return path


class TestExpansion:
    def test_set_variable_is_substituted(self) -> None:
        """${VAR} becomes the variable's value, also inside a longer string."""
        assert expand("s3://${BUCKET}/x", BUCKET="b") == "s3://b/x"

    def test_default_used_when_unset_or_empty(self) -> None:
        """${VAR:-default} falls back when the variable is unset or empty, like the shell."""
        assert expand("${PREFIX:-sessions}") == "sessions"
        assert expand("${PREFIX:-sessions}", PREFIX="") == "sessions"
        assert expand("${PREFIX:-sessions}", PREFIX="calls") == "calls"

    def test_empty_value_without_default_stays_empty(self) -> None:
        """${VAR} set to the empty string is the empty string, not an error."""
        assert expand("${BUCKET}", BUCKET="") == ""

    def test_missing_variable_names_it_and_the_file(self) -> None:
        """An unset ${VAR} without default raises a ValueError naming the variable and file."""
        with pytest.raises(MissingVariableError) as caught:
            expand({"handlers": {"s3": {"bucket": "${ANALYTICS_S3_BUCKET}"}}})
        assert isinstance(caught.value, ValueError)
        assert "ANALYTICS_S3_BUCKET" in str(caught.value)
        assert SOURCE in str(caught.value)
        assert caught.value.variable == "ANALYTICS_S3_BUCKET"

    def test_defaults_may_hold_braces_and_references(self) -> None:
        """A default may contain {placeholders} and nested ${...} references."""
        assert expand("${S:-{machine_name}-{process_id}}") == "{machine_name}-{process_id}"
        assert expand("${A:-${B:-/tmp}/spool}") == "/tmp/spool"
        assert expand("${A:-${B:-/tmp}/spool}", B="/var") == "/var/spool"

    def test_double_dollar_is_a_literal_reference(self) -> None:
        """$${ writes a literal ${ (for a style: $ log format)."""
        assert expand("$${asctime} ${X:-y} $5") == "${asctime} y $5"

    def test_walks_nested_mappings_and_lists_but_not_keys(self) -> None:
        """Strings at any depth are expanded; keys and non-strings are left alone."""
        document = {"${K}": [1, {"v": "${V:-d}"}, None, True], "n": 3}
        assert expand(document) == {"${K}": [1, {"v": "d"}, None, True], "n": 3}

    def test_malformed_reference_is_an_error(self) -> None:
        """An unterminated ${ is reported with the file, not passed through silently."""
        with pytest.raises(ConfigError, match=SOURCE):
            expand("${BUCKET")
        with pytest.raises(ConfigError, match="malformed"):
            expand("${BAD-NAME}")


class TestTypedDefaults:
    def test_numeric_default_makes_a_number(self) -> None:
        """A whole-value reference with a numeric default yields an int or float."""
        assert expand("${T:-5}") == 5
        assert expand("${T:-5}", T="0.5") == 0.5
        assert expand("${T:-5}", T="12") == 12

    def test_boolean_default_makes_a_boolean(self) -> None:
        """A whole-value reference with a true/false default yields a bool."""
        assert expand("${F:-true}") is True
        assert expand("${F:-true}", F="off") is False

    def test_value_of_the_wrong_type_names_variable_and_file(self) -> None:
        """A non-number for a numeric default is an error, not a string passed on."""
        with pytest.raises(ConfigError, match=r"T='soon'.*must be a number") as caught:
            expand("${T:-5}", T="soon")
        assert SOURCE in str(caught.value)

    def test_other_values_stay_strings(self) -> None:
        """Digits stay strings unless the default says number (bucket '123' is a name)."""
        assert expand("${BUCKET:-}", BUCKET="123") == "123"
        assert expand("${BUCKET}", BUCKET="123") == "123"
        assert expand("x${T:-5}") == "x5"


class TestConfigure:
    def test_applies_and_returns_the_expanded_document(self, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
        """configure() applies dictConfig and returns the expanded, unconsumed document."""
        monkeypatch.setenv("DEMO_LEVEL", "WARNING")
        path = write(tmp_path, f"{HEADER}loggers:\n  app.cfg:\n    level: ${{DEMO_LEVEL}}\n"
                               "handlers:\n  quiet:\n    class: logging.NullHandler\n")
        result = configure(path)
        assert result["loggers"]["app.cfg"]["level"] == "WARNING"
        assert result["handlers"]["quiet"]["class"] == "logging.NullHandler"
        assert logging.getLogger("app.cfg").level == logging.WARNING

    def test_missing_variable_fails_before_touching_logging(self, tmp_path: Path) -> None:
        """A missing variable raises before dictConfig runs: current handlers stay."""
        marker = Collect()
        logging.getLogger("app.keep").addHandler(marker)
        path = write(tmp_path, f"{HEADER}handlers:\n  x:\n    class: ${{NO_SUCH_CLASS_VAR}}\n")
        with pytest.raises(MissingVariableError, match=f"{path}.*NO_SUCH_CLASS_VAR"):
            configure(path)
        assert marker in logging.getLogger("app.keep").handlers

    def test_rejected_or_unreadable_documents_are_config_errors(self, tmp_path: Path) -> None:
        """Bad YAML, a non-mapping and a document dictConfig rejects all raise ConfigError."""
        for text in ("version: [1\n", "- 1\n", f"{HEADER}handlers:\n  x:\n    class: no.Such\n"):
            with pytest.raises(ConfigError, match=str(tmp_path)):
                configure(write(tmp_path, text))
        with pytest.raises(ConfigError):
            load_config(tmp_path / "absent.yaml")


class TestShippedConfig:
    def test_packaged_copy_is_byte_identical(self) -> None:
        """The logging.yaml inside the package is the repository's, byte for byte."""
        assert packaged_config().read_bytes() == REPO_YAML.read_bytes()

    def test_default_prefers_the_current_directory(self, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
        """./logging.yaml wins when present; otherwise the packaged copy is used."""
        monkeypatch.chdir(tmp_path)
        assert default_config().read_bytes() == packaged_config().read_bytes()
        write(tmp_path, HEADER)
        assert Path(str(default_config())).resolve() == (tmp_path / "logging.yaml").resolve()

    def test_without_environment_both_sinks_switch_off_quietly(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """No bucket and no log group: it applies, S3 is disabled, CloudWatch is a NullHandler
        with one warning, and the application's logging call still works."""
        for name in ("ANALYTICS_S3_BUCKET", "ANALYTICS_LOG_GROUP", "ANALYTICS_SPOOL_DIR"):
            monkeypatch.delenv(name, raising=False)
        voice = Collect()
        logging.getLogger("s3_log_handler").addHandler(voice)
        configure(REPO_YAML)
        handlers = logging.getLogger("analytics").handlers
        s3 = next(h for h in handlers if isinstance(h, S3Handler))
        assert not s3.config.enabled
        assert any(type(h) is logging.NullHandler for h in handlers)
        warnings = [r for r in voice.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "ANALYTICS_LOG_GROUP" in warnings[0].getMessage()
        logging.getLogger("analytics").info("x", extra={"analytics_data": {"session_id": "a"}})
        assert s3.stats()["ignored"] == 1

    def test_numeric_options_from_the_environment_are_numbers(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """ANALYTICS_CLOSE_TIMEOUT reaches S3Handler as a number, default 5."""
        monkeypatch.delenv("ANALYTICS_LOG_GROUP", raising=False)
        monkeypatch.setenv("ANALYTICS_S3_BUCKET", "never-contacted")
        monkeypatch.setenv("ANALYTICS_SPOOL_DIR", str(tmp_path))
        monkeypatch.setenv("ANALYTICS_CLOSE_TIMEOUT", "0.5")
        assert load_config(REPO_YAML)["handlers"]["s3"]["close_timeout"] == 0.5
        monkeypatch.delenv("ANALYTICS_CLOSE_TIMEOUT")
        configure(REPO_YAML)
        s3 = next(h for h in logging.getLogger("analytics").handlers if isinstance(h, S3Handler))
        assert s3.config.enabled and s3.config.close_timeout == 5
        assert s3.flush() is True  # a string timeout would raise TypeError here


class TestEnvironmentTextIsLiteral:
    DOCUMENT = (f"{HEADER}handlers:\n"
                "  file_text:\n    class: logging.StreamHandler\n    stream: ext://sys.stderr\n"
                "  from_env:\n    class: logging.StreamHandler\n"
                "    stream: \"${STREAM_VAR:-ext://sys.stdout}\"\n"
                "loggers:\n  app.literal:\n    handlers: [file_text, from_env]\n")

    def test_ext_and_cfg_from_the_environment_are_not_converted(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A value that took text from the environment reaches the handler as that text;
        ext:// written in the file itself (or a default) is still converted."""
        path = write(tmp_path, self.DOCUMENT)
        configure(path)
        file_text, default = logging.getLogger("app.literal").handlers
        assert (file_text.stream, default.stream) == (sys.stderr, sys.stdout)  # type: ignore[attr-defined]
        for value in ("ext://sys.stderr", "cfg://handlers.file_text"):
            monkeypatch.setenv("STREAM_VAR", value)
            configure(path)
            from_env = logging.getLogger("app.literal").handlers[1]
            assert from_env.stream == value  # type: ignore[attr-defined]
            assert type(from_env.stream) is str  # type: ignore[attr-defined]

    def test_a_prefix_of_ext_os_sep_is_refused_not_turned_into_a_slash(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """ANALYTICS_S3_PREFIX=ext://os.sep stays that text, which the prefix rule refuses."""
        monkeypatch.delenv("ANALYTICS_LOG_GROUP", raising=False)
        monkeypatch.setenv("ANALYTICS_S3_BUCKET", "never-contacted")
        monkeypatch.setenv("ANALYTICS_SPOOL_DIR", str(tmp_path))
        monkeypatch.setenv("ANALYTICS_S3_PREFIX", "ext://os.sep")
        assert load_config(REPO_YAML)["handlers"]["s3"]["prefix"] == "ext://os.sep"
        with pytest.raises(ConfigError) as info:
            configure(REPO_YAML)
        chain, error = [], info.value
        while error is not None:
            chain.append(str(error))
            error = error.__cause__  # type: ignore[assignment]
        assert any(m.startswith("prefix must be") and "'ext://os.sep'" in m for m in chain)

    def test_expansion_marks_only_environment_text(self) -> None:
        """EnvText for text taken from the environment; plain str for the file's own."""
        assert type(expand("${P:-sessions}")) is str
        assert type(expand("sessions")) is str
        assert type(expand("${P:-sessions}", P="calls")) is EnvText
        assert type(expand("x/${P}", P="")) is EnvText
        assert type(expand("${A:-${B:-b}}", B="from-env")) is EnvText
