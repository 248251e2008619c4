"""Opening the state database: migrations, version checks, PRAGMAs, bad files."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from crmsync.errors import CrmsyncError
from crmsync.store import LATEST_VERSION, StoreError, open_store
from crmsync.store import migrations as migrations_module
from crmsync.store.migrations import split_statements

TABLES = {
    "tenants",
    "sync_runs",
    "checkpoints",
    "mappings",
    "write_intents",
    "webhook_inbox",
    "dead_letters",
    "activities",
}


def _inspect(path: Path, sql: str) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute(sql).fetchall()


def _set_version(path: Path, version: int) -> None:
    with closing(sqlite3.connect(path)) as conn:
        conn.execute(f"PRAGMA user_version = {version}")
        conn.commit()


async def test_empty_file_gets_every_table_and_the_latest_version(tmp_path: Path) -> None:
    path = tmp_path / "var" / "lib" / "crmsync.db"  # parent directories are created
    async with open_store(path) as store:
        assert store.applied_migrations == tuple(range(1, LATEST_VERSION + 1))
    assert _inspect(path, "PRAGMA user_version") == [(LATEST_VERSION,)]
    tables = {r[0] for r in _inspect(path, "SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables >= TABLES
    for table in TABLES:  # every table is per tenant
        info = {r[1]: r for r in _inspect(path, f"PRAGMA table_info({table})")}
        assert info["tenant_id"][3] == 1, f"{table}.tenant_id must be NOT NULL"


async def test_reopen_applies_nothing_and_keeps_data(tmp_path: Path) -> None:
    path = tmp_path / "crmsync.db"
    async with open_store(path) as store:
        await store.tenants.upsert("acme", "attio")
        await store.checkpoints.set("acme", "people", "watermark", "2024-01-01")
    async with open_store(path) as store:
        assert store.applied_migrations == ()
        tenant = await store.tenants.get("acme")
        assert tenant is not None and tenant.crm == "attio"
        assert await store.checkpoints.get("acme", "people", "watermark") == "2024-01-01"
    assert _inspect(path, "PRAGMA user_version") == [(LATEST_VERSION,)]


@pytest.mark.parametrize("readonly", [False, True])
async def test_newer_file_is_refused(tmp_path: Path, readonly: bool) -> None:
    path = tmp_path / "crmsync.db"
    async with open_store(path):
        pass
    _set_version(path, LATEST_VERSION + 1)
    with pytest.raises(StoreError) as caught:
        async with open_store(path, readonly=readonly):
            pass
    assert str(caught.value) == (
        f"state database {path} is version {LATEST_VERSION + 1}, "
        f"this crmsync knows up to {LATEST_VERSION}; upgrade crmsync"
    )
    assert isinstance(caught.value, CrmsyncError)
    assert _inspect(path, "PRAGMA user_version") == [(LATEST_VERSION + 1,)]


async def test_wal_and_connection_pragmas(tmp_path: Path) -> None:
    path = tmp_path / "crmsync.db"
    async with open_store(path) as store:
        db = store._db  # the pragmas are per connection: ask the store's own
        assert (await db.fetchone("PRAGMA journal_mode"))[0] == "wal"  # type: ignore[index]
        assert (await db.fetchone("PRAGMA synchronous"))[0] == 1  # type: ignore[index]
        assert (await db.fetchone("PRAGMA foreign_keys"))[0] == 1  # type: ignore[index]
        assert (await db.fetchone("PRAGMA busy_timeout"))[0] == 5000  # type: ignore[index]
    assert _inspect(path, "PRAGMA journal_mode") == [("wal",)]  # persistent in the file


async def test_failed_migration_leaves_the_file_at_the_previous_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "crmsync.db"
    async with open_store(path):
        pass
    broken = "CREATE TABLE extra (x INTEGER);\nCREATE TABLE broken (;\n"
    monkeypatch.setattr(migrations_module, "MIGRATIONS", (*migrations_module.MIGRATIONS, broken))
    monkeypatch.setattr(migrations_module, "LATEST_VERSION", LATEST_VERSION + 1)
    with pytest.raises(StoreError, match="cannot use state database"):
        async with open_store(path):
            pass
    assert _inspect(path, "PRAGMA user_version") == [(LATEST_VERSION,)]
    assert _inspect(path, "SELECT name FROM sqlite_master WHERE name = 'extra'") == []

    fixed = "CREATE TABLE extra (x INTEGER);\n"
    monkeypatch.setattr(
        migrations_module, "MIGRATIONS", (*migrations_module.MIGRATIONS[:-1], fixed)
    )
    async with open_store(path) as store:
        assert store.applied_migrations == (LATEST_VERSION + 1,)
    assert _inspect(path, "PRAGMA user_version") == [(LATEST_VERSION + 1,)]


async def test_readonly_needs_an_existing_current_file(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        async with open_store(tmp_path / "missing.db", readonly=True):
            pass
    assert not (tmp_path / "missing.db").exists()

    old = tmp_path / "old.db"
    with closing(sqlite3.connect(old)) as conn:
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(StoreError, match=r"is version 0, .* start `crmsync run` once"):
        async with open_store(old, readonly=True):
            pass


async def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "crmsync.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match=f"cannot use state database {path}"):
        async with open_store(path):
            pass


def test_split_statements_keeps_trigger_bodies_whole() -> None:
    script = """
    CREATE TABLE a (x);
    CREATE TRIGGER t AFTER INSERT ON a BEGIN
        UPDATE a SET x = 1;
        DELETE FROM a WHERE x = 2;
    END;
    -- a comment; with a semicolon
    CREATE INDEX i ON a (x);
    """
    statements = split_statements(script)
    assert len(statements) == 3
    assert statements[1].startswith("CREATE TRIGGER") and statements[1].endswith("END;")
    with pytest.raises(ValueError, match="incomplete"):
        split_statements("CREATE TABLE b (x)")


def test_every_migration_splits_into_statements() -> None:
    for script in migrations_module.MIGRATIONS:
        assert split_statements(script)


async def test_an_uncreatable_directory_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(StoreError, match="cannot create the directory"):
        async with open_store(tmp_path / "file" / "crmsync.db"):
            pass


async def test_v3_gives_inbox_rows_a_next_attempt_time_and_a_retry_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1. a version-2 file (what 0.5 wrote) holds a pending and a processed inbox event
    2. this crmsync opens it
    Result: migration 3 ran; both rows got `next_attempt_at` and `queued_at` equal to
    their `received_at` (the pending one is due at once, as before), the due index
    replaces the old state index, and the pending event is selected."""
    path = tmp_path / "crmsync.db"
    with monkeypatch.context() as old:
        old.setattr(migrations_module, "MIGRATIONS", migrations_module.MIGRATIONS[:2])
        old.setattr(migrations_module, "LATEST_VERSION", 2)
        async with open_store(path) as store:
            await store.tenants.upsert("acme", "attio")
    with closing(sqlite3.connect(path)) as conn:
        for event_id, state, received in (("EV-1", "pending", 100.0), ("EV-2", "processed", 50.0)):
            conn.execute(
                "INSERT INTO webhook_inbox (tenant_id, source, event_id, event_type, body,"
                " headers, received_at, state) VALUES ('acme', 'quo', ?, 't', x'7b7d', '{}', ?, ?)",
                (event_id, received, state),
            )
        conn.commit()

    async with open_store(path, clock=lambda: 1000.0) as store:
        assert store.applied_migrations == tuple(range(3, LATEST_VERSION + 1))
        (due,) = await store.inbox.next_pending("acme", 10)
        assert (due.event_id, due.next_attempt_at, due.queued_at) == ("EV-1", 100.0, 100.0)
        done = await store.inbox.get_by_event_id("acme", "quo", "EV-2")
        assert done is not None
        assert (done.next_attempt_at, done.queued_at) == (50.0, 50.0)
    indexes = {r[0] for r in _inspect(path, "SELECT name FROM sqlite_master WHERE type='index'")}
    assert "webhook_inbox_due" in indexes
    assert "webhook_inbox_by_state" not in indexes
