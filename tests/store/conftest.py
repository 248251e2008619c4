"""The store suite runs on both engines: every test that takes `state` (or `store`)
runs once on SQLite and once on PostgreSQL (`[sqlite]` / `[postgresql]` in its id).

`state(name)` gives a fresh, empty state location: a SQLite file `name` in tmp_path, or
a fresh schema on the session's throwaway PostgreSQL cluster (`support/postgres.py`);
`store` is one opened on a clock the test moves, with tenants `acme` and `other`
(scoping: a query must never see the other tenant's rows). Without the PostgreSQL
binaries the `[postgresql]` cases skip with one message.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support.clock import FakeClock
from support.postgres import (
    PostgresCluster,
    StateFactory,
)

from crmsync.store import Store, open_store

BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "postgresql":
        request.getfixturevalue("postgres_cluster")
    return str(request.param)


@pytest.fixture
async def state(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[StateFactory]:
    made: list[str] = []

    async def new(name: str) -> str | Path:
        if backend == "sqlite":
            return tmp_path / name
        cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
        url = await cluster.new_url()
        made.append(url)
        return url

    yield new
    if made:
        cluster = request.getfixturevalue("postgres_cluster")
        for url in made:
            await cluster.drop(url)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def store(state: StateFactory, clock: FakeClock) -> AsyncIterator[Store]:
    async with open_store(await state("crmsync.db"), clock=clock) as store:
        await store.tenants.upsert("acme", "attio")
        await store.tenants.upsert("other", "attio")
        yield store
