"""Schema v5: mappings may be `unlinked`, and each mapped record has a contact snapshot.

The rebuild of `mappings` (SQLite cannot change a CHECK constraint) keeps every row,
its id (export paging is by id), the unique key and the index; `contact_snapshots` is
keyed like a mapping and counts only while its hash equals the mapping's (the reader,
`services/contact_edits.py`, checks that).
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from support.postgres import StateFactory

from crmsync.store import Mapping, open_store
from crmsync.store.mappings import ContactSnapshot
from crmsync.store.migrations import MIGRATIONS, split_statements

T = "acme"


def _file_at_v4(path: Path) -> None:
    """A state file as crmsync 0.6 left it (schema v4), with two mappings."""
    with closing(sqlite3.connect(path)) as conn:
        for script in MIGRATIONS[:4]:
            for statement in split_statements(script):
                conn.execute(statement)
        conn.execute("INSERT INTO tenants (tenant_id, crm, updated_at) VALUES ('acme', 'attio', 1)")
        for row_id, record in ((7, "rec-1"), (9, "rec-2")):
            conn.execute(
                "INSERT INTO mappings (id, tenant_id, crm_object, crm_record_id, quo_contact_id,"
                " entity_type, sync_method, action, content_hash, last_synced_at, missed_scans,"
                " last_seen_at) VALUES (?, 'acme', 'people', ?, ?, 'person', 'initial',"
                " 'created', 'h', 5.0, 1, 4.0)",
                (row_id, record, f"CT-{record}"),
            )
        conn.execute("PRAGMA user_version = 4")
        conn.commit()


def mapping(record_id: str = "rec-1", **changes: object) -> Mapping:
    fields: dict[str, object] = {
        "tenant_id": T, "crm_object": "people", "crm_record_id": record_id,
        "quo_contact_id": f"CT-{record_id}", "entity_type": "person", "sync_method": "initial",
        "action": "created", "content_hash": "h", "last_synced_at": 5.0,
    }
    fields.update(changes)
    return Mapping(**fields)  # type: ignore[arg-type]


async def test_upgrade_from_v4_keeps_rows_ids_and_constraints(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    _file_at_v4(path)
    async with open_store(path) as store:
        assert 5 in store.applied_migrations
        rows = [m async for m in store.mappings.iter_all(T)]
        assert [(m.crm_record_id, m.missed_scans) for m in rows] == [("rec-1", 1), ("rec-2", 1)]
        assert await store.mappings.by_quo_contact(T, "CT-rec-2") == [rows[1]]
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT id FROM mappings ORDER BY id").fetchall() == [(7,), (9,)]
        indexes = {r[1] for r in conn.execute("PRAGMA index_list(mappings)")}
        assert "mappings_by_quo_contact" in indexes
        with pytest.raises(sqlite3.IntegrityError):  # still one row per record
            conn.execute("INSERT INTO mappings (tenant_id, crm_object, crm_record_id,"
                         " quo_contact_id, entity_type, sync_method, action, last_synced_at)"
                         " VALUES ('acme', 'people', 'rec-1', 'x', 'person', 'initial',"
                         " 'created', 1)")
        with pytest.raises(sqlite3.IntegrityError):  # and the CHECK still checks
            conn.execute("UPDATE mappings SET action = 'exploded' WHERE id = 7")


async def test_unlink_and_snapshots(state: StateFactory) -> None:
    async with open_store(await state("state.db")) as store:
        await store.tenants.upsert(T, "attio")
        await store.mappings.upsert(mapping())
        snap = ContactSnapshot(content_hash="h", fields='{"first_name":"Ada"}',
                               quo_updated_at="2026-04-13T12:00:00.000Z")
        await store.mappings.save_snapshot(T, "people", "rec-1", snap)
        assert await store.mappings.snapshot(T, "people", "rec-1") == snap
        newer = ContactSnapshot(content_hash="h2", fields="{}")
        await store.mappings.save_snapshot(T, "people", "rec-1", newer)
        assert await store.mappings.snapshot(T, "people", "rec-1") == newer
        assert await store.mappings.snapshot(T, "people", "rec-2") is None

        assert await store.mappings.set_content_hash(T, "people", "rec-1", "h3", 8.0)
        row = await store.mappings.get(T, "people", "rec-1")
        assert row is not None and (row.content_hash, row.last_synced_at) == ("h3", 8.0)

        assert await store.mappings.unlink(T, "people", "rec-1", 9.0) is True
        row = await store.mappings.get(T, "people", "rec-1")
        assert row is not None
        assert (row.action, row.deleted_at, row.last_synced_at) == ("unlinked", None, 9.0)
        assert await store.mappings.snapshot(T, "people", "rec-1") is None
        assert await store.mappings.unlink(T, "people", "missing", 9.0) is False
        # A later write of the record relinks it like any mapping upsert.
        await store.mappings.upsert(mapping(action="updated", content_hash="h4"))
        row = await store.mappings.get(T, "people", "rec-1")
        assert row is not None and row.action == "updated"
