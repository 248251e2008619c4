"""Tenant scoping, checked systematically for every repository method, on both engines.

Reads: for each read method, tenant T's answer from a database holding T and O equals
its answer from one holding only T (T's rows are written first, so their ids and times
match). Writes: applying a write to O (with O's own keys, or with T's row ids, which O
must treat as unknown) leaves every read of T unchanged. A last test fails when a
repository grows a method that neither list covers.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import pytest
from support.postgres import StateFactory

from crmsync.store import Activity, Mapping, Store, open_store
from crmsync.store.activities import Activities
from crmsync.store.checkpoints import Checkpoints
from crmsync.store.dead_letters import DeadLetters
from crmsync.store.inbox import Inbox
from crmsync.store.intents import Intents
from crmsync.store.leases import Leases
from crmsync.store.mappings import ContactSnapshot, Mappings
from crmsync.store.metakocka import MkDiscovery, MkIntents, MkLink, MkLinks, MkUnsynced
from crmsync.store.quo_calls import QuoCalls
from crmsync.store.runs import Runs
from crmsync.store.subscriptions import Subscription, Subscriptions
from crmsync.store.tenants import Tenants

ALPHA, BRAVO = "tenant-alpha", "tenant-bravo"
PAIRS = [(ALPHA, BRAVO), (BRAVO, ALPHA)]
FAR_FUTURE = 4_000_000_000.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


Ids = dict[str, int]


async def populate(store: Store, t: str) -> Ids:
    """Give tenant `t` rows in every table, under the same keys every tenant uses."""
    await store.tenants.upsert(t, "attio")
    await store.tenants.set_state(t, "running", phase="live", last_error=f"{t}-boom")
    run = await store.runs.create(t, "initial")
    await store.runs.transition(t, run, "running")
    await store.runs.add_counts(t, run, fetched=len(t), created=1)
    await store.checkpoints.set(t, "people", "cursor", f"{t}-cursor")
    for rec in ("rec-1", "rec-2"):
        await store.mappings.upsert(
            Mapping(
                tenant_id=t,
                crm_object="people",
                crm_record_id=rec,
                quo_contact_id="quo-1",
                entity_type="person",
                sync_method="initial",
                action="created",
                content_hash=f"{t}-{rec}-hash",
                last_synced_at=1.0,
            )
        )
    await store.mappings.save_snapshot(
        t, "people", "rec-1", ContactSnapshot(content_hash=f"{t}-rec-1-hash", fields=t)
    )
    await store.intents.begin(t, "people", "rec-1", "create", f"{t}-hash")
    event = await store.inbox.insert(t, "crm", "evt-1", "record.updated", t.encode(), {"t": t})
    done = await store.inbox.insert(
        t, "quo", "evt-1", "call.completed", t.encode(), {"t": t}, delivery_id="msg_1"
    )
    busy = await store.inbox.insert(t, "crm", "evt-2", "record.deleted", t.encode(), {"t": t})
    assert done is not None and busy is not None
    await store.inbox.mark_processed(t, done)
    await store.inbox.mark_processing(t, busy)
    failed = await store.inbox.insert(t, "quo", "evt-3", "message.received", t.encode(), {})
    assert failed is not None
    await store.inbox.mark_processing(t, failed)
    await store.inbox.mark_failed(t, failed, f"{t}-down")
    webhook = await store.dead_letters.add(t, "webhook", "evt-3", "webhook_failed", t, "down")
    await store.dead_letters.mark_resolved(t, webhook)
    dead = await store.dead_letters.add(t, "people", "rec-1", "validation", t, f"{t}-err", 5.0)
    await store.dead_letters.add(t, "people", "rec-2", "transform", t, f"{t}-err")
    await store.activities.upsert(
        Activity(
            tenant_id=t,
            quo_object_id="AC1",
            crm_person_id="rec-1",
            kind="call",
            crm_note_id=f"{t}-note",
            has_summary=False,
            has_transcript=False,
            content_hash=f"{t}-hash",
            created_at=1.0,
            updated_at=1.0,
        )
    )
    await store.quo_calls.put(t, "AC1", f"{t}-facts".encode())
    await store.subscriptions.upsert(
        Subscription(
            tenant_id=t, source="quo", name="quo:messages:0", remote_id=f"WH-{t}",
            secret=f"{t}-secret", url=f"https://x/{t}", detail="{}", healthy=True,
            checked_at=1.0,
        )
    )
    for rec, contact in (("rec-1", "mkc-1"), ("rec-2", "mkc-2")):
        await store.mk_links.upsert(_mk_link(t, rec, contact, f"{t}-{rec}-mk"))
    await store.mk_unsynced.upsert(t, "mk-9", name=f"{t} d.o.o.", doc_type="sales_order")
    await store.mk_discovery.set(t, "sales_order", last_change_from=t, next_offset=100)
    await store.mk_intents.begin(t, "people", "rec-1", "add_partner", f"{t}-hash")
    assert event is not None
    return {"run": run, "event": event, "dead": dead}


def _mk_link(t: str, rec: str, contact: str, mk_hash: str) -> MkLink:
    return MkLink(
        tenant_id=t, crm_object="people", crm_record_id=rec, mk_id="mk-1",
        mk_contact_id=contact, mk_address_id="mka-1", direction="to_metakocka",
        mk_hash=mk_hash, crm_hash=mk_hash, snapshot=t, last_synced_at=1.0,
    )


async def _collect_mk(store: Store, t: str) -> list[MkLink]:
    return [link async for link in store.mk_links.iter_all(t, chunk_size=1)]


Read = Callable[[Store, str, Ids], Awaitable[Any]]


async def _collect(store: Store, t: str) -> list[Mapping]:
    return [m async for m in store.mappings.iter_all(t, chunk_size=1)]


async def _prune_runs(store: Store, o: str, ids: Ids) -> int:
    await store.runs.transition(o, ids["run"], "completed")  # an open run is never pruned
    return await store.runs.prune(o, keep=0)


READS: dict[str, Read] = {
    "tenants.get": lambda s, t, ids: s.tenants.get(t),
    "runs.get": lambda s, t, ids: s.runs.get(t, ids["run"]),
    "runs.latest": lambda s, t, ids: s.runs.latest(t),
    "runs.totals": lambda s, t, ids: s.runs.totals(t),
    "checkpoints.get": lambda s, t, ids: s.checkpoints.get(t, "people", "cursor"),
    "checkpoints.all": lambda s, t, ids: s.checkpoints.all(t),
    "mappings.get": lambda s, t, ids: s.mappings.get(t, "people", "rec-1"),
    "mappings.lookup": lambda s, t, ids: s.mappings.lookup(t, "people", "rec-1"),
    "mappings.get_many": lambda s, t, ids: s.mappings.get_many(t, "people", ["rec-1", "rec-2"]),
    "mappings.by_quo_contact": lambda s, t, ids: s.mappings.by_quo_contact(t, "quo-1"),
    "mappings.snapshot": lambda s, t, ids: s.mappings.snapshot(t, "people", "rec-1"),
    "mappings.iter_all": lambda s, t, ids: _collect(s, t),
    "mappings.count": lambda s, t, ids: s.mappings.count(t),
    "intents.get": lambda s, t, ids: s.intents.get(t, "people", "rec-1"),
    "intents.pending": lambda s, t, ids: s.intents.pending(t),
    "inbox.next_pending": lambda s, t, ids: s.inbox.next_pending(t, 10),
    "inbox.next_attempt_time": lambda s, t, ids: s.inbox.next_attempt_time(t),
    "inbox.get": lambda s, t, ids: s.inbox.get(t, ids["event"]),
    "inbox.get_by_event_id": lambda s, t, ids: s.inbox.get_by_event_id(t, "crm", "evt-1"),
    "inbox.list": lambda s, t, ids: s.inbox.list(t),
    "quo_calls.get": lambda s, t, ids: s.quo_calls.get(t, "AC1"),
    "inbox.has_delivery": lambda s, t, ids: s.inbox.has_delivery(t, "quo", "msg_1"),
    "inbox.newest_received_at": lambda s, t, ids: s.inbox.newest_received_at(t, "quo"),
    "inbox.unsettled": lambda s, t, ids: s.inbox.unsettled(t),
    "dead_letters.list": lambda s, t, ids: s.dead_letters.list(t, include_resolved=True),
    "dead_letters.counts_by_category": lambda s, t, ids: s.dead_letters.counts_by_category(t),
    "dead_letters.get": lambda s, t, ids: s.dead_letters.get(t, ids["dead"]),
    "dead_letters.due_for_retry": lambda s, t, ids: s.dead_letters.due_for_retry(t, FAR_FUTURE),
    "activities.get": lambda s, t, ids: s.activities.get(t, "AC1", "rec-1"),
    "activities.for_quo_object": lambda s, t, ids: s.activities.for_quo_object(t, "AC1"),
    "subscriptions.list": lambda s, t, ids: s.subscriptions.list(t),
    "subscriptions.secrets": lambda s, t, ids: s.subscriptions.secrets(t, "quo"),
    "mk_links.get": lambda s, t, ids: s.mk_links.get(t, "people", "rec-1"),
    "mk_links.get_many": lambda s, t, ids: s.mk_links.get_many(t, "people", ["rec-1", "rec-2"]),
    "mk_links.by_mk_id": lambda s, t, ids: s.mk_links.by_mk_id(t, "mk-1"),
    "mk_links.iter_all": lambda s, t, ids: _collect_mk(s, t),
    "mk_links.count": lambda s, t, ids: s.mk_links.count(t),
    "mk_links.due": lambda s, t, ids: s.mk_links.due(t, FAR_FUTURE, 10),
    "mk_unsynced.get": lambda s, t, ids: s.mk_unsynced.get(t, "mk-9"),
    "mk_unsynced.list": lambda s, t, ids: s.mk_unsynced.list(t),
    "mk_unsynced.count": lambda s, t, ids: s.mk_unsynced.count(t),
    "mk_discovery.get": lambda s, t, ids: s.mk_discovery.get(t, "sales_order"),
    "mk_discovery.all": lambda s, t, ids: s.mk_discovery.all(t),
    "mk_intents.get": lambda s, t, ids: s.mk_intents.get(t, "people", "rec-1"),
    "mk_intents.pending": lambda s, t, ids: s.mk_intents.pending(t),
}

# Writes by tenant `o`: with its own keys (the same keys `t` uses) or with t's row ids.
Write = Callable[[Store, str, Ids], Awaitable[Any]]
_ACTIVITY = Activity(
    tenant_id="",
    quo_object_id="AC1",
    crm_person_id="rec-1",
    kind="call",
    crm_note_id="changed",
    has_summary=True,
    has_transcript=True,
    content_hash="changed",
    created_at=9.0,
    updated_at=9.0,
)
WRITES: dict[str, Write] = {
    "tenants.upsert": lambda s, o, ids: s.tenants.upsert(o, "pipedrive"),
    "tenants.set_state": lambda s, o, ids: s.tenants.set_state(o, "parked", phase="setup"),
    "tenants.clear_error": lambda s, o, ids: s.tenants.clear_error(o),
    "tenants.mark_success": lambda s, o, ids: s.tenants.mark_success(o, 9.0),
    "tenants.mark_initial_sync_completed": (
        lambda s, o, ids: s.tenants.mark_initial_sync_completed(o, 9.0)
    ),
    "runs.create": lambda s, o, ids: s.runs.create(o, "full"),
    "runs.transition": lambda s, o, ids: s.runs.transition(o, ids["run"], "completed"),
    "runs.begin": lambda s, o, ids: s.runs.begin(o, full=True, crm_objects=["people"]),
    "runs.finish": lambda s, o, ids: s.runs.finish(
        o, ids["run"], ok=True, crm_objects=["people"]
    ),
    "runs.add_counts": lambda s, o, ids: s.runs.add_counts(o, ids["run"], created=5),
    "checkpoints.set": lambda s, o, ids: s.checkpoints.set(o, "people", "cursor", "changed"),
    "checkpoints.delete": lambda s, o, ids: s.checkpoints.delete(o, "people", "cursor"),
    "checkpoints.commit_page": lambda s, o, ids: s.checkpoints.commit_page(
        o, "people", "changed", run_id=ids["run"], counts={"created": 5}
    ),
    "mappings.upsert": lambda s, o, ids: s.mappings.upsert(
        Mapping(
            tenant_id=o,
            crm_object="people",
            crm_record_id="rec-1",
            quo_contact_id="quo-9",
            entity_type="person",
            sync_method="webhook",
            action="updated",
            content_hash="changed",
            last_synced_at=9.0,
        )
    ),
    "mappings.save_synced": lambda s, o, ids: s.mappings.save_synced([
        Mapping(
            tenant_id=o, crm_object="people", crm_record_id="rec-1", quo_contact_id="quo-9",
            entity_type="person", sync_method="initial", action="created",
            content_hash="changed", last_synced_at=9.0,
        )
    ]),
    "mappings.save_written": lambda s, o, ids: s.mappings.save_written(
        o, "people", "rec-1", content_hash="changed", fields="{}", quo_updated_at=None
    ),
    "activities.prune": lambda s, o, ids: s.activities.prune(o, FAR_FUTURE),
    "runs.prune": lambda s, o, ids: _prune_runs(s, o, ids),
    "mappings.mark_deleted": lambda s, o, ids: s.mappings.mark_deleted(o, "people", "rec-1", 9.0),
    "mappings.unlink": lambda s, o, ids: s.mappings.unlink(o, "people", "rec-1", 9.0),
    "mappings.set_content_hash": (
        lambda s, o, ids: s.mappings.set_content_hash(o, "people", "rec-1", "changed", 9.0)
    ),
    "mappings.save_snapshot": lambda s, o, ids: s.mappings.save_snapshot(
        o, "people", "rec-1", ContactSnapshot(content_hash="changed", fields="{}")
    ),
    "mappings.drop_snapshot": lambda s, o, ids: s.mappings.drop_snapshot(o, "people", "rec-1"),
    "intents.begin": lambda s, o, ids: s.intents.begin(o, "people", "rec-1", "update", "x"),
    "intents.settle": lambda s, o, ids: s.intents.settle(o, "people", "rec-1"),
    "inbox.insert": lambda s, o, ids: s.inbox.insert(o, "crm", "evt-9", "x", b"", {}),
    "inbox.mark_processing": lambda s, o, ids: s.inbox.mark_processing(o, ids["event"]),
    "inbox.mark_processed": lambda s, o, ids: s.inbox.mark_processed(o, ids["event"]),
    "inbox.mark_failed": lambda s, o, ids: s.inbox.mark_failed(o, ids["event"], "e"),
    "inbox.mark_ignored": lambda s, o, ids: s.inbox.mark_ignored(o, ids["event"], "e"),
    "inbox.requeue_interrupted": lambda s, o, ids: s.inbox.requeue_interrupted(o),
    "inbox.reset_for_replay": lambda s, o, ids: s.inbox.reset_for_replay(o, [ids["event"]]),
    "inbox.prune": lambda s, o, ids: s.inbox.prune(o, FAR_FUTURE),
    "inbox.claim": lambda s, o, ids: s.inbox.claim(o, ids["event"]),
    "dead_letters.resolve_for_record": (
        lambda s, o, ids: s.dead_letters.resolve_for_record(o, "people", "rec-1")
    ),
    "mappings.record_scan": lambda s, o, ids: s.mappings.record_scan(o, "people", FAR_FUTURE),
    "mappings.touch": lambda s, o, ids: s.mappings.touch(o, "people", "rec-1", 99.0),
    "inbox.retry_later": lambda s, o, ids: s.inbox.retry_later(
        o, ids["event"], "later", next_attempt_at=FAR_FUTURE
    ),
    "inbox.requeue_failed": lambda s, o, ids: s.inbox.requeue_failed(o, "evt-3"),
    "dead_letters.prune_payloads": (
        lambda s, o, ids: s.dead_letters.prune_payloads(o, FAR_FUTURE)
    ),
    "dead_letters.add": lambda s, o, ids: s.dead_letters.add(o, "people", "rec-1", "x", "", ""),
    "dead_letters.mark_resolved": lambda s, o, ids: s.dead_letters.mark_resolved(o, ids["dead"]),
    "dead_letters.record_attempt": (
        lambda s, o, ids: s.dead_letters.record_attempt(o, ids["dead"], "again", None)
    ),
    "dead_letters.retry_now": lambda s, o, ids: s.dead_letters.retry_now(o, 9.0),
    "activities.upsert": lambda s, o, ids: s.activities.upsert(
        msgspec.structs.replace(_ACTIVITY, tenant_id=o)
    ),
    "activities.set_pending": (
        lambda s, o, ids: s.activities.set_pending(o, "AC1", "rec-1", "call", "pending")
    ),
    "activities.finish_write": lambda s, o, ids: s.activities.finish_write(
        o, "AC1", "rec-1", crm_note_id="changed", content_hash="changed",
        has_summary=True, has_transcript=True,
    ),
    "subscriptions.upsert": lambda s, o, ids: s.subscriptions.upsert(
        Subscription(
            tenant_id=o, source="quo", name="quo:messages:0", remote_id="WH-new",
            secret=None, url="https://x/new", detail="{}", healthy=False, checked_at=2.0,
        )
    ),
    "subscriptions.set_health": (
        lambda s, o, ids: s.subscriptions.set_health(o, "quo", "quo:messages:0", False)
    ),
    "subscriptions.delete": lambda s, o, ids: s.subscriptions.delete(o, "quo", "quo:messages:0"),
    "quo_calls.put": lambda s, o, ids: s.quo_calls.put(o, "AC1", b"changed"),
    "quo_calls.prune": lambda s, o, ids: s.quo_calls.prune(o, FAR_FUTURE),
    "mk_links.upsert": lambda s, o, ids: s.mk_links.upsert(_mk_link(o, "rec-1", "mkc-1", "new")),
    "mk_links.mark_checked": lambda s, o, ids: s.mk_links.mark_checked(o, "mk-1", 9.0),
    "mk_links.delete": lambda s, o, ids: s.mk_links.delete(o, "people", "rec-1"),
    "mk_unsynced.upsert": lambda s, o, ids: s.mk_unsynced.upsert(o, "mk-9", email="x@y.si"),
    "mk_unsynced.remove": lambda s, o, ids: s.mk_unsynced.remove(o, "mk-9"),
    "mk_discovery.set": (
        lambda s, o, ids: s.mk_discovery.set(o, "sales_order", last_change_from="x", next_offset=0)
    ),
    "mk_intents.begin": (
        lambda s, o, ids: s.mk_intents.begin(o, "people", "rec-1", "add_contact", "x", mk_id="m")
    ),
    "mk_intents.settle": lambda s, o, ids: s.mk_intents.settle(o, "people", "rec-1"),
}
# Writes that must also leave the writing tenant's own rows alone, because the row ids
# they were given belong to the other tenant.
FOREIGN_ID_WRITES = {
    "inbox.claim",
    "inbox.retry_later",
    "runs.transition",
    "runs.finish",
    "runs.add_counts",
    "inbox.mark_processing",
    "inbox.mark_processed",
    "inbox.mark_failed",
    "inbox.mark_ignored",
    "inbox.reset_for_replay",
    "dead_letters.mark_resolved",
    "dead_letters.record_attempt",
}
UNSCOPED = {"tenants.list_all"}  # status lists every tenant
# Leases belong to Quo-key groups and replicas, not to one tenant (tests/store/test_leases.py)
UNSCOPED |= {
    f"leases.{name}" for name in (
        "clock", "beat", "live_replicas", "leave", "forget_replicas", "acquire", "renew",
        "release", "holds", "get", "current", "set_members", "replica",
    )
}


async def snapshot(store: Store, t: str, ids: Ids) -> dict[str, Any]:
    return {name: await read(store, t, ids) for name, read in READS.items()}


@pytest.mark.parametrize(("t", "o"), PAIRS)
@pytest.mark.parametrize("read", sorted(READS))
async def test_reads_see_only_their_tenant(
    state: StateFactory, read: str, t: str, o: str
) -> None:
    async with open_store(await state("alone.db"), clock=FakeClock()) as store:
        ids = await populate(store, t)
        alone = await READS[read](store, t, ids)
    async with open_store(await state("shared.db"), clock=FakeClock()) as store:
        assert await populate(store, t) == ids
        await populate(store, o)
        shared = await READS[read](store, t, ids)
    assert alone not in (None, [], {}, 0)
    assert shared == alone
    assert o not in repr(shared)


@pytest.mark.parametrize(("t", "o"), PAIRS)
@pytest.mark.parametrize("write", sorted(WRITES))
async def test_writes_touch_only_their_tenant(
    state: StateFactory, write: str, t: str, o: str
) -> None:
    async with open_store(await state("state.db"), clock=FakeClock()) as store:
        t_ids = await populate(store, t)
        o_ids = await populate(store, o)
        t_before = await snapshot(store, t, t_ids)
        o_before = await snapshot(store, o, o_ids)
        foreign = write in FOREIGN_ID_WRITES
        with contextlib.suppress(KeyError):  # a foreign run id is unknown to `o`
            await WRITES[write](store, o, t_ids if foreign else o_ids)
        assert await snapshot(store, t, t_ids) == t_before
        o_after = await snapshot(store, o, o_ids)
        # Not vacuous: a write with o's own keys did change o's rows.
        assert (o_after == o_before) if foreign else (o_after != o_before)


REPOSITORIES: dict[str, type] = {
    "tenants": Tenants,
    "runs": Runs,
    "checkpoints": Checkpoints,
    "mappings": Mappings,
    "intents": Intents,
    "inbox": Inbox,
    "dead_letters": DeadLetters,
    "activities": Activities,
    "subscriptions": Subscriptions,
    "quo_calls": QuoCalls,
    "mk_links": MkLinks,
    "mk_unsynced": MkUnsynced,
    "mk_discovery": MkDiscovery,
    "mk_intents": MkIntents,
    "leases": Leases,
}


async def test_every_repository_method_is_covered(state: StateFactory) -> None:
    async with open_store(await state("state.db")) as store:
        # Every attribute holding the connection is a repository, listed or not.
        repos = {name for name, value in vars(store).items() if hasattr(value, "_db")}
    assert repos == set(REPOSITORIES)
    public = {
        f"{repo}.{name}"
        for repo, cls in REPOSITORIES.items()
        for name, member in inspect.getmembers(cls, inspect.isfunction)  # inherited too
        if not name.startswith("_")
    }
    covered = set(READS) | set(WRITES) | UNSCOPED
    assert public - covered == set(), "add the new method to READS or WRITES"
    assert covered - public == set()
