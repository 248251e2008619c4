"""The CLI entry point: help, version, usage errors and exit codes (INTERFACE §2)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from crmsync.cli.main import COMMANDS, main


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crmsync", *args], capture_output=True, text=True, timeout=60
    )


def test_help_lists_every_command() -> None:
    result = run("--help")
    assert result.returncode == 0
    for name in COMMANDS:
        assert name in result.stdout


def test_version() -> None:
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("crmsync ")


@pytest.mark.parametrize("args", [[], ["no-such-command"], ["sync"], ["sim", "nothing"]])
def test_bad_usage_exits_2_without_traceback(args: list[str]) -> None:
    result = run(*args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_unknown_tenant_is_a_usage_error(tmp_path: Path) -> None:
    config = tmp_path / "crmsync.toml"
    config.write_text("")
    assert main(["sync", "--tenant", "ghost", "-c", str(config)]) == 2


def test_missing_config_file_is_exit_2_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    result = run("check-config", "-c", str(missing))
    assert result.returncode == 2
    assert "nope.toml" in result.stderr
    assert "Traceback" not in result.stderr
