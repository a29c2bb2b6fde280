"""The README's code blocks run, so the README cannot drift from the code.

Rules (one test per checked block, named ``L<line>-<language>`` after the fence's line):

- ```` ```python ````: run as a script in a fresh interpreter, from a scratch directory that
  holds a copy of ``logging.yaml``, against the session's moto server: ``AWS_ENDPOINT_URL``
  points at it, ``ANALYTICS_S3_BUCKET`` names a fresh bucket, ``ANALYTICS_LOG_GROUP`` is empty
  and the spool's state directory is scratch. It must exit 0 within 60 s. Each block runs on
  its own: no block sees another's names.
- ```` ```yaml ````: must parse with ``yaml.safe_load``. A whole logging configuration (it has
  ``version``) is applied with ``s3_log_handler.configure`` in a fresh interpreter, as above.
  A fragment with ``handlers:`` has each ``s3_log_handler.S3Handler`` entry's keywords checked
  by the handler's settings (unknown or invalid keywords fail; nothing is created on disk).
- ```` ```console ````, ```` ```bash ````, ```` ```sh ````, ```` ```shell ````: each line
  ``$ s3-log-handler athena-ddl|iam-policy|snowflake-ddl ...`` is run (no shell: no pipes or
  redirects; a trailing ``\\`` continues the line) and must exit 0. The lines after it, up to
  the next ``$`` line or the fence, are its expected output when there are any: stdout must
  equal them (trailing spaces aside); a line that is exactly ``...`` ends the comparison there.
  Other lines are not run. Blocks in other languages (sql, json, none) are not checked.

A block that cannot run here opts out with an HTML comment on the line right before its
fence, giving the reason (the test is then reported as skipped with it)::

    <!-- readme-test: skip (needs FastAPI) -->
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
CHECKED = {"python", "yaml", "console", "bash", "sh", "shell"}
RUNNABLE = ("athena-ddl", "iam-policy", "snowflake-ddl")
SKIP = re.compile(r"<!--\s*readme-test:\s*skip\s*(?:\((?P<reason>.*)\))?\s*-->")
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<lang>[\w+-]*)")
TIMEOUT = 60


@dataclass(frozen=True)
class Block:
    """One fenced block: where it starts (1-based line of the fence), its language and text."""

    line: int
    lang: str
    text: str
    skip: str | None

    def where(self) -> str:
        first = next((x for x in self.text.splitlines() if x.strip()), "")
        return f"README.md line {self.line} (```{self.lang}, first line: {first[:70]!r})"


def fenced_blocks(markdown: str) -> list[Block]:
    """Every fenced block in ``markdown``, with the skip reason of a marker right before it."""
    lines = markdown.splitlines()
    blocks, i = [], 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        indent, fence = len(match["indent"]), match["fence"]
        end = i + 1
        while end < len(lines) and not lines[end].strip().startswith(fence):
            end += 1
        body = "\n".join(dedent(x, indent) for x in lines[i + 1:end])
        marker = SKIP.search(lines[i - 1]) if i else None
        skip = None if marker is None else (marker["reason"] or "").strip() or "no reason given"
        blocks.append(Block(i + 1, match["lang"].lower(), body + "\n", skip))
        i = end + 1
    return blocks


def dedent(line: str, indent: int) -> str:
    """``line`` without the first ``indent`` characters when they are blanks (a list item's
    fence is indented, and so is its body)."""
    head = line[:indent]
    return line[indent:] if head.isspace() or not head else line.lstrip()


def commands(block: Block) -> list[tuple[list[str], list[str]]]:
    """The runnable ``$ s3-log-handler ...`` lines of a console block, each with its output."""
    found: list[tuple[list[str], list[str]]] = []
    lines = block.text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.startswith("$ "):
            i += 1
            continue
        command = line[2:]
        while command.endswith("\\") and i + 1 < len(lines):
            i += 1
            command = command[:-1] + " " + lines[i].strip()
        i += 1
        output = []
        while i < len(lines) and not lines[i].startswith("$ "):
            output.append(lines[i])
            i += 1
        argv = shlex.split(command)
        if argv[:1] == ["s3-log-handler"] and argv[1:2] and argv[1] in RUNNABLE:
            found.append((argv[1:], output))
    return found


def is_checked(block: Block) -> bool:
    if block.lang in ("python", "yaml"):
        return True
    return block.lang in CHECKED and bool(commands(block))


def cases() -> list[Any]:
    blocks = [b for b in fenced_blocks(README.read_text(encoding="utf-8")) if is_checked(b)]
    return [pytest.param(b, id=f"L{b.line}-{b.lang}",
                         marks=[pytest.mark.skip(reason=b.skip)] if b.skip else [])
            for b in blocks]


class Env(dict[str, str]):
    """Environment variables, shown by name only (a failing test prints its arguments)."""

    def __repr__(self) -> str:
        return f"<environment: {len(self)} variables>"


@pytest.fixture
def scratch_env(tmp_path: Path, moto_endpoint: str, bucket: str) -> dict[str, str]:
    """An environment for a block's interpreter: moto for every AWS client, scratch state."""
    shutil.copy(REPO / "logging.yaml", tmp_path / "logging.yaml")
    env = Env(os.environ)
    env.update({"AWS_ENDPOINT_URL": moto_endpoint, "ANALYTICS_S3_BUCKET": bucket,
                "ANALYTICS_LOG_GROUP": "", "XDG_STATE_HOME": str(tmp_path / "state"),
                "HOME": str(tmp_path), "PYTHONDONTWRITEBYTECODE": "1"})
    return env


def run_python(block: Block, source: str, env: dict[str, str], cwd: Path) -> None:
    try:
        done = subprocess.run([sys.executable, "-c", source], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{block.where()} did not finish within {TIMEOUT} s")
    if done.returncode != 0:
        pytest.fail(f"{block.where()} exited {done.returncode}:\n{done.stderr[-3000:]}")


def check_yaml(block: Block, env: dict[str, str], cwd: Path) -> None:
    try:
        document = yaml.safe_load(block.text)
    except yaml.YAMLError as exc:
        pytest.fail(f"{block.where()} is not YAML: {exc}")
    if not isinstance(document, dict):
        return
    if "version" in document:
        path = cwd / f"readme-L{block.line}.yaml"
        path.write_text(block.text, encoding="utf-8")
        run_python(block, "import logging, s3_log_handler\n"
                          f"s3_log_handler.configure({str(path)!r})\nlogging.shutdown()\n",
                   env, cwd)
        return
    from s3_log_handler._settings import HandlerConfig

    for name, handler in (document.get("handlers") or {}).items():
        if isinstance(handler, dict) and handler.get("class") == "s3_log_handler.S3Handler":
            options = {k: v for k, v in handler.items() if k not in ("class", "level",
                                                                     "formatter", "filters")}
            try:
                HandlerConfig.from_kwargs(**options)
            except (TypeError, ValueError) as exc:
                pytest.fail(f"{block.where()}: handler {name!r} refused: {exc}")


def run_console(block: Block, env: dict[str, str], cwd: Path) -> None:
    executable = Path(sys.executable).parent / "s3-log-handler"
    for argv, expected in commands(block):
        shown = f"{block.where()}: $ s3-log-handler {shlex.join(argv)}"
        try:
            done = subprocess.run([str(executable), *argv], cwd=cwd, env=env,
                                  capture_output=True, text=True, timeout=TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{shown} did not finish within {TIMEOUT} s")
        if done.returncode != 0:
            pytest.fail(f"{shown} exited {done.returncode}:\n{done.stderr}")
        want, got = trimmed(expected), trimmed(done.stdout.splitlines())
        if "..." in want:
            want = want[:want.index("...")]
            got = got[:len(want)]
        if want:
            assert got == want, f"{shown}: output differs from the README"


def trimmed(lines: list[str]) -> list[str]:
    """``lines`` without trailing spaces and without blank lines at the end."""
    out = [x.rstrip() for x in lines]
    while out and not out[-1]:
        out.pop()
    return out


@pytest.mark.parametrize("block", cases())
def test_readme_block(block: Block, scratch_env: dict[str, str], tmp_path: Path) -> None:
    """The block runs (python), parses and is accepted (yaml), or its commands exit 0."""
    if block.lang == "python":
        run_python(block, block.text, scratch_env, tmp_path)
    elif block.lang == "yaml":
        check_yaml(block, scratch_env, tmp_path)
    else:
        run_console(block, scratch_env, tmp_path)


class TestRules:
    def test_a_marker_right_before_the_fence_skips_with_its_reason(self) -> None:
        text = ("x\n<!-- readme-test: skip (needs FastAPI) -->\n```python\nimport fastapi\n```\n"
                "<!-- readme-test: skip (not this one) -->\n\n```yaml\na: 1\n```\n")
        first, second = fenced_blocks(text)
        assert (first.line, first.lang, first.skip) == (3, "python", "needs FastAPI")
        assert first.text == "import fastapi\n"
        assert second.skip is None

    def test_only_runnable_commands_are_taken_with_their_output(self) -> None:
        block = Block(1, "console", "$ s3-log-handler iam-policy --bucket b \\\n  --prefix p\n"
                                    "{\n...\n$ aws s3 ls\n$ s3-log-handler demo\n", None)
        assert commands(block) == [(["iam-policy", "--bucket", "b", "--prefix", "p"],
                                    ["{", "..."])]
