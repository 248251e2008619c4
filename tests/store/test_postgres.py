"""The PostgreSQL engine itself (`store/postgres.py`, `store/pg_migrations.py`): what the
shared suite cannot see through the repositories, on the session's throwaway cluster
(the helpers that need no server: `test_engine_helpers.py`)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing, suppress
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from support.clock import FakeClock
from support.postgres import StateFactory, postgresql_only

from crmsync.store import (
    LATEST_VERSION,
    SHARED_STATE,
    IntegrityError,
    Store,
    StoreError,
    lock_holder,
    open_store,
    pg_migrations,
    redact,
    state_exists,
)
from crmsync.store import migrations as migrations_module
from crmsync.store.postgres import PostgresDatabase

T = "acme"
pytestmark = postgresql_only  # every test here takes `backend` (through `url`)


@pytest.fixture
async def url(state: StateFactory) -> str:
    location = await state("crmsync")
    assert isinstance(location, str)
    return location


async def _query(url: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


def _db(store: Store) -> PostgresDatabase:
    db = store._db
    assert isinstance(db, PostgresDatabase)
    return db


# -- migrations ---------------------------------------------------------------------------


async def test_an_empty_database_gets_every_version_recorded(url: str) -> None:
    async with open_store(url) as store:
        assert store.backend == "postgresql"
        assert store.applied_migrations == tuple(range(1, LATEST_VERSION + 1))
    rows = await _query(url, "SELECT version FROM crmsync_schema ORDER BY version")
    assert [r["version"] for r in rows] == list(range(1, LATEST_VERSION + 1))
    async with open_store(url) as store:
        assert store.applied_migrations == ()


async def _sqlite_schema(path: Path) -> dict[str, dict[str, bool]]:
    """table -> column -> NOT NULL, of a SQLite file at the latest version."""
    async with open_store(path):
        pass
    with closing(sqlite3.connect(path)) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'"
            " AND name NOT LIKE 'sqlite_%'")]
        return {t: {r[1]: bool(r[3] or r[5]) for r in conn.execute(f"PRAGMA table_info({t})")}
                for t in tables}


async def test_both_engines_have_the_same_tables_columns_and_indexes(
    url: str, tmp_path: Path
) -> None:
    """A migration added to one list and not the other (or a column spelled apart)
    fails here: the repositories' SQL is shared, so the schemas must match."""
    async with open_store(url):
        pass
    columns = await _query(
        url,
        "SELECT table_name, column_name, is_nullable FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name != 'crmsync_schema'",
    )
    pg: dict[str, dict[str, bool]] = {}
    for r in columns:
        pg.setdefault(r["table_name"], {})[r["column_name"]] = r["is_nullable"] == "NO"
    assert pg == await _sqlite_schema(tmp_path / "schema.db")

    with closing(sqlite3.connect(tmp_path / "schema.db")) as conn:
        lite_indexes = {r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")}
    pg_indexes = {r["indexname"] for r in await _query(
        url, "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()")}
    assert lite_indexes <= pg_indexes  # PostgreSQL also names its key indexes


async def test_replicas_starting_together_migrate_once(url: str) -> None:
    """1. five replicas' stores open one empty database at the same moment
    Result: each version is applied exactly once, by whichever replica got the advisory
    lock first (each re-reads the version under it); one row per version."""
    async def open_one() -> tuple[int, ...]:
        async with open_store(url) as store:
            return store.applied_migrations

    applied = await asyncio.gather(*(open_one() for _ in range(5)))
    assert sorted(v for versions in applied for v in versions) == list(
        range(1, LATEST_VERSION + 1)
    )
    rows = await _query(url, "SELECT count(*) AS n FROM crmsync_schema")
    assert rows[0]["n"] == LATEST_VERSION


@pytest.mark.parametrize("readonly", [False, True])
async def test_a_newer_database_is_refused(url: str, readonly: bool) -> None:
    async with open_store(url):
        pass
    await _query(url, "INSERT INTO crmsync_schema VALUES ($1, 0)", LATEST_VERSION + 1)
    with pytest.raises(StoreError) as caught:
        async with open_store(url, readonly=readonly):
            pass
    assert str(caught.value) == (
        f"state database {redact(url)} is version {LATEST_VERSION + 1}, "
        f"this crmsync knows up to {LATEST_VERSION}; upgrade crmsync"
    )


async def test_a_failed_migration_leaves_the_previous_version_whole(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with open_store(url):
        pass
    broken = "CREATE TABLE extra (x integer);\nCREATE TABLE broken (;\n"
    monkeypatch.setattr(pg_migrations, "PG_MIGRATIONS", (*pg_migrations.PG_MIGRATIONS, broken))
    monkeypatch.setattr(migrations_module, "LATEST_VERSION", LATEST_VERSION + 1)
    with pytest.raises(StoreError, match="cannot use state database"):
        async with open_store(url):
            pass
    assert [r["t"] for r in await _query(url, "SELECT to_regclass('extra') AS t")] == [None]
    rows = await _query(url, "SELECT max(version) AS v FROM crmsync_schema")
    assert rows[0]["v"] == LATEST_VERSION

    fixed = "CREATE TABLE extra (x integer);\n"
    monkeypatch.setattr(
        pg_migrations, "PG_MIGRATIONS", (*pg_migrations.PG_MIGRATIONS[:-1], fixed)
    )
    async with open_store(url) as store:
        assert store.applied_migrations == (LATEST_VERSION + 1,)


# -- readers --------------------------------------------------------------------------------


async def test_a_reader_needs_the_schema_and_never_creates_it(url: str) -> None:
    assert not await state_exists(url)
    with pytest.raises(StoreError, match=r"has no crmsync state yet \(has crmsync run yet\?\)"):
        async with open_store(url, readonly=True):
            pass
    assert [r["t"] for r in await _query(url, "SELECT to_regclass('crmsync_schema') AS t")] == [
        None
    ]
    async with open_store(url):
        pass
    assert await state_exists(url)


async def test_a_readers_sessions_are_read_only_at_the_server(url: str) -> None:
    async with open_store(url) as writer:
        await writer.tenants.upsert(T, "attio")
    async with open_store(url, readonly=True) as reader:
        row = await _db(reader).fetchone("SHOW default_transaction_read_only")
        assert row is not None and row[0] == "on"
        assert [t.tenant_id for t in await reader.tenants.list_all()] == [T]
        with pytest.raises(StoreError, match="read-only"):
            await reader.tenants.upsert("other", "attio")


# -- statements and transactions ------------------------------------------------------------


@pytest.fixture
async def store(url: str) -> AsyncIterator[Store]:
    async with open_store(url, clock=FakeClock()) as store:
        await store.tenants.upsert(T, "attio")
        yield store


async def test_a_durable_commit_asks_for_synchronous_commit(store: Store) -> None:
    """The test cluster runs with synchronous_commit = off (a server tuned for speed):
    a durable transaction still commits with it on; others keep the server's default."""
    db = _db(store)
    async with db.transaction():
        row = await db.fetchone("SHOW synchronous_commit")
        assert row is not None and row[0] == "off"
    async with db.transaction(durable=True):
        row = await db.fetchone("SHOW synchronous_commit")
        assert row is not None and row[0] == "on"


async def test_the_inbox_insert_is_durable_with_or_without_a_delivery_id(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = _db(store)
    seen: list[bool] = []
    transaction = db.transaction

    def spy(*, durable: bool = False) -> Any:
        seen.append(durable)
        return transaction(durable=durable)

    monkeypatch.setattr(db, "transaction", spy)
    assert await store.inbox.insert(T, "quo", "EV1", "t", b"{}", {}) is not None
    assert await store.inbox.insert(T, "quo", "EV2", "t", b"{}", {}, delivery_id="m") is not None
    assert seen == [True, True]


async def test_a_swallowed_error_inside_a_transaction_is_not_a_silent_commit(
    store: Store,
) -> None:
    """PostgreSQL aborts a transaction at its first failed statement (SQLite undoes only
    the statement): a COMMIT that would have been a silent ROLLBACK raises instead, and
    a savepoint around the statement keeps the rest."""
    with pytest.raises(StoreError, match="rolled back because a statement in it failed"):
        async with store.transaction():
            await store.checkpoints.set(T, "people", "cursor", "lost")
            with suppress(IntegrityError):  # swallowed: the transaction is aborted anyway
                await store.checkpoints.set("nobody", "people", "cursor", "x")
    assert await store.checkpoints.get(T, "people", "cursor") is None

    async with store.transaction():
        await store.checkpoints.set(T, "people", "cursor", "kept")
        with pytest.raises(IntegrityError):
            async with store.transaction():
                await store.checkpoints.set("nobody", "people", "cursor", "x")
    assert await store.checkpoints.get(T, "people", "cursor") == "kept"


async def test_a_refused_write_is_the_stores_integrity_error(store: Store) -> None:
    with pytest.raises(IntegrityError) as caught:
        await store.checkpoints.set("nobody", "people", "cursor", "1")
    assert isinstance(caught.value, sqlite3.IntegrityError)  # what older callers catch
    assert isinstance(caught.value.__cause__, asyncpg.ForeignKeyViolationError)


async def test_reads_do_not_wait_for_an_open_transaction(store: Store) -> None:
    """Unlike SQLite's one connection, a reader runs beside an open transaction (on its
    own pooled connection) and sees only what is committed."""
    await store.checkpoints.set(T, "people", "cursor", "committed")
    entered, release = asyncio.Event(), asyncio.Event()

    async def writer() -> None:
        async with store.transaction():
            await store.checkpoints.set(T, "people", "cursor", "uncommitted")
            entered.set()
            await release.wait()

    task = asyncio.create_task(writer())
    await entered.wait()
    async with asyncio.timeout(2):
        assert await store.checkpoints.get(T, "people", "cursor") == "committed"
    release.set()
    await task
    assert await store.checkpoints.get(T, "people", "cursor") == "uncommitted"


# -- no state lock, and connection problems --------------------------------------------------


async def test_replicas_share_the_database_without_a_state_lock(url: str) -> None:
    async with open_store(url, command="crmsync run") as one, \
            open_store(url, command="crmsync run") as two:
        await one.tenants.upsert(T, "attio")
        assert await two.tenants.get(T) is not None
    assert await lock_holder(url) is SHARED_STATE
    assert SHARED_STATE.runs(T)  # `crmsync status` shows the stored state as it is
