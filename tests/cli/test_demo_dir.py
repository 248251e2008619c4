"""Where `crmsync demo` keeps its config and state, and when it refuses a directory.

The demo leaves `./crmsync-demo/` (or `--dir PATH`) for the read-only commands. A second
demo starts its own directory over; a directory it did not write, a file, and a
directory a running demo holds are refused in one line (exit 2) before anything starts
and before anything in them is touched. (A demo run and its printed commands:
tests/cli/test_demo.py.)
"""

from __future__ import annotations

import re
from pathlib import Path

from support.cli import Cli

from crmsync.cli.demo import MARKER
from crmsync.store import hold_state_lock


async def test_a_directory_the_demo_did_not_write_is_refused(cli: Cli, tmp_path: Path) -> None:
    mine = tmp_path / "project"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    result = await cli("demo", "--dir", "project", config=None)
    assert result.code == 2, result.describe()
    assert result.err.splitlines() == [
        "demo: project is not empty and is not a crmsync demo's directory (no crmsync.toml "
        "written by `crmsync demo`); pass --dir with a new or empty directory"
    ]
    assert result.out == ""
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]


async def test_a_config_of_ones_own_is_not_taken_for_the_demos(
    cli: Cli, tmp_path: Path
) -> None:
    mine = tmp_path / "project"
    mine.mkdir()
    (mine / "crmsync.toml").write_text("[daemon]\nstate_path = \"crmsync.db\"\n")
    (mine / "crmsync.db").write_text("not the demo's")
    result = await cli("demo", "--dir", "project/", config=None)
    assert result.code == 2, result.describe()
    assert "is not a crmsync demo's directory" in result.err
    assert (mine / "crmsync.db").read_text() == "not the demo's"


async def test_a_file_is_refused(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "crmsync-demo").write_text("a file")
    result = await cli("demo", config=None)
    assert result.code == 2, result.describe()
    assert result.err.splitlines() == [
        "demo: ./crmsync-demo exists and is not a directory; pass --dir PATH"
    ]


async def test_a_directory_a_running_demo_holds_is_refused(cli: Cli, tmp_path: Path) -> None:
    held = tmp_path / "crmsync-demo"
    held.mkdir()
    (held / "crmsync.toml").write_text(f"{MARKER}. ...\n")
    (held / "crmsync.db").write_text("the running demo's")
    async with hold_state_lock((held / "crmsync.db").absolute(), command="crmsync demo"):
        result = await cli("demo", config=None)
    assert result.code == 2, result.describe()
    (line,) = result.err.splitlines()
    assert re.fullmatch(
        r"demo: \./crmsync-demo is in use by `crmsync demo` \(pid \d+, since \S+\) \(a demo "
        r"still running there\?\); stop it, or pass --dir with another directory", line
    ), line
    assert (held / "crmsync.db").read_text() == "the running demo's"
