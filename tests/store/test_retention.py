"""Tables that grow with the traffic have a rule that deletes their rows again.

`sync_runs` gains a row per sync pass (a poll is a pass) and `activities` one per
logged message or call and person, for the daemon's whole life: `bench/soak.py` saw
them grow with nothing deleting them. Runs beyond the newest `RUNS_KEPT` of a tenant
go as a pass begins; an activity goes once no event of it can come again (the longer
of the call retention and the inbox's replay retention), unless a note write is in
flight.
"""

from __future__ import annotations

from pathlib import Path

from support.activity import ALICE, TENANT, activity_env
from support.clock import FakeClock

from crmsync.services.activity import ActivityLogger
from crmsync.store import Store
from crmsync.store.runs import RUNS_KEPT

T = "acme"
DAY = 86400.0


async def finished_runs(store: Store, tenant: str, n: int) -> list[int]:
    ids = []
    async with store.transaction():
        for _ in range(n):
            run_id = await store.runs.create(tenant, "incremental")
            await store.runs.transition(tenant, run_id, "running")
            await store.runs.transition(tenant, run_id, "completed")
            ids.append(run_id)
    return ids


async def test_a_pass_deletes_the_runs_older_than_the_newest_kept(store: Store) -> None:
    old = await finished_runs(store, T, RUNS_KEPT + 5)
    others = await finished_runs(store, "other", 3)

    start = await store.runs.begin(T, full=False, crm_objects=["people"])

    for run_id in old[:6]:  # the new run is one of the newest RUNS_KEPT
        assert await store.runs.get(T, run_id) is None
    for run_id in (*old[6:], start.run_id):
        assert await store.runs.get(T, run_id) is not None
    for run_id in others:  # another tenant's runs are its own business
        assert await store.runs.get("other", run_id) is not None
    latest = await store.runs.latest(T)
    assert latest is not None and latest.id == start.run_id and latest.state == "running"


async def test_prune_keeps_open_runs_and_deletes_in_batches(store: Store) -> None:
    stuck = await store.runs.create(T, "initial")  # never started: not final
    done = await finished_runs(store, T, 5)

    assert await store.runs.prune(T, keep=1, limit=2) == 2
    assert await store.runs.prune(T, keep=1, limit=2) == 2
    assert await store.runs.prune(T, keep=1, limit=2) == 0

    assert await store.runs.get(T, stuck) is not None
    assert [await store.runs.get(T, i) is not None for i in done] == [False] * 4 + [True]
    assert await store.runs.prune("other") == 0


async def logged(store: Store, tenant: str, quo_id: str) -> None:
    await store.activities.set_pending(tenant, quo_id, "person-1", "message", "h1")
    await store.activities.finish_write(tenant, quo_id, "person-1", crm_note_id=f"n-{quo_id}",
                                        content_hash="h1", has_summary=False,
                                        has_transcript=False)


async def test_activities_are_pruned_by_age_but_not_mid_write(
    store: Store, clock: FakeClock
) -> None:
    await logged(store, T, "old")
    await logged(store, "other", "old")
    await store.activities.set_pending(T, "in-flight", "person-1", "message", "h2")
    clock.advance(40 * DAY)
    await logged(store, T, "new")

    assert await store.activities.prune(T, before=clock() - 30 * DAY) == 1

    assert await store.activities.for_quo_object(T, "old") == []
    assert len(await store.activities.for_quo_object(T, "in-flight")) == 1
    assert len(await store.activities.for_quo_object(T, "new")) == 1
    assert len(await store.activities.for_quo_object("other", "old")) == 1


async def test_the_logger_keeps_an_activity_as_long_as_its_event_may_be_replayed(
    tmp_path: Path,
) -> None:
    async with activity_env(tmp_path) as env:
        env.attio_sim.add_person(first_name="Alice", phones=[ALICE])
        messages = [env.quo_sim.add_message(ALICE, f"message {n}") for n in range(3)]
        events = [env.v2("message.received", env.quo_sim.payloads.message(m))
                  for m in messages]
        activities = env.store.activities

        # Calls are settled at once, but the inbox keeps events 30 days for replay.
        kept = ActivityLogger(TENANT, quo=env.quo, adapter=env.adapter, store=env.store,
                              call_retention=0.0)
        assert await kept.handle(*events[0]) == "logged"
        kept._next_prune = float("-inf")  # an hour has passed
        assert await kept.handle(*events[1]) == "logged"
        assert await activities.for_quo_object(TENANT, messages[0]["id"]) != []
        assert await kept.handle(*events[0]) == "unchanged"  # a replay: still one note
        assert env.notes_created == 2

        # Both retentions over: the rows of the first two messages are deleted.
        pruning = ActivityLogger(TENANT, quo=env.quo, adapter=env.adapter, store=env.store,
                                 call_retention=0.0, inbox_retention=0.0)
        assert await pruning.handle(*events[2]) == "logged"
        assert await activities.for_quo_object(TENANT, messages[0]["id"]) == []
        assert await activities.for_quo_object(TENANT, messages[1]["id"]) == []
        assert await activities.for_quo_object(TENANT, messages[2]["id"]) != []
