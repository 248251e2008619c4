"""`PostgresDatabase`: a PostgreSQL state database on an asyncpg pool (`daemon.state_url`).

The repositories' SQL is shared with SQLite (`database.py`); here `?` placeholders are
numbered (`translate`), `insert()` adds `RETURNING id`, and a durable commit is
`SET LOCAL synchronous_commit = on` (whatever the server's default).

Reads run on any pooled connection, concurrently: PostgreSQL gives each a consistent
snapshot of what is committed, so a reader never waits for a writer. Writes are
serialised within the process as on SQLite: an autocommit statement or a whole
`transaction()` holds `_write_lock`, so another task's write never lands inside an open
transaction, and no two of our own transactions can deadlock on each other's rows.
The owner of a transaction runs every statement, reads included, on the transaction's
connection; a nested `transaction()` is a SAVEPOINT. Other processes (replicas) write
beside us: PostgreSQL's row locks and unique keys keep each statement correct, and
which replica runs which tenant is decided elsewhere (one writer per tenant).

Every statement runs to completion once sent (`_settled`): a task cancelled meanwhile
gets its `CancelledError` only after the server answered, so a pooled connection is
never left with a half-read reply, and a COMMIT that was sent is known to be done.
`command_timeout` bounds that wait.

A statement that fails inside a transaction aborts it in PostgreSQL (SQLite only undoes
the statement): handle such an error with a nested `transaction()` (a savepoint) around
the statement, or let it end the block. A COMMIT of an aborted transaction raises
`StoreError` rather than reporting success.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Final, TypeAlias, TypeVar

import asyncpg

from crmsync.store import migrations, pg_migrations
from crmsync.store.database import Database, Params, Row
from crmsync.store.errors import IntegrityError, StoreError
from crmsync.store.location import password_of, redact

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

T = TypeVar("T")
Connection: TypeAlias = "PoolConnectionProxy[asyncpg.Record]"

#: connections of a read-write store (the daemon's tenants read concurrently)
POOL_SIZE: Final = 8
#: connections of a read-only store (a CLI command)
READER_POOL_SIZE: Final = 2
CONNECT_TIMEOUT: Final = 10.0
#: the longest one statement may take; also bounds the wait of a cancelled one
COMMAND_TIMEOUT: Final = 60.0
CLOSE_TIMEOUT: Final = 10.0
#: identity columns need 10; older releases than this are out of support anyway
MIN_POSTGRES: Final = (12, 0)
APPLICATION_NAME: Final = "crmsync"


@functools.lru_cache(maxsize=2048)
def translate(sql: str) -> str:
    """`?` placeholders as `$1`, `$2`, … (not inside quoted strings or identifiers)."""
    out: list[str] = []
    quote: str | None = None
    n = 0
    for char in sql:
        if quote is not None:
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "?":
            n += 1
            out.append(f"${n}")
            continue
        out.append(char)
    return "".join(out)


def rowcount(status: str) -> int:
    """Rows changed, from a command tag (`UPDATE 3`, `INSERT 0 1`, `DELETE 0`)."""
    verb, _, rest = status.partition(" ")
    if verb in ("INSERT", "UPDATE", "DELETE") and rest:
        return int(rest.rsplit(" ", 1)[-1])
    return 0


async def _settled(operation: Awaitable[T]) -> T:
    """Await `operation` to the end even if we are cancelled meanwhile; then re-raise the
    cancellation (module docstring)."""
    task = asyncio.ensure_future(operation)
    cancelled = False
    while not task.done():
        try:
            await asyncio.wait((task,))
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        if not task.cancelled():
            task.exception()  # retrieved: it is not "never retrieved"
        raise asyncio.CancelledError
    return task.result()


@contextlib.contextmanager
def _integrity() -> Iterator[None]:
    try:
        yield
    except asyncpg.IntegrityConstraintViolationError as exc:
        raise IntegrityError(str(exc)) from exc


class PostgresDatabase(Database):
    """A pool of connections to one PostgreSQL database (see the module docstring)."""

    backend = "postgresql"

    def __init__(
        self,
        pool: asyncpg.Pool[asyncpg.Record],
        *,
        location: str,
        readonly: bool,
        clock: Callable[[], float],
    ) -> None:
        super().__init__(location=location, readonly=readonly, clock=clock)
        self._pool = pool
        self._write_lock = asyncio.Lock()
        self._tx: Connection | None = None
        self._savepoints = 0
        self._closed = False

    # -- statements --------------------------------------------------------------------

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        query = translate(sql)
        if self.in_transaction():
            assert self._tx is not None
            return list(await _settled(self._tx.fetch(query, *params)))
        async with self._pool.acquire() as conn:
            return list(await _settled(conn.fetch(query, *params)))

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run one write; returns the number of rows it changed."""
        self._check_writable()
        query = translate(sql)
        with _integrity():
            if self.in_transaction():
                assert self._tx is not None
                return rowcount(await _settled(self._tx.execute(query, *params)))
            async with self._write_lock, self._pool.acquire() as conn:
                return rowcount(await _settled(conn.execute(query, *params)))

    async def insert(self, sql: str, params: Params = (), *, durable: bool = False) -> int | None:
        """Run one INSERT (`RETURNING id` is added); the new id, or None if it inserted
        nothing. `durable=True`: committed on its own with `synchronous_commit = on`."""
        self._check_writable()
        if durable:
            if self.in_transaction():
                raise RuntimeError("a durable insert commits by itself: not inside transaction()")
            async with self.transaction(durable=True):
                return await self.insert(sql, params)
        query = translate(f"{sql} RETURNING id")
        with _integrity():
            if self.in_transaction():
                assert self._tx is not None
                row = await _settled(self._tx.fetchrow(query, *params))
            else:
                async with self._write_lock, self._pool.acquire() as conn:
                    row = await _settled(conn.fetchrow(query, *params))
        return None if row is None else int(row[0])

    async def execute_script(self, script: str) -> None:
        """Run several `;`-separated statements without parameters (a migration)."""
        self._check_writable()
        if not self.in_transaction():
            raise RuntimeError("a script runs inside transaction()")
        assert self._tx is not None
        with _integrity():
            await _settled(self._tx.execute(script))

    # -- transactions ------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def transaction(self, *, durable: bool = False) -> AsyncIterator[None]:
        """BEGIN … COMMIT on one pooled connection, holding the write lock (see
        `Database.transaction`); nested use is a savepoint."""
        self._check_writable()
        if self.in_transaction():
            if durable:
                raise RuntimeError("a durable transaction commits by itself: not nested")
            async with self._savepoint():
                yield
            return
        async with self._write_lock, self._pool.acquire() as conn:
            self._owner, self._tx = asyncio.current_task(), conn
            try:
                try:
                    await _settled(conn.execute("BEGIN"))
                    if durable:
                        # Durable against power loss whatever the server's default.
                        await _settled(conn.execute("SET LOCAL synchronous_commit = on"))
                    yield
                except BaseException:
                    await self._rollback(conn)
                    raise
                await self._commit(conn)
            finally:
                self._owner, self._tx = None, None

    async def _commit(self, conn: Connection) -> None:
        try:
            with _integrity():  # a deferred constraint fails at COMMIT
                status = await _settled(conn.execute("COMMIT"))
        except asyncio.CancelledError:
            raise  # settled: the COMMIT completed
        except BaseException:
            await self._rollback(conn)
            raise
        if status != "COMMIT":
            # PostgreSQL answers COMMIT with ROLLBACK when a statement of the
            # transaction failed and its error was swallowed: nothing was written.
            raise StoreError(
                f"state database {self.location}: a transaction was rolled back because "
                "a statement in it failed"
            )

    async def _rollback(self, conn: Connection) -> None:
        if conn.is_closed() or not conn.is_in_transaction():
            return
        # A broken connection: the pool replaces it; the error that brought us here
        # is the one worth reporting.
        with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            await _settled(conn.execute("ROLLBACK"))

    @contextlib.asynccontextmanager
    async def _savepoint(self) -> AsyncIterator[None]:
        assert self._tx is not None
        conn = self._tx
        self._savepoints += 1
        name = f"sp{self._savepoints}"
        try:
            await _settled(conn.execute(f"SAVEPOINT {name}"))
            try:
                yield
            except BaseException:
                await _settled(conn.execute(f"ROLLBACK TO SAVEPOINT {name}"))
                await _settled(conn.execute(f"RELEASE SAVEPOINT {name}"))
                raise
            await _settled(conn.execute(f"RELEASE SAVEPOINT {name}"))
        finally:
            self._savepoints -= 1

    @contextlib.asynccontextmanager
    async def listening(
        self, callbacks: dict[str, Callable[[str], None]]
    ) -> AsyncIterator[asyncio.Event]:
        """`LISTEN` on each channel of `callbacks` (one connection of the pool, held
        until the block ends) and call its callback with each NOTIFY's payload. Yields
        an event set when that connection is lost (the caller listens again)."""
        lost = asyncio.Event()
        async with self._pool.acquire() as conn:

            def deliver(_conn: object, _pid: int, channel: str, payload: object) -> None:
                callbacks[channel](str(payload))

            def terminated(_conn: object) -> None:
                lost.set()

            conn.add_termination_listener(terminated)
            for channel in callbacks:
                await _settled(conn.add_listener(channel, deliver))
            try:
                yield lost
            finally:
                conn.remove_termination_listener(terminated)
                if not conn.is_closed():
                    with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError,
                                             OSError):
                        for channel in callbacks:
                            await _settled(conn.remove_listener(channel, deliver))

    async def close(self) -> None:
        """Close the pool once every connection is back (a second call does nothing)."""
        if self.in_transaction():
            raise RuntimeError("cannot close the store inside its own transaction")
        if self._closed:
            return
        self._closed = True
        async with self._write_lock:  # a transaction in flight finishes first
            try:
                await asyncio.wait_for(self._pool.close(), CLOSE_TIMEOUT)
            except TimeoutError:
                self._pool.terminate()


# -- opening -----------------------------------------------------------------------------


def _reason(exc: BaseException, url: str) -> str:
    """The driver's words for `exc`, one line, never with the URL's password."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    password = password_of(url)
    return text.replace(password, "***") if password else text


async def connect_pool(url: str, *, readonly: bool) -> asyncpg.Pool[asyncpg.Record]:
    """A pool on `url`; `StoreError` (the URL masked) when the server cannot be used."""
    settings = {"application_name": APPLICATION_NAME}
    if readonly:  # the server refuses writes too, not only this process
        settings["default_transaction_read_only"] = "on"
    try:
        pool = await asyncpg.create_pool(
            url,
            min_size=1,
            max_size=READER_POOL_SIZE if readonly else POOL_SIZE,
            timeout=CONNECT_TIMEOUT,
            command_timeout=COMMAND_TIMEOUT,
            server_settings=settings,
        )
    except (OSError, TimeoutError, ValueError, asyncpg.PostgresError,
            asyncpg.InterfaceError) as exc:
        raise StoreError(
            f"cannot connect to state database {redact(url)}: {_reason(exc, url)}"
        ) from exc
    return pool


async def open_postgres(
    url: str, *, readonly: bool, clock: Callable[[], float]
) -> tuple[PostgresDatabase, tuple[int, ...]]:
    """Connect, then migrate (read-write) or check the schema (read-only); returns the
    database and the versions this open applied."""
    pool = await connect_pool(url, readonly=readonly)
    db = PostgresDatabase(pool, location=redact(url), readonly=readonly, clock=clock)
    try:
        await _check_server(db, pool)
        if readonly:
            applied: tuple[int, ...] = ()
            await check_reader(db, await pg_migrations.schema_version(db))
        else:
            applied = await pg_migrations.migrate(db)
    except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        await db.close()
        raise StoreError(f"cannot use state database {db.location}: {_reason(exc, url)}") from exc
    except BaseException:
        await db.close()
        raise
    return db, applied


async def _check_server(db: PostgresDatabase, pool: asyncpg.Pool[asyncpg.Record]) -> None:
    async with pool.acquire() as conn:
        version = conn.get_server_version()
    if (version.major, version.minor) < MIN_POSTGRES:
        raise StoreError(
            f"state database {db.location}: PostgreSQL {version.major}.{version.minor} is "
            f"too old; crmsync needs {'.'.join(map(str, MIN_POSTGRES))} or newer"
        )


async def check_reader(db: PostgresDatabase, version: int) -> None:
    """A reader needs the schema this crmsync knows: created, and not newer."""
    if version == 0:
        raise StoreError(
            f"state database {db.location} has no crmsync state yet (has crmsync run yet?)"
        )
    migrations.check_version(db, version)
    if version < migrations.LATEST_VERSION:
        raise StoreError(
            f"state database {db.location} is version {version}, this crmsync expects "
            f"{migrations.LATEST_VERSION}; start `crmsync run` once to upgrade it"
        )


async def has_state(url: str) -> bool:
    """Whether crmsync has created its schema in this database (a reader's question)."""
    pool = await connect_pool(url, readonly=True)
    db = PostgresDatabase(pool, location=redact(url), readonly=True, clock=lambda: 0.0)
    try:
        return await pg_migrations.schema_version(db) > 0
    except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise StoreError(f"cannot use state database {db.location}: {_reason(exc, url)}") from exc
    finally:
        await db.close()
