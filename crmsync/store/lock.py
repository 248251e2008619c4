"""One writer per state file: an exclusive lock beside the SQLite file.

Two processes writing one state database break what crmsync promises: `crmsync inbox
replay` would reset the event the daemon is applying (two notes), `crmsync sync` would
close the daemon's running pass and write the same checkpoint, and each process would
build its own limiter, so one API key could see twice its limit. So every read-write
`open_store` holds `<state_path>.lock` with `flock(LOCK_EX | LOCK_NB)` for as long as
the store is open: `crmsync run` for its whole life, `sync`, `retry` and `inbox replay`
while they run. A second writer gets `StateLockedError` (exit 2) naming the holder,
whose pid, start time, command and tenants are written in the lock file for exactly
that message. Readers (`status`, `mappings`, …) never take the lock; they may ask
`lock_holder()` whether a live process holds it (`crmsync status` tells a live
`running` from a row left by a process that died).

The kernel releases an flock when its process dies, SIGKILL included, so there is no
stale lock to clean up; the file itself stays (removing it would race a new holder).

A PostgreSQL state (`daemon.state_url`) has no such lock: replicas share it, so
`open_store` takes none, and `lock_holder` answers `SHARED_STATE` (its rows are shown
as they are, as for a live holder).

`lock_holder()` probes with a shared lock for an instant. A writer starting at that
very instant would see the lock taken, so acquiring retries for a moment
(`ACQUIRE_PATIENCE`) before it gives up: a probe holds the lock for microseconds, a
real holder for as long as it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Final

import msgspec

from crmsync.errors import UsageError
from crmsync.store.errors import StoreError
from crmsync.store.location import is_database_url

LOCK_SUFFIX: Final = ".lock"
#: how long acquiring retries when the lock is taken (outlasts any `lock_holder` probe)
ACQUIRE_PATIENCE: Final = 0.25
_RETRY_EVERY: Final = 0.01
#: how the daemon describes itself in the lock file
DAEMON_COMMAND: Final = "crmsync run"


class LockHolder(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """Who holds the state: what the lock file says."""

    pid: int
    started_at: float
    command: str
    #: the tenants whose state it runs (None: all of them, as the daemon does)
    tenants: list[str] | None = None

    def describe(self) -> str:
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started_at))
        return f"`{self.command}` (pid {self.pid}, since {since})"

    @property
    def is_daemon(self) -> bool:
        return self.tenants is None

    def runs(self, tenant_id: str) -> bool:
        """Whether this holder runs `tenant_id` (so its stored state is live)."""
        return self.tenants is None or tenant_id in self.tenants


#: a holder whose lock file could not be read (it is writing it this very moment)
UNKNOWN_HOLDER: Final = LockHolder(pid=0, started_at=0.0, command="another crmsync process")
#: the holder of a PostgreSQL state: no process lock exists (replicas share the
#: database), so a reader takes every stored row as live
SHARED_STATE: Final = LockHolder(pid=0, started_at=0.0, command="the crmsync replicas")


class StateLockedError(UsageError):
    """Another process holds the state; exit 2 with one line naming it and what to do."""

    def __init__(self, state_path: Path, holder: LockHolder, *, command: str) -> None:
        self.state_path = state_path
        self.holder = holder
        if holder is UNKNOWN_HOLDER:
            who, advice = holder.command, "wait for it to finish or stop it, then try again"
        elif holder.is_daemon:
            who = f"the daemon {holder.describe()}"
            advice = ("stop it first (e.g. `systemctl stop crmsync`), then run this again"
                      if command != DAEMON_COMMAND else
                      "stop it first, or give this daemon another daemon.state_path")
        else:
            who = holder.describe()
            advice = "wait for it to finish, then " + (
                "start the daemon" if command == DAEMON_COMMAND else "run this again")
        super().__init__(f"the state {state_path} is in use by {who}; {advice}")


def lock_path(state_path: str | os.PathLike[str]) -> Path:
    """`<state_path>.lock`: beside the database, so it guards exactly that file."""
    return Path(f"{os.fspath(state_path)}{LOCK_SUFFIX}")


class StateLock:
    """A held lock; `release()` (or the process ending) frees it."""

    def __init__(self, path: Path, fd: int, holder: LockHolder) -> None:
        self.path = path
        self.holder = holder
        self._fd: int | None = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Closing the descriptor releases the flock; the file stays (see module doc)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


@contextlib.asynccontextmanager
async def hold_state_lock(
    state_path: str | os.PathLike[str],
    *,
    command: str,
    tenants: Sequence[str] | None = None,
) -> AsyncIterator[StateLock]:
    """Hold the state lock for the block; `StateLockedError` if another process has it.

    `command` and `tenants` describe this holder (for the message another process
    prints, and for `crmsync status`): `tenants=None` means every tenant (the daemon).
    The directory is created if needed, as `open_store` creates it for the database.
    """
    lock = await acquire_state_lock(state_path, command=command, tenants=tenants)
    try:
        yield lock
    finally:
        lock.release()


async def acquire_state_lock(
    state_path: str | os.PathLike[str],
    *,
    command: str,
    tenants: Sequence[str] | None = None,
) -> StateLock:
    """Take the state lock (see `hold_state_lock`); the caller releases it."""
    if is_database_url(state_path):
        raise ValueError("the state lock guards a SQLite file; a PostgreSQL state has none")
    holder = LockHolder(
        pid=os.getpid(), started_at=time.time(), command=command,
        tenants=None if tenants is None else list(tenants),
    )
    return await asyncio.to_thread(_acquire, Path(state_path), holder)


def _acquire(state_path: Path, holder: LockHolder) -> StateLock:
    path = lock_path(state_path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # the same words as `open_store`'s, which would fail next
        raise StoreError(
            f"cannot create the directory of state database {state_path}: {exc}"
        ) from exc
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise StoreError(f"cannot open the state lock {path}: {exc}") from exc
    try:
        other = None if _lock_patiently(fd) else _read_holder(fd)
        if other is None:
            # Ours now: say who we are (truncate first: the last holder may have said more).
            os.ftruncate(fd, 0)
            os.pwrite(fd, msgspec.json.encode(holder) + b"\n", 0)
    except BaseException:
        os.close(fd)
        raise
    if other is not None:
        os.close(fd)
        raise StateLockedError(state_path, other, command=holder.command)
    return StateLock(path, fd, holder)


def _lock_patiently(fd: int) -> bool:
    """LOCK_EX within `ACQUIRE_PATIENCE`; False if another process keeps it."""
    deadline = time.monotonic() + ACQUIRE_PATIENCE
    while not _try_lock(fd, fcntl.LOCK_EX):
        if time.monotonic() >= deadline:
            return False
        time.sleep(_RETRY_EVERY)  # in a worker thread: a probe ends within microseconds
    return True


def _try_lock(fd: int, kind: int) -> bool:
    try:
        fcntl.flock(fd, kind | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def _read_holder(fd: int) -> LockHolder:
    try:
        data = os.pread(fd, 4096, 0)
        return msgspec.json.decode(data, type=LockHolder)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        return UNKNOWN_HOLDER  # it took the lock and is writing its name right now


async def lock_holder(state_path: str | os.PathLike[str]) -> LockHolder | None:
    """Who holds the state lock now, or None when nobody does (no process runs it).

    Never creates anything and never waits: a reader's question. If the lock file
    cannot be opened (another user's state), the holder is unknown and taken to be
    alive, so a status shows what is stored rather than guessing it stale. For a
    PostgreSQL URL: `SHARED_STATE` (module docstring).
    """
    if is_database_url(state_path):
        return SHARED_STATE
    return await asyncio.to_thread(_probe, lock_path(state_path))


def _probe(path: Path) -> LockHolder | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None  # never held: no crmsync writer has run on this state yet
    except OSError:
        return UNKNOWN_HOLDER
    try:
        if _try_lock(fd, fcntl.LOCK_SH):
            return None  # free (closing the descriptor drops our shared lock at once)
        return _read_holder(fd)
    finally:
        os.close(fd)
