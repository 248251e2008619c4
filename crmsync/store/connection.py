"""`SqliteDatabase`: the one aiosqlite connection of a SQLite store, its lock and its
transactions (the `Database` interface: `database.py`).

aiosqlite runs every statement of a connection on that connection's own thread, one at
a time and in the order they were sent, so statements never interleave. Transactions
still could: while one task is between two statements of its `transaction()`, another
task's single write would land inside that transaction (and vanish with its rollback),
and its reads would see uncommitted rows. So a `transaction()` block holds an
`asyncio.Lock` from before its BEGIN to after its COMMIT, and while one is open, every
other task's statement waits until it ends (`_turn`). While none is open, a statement
(or a unit run in one hop: `execute_batch`, a group commit, a durable insert) is sent
at once, without the lock: it is queued on the thread before any later BEGIN, and it
is whole when it runs there. Why not the lock for each statement too: a statement
holding it for its round trip to the thread made every statement of the process wait
for the loop to come round once per statement before it (200 tenants: a record's
mapping waited ~1 s for the lock).

The connection is in autocommit mode (`isolation_level=None`): a statement outside
`transaction()` commits on its own. `transaction()` is `BEGIN IMMEDIATE` (take the write
lock up front, so a commit never fails on a lock upgrade) … `COMMIT`, or `ROLLBACK` on
any exception; nested use from the owning task becomes a `SAVEPOINT`. Commit and
rollback are shielded from cancellation: once sent, they finish.

Every call is one hop to the connection's thread (`_call`): a statement runs, its cursor
is read and closed there, in one function. aiosqlite's own `execute()` takes two hops
(execute, then close the cursor), and each hop hands the GIL between the loop and that
thread: with 200 tenants syncing, the hops, not SQLite, bounded the store (profiled:
~14 µs of the loop per hop, ~17 hops per contact). `execute_batch` runs a whole unit
of work (BEGIN … COMMIT) in one hop.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Final, TypeVar

import aiosqlite

from crmsync.store.database import Database, Params, Row, Statement
from crmsync.store.errors import IntegrityError

#: the writer's usual `PRAGMA synchronous` (set by `open_store`; see `_insert_durably`)
SYNCHRONOUS: Final = "NORMAL"

T = TypeVar("T")


# -- run on the connection's thread (one hop each) -----------------------------------


def _write(conn: sqlite3.Connection, sql: str, params: Params) -> int:
    cursor = conn.execute(sql, params)
    try:
        return cursor.rowcount
    finally:
        cursor.close()


def _insert(conn: sqlite3.Connection, sql: str, params: Params) -> int | None:
    cursor = conn.execute(sql, params)
    try:
        return cursor.lastrowid if cursor.rowcount > 0 else None
    finally:
        cursor.close()


def _fetch_batch(conn: sqlite3.Connection, queries: Sequence[Statement]) -> list[list[Row]]:
    return [conn.execute(sql, params).fetchall() for sql, params in queries]


def _durable_insert(conn: sqlite3.Connection, sql: str, params: Params) -> int | None:
    conn.execute("PRAGMA synchronous = FULL")
    try:
        return _insert(conn, sql, params)
    finally:
        conn.execute(f"PRAGMA synchronous = {SYNCHRONOUS}")


def _grouped(conn: sqlite3.Connection, statements: Sequence[Statement]) -> list[int | Exception]:
    """Independent writes, each succeeding or failing alone (its exception in its place).

    One transaction for all of them; if one fails, that transaction is undone and each
    runs again alone, committing by itself. Not a savepoint each: that is three
    statements per write, and every statement hands the GIL back and forth between
    this thread and the busy loop (failures are rare: an integrity error).
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        outcomes: list[int | Exception] = [_write(conn, sql, params) for sql, params in statements]
        conn.execute("COMMIT")
    except sqlite3.Error:
        with contextlib.suppress(sqlite3.OperationalError):
            conn.execute("ROLLBACK")
    except BaseException:
        with contextlib.suppress(sqlite3.OperationalError):
            conn.execute("ROLLBACK")
        raise
    else:
        return outcomes
    outcomes = []
    for sql, params in statements:
        try:
            outcomes.append(_write(conn, sql, params))
        except sqlite3.Error as exc:
            outcomes.append(exc)
    return outcomes


def _batch(conn: sqlite3.Connection, statements: Sequence[Statement], nested: bool) -> list[int]:
    """The statements as one unit: a transaction of their own, or a savepoint of the
    open one (`nested`), so a failure undoes all of them and nothing else."""
    undo: tuple[str, ...]
    if nested:
        begin, commit, undo = "SAVEPOINT batch", "RELEASE batch", ("ROLLBACK TO batch",
                                                                   "RELEASE batch")
    else:
        begin, commit, undo = "BEGIN IMMEDIATE", "COMMIT", ("ROLLBACK",)
    conn.execute(begin)
    try:
        changed = [_write(conn, sql, params) for sql, params in statements]
        conn.execute(commit)
    except BaseException:
        for sql in undo:
            # SQLite may have rolled back by itself already (e.g. SQLITE_FULL).
            with contextlib.suppress(sqlite3.OperationalError):
                conn.execute(sql)
        raise
    return changed


@contextlib.contextmanager
def _integrity() -> Iterator[None]:
    """A refused write as the store's `IntegrityError` (the same on either engine)."""
    try:
        yield
    except IntegrityError:
        raise
    except sqlite3.IntegrityError as exc:
        raise IntegrityError(*exc.args) from exc


def _as_store_error(exc: BaseException) -> BaseException:
    """What a grouped write's caller gets: a refused write as `IntegrityError`, as
    from `execute` (a cancellation of the committing task as an error: the caller
    itself was not cancelled)."""
    if isinstance(exc, sqlite3.IntegrityError):
        return IntegrityError(*exc.args)
    if isinstance(exc, asyncio.CancelledError):
        return RuntimeError("the group commit was cancelled")
    return exc


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
        #: set while no `transaction()` block is open (`_owner` is None)
        self._no_transaction = asyncio.Event()
        self._no_transaction.set()
        self._savepoints = 0
        self._closed = False
        #: grouped writes waiting for the next group commit, and the task making it
        self._grouped: list[tuple[str, Params, asyncio.Future[int]]] = []
        self._grouping: asyncio.Future[None] | None = None

    @contextlib.asynccontextmanager
    async def _turn(self) -> AsyncIterator[None]:
        """Wait until the statement sent in the block cannot land in another task's
        transaction; send it before the block's first `await` that is not its own."""
        if not self.in_transaction():
            while self._owner is not None:
                # Woken all at once when the block ends (not one by one through the
                # lock: one turn of the loop each, seconds behind a busy block).
                await self._no_transaction.wait()
        # No other task's `transaction()` block is open: a BEGIN that comes next is sent
        # after this statement (nothing is awaited between here and sending it).
        yield

    async def _call(self, fn: Callable[..., T], *args: object) -> T:
        """`fn(sqlite3 connection, *args)` on the connection's thread, in one hop.

        aiosqlite's `_execute` is the queue its public methods use; it is private, so
        the pin in pyproject.toml keeps it (tests/store exercise every caller). Once
        queued, `fn` runs even if the caller is cancelled, like any statement.
        """
        conn = self._conn
        return await conn._execute(fn, conn._conn, *args)  # type: ignore[no-untyped-call,no-any-return]

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        async with self._turn():
            return list(await self._conn.execute_fetchall(sql, params))

    async def fetch_batch(self, queries: Sequence[Statement]) -> list[list[Row]]:
        """Every row of several queries, in one hop (see `Database`)."""
        if not queries:
            return []
        async with self._turn():
            return await self._call(_fetch_batch, queries)

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run one write; returns the number of rows it changed."""
        self._check_writable()
        with _integrity():
            async with self._turn():
                return await self._call(_write, sql, params)

    async def execute_batch(self, statements: Sequence[Statement]) -> list[int]:
        """Run the writes in order as one unit, in one hop (see `Database`)."""
        self._check_writable()
        if not statements:
            return []
        with _integrity():
            nested = self.in_transaction()
            async with self._turn():
                return await self._call(_batch, statements, nested)

    async def execute_grouped(self, sql: str, params: Params = ()) -> int:
        """One self-committing write, committed together with the grouped writes other
        tasks sent meanwhile (see `Database.execute_grouped`).

        Why: every commit is a WAL append and a hop to the connection's thread, and
        with 200 tenants syncing, each created contact's intent and snapshot were a
        commit of their own. Group commit: the writes that arrive while one group is
        committing (or waiting for the lock) go in the next group, one transaction,
        one hop; a caller waits only for its own group.
        """
        self._check_writable()
        if self.in_transaction():
            return await self.execute(sql, params)
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._grouped.append((sql, params, done))
        if self._grouping is None:
            # A future of its own, not the caller's: a cancelled caller must not stop
            # the commit of the other callers' writes (its own still runs, as any
            # statement already sent does).
            self._grouping = asyncio.ensure_future(self._commit_groups())
        return await done

    async def _commit_groups(self) -> None:
        try:
            while self._grouped:
                async with self._turn():
                    group, self._grouped = self._grouped, []
                    try:
                        outcomes = await self._call(
                            _grouped, [(sql, params) for sql, params, _ in group]
                        )
                    except BaseException as exc:
                        for *_, done in group:
                            if not done.done():
                                done.set_exception(_as_store_error(exc))
                        if isinstance(exc, asyncio.CancelledError):
                            raise
                        continue
                for (*_, done), outcome in zip(group, outcomes, strict=True):
                    if done.done():
                        continue  # its caller was cancelled; the write was made
                    if isinstance(outcome, Exception):
                        done.set_exception(_as_store_error(outcome))
                    else:
                        done.set_result(outcome)
        finally:
            self._grouping = None
            for *_, done in self._grouped:  # only if cancelled: nothing commits them
                if not done.done():
                    done.set_exception(RuntimeError("the store stopped committing"))
            self._grouped = []

    async def insert(self, sql: str, params: Params = (), *, durable: bool = False) -> int | None:
        """Run one INSERT; returns the new rowid, or None when it inserted nothing.

        `durable=True`: the INSERT commits on its own (outside any transaction) with
        `synchronous = FULL`, so it survives power loss once this returns.
        """
        self._check_writable()
        with _integrity():
            if durable:
                return await self._insert_durably(sql, params)
            async with self._turn():
                return await self._call(_insert, sql, params)

    async def _insert_durably(self, sql: str, params: Params) -> int | None:
        # Why per commit and not the connection: in WAL mode, NORMAL syncs the WAL only
        # at checkpoints, so a power loss can undo the last commits; FULL syncs it at
        # every commit. Only a webhook's inbox row needs that (it is acknowledged, and
        # the sender will not send it again); every other write is idempotent or
        # re-derivable from the CRM, and an fsync per mapping would slow the initial
        # sync for nothing. `PRAGMA synchronous` cannot change inside a transaction but
        # can between statements; all three run in one hop (`_durable_insert`), so no
        # other task's statement comes into the FULL window, and a cancellation cannot
        # leave the connection at FULL. A FULL commit fsyncs the WAL, so every earlier
        # commit is durable with it.
        if self.in_transaction():
            raise RuntimeError("a durable insert commits by itself: not inside transaction()")
        async with self._turn():
            return await self._call(_durable_insert, sql, params)

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
            self._no_transaction.clear()
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
                    self._no_transaction.set()

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
        await self._call(_write, sql, ())

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

