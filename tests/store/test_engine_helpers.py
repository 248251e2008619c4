"""What needs no database server: placeholder numbering, command tags, URL masking, and
the errors of a server that cannot be used (`store/location.py`, `store/postgres.py`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.postgres import PostgresCluster

from crmsync.store import (
    SHARED_STATE,
    StoreError,
    hold_state_lock,
    is_database_url,
    lock_holder,
    open_store,
    redact,
    state_exists,
)
from crmsync.store.postgres import rowcount, translate


@pytest.mark.parametrize(("sql", "expected"), [
    ("SELECT ? , ?", "SELECT $1 , $2"),
    ("UPDATE t SET a = '?', b = ? WHERE c = \"?\" AND d IN (?, ?)",
     "UPDATE t SET a = '?', b = $1 WHERE c = \"?\" AND d IN ($2, $3)"),
    ("SELECT 'it''s ?' , ?", "SELECT 'it''s ?' , $1"),
    ("SELECT 1", "SELECT 1"),
])
def test_placeholders_are_numbered_outside_quotes(sql: str, expected: str) -> None:
    assert translate(sql) == expected


def test_command_tags_give_the_rows_changed() -> None:
    assert [rowcount(s) for s in ("INSERT 0 1", "UPDATE 3", "DELETE 0", "BEGIN", "SELECT 2")] \
        == [1, 3, 0, 0, 0]


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql://crmsync@db/crmsync", "postgresql://crmsync@db/crmsync"),
    ("postgresql://crmsync:pw@db:5432/crmsync", "postgresql://crmsync:***@db:5432/crmsync"),
    ("postgres://u:p@ss/w@rd@db/x", "postgres://u:***@db/x"),
    ("postgresql://u:p%40ss@h1,h2/x?sslmode=require",
     "postgresql://u:***@h1,h2/x?sslmode=require"),
    ("postgresql:///x?host=/run/pg&password=pw&user=u",
     "postgresql:///x?host=/run/pg&password=***&user=u"),
])
def test_a_urls_password_is_masked(url: str, shown: str) -> None:
    assert is_database_url(url)
    assert redact(url) == shown


def test_paths_are_not_urls() -> None:
    assert not is_database_url("./crmsync.db")
    assert not is_database_url(Path("postgresql://x"))  # a Path is always a file
    assert is_database_url("PostgreSQL://db/x")


async def test_an_unreachable_server_is_one_clear_error_without_the_password() -> None:
    url = "postgresql://crmsync:pa55-S3CRET@127.0.0.1:1/crmsync"
    with pytest.raises(StoreError) as caught:
        async with open_store(url):
            pass
    message = str(caught.value)
    assert message.startswith(
        "cannot connect to state database postgresql://crmsync:***@127.0.0.1:1/crmsync: "
    )
    assert "pa55-S3CRET" not in message
    with pytest.raises(StoreError, match="cannot connect"):
        await state_exists(url)


async def test_an_unknown_database_is_one_clear_error(postgres_cluster: PostgresCluster) -> None:
    url = postgres_cluster.admin_url().rpartition("/")[0] + "/no_such_db"
    with pytest.raises(StoreError, match=r'cannot connect .*"no_such_db" does not exist'):
        async with open_store(url):
            pass


async def test_the_state_lock_is_for_sqlite_files_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No file named after a URL is ever created: a PostgreSQL state has no state lock
    (replicas share it), and `lock_holder` says so without touching anything."""
    monkeypatch.chdir(tmp_path)
    url = "postgresql://crmsync@db/crmsync"
    with pytest.raises(ValueError, match="PostgreSQL state has none"):
        async with hold_state_lock(url, command="crmsync run"):
            pass
    assert await lock_holder(url) is SHARED_STATE
    assert list(tmp_path.iterdir()) == []  # noqa: ASYNC240 (a test's empty tmp dir)
