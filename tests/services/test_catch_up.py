"""Catch-up: deliveries Quo could not make (failed for good, or still retrying) are
asked for again, so an outage longer than Quo's retry schedule loses nothing.

1. the tenant's 2026-03-30 webhook exists; one SMS is received
2. the listener refuses the tenant (404: as while the daemon is down); more SMS are
   fired and their deliveries fail (the schedule is shortened to 0 s, 0.2 s)
3. the listener accepts again; a new `DeliveryCatchUp` (a restarted daemon) runs
Result: exactly the missed deliveries are retried (counted in
`crmsync_quo_deliveries_caught_up_total`), every event is in the inbox once, and a
second run asks for nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from support.quo_hooks import TENANT, HookWorld, hook_world

from crmsync.services.catch_up import MAX_ASKS, DeliveryCatchUp, parse_time, rfc3339
from crmsync.sim.quo.delivery_v2 import Delivery
from crmsync.sim.quo.testing import wait_until

CALLER = "+14155550142"


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[HookWorld]:
    async with hook_world(tmp_path) as built:
        await built.manager().ensure()
        yield built


def caught_up() -> float:
    value = REGISTRY.get_sample_value("crmsync_quo_deliveries_caught_up_total",
                                      {"tenant": TENANT})
    return value or 0.0


def deliveries(world: HookWorld) -> list[Delivery]:
    (webhook,) = world.ours_v2()
    return list(world.quo_sim.hooks.log[str(webhook["id"])].values())


async def sms_while_refused(world: HookWorld, count: int) -> list[str]:
    """`count` SMS whose deliveries all end `failed`; their event ids."""
    world.accepting = False
    ids = [(await world.quo_sim.sms(CALLER, f"missed {i}")).event_id for i in range(count)]

    def all_failed() -> bool:
        return all(d.status == "failed" for d in deliveries(world) if d.event_id in ids)

    await wait_until(all_failed, within=10, message="the deliveries failed for good")
    world.accepting = True
    return ids


async def test_missed_deliveries_are_retried_once_and_arrive(world: HookWorld) -> None:
    webhook_id = str(world.ours_v2()[0]["id"])
    received = (await world.quo_sim.sms(CALLER, "before the outage")).event_id
    assert await world.inbox() == [received]
    missed = await sms_while_refused(world, 3)

    before = caught_up()
    catch_up = world.catch_up()  # the daemon starts again
    assert await catch_up.run(webhook_id) == 3
    assert caught_up() == before + 3

    async def all_in() -> bool:
        return sorted(await world.inbox()) == sorted([received, *missed])

    await wait_until(all_in, within=10, message="the missed events in the inbox")
    assert all(d.status == "success" for d in deliveries(world))
    manual = [a for d in deliveries(world) for a in d.attempts if a.trigger_type == "manual"]
    assert len(manual) == 3
    assert await catch_up.run(webhook_id) == 0  # nothing missed any more
    assert await world.catch_up().run(webhook_id) == 0
    assert caught_up() == before + 3


async def test_deliveries_still_retrying_are_asked_for_now(tmp_path: Path) -> None:
    """Quo's next attempt may be hours away (`sending`): catch-up does not wait for it."""
    async with hook_world(tmp_path, retry_schedule=(0.0, 3600.0)) as world:
        await world.manager().ensure()
        webhook_id = str(world.ours_v2()[0]["id"])
        world.accepting = False
        missed = [(await world.quo_sim.sms(CALLER, f"late {i}")).event_id for i in range(2)]
        await wait_until(lambda: all(d.status == "sending" for d in deliveries(world)),
                         within=10, message="deliveries waiting an hour for their retry")
        world.accepting = True
        assert await world.catch_up().run(webhook_id) == 2

        async def arrived() -> bool:
            return sorted(await world.inbox()) == sorted(missed)

        await wait_until(arrived, within=10, message="the events in the inbox")


async def test_the_window_starts_at_the_newest_event_received_before_the_start(
    world: HookWorld,
) -> None:
    """A delivery that failed before an event that was received is not the outage's;
    events arriving while the daemon starts do not hide the outage before them."""
    webhook_id = str(world.ours_v2()[0]["id"])
    old = await sms_while_refused(world, 1)
    newest = (await world.quo_sim.sms(CALLER, "received")).event_id
    missed = await sms_while_refused(world, 2)
    catch_up = world.catch_up(margin=0.0)
    # Arrives after the start, before the catch-up runs:
    await world.quo_sim.sms(CALLER, "while starting")
    stored = await world.store.inbox.newest_received_at(TENANT, "quo")
    assert stored is not None
    start = await catch_up.window_start()
    assert start is not None and start < stored
    assert await catch_up.run(webhook_id) == 2

    async def arrived() -> bool:
        return set(missed) <= set(await world.inbox())

    await wait_until(arrived, within=10, message="the outage's events in the inbox")
    assert not set(old) & set(await world.inbox())
    assert newest in await world.inbox()


async def test_a_delivery_that_keeps_failing_is_asked_for_at_most_three_times(
    world: HookWorld,
) -> None:
    webhook_id = str(world.ours_v2()[0]["id"])
    await sms_while_refused(world, 1)
    world.accepting = False  # and it stays refused
    catch_up = world.catch_up()
    asked = []
    for _ in range(MAX_ASKS + 2):
        asked.append(await catch_up.run(webhook_id))
        (delivery,) = deliveries(world)
        await wait_until(lambda d=delivery: d.attempts[-1].trigger_type == "manual",
                         within=10, message="the manual attempt made")
    assert asked == [1] * MAX_ASKS + [0, 0]


async def test_quo_failing_keeps_the_window_for_the_next_run(world: HookWorld) -> None:
    webhook_id = str(world.ours_v2()[0]["id"])
    missed = await sms_while_refused(world, 2)
    catch_up = world.catch_up()
    world.quo_sim.faults.fail(20, status=500, route="GET /webhooks/{id}/events")
    assert await catch_up.run(webhook_id) == 0  # logged, not raised
    world.quo_sim.faults.clear()
    assert await catch_up.run(webhook_id) == 2

    async def arrived() -> bool:
        return set(missed) <= set(await world.inbox())

    await wait_until(arrived, within=10, message="the events in the inbox")


async def test_nothing_to_do_without_a_2026_webhook(world: HookWorld) -> None:
    assert await world.catch_up().run(None) == 0


def test_times_round_trip_in_quo_s_format() -> None:
    assert rfc3339(1795428000.25) == "2026-11-23T10:00:00.250Z"
    assert parse_time("2026-11-23T10:00:00.250Z") == 1795428000.25
    assert parse_time("not a time") is None
    assert parse_time(None) is None


async def test_window_without_any_stored_event_is_the_whole_log(world: HookWorld) -> None:
    catch_up = DeliveryCatchUp(TENANT, hooks=world.hooks, store=world.store)
    assert await catch_up.window_start() is None
