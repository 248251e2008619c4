"""`Database`: what the repositories need of a state database, whichever engine holds it.

Two implementations: `connection.SqliteDatabase` (one aiosqlite connection, the embedded
default) and `postgres.PostgresDatabase` (an asyncpg pool, `daemon.state_url`). The
repositories (`tenants.py`, `mappings.py`, …) write their SQL once, for both:

* placeholders are `?`; the PostgreSQL side numbers them (`$1`, `$2`, …);
* `INSERT … ON CONFLICT (…) DO UPDATE SET x = excluded.x` and `ON CONFLICT DO NOTHING`
  are shared; a column of the existing row inside `DO UPDATE` is qualified with the
  table name (PostgreSQL finds a bare name ambiguous);
* booleans are written `TRUE`/`FALSE` or bound as Python `bool`s (SQLite stores 1/0);
* an optional filter is left out of the SQL rather than written `? IS NULL OR …`
  (PostgreSQL cannot type a parameter that is only compared with NULL), an `IN (…)`
  list is never empty, and `HAVING` repeats its aggregate rather than naming an
  output column;
* `insert()` returns the new row's `id` (SQLite's rowid; PostgreSQL adds `RETURNING id`),
  so it is only for tables with an `id` column; `execute()` returns the rows changed.

What differs stays in each implementation: the schema (`migrations.py` for SQLite,
`pg_migrations.py` for PostgreSQL, same version numbers), session setup (PRAGMAs vs
server settings), how a transaction starts (`BEGIN IMMEDIATE` vs `BEGIN`) and how a
durable commit is made (`synchronous = FULL` vs `synchronous_commit = on`).

Both serialise the process's writes the same way: a transaction holds the database's
write lock for its whole block, so another task's write never lands inside it (and
vanishes with its rollback); a nested `transaction()` in the owning task is a savepoint.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Literal, Protocol, TypeVar

import msgspec

from crmsync.store.errors import StoreError

Params = Sequence[Any]
#: one write of `execute_batch`: its SQL and parameters
Statement = tuple[str, Params]
RowT = TypeVar("RowT", bound=msgspec.Struct)
Backend = Literal["sqlite", "postgresql"]


class Row(Protocol):
    """A result row: columns by position or by name (`sqlite3.Row`, `asyncpg.Record`)."""

    def __getitem__(self, key: int | str, /) -> Any: ...


class Database(abc.ABC):
    """One state database; `readonly` ones refuse writes and transactions."""

    backend: Backend

    def __init__(self, *, location: str, readonly: bool, clock: Callable[[], float]) -> None:
        #: where the state is, for messages (a URL's password is masked)
        self.location = location
        self.readonly = readonly
        #: the unix time stamped on rows (a fake one in tests)
        self.now = clock
        self._owner: asyncio.Task[Any] | None = None

    def in_transaction(self) -> bool:
        """Whether the current task is inside `transaction()`."""
        return self._owner is not None and self._owner is asyncio.current_task()

    def _check_writable(self) -> None:
        if self.readonly:
            raise StoreError(f"state database {self.location} is open read-only")

    @abc.abstractmethod
    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        """Every row of one query."""

    async def fetch_batch(self, queries: Sequence[Statement]) -> list[list[Row]]:
        """Every row of several queries, in order: SQLite runs them in one hop to its
        connection's thread (`connection.py`); this default (PostgreSQL's) one by one."""
        return [await self.fetchall(sql, params) for sql, params in queries]

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    @abc.abstractmethod
    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run one write; returns the number of rows it changed."""

    @abc.abstractmethod
    async def insert(self, sql: str, params: Params = (), *, durable: bool = False) -> int | None:
        """Run one INSERT into a table with an `id`; returns the new row's id, or None
        when it inserted nothing (`ON CONFLICT DO NOTHING`).

        `durable=True`: the INSERT commits on its own (outside any transaction) and
        survives power loss once this returns, not only a crash of the process.
        """

    async def execute_batch(self, statements: Sequence[Statement]) -> list[int]:
        """Run several writes in order as one unit; returns each one's changed rows.

        Outside `transaction()` they commit together (or not at all); inside, they join
        it (as a savepoint). For the hot paths that write a few rows per record: SQLite
        runs the whole unit in one hop to its connection's thread, where one statement
        at a time costs two hops each (`connection.py`). This default (PostgreSQL's)
        runs them one by one in a transaction.
        """
        self._check_writable()
        if not statements:
            return []
        async with self.transaction():
            return [await self.execute(sql, params) for sql, params in statements]

    async def execute_grouped(self, sql: str, params: Params = ()) -> int:
        """Run one write that commits by itself, like `execute` outside `transaction()`;
        returns the rows it changed. It may share its commit with other tasks' grouped
        writes sent meanwhile (each still succeeds or fails alone): committed when this
        returns, whatever it was grouped with. For writes many tasks make at once (the
        writer's intents and snapshots); SQLite groups them (`connection.py`), this
        default (PostgreSQL's, whose pool runs them in parallel) does not.
        """
        return await self.execute(sql, params)

    @abc.abstractmethod
    def transaction(self, *, durable: bool = False) -> AbstractAsyncContextManager[None]:
        """Group writes atomically: COMMIT at the end of the block, ROLLBACK if it raises.

        Keep network I/O out of the block: it holds the write lock. Nested use from the
        owning task is a savepoint. `durable=True` (not nestable): the COMMIT survives
        power loss, for several statements that must do so together.
        """

    @abc.abstractmethod
    async def close(self) -> None:
        """Close the connection(s); a second call does nothing."""


def columns(cls: type[msgspec.Struct]) -> str:
    """The SELECT list for a row Struct: its fields, in order (column names match)."""
    return ", ".join(cls.__struct_fields__)


def to_struct(cls: type[RowT], row: Row) -> RowT:
    """Build `cls` from the columns named like its fields (others in `row` are ignored)."""
    return cls(**{name: row[name] for name in cls.__struct_fields__})


def marks(n: int) -> str:
    """`?, ?, …`: n placeholders, for `IN (…)` lists (PostgreSQL refuses an empty one)."""
    if n < 1:
        raise ValueError("an IN (...) list needs at least one value")
    return ", ".join("?" * n)
