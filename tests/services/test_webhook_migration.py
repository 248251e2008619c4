"""Moving a tenant from legacy Quo webhooks to the 2026-03-30 system without a gap.

1. the tenant runs on legacy webhooks (four families, `quo.webhooks = "legacy"`)
2. `quo.webhooks = "2026-03-30"`: the next `ensure()` migrates, through the daemon's
   real listener (the test event is verified with the stored `whsec_` key)
Result: one enabled 2026-03-30 webhook, no legacy webhook left, the new one enabled
before any legacy one was deleted, the legacy secrets kept (retired) for late
retries. A failed step (the listener refuses the test event; Quo failing a call)
leaves every legacy webhook in place, says which step and why, and the next attempt
reuses the disabled webhook and completes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from support.quo_hooks import TENANT, HookWorld, hook_world

from crmsync.services.quo_subscription import VERSIONED_NAME, retired_since
from crmsync.services.webhook_migration import TEST_EVENT_TYPE, MigrationFailed


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[HookWorld]:
    async with hook_world(tmp_path) as built:
        await built.manager("legacy").ensure()
        assert len(built.ours_legacy()) == 4
        yield built


def watch_order(world: HookWorld, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What the 2026-03-30 webhook's status was at each legacy delete."""
    seen: list[str] = []
    delete = world.quo.delete_webhook

    async def recording(webhook_id: str, **kwargs: Any) -> None:
        (webhook,) = world.ours_v2()
        seen.append(str(webhook["status"]))
        await delete(webhook_id, **kwargs)

    monkeypatch.setattr(world.quo, "delete_webhook", recording)
    return seen


async def test_ensure_migrates_legacy_to_one_enabled_webhook(
    world: HookWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    legacy_ids = sorted(str(w["id"]) for w in world.ours_legacy())
    statuses = watch_order(world, monkeypatch)
    manager = world.manager()
    await manager.ensure()

    (webhook,) = world.ours_v2()
    assert webhook["status"] == "enabled"
    assert world.ours_legacy() == []
    assert statuses == ["enabled"] * 4  # enabled before the first legacy delete
    assert manager.quo_webhook_id == webhook["id"]
    assert manager.migration_error is None
    # The test event went through the listener: verified and stored.
    (delivery,) = world.quo_sim.hooks.log[str(webhook["id"])].values()
    assert delivery.event_type == TEST_EVENT_TYPE and delivery.status == "success"
    assert len(await world.inbox()) == 1
    rows = {s.name: s for s in await world.store.subscriptions.list(TENANT, "quo")}
    assert rows[VERSIONED_NAME].secret == webhook["key"]
    retired = [r for n, r in rows.items() if n != VERSIONED_NAME]
    assert sorted(r.remote_id for r in retired) == legacy_ids
    assert all(retired_since(r) is not None and r.secret for r in retired)
    assert world.quo_sim.count("POST", "/webhooks") == 1
    assert world.quo_sim.count("POST", "/webhooks/{id}/events/test") == 1

    # Done: the next checks change nothing.
    await manager.ensure()
    await world.manager().ensure()
    assert len(world.ours_v2()) == 1
    assert world.quo_sim.count("POST", "/webhooks/{id}/events/test") == 1


async def test_migrate_reports_each_step(world: HookWorld) -> None:
    lines: list[str] = []
    legacy = sorted(str(w["id"]) for w in world.ours_legacy())
    result = await world.manager().migrate(report=lines.append)
    assert result is not None
    steps = [line.split(":", 1)[0] for line in lines]
    assert steps == ["legacy", "create", "test", "verified", "enable", "delete"], lines
    assert lines[0].startswith(f"legacy: 4 legacy webhooks on {world.url}: ")
    assert f"webhook {result.webhook_id} created, disabled" in lines[1]
    assert lines[3].startswith(f"verified: delivery {result.delivery_id} succeeded")
    assert sorted(result.deleted_legacy) == legacy
    assert world.ours_legacy() == []
    # Nothing legacy left: a second run only makes sure of the new webhook.
    again: list[str] = []
    assert await world.manager().migrate(report=again.append) is None
    assert again == [f"no legacy webhooks on {world.url}; webhook {result.webhook_id} is the"
                     " tenant's (2026-03-30, enabled)"]


async def test_unverified_test_event_leaves_legacy_in_place(
    world: HookWorld, caplog: pytest.LogCaptureFixture
) -> None:
    """1. the listener answers 404 for the tenant (as if it were not running here)
    2. migrate: the test delivery fails twice
    Result: MigrationFailed at `verified` naming the listener's answer; the legacy
    webhooks and their secrets untouched; the new webhook disabled, its key stored.
    3. the listener accepts again; the next check migrates, reusing that webhook."""
    legacy = sorted(str(w["id"]) for w in world.ours_legacy())
    world.accepting = False
    manager = world.manager(verify_within=10)
    with pytest.raises(MigrationFailed) as failed:
        await manager.migrate()
    assert failed.value.step == "verified"
    assert "HTTP 404" in failed.value.reason
    assert sorted(str(w["id"]) for w in world.ours_legacy()) == legacy
    (webhook,) = world.ours_v2()
    assert webhook["status"] == "disabled"
    assert manager.quo_webhook_id is None
    rows = {s.name: s for s in await world.store.subscriptions.list(TENANT, "quo")}
    assert rows[VERSIONED_NAME].secret == webhook["key"]
    assert all(retired_since(r) is None for n, r in rows.items() if n != VERSIONED_NAME)

    # The daemon's periodic check: the failure is logged, not raised.
    with caplog.at_level("ERROR"):
        await manager.ensure()
    assert "failed at step 'verified'" in caplog.text
    assert "legacy webhooks stay" in caplog.text
    assert len(world.ours_legacy()) == 4

    world.accepting = True
    await manager.ensure()
    (after,) = world.ours_v2()
    assert after["id"] == webhook["id"] and after["status"] == "enabled"
    assert world.ours_legacy() == []
    assert world.quo_sim.count("POST", "/webhooks") == 1


@pytest.mark.parametrize(("route", "step"), [
    ("POST /webhooks", "create"),
    ("POST /webhooks/{id}/events/test", "test"),
    ("PATCH /webhooks/{id}", "enable"),
])
async def test_a_quo_failure_at_any_step_leaves_legacy_in_place(
    world: HookWorld, route: str, step: str
) -> None:
    legacy = sorted(str(w["id"]) for w in world.ours_legacy())
    world.quo_sim.faults.fail(10, status=500, route=route)
    with pytest.raises(MigrationFailed) as failed:
        await world.manager().migrate()
    assert failed.value.step == step
    assert "500" in failed.value.reason
    assert sorted(str(w["id"]) for w in world.ours_legacy()) == legacy
    world.quo_sim.faults.clear()
    await world.manager().migrate()
    assert world.ours_legacy() == []
    (webhook,) = world.ours_v2()
    assert webhook["status"] == "enabled"


async def test_a_crash_after_enable_finishes_on_the_next_check(world: HookWorld) -> None:
    """The new webhook is enabled but the legacy ones are still there (the process died
    between the steps): the next check proves it again and deletes them."""
    world.quo_sim.faults.fail(10, status=500, route="DELETE /v1/webhooks/{id}")
    with pytest.raises(MigrationFailed) as failed:
        await world.manager().migrate()
    assert failed.value.step == "delete"
    (webhook,) = world.ours_v2()
    assert webhook["status"] == "enabled"
    world.quo_sim.faults.clear()
    await world.manager().ensure()
    assert world.ours_legacy() == []
    assert [w["id"] for w in world.ours_v2()] == [webhook["id"]]
