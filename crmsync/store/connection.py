"""`SqliteDatabase`: the one aiosqlite connection of a SQLite store, its lock and its
transactions (the `Database` interface: `database.py`).

aiosqlite runs every statement of a connection on that connection's own thread, one at
a time, so statements never interleave. Transactions still could: while one task is
between two statements of its `transaction()`, another task's single write would land
inside that transaction (and vanish with its rollback), and its reads would see
uncommitted rows. So every statement takes an `asyncio.Lock`, except those of the task
that owns the open transaction; the lock is held for one statement, or for a whole
transaction.

The connection is in autocommit mode (`isolation_level=None`): a statement outside
`transaction()` commits on its own. `transaction()` is `BEGIN IMMEDIATE` (take the write
lock up front, so a commit never fails on a lock upgrade) … `COMMIT`, or `ROLLBACK` on
any exception; nested use from the owning task becomes a `SAVEPOINT`. Commit and
rollback are shielded from cancellation: once sent, they finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Final

import aiosqlite

from crmsync.store.database import Database, Params, Row
from crmsync.store.errors import IntegrityError

#: the writer's usual `PRAGMA synchronous` (set by `open_store`; see `_insert_durably`)
SYNCHRONOUS: Final = "NORMAL"


@contextlib.contextmanager
def _integrity() -> Iterator[None]:
    """A refused write as the store's `IntegrityError` (the same on either engine)."""
    try:
        yield
    except IntegrityError:
        raise
    except sqlite3.IntegrityError as exc:
        raise IntegrityError(*exc.args) from exc


class SqliteDatabase(Database):
    """One connection; `readonly` ones refuse writes and transactions."""

    backend = "sqlite"

    def __init__(
        self,
        conn: aiosqlite.Connection,
        *,
        path: Path,
        readonly: bool,
        clock: Callable[[], float],
    ) -> None:
        super().__init__(location=str(path), readonly=readonly, clock=clock)
        self.path = path
        self._conn = conn
        self._lock = asyncio.Lock()
        self._savepoints = 0
        self._closed = False

    @contextlib.asynccontextmanager
    async def _turn(self) -> AsyncIterator[None]:
        if self.in_transaction():
            yield
        else:
            async with self._lock:
                yield

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        async with self._turn():
            return list(await self._conn.execute_fetchall(sql, params))

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run one write; returns the number of rows it changed."""
        self._check_writable()
        with _integrity():
            async with self._turn(), self._conn.execute(sql, params) as cursor:
                return cursor.rowcount

    async def insert(self, sql: str, params: Params = (), *, durable: bool = False) -> int | None:
        """Run one INSERT; returns the new rowid, or None when it inserted nothing.

        `durable=True`: the INSERT commits on its own (outside any transaction) with
        `synchronous = FULL`, so it survives power loss once this returns.
        """
        self._check_writable()
        with _integrity():
            if durable:
                return await self._insert_durably(sql, params)
            async with self._turn(), self._conn.execute(sql, params) as cursor:
                return cursor.lastrowid if cursor.rowcount > 0 else None

    async def _insert_durably(self, sql: str, params: Params) -> int | None:
        # Why per commit and not the connection: in WAL mode, NORMAL syncs the WAL only
        # at checkpoints, so a power loss can undo the last commits; FULL syncs it at
        # every commit. Only a webhook's inbox row needs that (it is acknowledged, and
        # the sender will not send it again); every other write is idempotent or
        # re-derivable from the CRM, and an fsync per mapping would slow the initial
        # sync for nothing. `PRAGMA synchronous` cannot change inside a transaction but
        # can between statements, and the connection lock (held across all three
        # statements) keeps every other task's statement out of the FULL window. A
        # FULL commit fsyncs the WAL, so every earlier commit is durable with it.
        if self.in_transaction():
            raise RuntimeError("a durable insert commits by itself: not inside transaction()")
        async with self._lock:
            try:
                await self._raw("PRAGMA synchronous = FULL")
                async with self._conn.execute(sql, params) as cursor:
                    return cursor.lastrowid if cursor.rowcount > 0 else None
            finally:
                # Shielded: once queued on the connection's thread it runs before any
                # statement another task queues after this lock is released, even if
                # we are cancelled now.
                await asyncio.shield(self._raw(f"PRAGMA synchronous = {SYNCHRONOUS}"))

    @contextlib.asynccontextmanager
    async def transaction(self, *, durable: bool = False) -> AsyncIterator[None]:
        """Group writes atomically; keep network I/O out of the block (it holds the lock).

        `durable=True`: the COMMIT runs with `synchronous = FULL` (see `_insert_durably`),
        for several statements that must survive power loss together; not nestable.
        """
        self._check_writable()
        if self.in_transaction():
            if durable:
                raise RuntimeError("a durable transaction commits by itself: not nested")
            async with self._savepoint():
                yield
            return
        async with self._lock:
            self._owner = asyncio.current_task()
            try:
                if durable:
                    await self._raw("PRAGMA synchronous = FULL")
                try:
                    # BEGIN inside the try: if we are cancelled while it is queued, it
                    # still runs on the connection thread, and the ROLLBACK undoes it.
                    await self._raw("BEGIN IMMEDIATE")
                    yield
                except BaseException:
                    await self._finish("ROLLBACK")
                    raise
                try:
                    await self._finish("COMMIT")
                except asyncio.CancelledError:
                    raise  # the shielded COMMIT still completes on the connection thread
                except BaseException:
                    await self._finish("ROLLBACK")  # a failed COMMIT leaves it open
                    raise
            finally:
                try:
                    if durable:  # queued before the lock is released: runs even if cancelled
                        await asyncio.shield(self._raw(f"PRAGMA synchronous = {SYNCHRONOUS}"))
                finally:
                    self._owner = None

    @contextlib.asynccontextmanager
    async def _savepoint(self) -> AsyncIterator[None]:
        self._savepoints += 1
        name = f"sp{self._savepoints}"
        try:
            try:
                await self._raw(f"SAVEPOINT {name}")
                yield
            except BaseException:
                await self._finish(f"ROLLBACK TO {name}")
                await self._finish(f"RELEASE {name}")
                raise
            await self._raw(f"RELEASE {name}")
        finally:
            self._savepoints -= 1

    async def _raw(self, sql: str) -> None:
        async with self._conn.execute(sql):
            pass

    async def _finish(self, sql: str) -> None:
        try:
            await asyncio.shield(self._raw(sql))
        except sqlite3.OperationalError:
            # SQLite may already have rolled back by itself (e.g. on SQLITE_FULL); then
            # ROLLBACK fails ("no transaction is active"), which leaves nothing to undo.
            if not sql.startswith(("ROLLBACK", "RELEASE")):
                raise

    async def close(self) -> None:
        """Close the connection (a second call does nothing)."""
        if self.in_transaction():
            raise RuntimeError("cannot close the store inside its own transaction")
        async with self._lock:
            if self._closed:
                return
            self._closed = True
            if not self.readonly:
                # Cheap on close and recommended by SQLite: refreshes planner statistics.
                with contextlib.suppress(sqlite3.Error):
                    await self._raw("PRAGMA optimize")
            await self._conn.close()

