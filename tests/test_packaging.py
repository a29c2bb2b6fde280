"""The distribution is ``s3-analytics-handler``; the import name and the command stay.

PyPI's ``s3-log-handler`` (and ``s3_log_handler``, which normalises to it) is an unrelated
project, so ``pip install s3_log_handler`` would install someone else's code.
"""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import s3_log_handler
from s3_log_handler._cli import main

DISTRIBUTION = "s3-analytics-handler"
REPO = Path(__file__).resolve().parent.parent


class TestInstalledMetadata:
    def test_the_distribution_is_s3_analytics_handler_and_ships_the_package(self) -> None:
        dist = importlib.metadata.distribution(DISTRIBUTION)
        assert dist.metadata["Name"] == DISTRIBUTION
        assert "s3_log_handler" in importlib.metadata.packages_distributions()
        assert DISTRIBUTION in importlib.metadata.packages_distributions()["s3_log_handler"]

    def test_the_command_is_s3_log_handler_and_runs_the_cli(self) -> None:
        scripts = importlib.metadata.distribution(DISTRIBUTION).entry_points.select(
            group="console_scripts")
        (command,) = [ep for ep in scripts if ep.name == "s3-log-handler"]
        assert command.value == "s3_log_handler._cli:main"
        assert command.load() is main

    def test_the_import_name_is_unchanged(self) -> None:
        assert s3_log_handler.S3Handler.__module__.startswith("s3_log_handler.")


class TestPipInstall:
    def test_pip_install_of_the_repo_gives_the_distribution_the_import_and_the_command(
            self, tmp_path: Path) -> None:
        """A real ``pip install --no-deps .`` into a fresh venv: metadata, import, command.

        The venv borrows this venv's site-packages (after its own) for the dependencies,
        so the copy it imports is the one pip just installed, not the editable one here.
        """
        venv = tmp_path / "venv"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                       timeout=60)
        python = venv / "bin" / "python"
        site = Path(subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            check=True, capture_output=True, text=True, timeout=30).stdout.strip())
        installed = subprocess.run(
            [sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
             "--no-deps", "--disable-pip-version-check", str(REPO)],
            capture_output=True, text=True, timeout=120, check=False)
        assert installed.returncode == 0, installed.stderr
        (site / "zz_dev_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")

        probe = textwrap.dedent(f"""
            import importlib.metadata, json, s3_log_handler
            dist = importlib.metadata.distribution({DISTRIBUTION!r})
            print(json.dumps({{"name": dist.metadata["Name"],
                              "dist": str(dist.locate_file("")),
                              "module": s3_log_handler.__file__}}))
            """)
        # Run away from the work tree, whose s3_log_handler/ and *.egg-info would be found
        # first through sys.path[0].
        seen = json.loads(subprocess.run([str(python), "-c", probe], check=True, cwd=tmp_path,
                                         capture_output=True, text=True, timeout=60).stdout)
        assert seen["name"] == DISTRIBUTION
        assert Path(seen["dist"]) == site
        assert Path(seen["module"]).is_relative_to(site)

        command = subprocess.run([str(venv / "bin" / "s3-log-handler"), "iam-policy",
                                  "--bucket", "my-analytics"],
                                 capture_output=True, text=True, timeout=60, check=False,
                                 cwd=tmp_path)
        assert command.returncode == 0, command.stderr
        assert json.loads(command.stdout)["Statement"][0]["Action"] == ["s3:PutObject"]
