"""Shared test setup: asyncio debug mode everywhere, blocking the loop fails the test, and
the `cli` fixture (the real CLI in a subprocess; helpers live in `support/`)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.cli import Cli, cli_runner
from support.postgres import MISSING, REQUIRE_ENV, PostgresCluster, find_binaries

# Read by asyncio when each loop is created: every test loop runs in debug mode, which
# reports never-awaited coroutines, calls from the wrong thread and slow callbacks.
os.environ["PYTHONASYNCIODEBUG"] = "1"

# A callback that holds the loop this long is a blocking call, not scheduling noise
# (on a loaded 2-core machine the OS alone can stall a callback for ~0.5 s).
BLOCKING_CALLBACK_SECONDS = 1.0


class _SlowCallbackCatcher(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == "asyncio" and record.getMessage().startswith("Executing "):
            seconds = record.args[-1] if isinstance(record.args, tuple) else 0.0
            if isinstance(seconds, float) and seconds >= BLOCKING_CALLBACK_SECONDS:
                self.messages.append(record.getMessage())


@pytest.fixture(autouse=True)
def _no_blocking_calls_on_the_loop() -> Iterator[None]:
    catcher = _SlowCallbackCatcher()
    logger = logging.getLogger("asyncio")
    logger.addHandler(catcher)
    try:
        yield
    finally:
        logger.removeHandler(catcher)
    if catcher.messages:
        pytest.fail("event loop blocked: " + "; ".join(catcher.messages[:3]))


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """The real CLI in a subprocess, from tmp_path: `await cli("status", "--json")`.

    `-c tmp_path/crmsync.toml` is appended (`config=PATH` for another file, `config=None`
    for none); `env=` adds to the child's environment; see `support.cli.run_cli` for
    what every run checks.
    """
    return cli_runner(tmp_path)


# -- PostgreSQL (tests/store runs every store test on it too; tests/e2e: replicas) ----


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """One throwaway cluster for the session (skips when the binaries are missing)."""
    bin_dir = find_binaries()
    if bin_dir is None:
        if os.environ.get(REQUIRE_ENV):
            pytest.fail(f"{REQUIRE_ENV} is set but {MISSING}")
        pytest.skip(MISSING)
    cluster = PostgresCluster(bin_dir)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()



# -- parallel runs (pytest-xdist, `-n auto` in pyproject) ------------------------------

#: tests that run daemons in subprocesses against the simulators, whose strict rate
#: checks read the simulator's own clock: run one at a time (one xdist worker takes
#: the whole group), so two of them never starve each other's simulator of CPU
SERIAL_DIRS = ("e2e", "reliability", "bench")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.path)).parent.name in SERIAL_DIRS:
            item.add_marker(pytest.mark.xdist_group("daemons"))
