"""The tenant's 2026-03-30 Quo webhook: created once, idempotent, repaired when it drifts.

Each test runs `SubscriptionManager.ensure()` (`quo.webhooks = "2026-03-30"`) against
the Quo simulator, changes something behind its back (deleted, disabled, other events
or numbers, a lost key, a stray webhook on our URL) and runs it again.
Result: one webhook per tenant with the wanted events and the workspace's numbers, its
`whsec_` key stored as the `quo:webhook` secret; a repeat writes nothing; each drift is
repaired with the smallest call (PATCH, rotate, create, delete).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
from prometheus_client import REGISTRY
from support.quo_hooks import TENANT, HookWorld, hook_world

from crmsync.quo.models import VersionedWebhookInput
from crmsync.services.quo_subscription import (
    ACTIVITY_EVENTS,
    CONTACT_EVENTS,
    RETIRED_SECRET_SECONDS,
    VERSIONED_NAME,
    VersionedWebhookKeeper,
    retired_since,
)
from crmsync.sim.quo.config import PhoneLine
from crmsync.sim.quo.wire import now_iso

V2_WRITES = (("POST", "/webhooks"), ("PATCH", "/webhooks/{id}"),
             ("DELETE", "/webhooks/{id}"), ("POST", "/webhooks/{id}/rotate"))


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[HookWorld]:
    async with hook_world(tmp_path) as built:
        yield built


def writes(world: HookWorld) -> dict[tuple[str, str], int]:
    counts = {(m, r): world.quo_sim.count(m, r) for m, r in V2_WRITES}
    return {k: v for k, v in counts.items() if v}


async def stored_key(world: HookWorld) -> tuple[str, str | None]:
    rows = {s.name: s for s in await world.store.subscriptions.list(TENANT, "quo")}
    row = rows[VERSIONED_NAME]
    return row.remote_id, row.secret


async def phone_ids(world: HookWorld) -> list[str]:
    return sorted(p.id for p in await world.quo.list_phone_numbers())


async def test_one_webhook_with_the_tenant_s_events_numbers_and_stored_key(
    world: HookWorld,
) -> None:
    manager = world.manager()
    await manager.ensure()
    (webhook,) = world.ours_v2()
    assert webhook["status"] == "enabled"
    assert sorted(webhook["events"]) == sorted(ACTIVITY_EVENTS + CONTACT_EVENTS)
    assert sorted(webhook["resourceIds"]) == await phone_ids(world)
    assert webhook["apiVersion"] == "2026-03-30"
    remote_id, secret = await stored_key(world)
    assert remote_id == webhook["id"]
    assert secret == webhook["key"] and secret.startswith("whsec_")
    assert manager.quo_webhook_id == webhook["id"]
    assert world.ours_legacy() == []  # nothing on the legacy system
    healthy = REGISTRY.get_sample_value(
        "crmsync_webhook_subscription_healthy",
        {"tenant": TENANT, "source": "quo", "name": VERSIONED_NAME})
    assert healthy == 1.0

    before = writes(world)
    await manager.ensure()
    await world.manager().ensure()  # a new process: the same
    assert writes(world) == before == {("POST", "/webhooks"): 1}
    assert len(world.ours_v2()) == 1


async def test_quo_to_crm_off_subscribes_to_no_contact_events(world: HookWorld) -> None:
    await world.manager(contact_events=False).ensure()
    (webhook,) = world.ours_v2()
    assert sorted(webhook["events"]) == sorted(ACTIVITY_EVENTS)
    # Turned on later: the same webhook gets the contact events (one PATCH).
    await world.manager(contact_events=True).ensure()
    (webhook,) = world.ours_v2()
    assert set(CONTACT_EVENTS) <= set(webhook["events"])
    assert writes(world) == {("POST", "/webhooks"): 1, ("PATCH", "/webhooks/{id}"): 1}


async def test_deleted_webhook_is_created_again_with_a_new_key(world: HookWorld) -> None:
    manager = world.manager()
    await manager.ensure()
    old_id, old_key = await stored_key(world)
    del world.quo_sim.webhooks_v2[old_id]
    await manager.ensure()
    (webhook,) = world.ours_v2()
    new_id, new_key = await stored_key(world)
    assert new_id == webhook["id"] != old_id
    assert new_key == webhook["key"] != old_key
    assert manager.quo_webhook_id == new_id


@pytest.mark.parametrize("drift", ["disabled", "events", "resourceIds"])
async def test_drift_is_patched_back(world: HookWorld, drift: str) -> None:
    manager = world.manager()
    await manager.ensure()
    (webhook,) = world.ours_v2()
    key = webhook["key"]
    if drift == "disabled":
        webhook["status"] = "disabled"
    elif drift == "events":
        webhook["events"] = ["message.received"]
    else:
        webhook["resourceIds"] = ["*"]
    await manager.ensure()
    (repaired,) = world.ours_v2()
    assert repaired["id"] == webhook["id"]
    assert repaired["status"] == "enabled"
    assert sorted(repaired["events"]) == sorted(ACTIVITY_EVENTS + CONTACT_EVENTS)
    assert sorted(repaired["resourceIds"]) == await phone_ids(world)
    assert repaired["key"] == key  # a PATCH keeps the key
    assert writes(world) == {("POST", "/webhooks"): 1, ("PATCH", "/webhooks/{id}"): 1}


async def test_a_new_phone_number_is_added_to_resource_ids(world: HookWorld) -> None:
    manager = world.manager()
    await manager.ensure()
    workspace = world.quo_sim.workspace
    line = PhoneLine(id="PNaddedLine0000000000", number="+14155550123", name="New line")
    workspace.lines.append(line)
    workspace.phone_numbers[line.id] = workspace._phone_number(line, now_iso())
    await manager.ensure()
    (webhook,) = world.ours_v2()
    assert sorted(webhook["resourceIds"]) == await phone_ids(world)


async def test_lost_key_is_rotated(world: HookWorld) -> None:
    manager = world.manager()
    await manager.ensure()
    remote_id, _ = await stored_key(world)
    row = {s.name: s for s in await world.store.subscriptions.list(TENANT, "quo")}[
        VERSIONED_NAME]
    # The state lost the key (e.g. restored from a backup taken before it was stored).
    await world.store.subscriptions.delete(TENANT, "quo", VERSIONED_NAME)
    await world.store.subscriptions.upsert(msgspec.structs.replace(row, secret=None))
    await manager.ensure()
    (webhook,) = world.ours_v2()
    assert webhook["id"] == remote_id
    _, secret = await stored_key(world)
    assert secret == webhook["key"] and secret.startswith("whsec_")
    assert writes(world) == {("POST", "/webhooks"): 1, ("POST", "/webhooks/{id}/rotate"): 1}


async def test_a_webhook_left_by_a_crashed_run_is_adopted_and_duplicates_deleted(
    world: HookWorld,
) -> None:
    """A run created webhooks on our URL and died before storing a key: the next one
    keeps one (rotating its key: ours now) and deletes the others."""
    manager = world.manager()
    await manager.ensure()
    kept_id, _ = await stored_key(world)
    await world.store.subscriptions.delete(TENANT, "quo", VERSIONED_NAME)
    extra = await world.hooks.create(
        VersionedWebhookInput(url=world.url, events=["call.completed"]))
    await manager.ensure()
    (webhook,) = world.ours_v2()
    assert webhook["id"] in (kept_id, extra.id)
    remote_id, secret = await stored_key(world)
    assert remote_id == webhook["id"] and secret == webhook["key"]
    assert sorted(webhook["events"]) == sorted(ACTIVITY_EVENTS + CONTACT_EVENTS)


async def test_legacy_mode_is_unchanged_and_drops_a_2026_webhook(world: HookWorld) -> None:
    """`quo.webhooks = "legacy"`: the v1 families as before; a 2026-03-30 webhook left
    from before (a rollback) is deleted once they exist."""
    await world.manager().ensure()
    assert len(world.ours_v2()) == 1
    legacy = world.manager("legacy")
    await legacy.ensure()
    assert world.ours_v2() == []
    families = sorted(w["id"] for w in world.ours_legacy())
    assert len(families) == 4  # messages, calls, call-summaries, call-transcripts
    names = {s.name for s in await world.store.subscriptions.list(TENANT, "quo")}
    assert VERSIONED_NAME not in names
    assert legacy.quo_webhook_id is None
    before = world.quo_sim.count("POST", "/v1/webhooks/messages")
    await legacy.ensure()
    assert world.quo_sim.count("POST", "/v1/webhooks/messages") == before


async def test_retired_legacy_secrets_are_kept_a_day_then_deleted(world: HookWorld) -> None:
    await world.manager("legacy").ensure()
    legacy_names = {s.name for s in await world.store.subscriptions.list(TENANT, "quo")}
    for webhook_id in [w["id"] for w in world.ours_legacy()]:
        del world.quo_sim.webhooks[webhook_id]
    await world.manager().ensure()  # no legacy webhook left at Quo: nothing to migrate
    rows = {s.name: s for s in await world.store.subscriptions.list(TENANT, "quo")}
    assert set(rows) == legacy_names | {VERSIONED_NAME}
    retired = [rows[n] for n in legacy_names]
    assert all(retired_since(r) is not None and r.secret for r in retired)
    keeper = VersionedWebhookKeeper(TENANT, hooks=world.hooks, store=world.store)
    first = retired_since(retired[0])
    assert first is not None
    assert await keeper.retire_legacy(now=first + 60) == len(legacy_names)
    assert await keeper.retire_legacy(now=first + RETIRED_SECRET_SECONDS + 1) == 0
    rows = {s.name: s for s in await world.store.subscriptions.list(TENANT, "quo")}
    assert set(rows) == {VERSIONED_NAME}
    assert json.loads(rows[VERSIONED_NAME].detail)["system"] == "2026-03-30"
