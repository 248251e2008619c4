"""`crmsync deploy-files DIR`: the deployment files, out of the installed package.

A wheel carries no `deploy/` directory, so the unit, config example, crmsyncctl,
Prometheus files and dashboard are package data (crmsync/deploy_files/). The command
writes every one of them as shipped, says where each goes, and never overwrites a file
without --force. The list it writes is the directory's, and pyproject's package-data
patterns carry every file into the wheel.
"""

from __future__ import annotations

import asyncio
import fnmatch
import os
import shutil
import tomllib
from pathlib import Path

import pytest
from support.cli import REPO_ROOT, Cli

from crmsync.cli.deploy_files import FILES, UNIT_BINARY

PACKAGED = REPO_ROOT / "crmsync" / "deploy_files"


def packaged_files() -> set[str]:
    return {p.relative_to(PACKAGED).as_posix() for p in PACKAGED.rglob("*") if p.is_file()}


async def test_deploy_files_writes_every_packaged_file_as_shipped(
    cli: Cli, tmp_path: Path
) -> None:
    result = await cli("deploy-files", "out", config=None, env={"COLUMNS": "80"})
    assert result.code == 0, result.describe()
    out = tmp_path / "out"
    for name in packaged_files():
        assert (out / name).read_bytes() == (PACKAGED / name).read_bytes(), name
        assert name in result.out
    assert os.access(out / "crmsyncctl", os.X_OK)
    assert not os.access(out / "crmsync.service", os.X_OK)
    assert result.out.startswith("Wrote the deployment files of crmsync ")
    assert f"crmsync.service runs {UNIT_BINARY}" in result.out
    assert all(len(line) <= 80 for line in result.out.splitlines()), result.out


async def test_deploy_files_never_overwrites_without_force(cli: Cli, tmp_path: Path) -> None:
    first = await cli("deploy-files", "out", config=None)
    assert first.code == 0, first.describe()
    edited = tmp_path / "out" / "crmsync.service"
    edited.write_text("# the operator's edits\n")
    again = await cli("deploy-files", "out", config=None)
    assert again.code == 2, again.describe()
    assert again.err.splitlines() == [
        "deploy-files: out already has " + ", ".join(name for name, _ in FILES)
        + "; pass --force to overwrite"
    ]
    assert edited.read_text() == "# the operator's edits\n"
    forced = await cli("deploy-files", "--force", "out", config=None)
    assert forced.code == 0, forced.describe()
    assert edited.read_bytes() == (PACKAGED / "crmsync.service").read_bytes()


def test_every_packaged_file_is_written_and_goes_into_the_wheel() -> None:
    assert {name for name, _ in FILES} == packaged_files()
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["crmsync"]
    for name in packaged_files():
        path = f"deploy_files/{name}"
        assert any(fnmatch.fnmatch(path, pattern) for pattern in patterns), path


async def test_the_written_unit_verifies_but_for_its_missing_binary(
    cli: Cli, tmp_path: Path
) -> None:
    """What deploy/README.md says: `systemd-analyze verify` on the unit as written
    complains of nothing but ExecStart='s binary, until crmsync is installed there."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze not installed")
    if await asyncio.to_thread(Path(UNIT_BINARY).exists):
        pytest.skip(f"{UNIT_BINARY} exists here: tests/deploy verifies the unit as is")
    result = await cli("deploy-files", "out", config=None)
    assert result.code == 0, result.describe()
    verify = await asyncio.create_subprocess_exec(
        tool, "verify", "--man=no", str(tmp_path / "out" / "crmsync.service"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        _, err = await verify.communicate()
    complaints = [line for line in err.decode().splitlines() if "crmsync.service" in line]
    assert complaints == [
        f"crmsync.service: Command {UNIT_BINARY} is not executable: No such file or directory"
    ], err.decode()
