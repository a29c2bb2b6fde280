"""Apply a ``logging.yaml``: expand ``${VAR}`` / ``${VAR:-default}``, then ``dictConfig`` it.

Expansion rules (every string value in the document, at any depth; keys are left alone):

* ``${VAR}`` is the variable's value (an empty value stays empty); unset is an error.
* ``${VAR:-default}`` is the value when set and non-empty, else ``default``; the default may
  itself contain ``{...}`` and ``${...}`` references.
* ``$${`` is a literal ``${`` (e.g. for a ``style: $`` log format).
* A string that took text from the environment is a literal (:class:`EnvText`): dictConfig's
  ``ext://`` and ``cfg://`` conversion never applies to it, so ``ANALYTICS_S3_PREFIX=ext://os.sep``
  stays that text (and is refused as a prefix) instead of importing ``os.sep``. Only text
  written in the file itself (``stream: ext://sys.stderr``, a default) is converted.
* A value that is *exactly one* reference whose default is a number (``${X:-5}``, ``${X:-0.5}``)
  or a boolean (``${X:-true}``) is converted to a number or a boolean, so numeric handler
  options keep their type; anything else the variable holds is an error naming it. Every
  other value stays a string (a bucket or log group named ``123`` is not turned into an int).
"""

from __future__ import annotations

import copy
import logging
import logging.config
import os
from collections.abc import Mapping
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import yaml

from ._diagnostics import logger

#: The file :func:`configure` reads by default, relative to the current directory.
DEFAULT_CONFIG = "logging.yaml"
_NAME_START = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
_NAME_CHARS = _NAME_START | frozenset("0123456789")
_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


class EnvText(str):
    """A configuration string that took text from the environment: always a literal."""

    __slots__ = ()


class _LiteralEnvConfigurator(logging.config.DictConfigurator):
    """``dictConfig`` that leaves :class:`EnvText` values alone (no ``ext://``/``cfg://``)."""

    def convert(self, value: Any) -> Any:
        if type(value) is EnvText:
            return str(value)
        return super().convert(value)


class ConfigError(ValueError):
    """A logging configuration file that cannot be read, expanded or applied."""


class MissingVariableError(ConfigError):
    """``${VAR}`` without a default names a variable that is not set."""

    def __init__(self, variable: str, source: str) -> None:
        self.variable = variable
        self.source = source
        super().__init__(f"{source}: environment variable {variable} is not set and "
                         f"${{{variable}}} has no default (write ${{{variable}:-default}})")


def packaged_config() -> Traversable:
    """The ``logging.yaml`` shipped inside the package (same bytes as the repository's)."""
    return resources.files(__package__) / DEFAULT_CONFIG


def default_config() -> Path | Traversable:
    """``./logging.yaml`` when it exists, else :func:`packaged_config`."""
    local = Path(DEFAULT_CONFIG)
    return local if local.is_file() else packaged_config()


def load_config(path: str | os.PathLike[str] | Traversable = DEFAULT_CONFIG,
                environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Read a YAML ``dictConfig`` document and return it with ``${...}`` expanded.

    Raises :class:`MissingVariableError` naming the variable and the file, and
    :class:`ConfigError` for unreadable YAML, a malformed reference or a document that is
    not a mapping.
    """
    source = Path(path) if isinstance(path, str | os.PathLike) else path
    name = str(source)
    try:
        document = yaml.safe_load(source.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        msg = f"{name}: cannot read logging configuration: {exc}"
        raise ConfigError(msg) from exc
    if not isinstance(document, dict):
        msg = f"{name}: a logging configuration must be a mapping, got {type(document).__name__}"
        raise ConfigError(msg)
    expanded = expand_env(document, os.environ if environ is None else environ, name)
    assert isinstance(expanded, dict)
    return expanded


def configure(path: str | os.PathLike[str] | Traversable = DEFAULT_CONFIG,
              environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Apply ``path`` with :func:`logging.config.dictConfig`; return the expanded document.

    Before ``dictConfig`` replaces the current handlers, each is flushed *outside* logging's
    module lock: ``dictConfig`` closes handlers while holding that lock, and a handler whose
    delivery threads need it (botocore creates and consults loggers) would otherwise stall
    until its close timeout (measured: a reload that takes 0.5 s this way took 70 s, and
    watchtower lost its queue, without it). Raises what :func:`load_config` raises, before
    logging is touched, and :class:`ConfigError` when ``dictConfig`` rejects the document
    (by then ``dictConfig`` may have closed the previous handlers: stdlib behaviour).
    """
    expanded = load_config(path, environ)
    _flush_current_handlers()
    try:
        # As dictConfig() does (it consumes its input), with environment text kept literal.
        _LiteralEnvConfigurator(copy.deepcopy(expanded)).configure()
    except (ValueError, TypeError, AttributeError, ImportError) as exc:
        msg = f"{path}: logging configuration rejected: {exc}"
        raise ConfigError(msg) from exc
    return expanded


def expand_env(value: Any, environ: Mapping[str, str], source: str) -> Any:
    """``value`` with every string (in dicts and lists, recursively) expanded; see module doc."""
    if isinstance(value, str):
        return _expand_value(value, environ, source)
    if isinstance(value, dict):
        return {k: expand_env(v, environ, source) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, environ, source) for v in value]
    return value


def _expand_value(text: str, environ: Mapping[str, str], source: str) -> Any:
    result, whole, from_env = _expand_text(text, environ, source)
    if whole is None:
        return EnvText(result) if from_env else result
    name, default = whole
    if _number(default) is not None:
        number = _number(result)
        if number is None:
            msg = f"{source}: {name}={result!r} must be a number (its default {default!r} is)"
            raise ConfigError(msg)
        return number
    if default.strip().lower() in ("true", "false"):
        flag = _boolean(result)
        if flag is None:
            msg = f"{source}: {name}={result!r} must be true or false (its default is {default!r})"
            raise ConfigError(msg)
        return flag
    return EnvText(result) if from_env else result


def _expand_text(text: str, environ: Mapping[str, str], source: str) -> (
    tuple[str, tuple[str, str] | None, bool]
):
    """The expanded text, ``(name, default)`` when ``text`` is exactly one reference with a
    default, and whether any of the text came from the environment."""
    out: list[str] = []
    whole: tuple[str, str] | None = None
    from_env = False
    pos = 0
    while (start := text.find("$", pos)) >= 0:
        if text.startswith("$${", start):
            out.append(text[pos:start] + "${")
            pos = start + 3
            continue
        if not text.startswith("${", start):
            out.append(text[pos:start + 1])
            pos = start + 1
            continue
        out.append(text[pos:start])
        name, default, end = _parse_reference(text, start, source)
        value = environ.get(name)
        if not value and default is not None:
            value, _, nested_env = _expand_text(default, environ, source)
            from_env = from_env or nested_env
        elif value is None:
            raise MissingVariableError(name, source)
        else:
            from_env = True
        out.append(value)
        if start == 0 and end == len(text) and default is not None:
            whole = (name, default)
        pos = end
    out.append(text[pos:])
    return "".join(out), whole, from_env


def _parse_reference(text: str, start: int, source: str) -> tuple[str, str | None, int]:
    """Parse ``${NAME}`` or ``${NAME:-default}`` at ``start``: name, default, end index."""
    i = start + 2
    if i < len(text) and text[i] in _NAME_START:
        while i < len(text) and text[i] in _NAME_CHARS:
            i += 1
    name = text[start + 2:i]
    if name and text.startswith("}", i):
        return name, None, i + 1
    if name and text.startswith(":-", i):
        depth, j = 1, i + 2
        while j < len(text):
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            if depth == 0:
                return name, text[i + 2:j], j + 1
            j += 1
    msg = (f"{source}: malformed reference in {text!r}: use ${{NAME}} or ${{NAME:-default}} "
           "(write $${ for a literal ${)")
    raise ConfigError(msg)


def _number(text: str) -> int | float | None:
    """``text`` as an int or a float, or ``None`` when it is neither."""
    for convert in (int, float):
        try:
            return convert(text.strip())
        except ValueError:
            pass
    return None


def _boolean(text: str) -> bool | None:
    lowered = text.strip().lower()
    return True if lowered in _TRUE else False if lowered in _FALSE else None


def _flush_current_handlers() -> None:
    for ref in list(getattr(logging, "_handlerList", [])):
        handler = ref()
        if handler is None:
            continue
        try:
            handler.flush()
        except Exception as exc:  # a failing flush must not block reconfiguration
            logger.warning("flushing %r before reconfiguring logging failed: %s", handler, exc)
