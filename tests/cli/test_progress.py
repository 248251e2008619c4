"""`SyncProgress`: a done count never shows above its total, in the log lines (a pipe) and
on the progress bar (a terminal). An estimate reads `~N` and is dropped once exceeded;
a known total grows to the count. (`crmsync sync` on a resumed initial sync:
tests/e2e/test_sync_progress.py.)
"""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from crmsync.cli import progress as progress_module
from crmsync.cli.progress import SyncProgress


def log_lines(
    capsys: pytest.CaptureFixture[str],
    settle: int,
    *,
    total: int | None = None,
    estimated: bool = False,
) -> list[str]:
    """The lines a pipe gets, one per settled record (and the closing one)."""
    console = Console(file=io.StringIO())  # not a terminal: log lines on stderr
    with SyncProgress("sync acme", total=total, estimated=estimated, console=console) as bar:
        for _ in range(settle):
            bar.settled("created")
    return [line.split(" records")[0] for line in capsys.readouterr().err.splitlines()]


@pytest.fixture(autouse=True)
def _log_every_record(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress_module, "LOG_EVERY_SECONDS", 0.0)


def test_an_estimate_reads_as_one_and_is_dropped_once_exceeded(
    capsys: pytest.CaptureFixture[str],
) -> None:
    lines = log_lines(capsys, 5, total=3, estimated=True)
    assert lines == ["sync acme: 1/~3", "sync acme: 2/~3", "sync acme: 3/~3",
                     "sync acme: 4", "sync acme: 5", "sync acme: 5"]


def test_a_known_total_grows_to_the_count(capsys: pytest.CaptureFixture[str]) -> None:
    lines = log_lines(capsys, 3, total=2)
    assert lines == ["sync acme: 1/2", "sync acme: 2/2", "sync acme: 3/3", "sync acme: 3/3"]


def test_no_total_shows_the_count_alone(capsys: pytest.CaptureFixture[str]) -> None:
    assert log_lines(capsys, 2) == ["sync acme: 1", "sync acme: 2", "sync acme: 2"]


def test_the_bar_never_shows_more_done_than_its_total() -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=120)
    with SyncProgress("sync acme", total=70, estimated=True, console=console) as bar:
        for _ in range(300):
            bar.settled("unchanged")
    shown = screen.getvalue()
    counts = [(int(done), int(total)) for done, _, total in
              re.findall(r"(\d+)/(~?)(\d+)", shown)]
    assert counts, shown
    assert all(done <= total for done, total in counts), counts
    assert re.search(r"\b300\b", shown)  # the last frame: the count, without a total
