"""The state lock (`crmsync/store/lock.py`): one writer per state file.

In one process two holds conflict as they would across processes (an flock belongs to
an open file description), so most of this runs in-process; the holder that dies
without cleanup is a real child process, SIGKILLed.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from crmsync.errors import EXIT_USAGE
from crmsync.store import (
    DAEMON_COMMAND,
    StateLockedError,
    hold_state_lock,
    lock_holder,
    lock_path,
    open_store,
)
from crmsync.store.lock import ACQUIRE_PATIENCE, UNKNOWN_HOLDER


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state" / "crmsync.db"


async def test_a_second_writer_is_refused_with_one_line_naming_the_holder(state: Path) -> None:
    """1. the daemon holds the lock
    2. `crmsync sync`, then another daemon, try to take it
    Result: each gets `StateLockedError` (exit 2), one line naming the daemon's pid and
    command and what to do; the daemon still holds it."""
    async with hold_state_lock(state, command=DAEMON_COMMAND) as held:
        with pytest.raises(StateLockedError) as refused:
            async with hold_state_lock(state, command="crmsync sync --tenant acme",
                                       tenants=["acme"]):
                pass
        assert refused.value.exit_code == EXIT_USAGE
        (line,) = refused.value.lines()
        assert "\n" not in line
        assert f"`crmsync run` (pid {os.getpid()}, since " in line
        assert str(state) in line
        assert "stop it first" in line
        with pytest.raises(StateLockedError) as second_daemon:
            async with hold_state_lock(state, command=DAEMON_COMMAND):
                pass
        assert "another daemon.state_path" in second_daemon.value.lines()[0]
        assert held.held


async def test_a_daemon_beside_a_foreground_sync_is_told_to_wait(state: Path) -> None:
    async with hold_state_lock(state, command="crmsync sync --tenant acme", tenants=["acme"]):
        with pytest.raises(StateLockedError) as refused:
            async with hold_state_lock(state, command=DAEMON_COMMAND):
                pass
    (line,) = refused.value.lines()
    assert f"`crmsync sync --tenant acme` (pid {os.getpid()}" in line
    assert "wait for it to finish, then start the daemon" in line


async def test_the_holder_is_known_while_held_and_nobody_after(state: Path) -> None:
    """`lock_holder` (what `crmsync status` asks): None before anyone held the lock (and
    nothing is created), the holder with its tenants while held, None once released."""
    assert await lock_holder(state) is None
    assert not lock_path(state).exists()
    async with hold_state_lock(state, command="crmsync sync --tenant acme",
                               tenants=["acme"]):
        holder = await lock_holder(state)
        assert holder is not None
        assert (holder.pid, holder.command, holder.tenants) == (
            os.getpid(), "crmsync sync --tenant acme", ["acme"])
        assert holder.runs("acme") and not holder.runs("beta")
        assert abs(holder.started_at - time.time()) < 60
    assert await lock_holder(state) is None
    async with hold_state_lock(state, command=DAEMON_COMMAND):
        daemon = await lock_holder(state)
        assert daemon is not None and daemon.runs("anyone")


async def test_a_read_write_store_holds_the_lock_and_a_read_only_one_does_not(
    state: Path,
) -> None:
    async with open_store(state, command="crmsync retry --tenant acme", tenants=()):
        holder = await lock_holder(state)
        assert holder is not None and holder.command == "crmsync retry --tenant acme"
        with pytest.raises(StateLockedError):
            async with open_store(state):
                pass
        async with open_store(state, readonly=True) as reader:  # readers never lock
            assert reader.readonly
    assert await lock_holder(state) is None


async def test_a_probe_in_progress_does_not_make_a_writer_give_up(state: Path) -> None:
    """1. a reader's probe holds a shared lock on the lock file for a moment (well
       within `ACQUIRE_PATIENCE`)
    2. a writer takes the lock meanwhile
    Result: the writer waits the probe out and gets the lock."""
    async with hold_state_lock(state, command="setup"):
        pass  # the lock file exists from here on
    fd = os.open(lock_path(state), os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    asyncio.get_running_loop().call_later(ACQUIRE_PATIENCE / 5, os.close, fd)
    async with hold_state_lock(state, command=DAEMON_COMMAND) as held:
        assert held.held


async def test_an_unreadable_holder_is_reported_as_unknown(state: Path) -> None:
    """A holder that has just taken the lock and not written its name yet."""
    lock_path(state).parent.mkdir(parents=True)
    fd = os.open(lock_path(state), os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert await lock_holder(state) is UNKNOWN_HOLDER
        with pytest.raises(StateLockedError) as refused:
            async with hold_state_lock(state, command="crmsync sync --tenant acme"):
                pass
        assert "in use by another crmsync process" in refused.value.lines()[0]
    finally:
        os.close(fd)


async def test_a_sigkilled_holder_leaves_no_stale_lock(state: Path) -> None:
    """1. a child process takes the lock and says so
    2. it is SIGKILLed (no cleanup)
    Result: the lock file is still there, but nobody holds it: the next writer gets it."""
    code = (
        "import asyncio, sys\n"
        "from crmsync.store import hold_state_lock\n"
        "async def main():\n"
        f"    async with hold_state_lock({str(state)!r}, command='crmsync run'):\n"
        "        print('held', flush=True)\n"
        "        await asyncio.Event().wait()\n"
        "asyncio.run(main())\n"
    )
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        async with asyncio.timeout(30):
            assert await child.stdout.readline() == b"held\n"
        holder = await lock_holder(state)
        assert holder is not None and holder.pid == child.pid
    finally:
        child.send_signal(signal.SIGKILL)
        await child.wait()
    assert lock_path(state).exists()
    assert await lock_holder(state) is None
    async with hold_state_lock(state, command=DAEMON_COMMAND) as held:
        assert held.held
