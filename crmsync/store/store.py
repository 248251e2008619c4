"""`Store`: the repositories of one state database, and `open_store` that opens it.

The state lives in a SQLite file (`daemon.state_path`, the embedded default) or in a
PostgreSQL database (`daemon.state_url`, INTERFACE §10); `open_store` takes either and
the repositories cannot tell them apart (`database.py`).

SQLite: the daemon opens the file once, read-write: that is the one writer connection,
and the one writer process: a read-write open holds the state lock (`lock.py`,
`<state_path>.lock`) until it is closed, so a second writer (another daemon, `crmsync
sync` beside the daemon) is refused with one line naming the holder. CLI readers
(`crmsync status` while the daemon runs) open it with `readonly=True`, a `mode=ro` URI
connection that never writes, never migrates, never locks, and only checks that the
schema is the one this crmsync knows.

PostgreSQL: a pool of connections (`postgres.py`); replicas share the database, so no
file lock applies (which replica runs which tenant is not the store's business). A
read-write open migrates under an advisory lock (`pg_migrations.py`); a read-only one
checks the schema version and runs its sessions read-only.

Each table has a small repository class (`store.tenants`, `store.runs`, …) whose
methods take `tenant_id` first and only ever touch that tenant's rows. Create a
`Store` with `open_store()`, not directly.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Final

import aiosqlite

from crmsync.store.activities import Activities
from crmsync.store.checkpoints import Checkpoints
from crmsync.store.connection import SYNCHRONOUS, SqliteDatabase
from crmsync.store.database import Database
from crmsync.store.dead_letters import DeadLetters
from crmsync.store.errors import StoreError
from crmsync.store.inbox import Inbox
from crmsync.store.intents import Intents
from crmsync.store.leases import Leases
from crmsync.store.location import is_database_url
from crmsync.store.lock import acquire_state_lock
from crmsync.store.mappings import Mappings
from crmsync.store.metakocka import MkDiscovery, MkIntents, MkLinks, MkUnsynced
from crmsync.store.migrations import LATEST_VERSION, check_version, migrate, schema_version
from crmsync.store.postgres import PostgresDatabase, has_state, open_postgres
from crmsync.store.quo_calls import QuoCalls
from crmsync.store.runs import Runs
from crmsync.store.subscriptions import Subscriptions
from crmsync.store.tenants import Tenants

# UPSERT (`INSERT … ON CONFLICT`) needs 3.24; read-only WAL readers need 3.22.
MIN_SQLITE: Final = (3, 24, 0)
BUSY_TIMEOUT_MS: Final = 5000


@asynccontextmanager
async def open_store(
    location: str | os.PathLike[str],
    *,
    readonly: bool = False,
    clock: Callable[[], float] = time.time,
    command: str = "crmsync",
    tenants: Sequence[str] | None = None,
) -> AsyncIterator[Store]:
    """Open the state at `location`: a SQLite file path (parent directories are
    created) or a `postgresql://` URL (`DaemonConfig.state_location` gives the one the
    config chose).

    `clock` gives the unix time stamped on rows (tests pass a fake one). SQLite,
    read-write: the state lock is taken first and held until the store is closed
    (`StateLockedError`, exit 2, if another process has it); `command` and `tenants`
    (None: every tenant) say who holds it, for that message and for `crmsync status`.
    PostgreSQL takes no such lock (replicas share the database).
    """
    if is_database_url(location):
        assert isinstance(location, str)
        db, applied = await open_postgres(location, readonly=readonly, clock=clock)
        store = Store(db, applied_migrations=applied)
        try:
            yield store
        finally:
            await store.close()
        return
    if readonly:
        lock = None
    else:
        lock = await acquire_state_lock(location, command=command, tenants=tenants)
    try:
        store = await _open(Path(location), readonly=readonly, clock=clock)
        try:
            yield store
        finally:
            await store.close()
    finally:
        if lock is not None:
            lock.release()


async def state_exists(location: str | os.PathLike[str]) -> bool:
    """Whether crmsync has stored state at `location` yet (never creates anything): the
    SQLite file exists, or the PostgreSQL database has crmsync's schema. `StoreError`
    when a PostgreSQL server cannot be reached."""
    if is_database_url(location):
        assert isinstance(location, str)
        return await has_state(location)
    return await asyncio.to_thread(Path(location).is_file)


async def _open(path: Path, *, readonly: bool, clock: Callable[[], float]) -> Store:
    if sqlite3.sqlite_version_info < MIN_SQLITE:
        raise StoreError(
            f"SQLite {sqlite3.sqlite_version} is too old; crmsync needs "
            f"{'.'.join(map(str, MIN_SQLITE))} or newer"
        )
    if readonly:
        if not await asyncio.to_thread(path.is_file):
            raise StoreError(f"state database {path} does not exist (has crmsync run yet?)")
        absolute = await asyncio.to_thread(path.absolute)
        conn = aiosqlite.connect(f"{absolute.as_uri()}?mode=ro", uri=True, isolation_level=None)
    else:
        try:
            await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create the directory of state database {path}: {exc}"
            ) from exc
        conn = aiosqlite.connect(path, isolation_level=None)
    try:
        await conn
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open state database {path}: {exc}") from exc
    conn.row_factory = sqlite3.Row
    db = SqliteDatabase(conn, path=path, readonly=readonly, clock=clock)
    try:
        applied = await (_check_reader(db) if readonly else _prepare_writer(db))
    except sqlite3.DatabaseError as exc:  # e.g. "file is not a database"
        await db.close()
        raise StoreError(f"cannot use state database {path}: {exc}") from exc
    except BaseException:
        await db.close()
        raise
    return Store(db, applied_migrations=applied)


async def _prepare_writer(db: SqliteDatabase) -> tuple[int, ...]:
    await db.fetchall(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS:d}")
    row = await db.fetchone("PRAGMA journal_mode = WAL")
    if row is None or str(row[0]).lower() != "wal":
        mode = None if row is None else row[0]
        raise StoreError(
            f"state database {db.location}: cannot switch to WAL journal mode (got {mode}); "
            "put it on a local file system"
        )
    # In WAL mode, synchronous=NORMAL is durable against application crashes, SIGKILL
    # included: only an OS crash or power loss can lose the last transactions. That is
    # acceptable because every write we make is idempotent or re-derivable from the CRM,
    # and Quo writes in flight are reconciled through the intent log (write_intents).
    # The one exception, a webhook's inbox row (acknowledged to a sender that will not
    # send it again), commits with FULL: `Database.insert(durable=True)`.
    await db.fetchall(f"PRAGMA synchronous = {SYNCHRONOUS}")
    await db.fetchall("PRAGMA foreign_keys = ON")
    return await migrate(db)


async def _check_reader(db: SqliteDatabase) -> tuple[int, ...]:
    await db.fetchall(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS:d}")
    await db.fetchall("PRAGMA query_only = ON")
    version = await schema_version(db)
    check_version(db, version)
    if version < LATEST_VERSION:
        raise StoreError(
            f"state database {db.location} is version {version}, this crmsync expects "
            f"{LATEST_VERSION}; start `crmsync run` once to upgrade it"
        )
    return ()


class Store:
    """All state of all tenants; see the package docstring for the write discipline."""

    def __init__(self, db: Database, *, applied_migrations: tuple[int, ...] = ()) -> None:
        self._db = db
        #: where the state is, for messages: the SQLite file, or the PostgreSQL URL
        #: with its password masked
        self.location = db.location
        self.backend = db.backend
        self.readonly = db.readonly
        #: schema versions this open applied (empty when the file was up to date)
        self.applied_migrations = applied_migrations
        self.tenants = Tenants(db)
        self.runs = Runs(db)
        self.checkpoints = Checkpoints(db)
        self.mappings = Mappings(db)
        self.intents = Intents(db)
        self.inbox = Inbox(db)
        self.dead_letters = DeadLetters(db)
        self.activities = Activities(db)
        self.quo_calls = QuoCalls(db)
        self.subscriptions = Subscriptions(db)
        self.mk_links = MkLinks(db)
        self.mk_unsynced = MkUnsynced(db)
        self.mk_discovery = MkDiscovery(db)
        self.mk_intents = MkIntents(db)
        self.leases = Leases(db)

    def transaction(self) -> AbstractAsyncContextManager[None]:
        """`async with store.transaction():` — BEGIN (SQLite: IMMEDIATE) … COMMIT, or
        ROLLBACK.

        Nested use (same task) becomes a savepoint: an exception in the inner block
        undoes only the inner block, if the outer block handles it.
        """
        return self._db.transaction()

    def in_transaction(self) -> bool:
        """Whether the current task is inside `transaction()`."""
        return self._db.in_transaction()

    async def notify(self, channel: str, payload: str) -> None:
        """Tell the other replicas (PostgreSQL NOTIFY); nobody to tell on SQLite."""
        if isinstance(self._db, PostgresDatabase):
            await self._db.fetchall("SELECT pg_notify(?, ?)", (channel, payload))

    def listening(
        self, callbacks: dict[str, Callable[[str], None]]
    ) -> AbstractAsyncContextManager[asyncio.Event] | None:
        """What the other replicas `notify` (see `PostgresDatabase.listening`); None
        on SQLite, where there are no others."""
        if isinstance(self._db, PostgresDatabase):
            return self._db.listening(callbacks)
        return None

    def now(self) -> float:
        """The unix time this store stamps on rows (a fake one in tests)."""
        return self._db.now()

    async def close(self) -> None:
        await self._db.close()
