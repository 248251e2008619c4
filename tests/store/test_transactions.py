"""Transactions, the single-writer lock, read-only readers and durability across reopen,
on both engines (`path` is the SQLite file or the PostgreSQL URL)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support.postgres import StateFactory

from crmsync.store import Store, StoreError, open_store

T = "acme"


class BoomError(Exception):
    pass


@pytest.fixture
async def path(state: StateFactory) -> str | Path:
    return await state("state/crmsync.db")


@pytest.fixture
async def store(path: str | Path) -> AsyncIterator[Store]:
    async with open_store(path) as store:
        await store.tenants.upsert(T, "attio")
        yield store


async def test_transaction_commits(store: Store) -> None:
    async with store.transaction():
        assert store.in_transaction()
        await store.checkpoints.set(T, "people", "cursor", "1")
        await store.checkpoints.set(T, "people", "watermark", "2")
    assert not store.in_transaction()
    assert await store.checkpoints.get(T, "people", "watermark") == "2"


async def test_transaction_rolls_back_on_exception(store: Store) -> None:
    await store.checkpoints.set(T, "people", "cursor", "before")
    with pytest.raises(BoomError):
        async with store.transaction():
            await store.checkpoints.set(T, "people", "cursor", "after")
            await store.intents.begin(T, "people", "rec-1", "create", "h")
            assert await store.checkpoints.get(T, "people", "cursor") == "after"
            raise BoomError
    assert await store.checkpoints.get(T, "people", "cursor") == "before"
    assert await store.intents.pending(T) == []


async def test_failing_statement_rolls_back_the_whole_transaction(store: Store) -> None:
    run_id = await store.runs.create(T, "initial")
    with pytest.raises(KeyError):
        async with store.transaction():
            await store.runs.transition(T, run_id, "running")
            await store.runs.add_counts(T, run_id + 1, created=1)  # no such run
    run = await store.runs.get(T, run_id)
    assert run is not None and run.state == "pending"


async def test_cancellation_inside_a_transaction_rolls_back(store: Store) -> None:
    entered = asyncio.Event()

    async def writer() -> None:
        async with store.transaction():
            await store.checkpoints.set(T, "people", "cursor", "half-done")
            entered.set()
            await asyncio.sleep(3600)

    task = asyncio.create_task(writer())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await store.checkpoints.get(T, "people", "cursor") is None
    await store.checkpoints.set(T, "people", "cursor", "next")  # the store is usable
    assert await store.checkpoints.get(T, "people", "cursor") == "next"


async def test_nested_transaction_is_a_savepoint(store: Store) -> None:
    async with store.transaction():
        await store.checkpoints.set(T, "people", "a", "1")
        with pytest.raises(BoomError):
            async with store.transaction():
                await store.checkpoints.set(T, "people", "b", "2")
                raise BoomError
        async with store.transaction():
            await store.checkpoints.set(T, "people", "c", "3")
    assert [c.name for c in await store.checkpoints.all(T)] == ["a", "c"]


async def test_other_tasks_wait_for_an_open_transaction(store: Store) -> None:
    """1. task A opens a transaction and writes  2. task B writes and reads meanwhile
    3. A rolls back.  Result: B's write survives and B never saw A's uncommitted row."""
    a_wrote = asyncio.Event()
    seen: list[str | None] = []

    async def task_a() -> None:
        with pytest.raises(BoomError):
            async with store.transaction():
                await store.checkpoints.set(T, "people", "a", "uncommitted")
                a_wrote.set()
                await asyncio.sleep(0.05)  # B runs now, and must wait
                raise BoomError

    async def task_b() -> None:
        await a_wrote.wait()
        seen.append(await store.checkpoints.get(T, "people", "a"))
        await store.checkpoints.set(T, "people", "b", "committed")

    async with asyncio.TaskGroup() as tg:
        tg.create_task(task_a())
        tg.create_task(task_b())
    assert seen == [None]
    assert await store.checkpoints.get(T, "people", "b") == "committed"
    assert await store.checkpoints.get(T, "people", "a") is None


async def test_inbox_insert_refuses_to_run_inside_a_transaction(store: Store) -> None:
    with pytest.raises(RuntimeError, match="commit before returning"):
        async with store.transaction():
            await store.inbox.insert(T, "crm", "evt", "t", b"", {})


async def test_readonly_reader_reads_while_the_writer_writes(
    store: Store, path: str | Path
) -> None:
    await store.checkpoints.set(T, "people", "watermark", "v1")
    async with open_store(path, readonly=True) as reader:
        async with store.transaction():
            await store.checkpoints.set(T, "people", "watermark", "v2")
            async with asyncio.timeout(2):  # the reader is not blocked by the writer
                assert await reader.checkpoints.get(T, "people", "watermark") == "v1"
        assert await reader.checkpoints.get(T, "people", "watermark") == "v2"
        tenants = await reader.tenants.list_all()
        assert [t.tenant_id for t in tenants] == [T]
        assert reader.applied_migrations == ()


async def test_readonly_store_refuses_writes(store: Store, path: str | Path) -> None:
    async with open_store(path, readonly=True) as reader:
        with pytest.raises(StoreError, match="read-only"):
            await reader.checkpoints.set(T, "people", "cursor", "x")
        with pytest.raises(StoreError, match="read-only"):
            async with reader.transaction():
                pass
    assert await store.checkpoints.get(T, "people", "cursor") is None


async def test_readonly_opens_after_the_writer_closed(path: str | Path) -> None:
    async with open_store(path) as store:
        await store.tenants.upsert(T, "attio")
    async with open_store(path, readonly=True) as reader:
        assert await reader.tenants.get(T) is not None


async def test_data_survives_close_and_reopen(path: str | Path) -> None:
    async with open_store(path) as store:
        await store.tenants.upsert(T, "attio")
        event = await store.inbox.insert(T, "quo", "evt-1", "call.completed", b"{}", {"h": "v"})
        async with store.transaction():
            await store.checkpoints.set(T, "people", "cursor", "page-7")
        await store.close()  # closing twice (here and on exit) is fine
    async with open_store(path) as store:
        assert await store.checkpoints.get(T, "people", "cursor") == "page-7"
        assert event is not None
        stored = await store.inbox.get(T, event)
        assert stored is not None and stored.headers == {"h": "v"}
        assert await store.inbox.insert(T, "quo", "evt-1", "call.completed", b"{}", {}) is None


@pytest.mark.parametrize("ticks", range(6))
async def test_cancelled_at_any_point_leaves_no_open_transaction(
    store: Store, path: str | Path, ticks: int
) -> None:
    """1. a task enters transaction() and writes  2. it is cancelled after `ticks` loop
    iterations (while BEGIN, the write or the COMMIT is in flight)  3. we write outside.
    Result: a separate reader sees our write, so no transaction was left open."""

    async def writer() -> None:
        async with store.transaction():
            await store.checkpoints.set(T, "people", "inner", "x")

    task = asyncio.create_task(writer())
    for _ in range(ticks):
        await asyncio.sleep(0)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await store.checkpoints.set(T, "people", "outer", "committed")
    async with open_store(path, readonly=True) as reader:
        assert await reader.checkpoints.get(T, "people", "outer") == "committed"
    assert not store.in_transaction()
