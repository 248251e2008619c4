"""The CLI entry point: help, version, usage errors and exit codes (INTERFACE §2)."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.cli import Cli, Result

from crmsync.cli.main import COMMANDS, main


async def run(cli: Cli, *args: str) -> Result:
    """`crmsync ARGS` in a subprocess, no `-c` added."""
    return await cli(*args, config=None)


async def test_help_lists_every_command(cli: Cli) -> None:
    result = await run(cli, "--help")
    assert result.code == 0
    for name in COMMANDS:
        assert name in result.out


async def test_version(cli: Cli) -> None:
    result = await run(cli, "--version")
    assert result.code == 0
    assert result.out.startswith("crmsync ")


@pytest.mark.parametrize("args", [[], ["no-such-command"], ["sync"], ["sim", "nothing"]])
async def test_bad_usage_exits_2_without_traceback(cli: Cli, args: list[str]) -> None:
    result = await run(cli, *args)
    assert result.code == 2
    assert "Traceback" not in result.err


def test_unknown_tenant_is_a_usage_error(tmp_path: Path) -> None:
    config = tmp_path / "crmsync.toml"
    config.write_text("")
    assert main(["sync", "--tenant", "ghost", "-c", str(config)]) == 2


async def test_missing_config_file_is_exit_2_naming_it(cli: Cli, tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    result = await run(cli, "check-config", "-c", str(missing))
    assert result.code == 2
    assert "nope.toml" in result.err
    assert "Traceback" not in result.err
