"""`crmsync mappings` run for real, in a subprocess, against a state database made here.

More rows than one store chunk (500), so the streamed export pages; another tenant's
rows must not leak in; deleted mappings are exported with action `deleted`.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from pathlib import Path

import pytest
from support.cli import T0, Cli, write_config

from crmsync.store import Mapping, open_store

ROWS = 1203

COLUMNS = [
    "tenant", "crmObject", "crmRecordId", "quoContactId", "entityType", "syncMethod",
    "action", "lastSyncedAt", "contentHash",
]


@pytest.fixture
def state_path(tmp_path: Path) -> Path:
    return write_config(tmp_path)


def mapping(tenant: str, i: int) -> Mapping:
    return Mapping(
        tenant_id=tenant,
        crm_object="people",
        crm_record_id=f"rec-{i:05d}",
        quo_contact_id=f"{tenant}-contact-{i}",
        entity_type="person",
        sync_method="webhook" if i % 2 else "initial",
        action="created",
        content_hash=None if i == 1 else f"hash-{i}",
        last_synced_at=T0 + i,
    )


async def populate(path: Path) -> None:
    async with open_store(path) as store:
        for tenant in ("acme", "beta"):
            await store.tenants.upsert(tenant, "attio")
        async with store.transaction():
            for i in range(ROWS):
                await store.mappings.upsert(mapping("acme", i))
            for i in range(7):
                await store.mappings.upsert(mapping("beta", i))
        await store.mappings.mark_deleted("acme", "people", "rec-00002", T0 + 99.5)


async def test_jsonl_exports_every_row(cli: Cli, state_path: Path) -> None:
    await populate(state_path)
    result = await cli("mappings", "--tenant", "acme")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert len(lines) == ROWS
    rows = [json.loads(line) for line in lines]
    assert all(list(row) == COLUMNS for row in rows)
    assert {row["tenant"] for row in rows} == {"acme"}
    assert len({row["crmRecordId"] for row in rows}) == ROWS
    assert rows[0] == {
        "tenant": "acme",
        "crmObject": "people",
        "crmRecordId": "rec-00000",
        "quoContactId": "acme-contact-0",
        "entityType": "person",
        "syncMethod": "initial",
        "action": "created",
        "lastSyncedAt": "2026-11-23T10:00:00Z",
        "contentHash": "hash-0",
    }
    assert rows[1]["contentHash"] is None
    assert rows[1]["syncMethod"] == "webhook"
    assert (rows[2]["action"], rows[2]["lastSyncedAt"]) == ("deleted", "2026-11-23T10:01:39.500Z")


async def test_csv_has_header_and_same_columns(cli: Cli, state_path: Path) -> None:
    await populate(state_path)
    result = await cli("mappings", "--tenant", "acme", "--format", "csv")
    assert result.code == 0, result.err
    reader = csv.reader(io.StringIO(result.out, newline=""))
    header, *rows = list(reader)
    assert header == COLUMNS
    assert len(rows) == ROWS
    assert rows[0] == [
        "acme", "people", "rec-00000", "acme-contact-0", "person", "initial", "created",
        "2026-11-23T10:00:00Z", "hash-0",
    ]
    assert rows[1][COLUMNS.index("contentHash")] == ""
    jsonl = await cli("mappings", "--tenant", "acme", "--format", "jsonl")
    as_json = [json.loads(line) for line in jsonl.out.splitlines()]
    assert [[str(v) if v is not None else "" for v in r.values()] for r in as_json] == rows


async def test_other_tenant_is_scoped(cli: Cli, state_path: Path) -> None:
    await populate(state_path)
    result = await cli("mappings", "--tenant", "beta")
    assert result.code == 0, result.err
    rows = [json.loads(line) for line in result.out.splitlines()]
    assert [row["quoContactId"] for row in rows] == [f"beta-contact-{i}" for i in range(7)]


async def test_no_database_exports_nothing(cli: Cli, state_path: Path) -> None:
    result = await cli("mappings", "--tenant", "acme", "--format", "csv")
    assert result.code == 0, result.err
    assert result.out.splitlines() == [",".join(COLUMNS)]
    assert not await asyncio.to_thread(state_path.exists)


async def test_unknown_tenant_exits_2(cli: Cli, state_path: Path) -> None:
    await populate(state_path)
    result = await cli("mappings", "--tenant", "nope")
    assert result.code == 2
    assert result.out == ""
    assert result.err.splitlines() == ["unknown tenant 'nope' (configured: acme, beta)"]
