"""Schema v7 and `store/metakocka.py`: person ⇄ partner pairs, unsynced partners,
discovery watermarks and Metakocka write intents (scoping: `test_scoping.py`)."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import msgspec
import pytest
from support.clock import FakeClock

from crmsync.store import LATEST_VERSION, Mapping, Store, open_store
from crmsync.store.metakocka import MkLink
from crmsync.store.migrations import MIGRATIONS, split_statements

T = "acme"
NEW_TABLES = ("mk_links", "mk_unsynced", "mk_discovery", "mk_intents")


def link(record_id: str = "rec-1", mk_id: str = "mk-1", contact: str | None = "mkc-1",
         **changes: object) -> MkLink:
    fields: dict[str, object] = {
        "tenant_id": T, "crm_object": "people", "crm_record_id": record_id, "mk_id": mk_id,
        "mk_contact_id": contact, "mk_address_id": "mka-1", "direction": "to_metakocka",
        "mk_hash": "m", "crm_hash": "c", "snapshot": "{}", "last_synced_at": 5.0,
    }
    fields.update(changes)
    return msgspec.convert(fields, MkLink)


def _file_at_v6(path: Path) -> None:
    """A state file as crmsync 0.7 left it (schema v6), with a mapping and a call."""
    with closing(sqlite3.connect(path)) as conn:
        for script in MIGRATIONS[:6]:
            for statement in split_statements(script):
                conn.execute(statement)
        conn.execute("INSERT INTO tenants (tenant_id, crm, updated_at) VALUES ('acme', 'attio', 1)")
        conn.execute(
            "INSERT INTO mappings (id, tenant_id, crm_object, crm_record_id, quo_contact_id,"
            " entity_type, sync_method, action, content_hash, last_synced_at)"
            " VALUES (7, 'acme', 'people', 'rec-1', 'CT-1', 'person', 'initial', 'created',"
            " 'h', 5.0)"
        )
        conn.execute("INSERT INTO quo_calls VALUES ('acme', 'AC1', x'7b7d', 3.0)")
        conn.execute("PRAGMA user_version = 6")
        conn.commit()


async def test_upgrade_from_v6_keeps_existing_data(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    _file_at_v6(path)
    async with open_store(path) as store:
        assert store.applied_migrations == tuple(range(7, LATEST_VERSION + 1))
        mapping = await store.mappings.get(T, "people", "rec-1")
        assert mapping is not None and mapping.quo_contact_id == "CT-1"
        assert await store.quo_calls.get(T, "AC1") == b"{}"
        assert await store.mk_links.count(T) == 0
        await store.mk_links.upsert(link())
        assert await store.mk_links.get(T, "people", "rec-1") == link()
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchall() == [(LATEST_VERSION,)]
        for table in NEW_TABLES:  # every new table is per tenant
            info = {r[1]: r for r in conn.execute(f"PRAGMA table_info({table})")}
            assert info["tenant_id"][3] == 1, table
            foreign = conn.execute(f"PRAGMA foreign_key_list({table})").fetchall()
            assert [(f[2], f[3]) for f in foreign] == [("tenants", "tenant_id")], table


async def test_pairs(store: Store) -> None:
    await store.mk_links.upsert(link())
    await store.mk_links.upsert(link("rec-2", contact="mkc-2", direction="from_metakocka"))
    await store.mk_links.upsert(link("rec-3", mk_id="mk-3"))
    assert [x.crm_record_id for x in await store.mk_links.by_mk_id(T, "mk-1")] == [
        "rec-1", "rec-2"
    ]  # two people at one company: one partner, one contact each
    assert set(await store.mk_links.get_many(T, "people", ["rec-1", "rec-3", "nope"])) == {
        "rec-1", "rec-3"
    }
    await store.mk_links.upsert(link(mk_hash="m2", snapshot='{"a":1}', last_synced_at=6.0))
    again = await store.mk_links.get(T, "people", "rec-1")
    assert again is not None and (again.mk_hash, again.last_synced_at) == ("m2", 6.0)
    assert [x.crm_record_id async for x in store.mk_links.iter_all(T, chunk_size=2)] == [
        "rec-1", "rec-2", "rec-3"
    ]
    assert await store.mk_links.count(T) == 3
    assert await store.mk_links.count("other") == 0
    assert await store.mk_links.delete(T, "people", "rec-3")
    assert not await store.mk_links.delete(T, "people", "rec-3")
    assert await store.mk_links.get(T, "people", "rec-3") is None


async def test_one_contact_is_never_paired_with_two_people(store: Store) -> None:
    await store.mk_links.upsert(link())
    with pytest.raises(sqlite3.IntegrityError):
        await store.mk_links.upsert(link("rec-2"))  # same partner, same contact
    await store.mk_links.upsert(link("rec-2", contact=None))  # contact not known yet: fine
    await store.mk_links.upsert(link("rec-3", contact=None))
    with pytest.raises(sqlite3.IntegrityError):
        await store.mk_links.upsert(  # the CHECK checks
            msgspec.structs.replace(link("rec-9", contact="z"), direction="sideways")
        )


async def test_due_partners_come_oldest_check_first(store: Store) -> None:
    await store.mk_links.upsert(link("rec-1", mk_id="mk-1", last_checked_at=100.0))
    await store.mk_links.upsert(link("rec-2", mk_id="mk-1", contact="mkc-2"))  # never read
    await store.mk_links.upsert(link("rec-3", mk_id="mk-2", contact="x", last_checked_at=50.0))
    await store.mk_links.upsert(link("rec-4", mk_id="mk-3", contact="y", last_checked_at=500.0))
    assert await store.mk_links.due(T, 200.0, 10) == ["mk-1", "mk-2"]
    assert await store.mk_links.due(T, 200.0, 1) == ["mk-1"]
    assert await store.mk_links.mark_checked(T, "mk-1", 300.0) == 2
    assert await store.mk_links.due(T, 200.0, 10) == ["mk-2"]
    assert await store.mk_links.mark_checked(T, "unknown", 300.0) == 0


async def test_unsynced_partners(store: Store, clock: FakeClock) -> None:
    await store.mk_unsynced.upsert(T, "mk-5", name="Acme", doc_type="sales_order")
    clock.advance(10)
    await store.mk_unsynced.upsert(T, "mk-4", name="Ana Novak", email="ana@x.si")
    await store.mk_unsynced.upsert(T, "mk-5", phone="+38651123456")
    first = await store.mk_unsynced.get(T, "mk-5")
    assert first is not None
    assert (first.name, first.phone, first.doc_type) == ("Acme", "+38651123456", "sales_order")
    assert (first.discovered_at, first.last_seen_at) == (clock.now - 10, clock.now)
    assert [p.mk_id for p in await store.mk_unsynced.list(T)] == ["mk-5", "mk-4"]
    await store.mk_links.upsert(link(mk_id="mk-5"))  # paired meanwhile: no longer listed
    assert [p.mk_id for p in await store.mk_unsynced.list(T)] == ["mk-4"]
    assert await store.mk_unsynced.count(T) == 1
    assert await store.mk_unsynced.remove(T, "mk-4")
    assert await store.mk_unsynced.list(T) == []
    assert await store.mk_unsynced.list("other") == []


async def test_discovery_watermarks(store: Store) -> None:
    assert await store.mk_discovery.get(T, "sales_order") is None
    await store.mk_discovery.set(T, "sales_order", last_change_from=None, next_offset=100)
    await store.mk_discovery.set(
        T, "sales_order", last_change_from="2026-08-01T10:00:00+02:00", next_offset=0
    )
    await store.mk_discovery.set(T, "complaint", last_change_from=None, next_offset=200)
    mark = await store.mk_discovery.get(T, "sales_order")
    assert mark is not None
    assert (mark.last_change_from, mark.next_offset) == ("2026-08-01T10:00:00+02:00", 0)
    assert [m.doc_type for m in await store.mk_discovery.all(T)] == ["complaint", "sales_order"]


async def test_write_intents_of_metakocka_stand_beside_those_of_quo(store: Store) -> None:
    await store.intents.begin(T, "people", "rec-1", "create", "quo-hash")
    await store.mk_intents.begin(T, "people", "rec-1", "add_partner", "mk-hash")
    await store.mk_intents.begin(T, "people", "rec-2", "add_contact", "h2", mk_id="mk-1")
    assert [i.crm_record_id for i in await store.mk_intents.pending(T)] == ["rec-1", "rec-2"]
    added = await store.mk_intents.get(T, "people", "rec-2")
    assert added is not None and (added.operation, added.mk_id) == ("add_contact", "mk-1")
    assert await store.mk_intents.settle(T, "people", "rec-1")
    assert not await store.mk_intents.settle(T, "people", "rec-1")
    quo = await store.intents.get(T, "people", "rec-1")
    assert quo is not None and quo.payload_hash == "quo-hash"  # the Quo intent is untouched


async def test_quo_mappings_and_metakocka_pairs_are_independent(store: Store) -> None:
    await store.mappings.upsert(Mapping(
        tenant_id=T, crm_object="people", crm_record_id="rec-1", quo_contact_id="CT-1",
        entity_type="person", sync_method="initial", action="created", content_hash="h",
        last_synced_at=1.0,
    ))
    await store.mk_links.upsert(link())
    assert await store.mk_links.delete(T, "people", "rec-1")
    assert await store.mappings.get(T, "people", "rec-1") is not None
