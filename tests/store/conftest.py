"""A state store in a temp dir on a clock the test moves, with tenants `acme` and
`other` (scoping: a query must never see the other tenant's rows)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support.clock import FakeClock

from crmsync.store import Store, open_store


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def store(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Store]:
    async with open_store(tmp_path / "crmsync.db", clock=clock) as store:
        await store.tenants.upsert("acme", "attio")
        await store.tenants.upsert("other", "attio")
        yield store
