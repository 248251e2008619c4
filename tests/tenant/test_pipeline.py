"""`SyncPipeline` in-process against both simulators and a real SQLite state database.

fetcher → transformer → Quo writer → mapping verifier, for one tenant: every person
becomes exactly one Quo contact with a mapping; bad records are dead-lettered with a
category and the pass goes on; the cursor checkpoint is committed page by page and
cleared after a full pass; an interrupted or crashed pass resumes from it without
fetching committed pages again and without duplicate contacts; a re-run with nothing
changed costs no Quo request.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import REGISTRY

from crmsync.actors.verifier import BulkOptions
from crmsync.adapters.attio import AttioAdapter
from crmsync.adapters.base import CrmPage
from crmsync.cli.sync import sync_tenant
from crmsync.config.loader import parse_config
from crmsync.domain.contact import build_contact
from crmsync.net.ratelimit import SlidingWindowLimiter, slot_trace_config
from crmsync.net.retry import RetryPolicy
from crmsync.quo.client import QuoClient
from crmsync.quo.models import ContactInput, DefaultFields
from crmsync.sim.attio import AttioSim, AttioSimConfig, run_attio_simulator
from crmsync.sim.quo import QuoSim, QuoSimConfig, run_quo_simulator
from crmsync.sim.quo.testing import wait_until
from crmsync.store import Store, open_store
from crmsync.store.checkpoints import CURSOR
from crmsync.tenant.pipeline import PipelineOptions, SyncPipeline, SyncResult
from crmsync.tenant.resources import open_resources
from crmsync.tenant.supervisor import RestartBudget, RestartBudgetSpentError

TENANT = "acme"
QUO_KEY = "quo-test-key"
PEOPLE = 60
PAGE = 20
E164 = re.compile(r"^\+[1-9]\d{1,14}$")
Hook = Callable[[str | None], Awaitable[None]]


@dataclass
class Env:
    attio: AttioSim
    attio_url: str
    quo: QuoSim
    quo_url: str
    store: Store
    session: aiohttp.ClientSession
    quo_client: QuoClient

    def adapter(self) -> AttioAdapter:
        return AttioAdapter(self.session, api_key="attio-test-key", base_url=self.attio_url,
                            timeout=5)

    def pipeline(
        self,
        adapter: AttioAdapter | None = None,
        *,
        budget: RestartBudget | None = None,
        **options: Any,
    ) -> SyncPipeline:
        options.setdefault("page_size", PAGE)
        options.setdefault("writer_concurrency", 10)
        return SyncPipeline(
            TENANT,
            store=self.store,
            quo=self.quo_client,
            adapter=adapter or self.adapter(),
            options=PipelineOptions(crm_objects=["people"], **options),
            budget=budget,
        )

    def quo_writes(self) -> int:
        """Requests that could change Quo (POST, PATCH, DELETE), whatever their status."""
        return sum(n for (method, _, _), n in self.quo.stats.requests.items()
                   if method in ("POST", "PATCH", "DELETE"))

    def contacts_by_external_id(self) -> dict[str, dict[str, Any]]:
        contacts = list(self.quo.contacts.contacts.values())
        by_id = {c["externalId"]: c for c in contacts}
        assert len(by_id) == len(contacts), "two Quo contacts share an externalId"
        return by_id

    async def mappings(self) -> dict[str, Any]:
        return {m.crm_record_id: m async for m in self.store.mappings.iter_all(TENANT)}

    async def cursor(self) -> str | None:
        return await self.store.checkpoints.get(TENANT, "people", CURSOR)


@contextlib.asynccontextmanager
async def pipeline_env(
    tmp_path: Path, *, people: int = PEOPLE, quo: QuoSimConfig | None = None
) -> AsyncIterator[Env]:
    quo_config = quo or QuoSimConfig(api_keys=[QUO_KEY], requests_per_second=500)
    async with (
        run_attio_simulator(config=AttioSimConfig(people=people)) as (attio, attio_url),
        run_quo_simulator(config=quo_config) as (quo_sim, quo_url),
        aiohttp.ClientSession(trace_configs=[slot_trace_config()]) as session,
        open_store(tmp_path / "state.db") as store,
    ):
        await store.tenants.upsert(TENANT, "attio")
        client = QuoClient(
            session, base_url=quo_url, api_key=QUO_KEY,
            limiter=SlidingWindowLimiter(quo_config.requests_per_second),
            tenant=TENANT, timeout=5,
            retry=RetryPolicy(max_retries=3, base_delay=0.01, max_delay=0.05),
        )
        yield Env(attio, attio_url, quo_sim, quo_url, store, session, client)


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async with pipeline_env(tmp_path) as env:
        yield env


def spy_on_pages(
    monkeypatch: pytest.MonkeyPatch, adapter: AttioAdapter, before: Hook | None = None
) -> list[str | None]:
    """Record the cursor of every `fetch_page`; `before(cursor)` runs first (may raise)."""
    cursors: list[str | None] = []
    real = adapter.fetch_page

    async def fetch_page(crm_object: str, cursor: str | None, page_size: int) -> CrmPage:
        cursors.append(cursor)
        if before is not None:
            await before(cursor)
        return await real(crm_object, cursor, page_size)

    monkeypatch.setattr(adapter, "fetch_page", fetch_page)
    return cursors


def restarts() -> float:
    value = REGISTRY.get_sample_value(
        "crmsync_actor_restarts_total", {"tenant": TENANT, "actor": "sync_pipeline"}
    )
    return value or 0.0


async def assert_fully_synced(env: Env, result: SyncResult) -> None:
    """Every Attio person has exactly one Quo contact and a mapping pointing at it."""
    people = {r.record_id for r in env.attio.people}
    contacts = env.contacts_by_external_id()
    mappings = await env.mappings()
    assert set(contacts) == people
    assert set(mappings) == people
    for record_id, mapping in mappings.items():
        assert mapping.quo_contact_id == contacts[record_id]["id"]
    assert await env.cursor() is None
    assert await env.store.intents.pending(TENANT) == []
    assert result.run.state == "completed"


# -- the happy path --------------------------------------------------------------------


async def test_initial_sync_creates_every_person_with_a_mapping(env: Env) -> None:
    result = await env.pipeline().run()

    assert result.ok
    await assert_fully_synced(env, result)
    run = result.run
    assert run.kind == "initial"
    assert (run.counts.fetched, run.counts.created, run.counts.failed) == (PEOPLE, PEOPLE, 0)
    assert env.quo.count("POST", "/v1/contacts", 201) == PEOPLE
    assert env.quo.count("POST", "/v1/contacts", 409) == 0
    assert result.dropped_phones == len(env.attio.facts.of("invalid_phone"))

    for mapping in (await env.mappings()).values():
        assert (mapping.action, mapping.sync_method, mapping.entity_type) == (
            "created", "initial", "person")
        assert mapping.content_hash
    contacts = env.contacts_by_external_id()
    for contact in contacts.values():
        assert contact["source"] == "attio"
        assert contact["defaultFields"]["firstName"]
        assert all(E164.match(p["value"]) for p in contact["defaultFields"]["phoneNumbers"])
    for e164, record_ids in env.attio.facts.shared_phones.items():
        for record_id in record_ids:  # both people sharing a number get it
            assert e164 in [p["value"] for p in contacts[record_id]["defaultFields"]
                            ["phoneNumbers"]]

    tenant = await env.store.tenants.get(TENANT)
    assert tenant is not None
    assert tenant.initial_sync_completed_at is not None
    assert tenant.state == "starting"  # the lifecycle state is the runtime's to write


async def test_the_checkpoint_is_committed_per_page_and_cleared_after_the_pass(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each fetch waits until every earlier page's cursor is committed, so the cursors
    seen are exactly the committed checkpoints; after the pass the checkpoint is gone."""
    seen: list[str | None] = []

    async def committed(cursor: str | None) -> None:
        if cursor is not None:
            await wait_until(lambda: _cursor_is(env, cursor), within=10,
                             message=f"checkpoint {cursor}")
            seen.append(await env.cursor())

    adapter = env.adapter()
    cursors = spy_on_pages(monkeypatch, adapter, committed)
    result = await env.pipeline(adapter).run()

    assert result.ok
    assert cursors == [None, "20", "40", "60"]
    assert seen == ["20", "40", "60"]
    assert await env.cursor() is None


async def _cursor_is(env: Env, value: str) -> bool:
    return await env.cursor() == value


async def test_a_rerun_with_nothing_changed_makes_no_quo_request(env: Env) -> None:
    assert (await env.pipeline().run()).ok
    env.quo.reset_stats()

    result = await env.pipeline().run()

    assert result.ok
    assert env.quo.stats.total_requests == 0
    assert result.run.kind == "incremental"
    assert (result.run.counts.fetched, result.run.counts.unchanged) == (PEOPLE, PEOPLE)
    assert await env.cursor() is None


async def test_a_rerun_after_one_change_patches_only_that_contact(env: Env) -> None:
    assert (await env.pipeline().run()).ok
    changed = env.attio.people.ordered()[7].record_id
    env.attio.update_person(changed, job_title="Chief Everything Officer", notify=False)
    env.quo.reset_stats()

    result = await env.pipeline().run()

    assert result.ok
    assert env.quo_writes() == 1
    assert env.quo.count("PATCH", "/v1/contacts/{id}", 200) == 1
    counts = result.run.counts
    assert (counts.updated, counts.unchanged) == (1, PEOPLE - 1)
    contact = env.contacts_by_external_id()[changed]
    assert contact["defaultFields"]["role"] == "Chief Everything Officer"
    assert (await env.mappings())[changed].action == "updated"


# -- failures of single records --------------------------------------------------------


async def test_a_record_that_cannot_be_transformed_is_dead_lettered_and_the_run_completes(
    env: Env,
) -> None:
    empty = env.attio.add_person(notify=False)  # no name, no email, no phone

    result = await env.pipeline(max_error_rate=0.05).run()

    assert result.ok
    assert result.run.state == "completed"
    counts = result.run.counts
    assert (counts.fetched, counts.created, counts.failed) == (PEOPLE + 1, PEOPLE, 1)
    (dead,) = await env.store.dead_letters.list(TENANT)
    assert (dead.crm_record_id, dead.category, dead.crm_object) == (empty, "empty_person",
                                                                    "people")
    assert empty in dead.payload  # the raw record, for `crmsync errors`
    assert empty not in await env.mappings()
    assert empty not in env.contacts_by_external_id()
    assert len(env.contacts_by_external_id()) == PEOPLE
    assert await env.cursor() is None


async def test_a_quo_validation_error_is_dead_lettered_and_the_sync_goes_on(env: Env) -> None:
    env.quo.faults.fail(1, status=400, route="POST /v1/contacts")

    result = await env.pipeline(max_error_rate=0.05).run()

    assert result.ok
    assert env.quo.faults.injected_failures == 1
    assert env.quo.count("POST", "/v1/contacts", 400) == 1  # not retried
    (dead,) = await env.store.dead_letters.list(TENANT)
    assert dead.category == "quo_validation"
    assert "400" in dead.error
    counts = result.run.counts
    assert (counts.created, counts.failed) == (PEOPLE - 1, 1)
    mappings = await env.mappings()
    assert len(mappings) == PEOPLE - 1
    assert dead.crm_record_id not in mappings
    assert dead.crm_record_id not in env.contacts_by_external_id()


async def test_a_quo_contact_that_does_not_decode_dead_letters_only_its_record(
    env: Env,
) -> None:
    """1. Quo already holds a contact for one person (made outside crmsync) and answers
       it without `defaultFields.firstName`
    2. the initial sync creates that person: 409, then the lookup by externalId returns
       the contact that does not decode
    Result: that one record is dead-lettered as `quo_decode` (a typed error naming the
    call, not a crashed pass), every other person is synced and the pass completes
    without a restart."""
    odd = env.attio.people.ordered()[7].record_id
    contact = env.quo.contacts.create(
        {"externalId": odd, "source": "elsewhere", "defaultFields": {"firstName": "X"}}
    )
    del contact["defaultFields"]["firstName"]
    before = restarts()

    result = await env.pipeline(max_error_rate=0.05).run()

    assert result.ok
    assert restarts() == before
    (dead,) = await env.store.dead_letters.list(TENANT)
    assert (dead.crm_record_id, dead.category) == (odd, "quo_decode")
    assert "GET /contacts" in dead.error and "firstName" in dead.error
    counts = result.run.counts
    assert (counts.fetched, counts.created, counts.failed) == (PEOPLE, PEOPLE - 1, 1)
    assert set(await env.mappings()) == {r.record_id for r in env.attio.people} - {odd}


async def test_a_rejected_create_leaves_no_open_write_intent(env: Env) -> None:
    env.quo.faults.fail(1, status=400, route="POST /v1/contacts")
    assert (await env.pipeline(max_error_rate=0.05).run()).ok
    assert await env.store.intents.pending(TENANT) == []


async def test_exceeding_max_error_rate_fails_the_run(env: Env) -> None:
    env.attio.add_person(notify=False)  # 1 of 61 records fails: 1.6% > 1%

    result = await env.pipeline(max_error_rate=0.01).run()

    assert not result.ok
    assert result.run.state == "failed"
    assert result.run.error is not None
    assert "max_error_rate" in result.run.error
    tenant = await env.store.tenants.get(TENANT)
    assert tenant is not None
    assert tenant.initial_sync_completed_at is None
    assert len(env.contacts_by_external_id()) == PEOPLE  # the good records still synced
    assert await env.cursor() is None  # the pass reached the end


async def test_a_record_failing_again_is_not_dead_lettered_twice(env: Env) -> None:
    env.attio.add_person(notify=False)
    assert (await env.pipeline(max_error_rate=0.05).run()).ok
    assert (await env.pipeline(max_error_rate=0.05).run()).ok
    assert len(await env.store.dead_letters.list(TENANT)) == 1


async def test_a_record_synced_later_resolves_its_dead_letter(env: Env) -> None:
    env.quo.faults.fail(1, status=400, route="POST /v1/contacts")
    assert (await env.pipeline(max_error_rate=0.05).run()).ok
    assert len(env.contacts_by_external_id()) == PEOPLE - 1
    result = await env.pipeline(max_error_rate=0.05).run()
    assert result.ok
    assert len(env.contacts_by_external_id()) == PEOPLE  # the retry did create it
    assert await env.store.dead_letters.list(TENANT) == []


# -- crash safety ----------------------------------------------------------------------


async def test_an_open_write_intent_is_looked_up_and_linked_not_created_again(
    env: Env,
) -> None:
    """1. a previous run recorded "creating X" and "creating Y", then died
    2. X's create had reached Quo (with older content); Y's had not
    3. the pipeline runs.
    Result: X is found by externalId, brought up to date and linked (no POST, no 409);
    Y is looked up, not found, and created; no intent stays open."""
    ordered = env.attio.people.ordered()
    x, y = ordered[3].record_id, ordered[25].record_id
    adapter = env.adapter()
    (x_record,) = await adapter.fetch_by_ids("people", [x])
    wanted = build_contact(adapter.to_person(x_record), "attio")
    stale = ContactInput(default_fields=DefaultFields(first_name="Stale"), external_id=x,
                         source="attio")
    existing = await env.quo_client.create_contact(stale)
    await env.store.intents.begin(TENANT, "people", x, "create", wanted.content_hash)
    await env.store.intents.begin(TENANT, "people", y, "create", "hash-of-y")
    env.quo.reset_stats()

    result = await env.pipeline().run()

    assert result.ok
    await assert_fully_synced(env, result)
    mappings = await env.mappings()
    assert (mappings[x].action, mappings[x].quo_contact_id) == ("linked", existing.id)
    assert mappings[y].action == "created"
    assert env.quo.count("POST", "/v1/contacts", 201) == PEOPLE - 1  # all but X
    assert env.quo.count("POST", "/v1/contacts", 409) == 0
    assert env.quo.count("GET", "/v1/contacts") == 2  # the two lookups by externalId
    assert env.quo.count("PATCH", "/v1/contacts/{id}", 200) == 1  # X's stale content
    contact = env.contacts_by_external_id()[x]
    assert contact["defaultFields"]["firstName"] == wanted.contact.default_fields.first_name
    assert (result.run.counts.linked, result.run.counts.created) == (1, PEOPLE - 1)


async def test_an_interrupted_pass_resumes_from_the_checkpoint(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1. a pass starts; fetching the second page hangs (slow CRM)
    2. the first page is written and its cursor "20" committed
    3. the process is stopped: the pass task is cancelled
    4. a new pipeline runs.
    Result: the old run is closed as interrupted when it is cancelled; the new one starts
    at offset 20, never fetches the first page again, and every person ends up with
    exactly one contact."""
    hang = asyncio.Event()

    async def hang_on_second_page(cursor: str | None) -> None:
        if cursor == "20":
            await hang.wait()  # never set: only cancellation ends it

    first = spy_on_pages(monkeypatch, first_adapter := env.adapter(), hang_on_second_page)
    task = asyncio.create_task(env.pipeline(first_adapter).run())
    await wait_until(lambda: _cursor_is(env, "20"), within=10, message="first page committed")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert first == [None, "20"]
    interrupted = await env.store.runs.latest(TENANT)
    assert interrupted is not None
    assert (interrupted.state, interrupted.error) == ("failed", "interrupted")
    assert len(await env.mappings()) == PAGE
    assert await env.cursor() == "20"

    resumed = spy_on_pages(monkeypatch, second_adapter := env.adapter())
    result = await env.pipeline(second_adapter).run()

    assert result.ok
    assert resumed == ["20", "40", "60"]  # the first page is not fetched again
    assert result.run.counts.fetched == PEOPLE - PAGE
    assert result.run.counts.created == PEOPLE - PAGE
    assert result.run.counts.unchanged == 0
    old = await env.store.runs.get(TENANT, interrupted.id)
    assert old is not None
    assert (old.state, old.error) == ("failed", "interrupted")
    await assert_fully_synced(env, result)
    assert env.quo.count("POST", "/v1/contacts", 201) == PEOPLE
    assert env.quo.count("POST", "/v1/contacts", 409) == 0


async def test_a_crash_after_committed_pages_restarts_the_pass_from_the_checkpoint(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1. the pass writes pages 1 and 2 and commits cursor "40"
    2. the CRM adapter raises an unexpected error fetching page 3 (an actor crash)
    3. the pipeline restarts the pass within its restart budget.
    Result: the pass resumes at offset 40, the run completes, one restart is counted."""
    crashed = False

    async def crash_once_at_40(cursor: str | None) -> None:
        nonlocal crashed
        if cursor == "40" and not crashed:
            await wait_until(lambda: _cursor_is(env, "40"), within=10, message="cursor 40")
            crashed = True
            raise RuntimeError("unexpected CRM payload")

    adapter = env.adapter()
    cursors = spy_on_pages(monkeypatch, adapter, crash_once_at_40)
    before = restarts()

    result = await env.pipeline(adapter).run()

    assert result.ok
    assert cursors == [None, "20", "40", "40", "60"]
    assert restarts() == before + 1
    await assert_fully_synced(env, result)
    counts = result.run.counts
    assert (counts.fetched, counts.created, counts.unchanged) == (PEOPLE, PEOPLE, 0)
    assert env.quo.count("POST", "/v1/contacts", 201) == PEOPLE


async def test_a_crash_mid_page_restarts_without_duplicate_contacts(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1. the first page is handed on and its creates are in flight
    2. fetching the second page raises at once: all four actors are cancelled mid-write
    3. the pass restarts from the last committed checkpoint (none, or "20").
    Result: every person has exactly one contact (in-flight creates are linked through
    their write intents), the run completes and one restart is counted."""
    crashed = False

    async def crash_once_at_20(cursor: str | None) -> None:
        nonlocal crashed
        if cursor == "20" and not crashed:
            crashed = True
            raise RuntimeError("connection reset by CRM")

    adapter = env.adapter()
    cursors = spy_on_pages(monkeypatch, adapter, crash_once_at_20)
    before = restarts()

    result = await env.pipeline(adapter).run()

    assert result.ok
    assert cursors[:2] == [None, "20"]
    assert cursors[-3:] == ["20", "40", "60"]
    assert restarts() == before + 1
    await assert_fully_synced(env, result)
    assert env.quo.count("POST", "/v1/contacts", 409) == 0


async def test_a_restarted_pass_leaves_its_task_cancellable(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1. fetching the second page raises once: the pass crashes and is restarted
    2. the restarted pass completes.
    Result: the task that ran the pipeline has no cancellation left pending
    (`cancelling() == 0`). On Python 3.11 a TaskGroup whose child crashes while the
    group waits in `__aexit__` cancels its parent and never takes that back; the next
    Ctrl-C then looked like a second cancellation, and `asyncio.Runner` printed a
    `CancelledError` traceback instead of exiting 130."""
    crashed = False

    async def crash_once_at_20(cursor: str | None) -> None:
        nonlocal crashed
        if cursor == "20" and not crashed:
            crashed = True
            raise RuntimeError("connection reset by CRM")

    adapter = env.adapter()
    spy_on_pages(monkeypatch, adapter, crash_once_at_20)

    async def run_and_count() -> tuple[SyncResult, int]:
        result = await env.pipeline(adapter).run()
        task = asyncio.current_task()
        assert task is not None
        return result, task.cancelling()

    result, cancelling = await asyncio.create_task(run_and_count())
    assert crashed and result.ok
    assert cancelling == 0


async def test_a_cancelled_pass_closes_its_run_as_interrupted_with_what_it_settled(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1. a pass starts; fetching the third page hangs, and the 40th Quo create (the
       last record of page 2) hangs too
    2. page 1 commits its cursor "20" and 20 counts; page 2 settles 19 of its 20
    3. the process is stopped: the pass task is cancelled.
    Result: the run is closed at once as `failed` with error `interrupted`, and its
    counts are what was written: 39 fetched and created, not just the 20 of the
    committed page; the cursor stays "20" (page 2 is fetched again next time) and
    there are 39 mappings."""
    hang = asyncio.Event()

    async def hang_on_third_page(cursor: str | None) -> None:
        if cursor == "40":
            await hang.wait()  # never set: only cancellation ends it

    adapter = env.adapter()
    spy_on_pages(monkeypatch, adapter, hang_on_third_page)
    creates = 0
    real_create = env.quo_client.create_contact

    async def create_contact(contact: ContactInput, **options: Any) -> Any:
        nonlocal creates
        creates += 1
        if creates >= 2 * PAGE:
            await hang.wait()
        return await real_create(contact, **options)

    monkeypatch.setattr(env.quo_client, "create_contact", create_contact)
    pipeline = env.pipeline(adapter, writer_concurrency=4)
    task = asyncio.create_task(pipeline.run())

    async def settled_39() -> bool:
        return len(await env.mappings()) == 2 * PAGE - 1 and await env.cursor() == "20"

    await wait_until(settled_39, within=10, message="39 mappings, cursor 20")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    run = await env.store.runs.latest(TENANT)
    assert run is not None
    assert (run.state, run.error) == ("failed", "interrupted")
    assert (run.counts.fetched, run.counts.created) == (2 * PAGE - 1, 2 * PAGE - 1)
    assert await env.cursor() == "20"
    assert len(await env.mappings()) == 2 * PAGE - 1


async def test_a_pass_that_keeps_crashing_spends_the_budget_and_fails_the_run(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1. every fetch of the second page raises
    2. the pass is restarted twice (budget: 2 restarts within 30 s)
    3. the third crash exceeds the budget.
    Result: the spent budget (naming the last error) reaches the caller; the run is
    failed with that error (the tenant's state is the runtime's business)."""

    async def always_crash(cursor: str | None) -> None:
        if cursor == "20":
            raise RuntimeError("CRM is broken")

    adapter = env.adapter()
    cursors = spy_on_pages(monkeypatch, adapter, always_crash)
    before = restarts()
    pipeline = env.pipeline(adapter, budget=RestartBudget(max_restarts=2, within_seconds=30))

    with pytest.raises(RestartBudgetSpentError, match="last error: RuntimeError: CRM is broken"):
        await pipeline.run()

    assert cursors.count("20") == 3
    assert restarts() == before + 2
    run = await env.store.runs.latest(TENANT)
    assert run is not None
    assert run.state == "failed"
    assert run.error == "RuntimeError: CRM is broken"


async def test_a_restarted_pass_does_not_count_records_twice(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1. one page holds all 60 people and one that cannot be transformed
    2. fetching the next page raises before anything was written (an actor crash)
    3. the pass restarts from the top.
    Result: the run counts 61 fetched records and fails: 1 of 61 is above 1%."""
    env.attio.add_person(notify=False)
    crashed = False

    async def crash_once(cursor: str | None) -> None:
        nonlocal crashed
        if cursor is not None and not crashed:
            crashed = True
            raise RuntimeError("unexpected CRM payload")

    adapter = env.adapter()
    cursors = spy_on_pages(monkeypatch, adapter, crash_once)

    result = await env.pipeline(adapter, page_size=PEOPLE + 1, max_error_rate=0.01).run()

    assert cursors == [None, "61", None, "61"]
    assert result.run.counts.fetched == PEOPLE + 1
    assert not result.ok


# -- the foreground command's wiring -------------------------------------------------


async def test_sync_tenant_runs_the_pipeline_from_the_config(env: Env) -> None:
    """`crmsync sync` builds clients and options from the config: page size, max error
    rate and the Quo rate limit come from there, and a second run is incremental."""
    text = f"""
[daemon]
max_error_rate = 0.05

[quo]
base_url = "{env.quo_url}"
requests_per_second = 500

[[tenants]]
id = "{TENANT}"
crm = "attio"
quo_api_key = "env:QUO_KEY"
crm_api_key = "env:ATTIO_KEY"
crm_base_url = "{env.attio_url}"
page_size = 25
"""
    config = parse_config(text, "test.toml", {"QUO_KEY": QUO_KEY, "ATTIO_KEY": "attio-test-key"})
    tenant = config.tenant(TENANT)
    assert tenant is not None
    empty = env.attio.add_person(notify=False)
    settled: list[str] = []

    async with open_resources(config) as resources:
        result = await sync_tenant(resources, env.store, tenant, on_settled=settled.append)
        assert result.ok  # 1 of 61 failed: within 5%
        assert result.run.kind == "initial"
        assert len(settled) == PEOPLE + 1
        assert settled.count("failed") == 1
        (dead,) = await env.store.dead_letters.list(TENANT)
        assert (dead.crm_record_id, dead.category) == (empty, "empty_person")
        assert len(env.contacts_by_external_id()) == PEOPLE
        env.quo.reset_stats()
        again = await sync_tenant(resources, env.store, tenant)

    assert again.ok
    assert again.run.kind == "incremental"
    assert env.quo.stats.total_requests == 0
    assert again.run.counts.unchanged == PEOPLE


async def test_bulk_checks_never_commit_a_cursor_past_unmapped_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1. 600 Attio people, pages of 20, bulk creates in batches of 30 (a batch spans
       pages, and its contacts are found by separate checks while later pages settle)
    2. every cursor commit is watched: how many records are mapped at that moment
    Result: no cursor is ever committed ahead of the records it covers, no page is
    committed twice (the run counts each person once), and the pass never crashes.
    (Before: bulk checks committed pages concurrently with the main loop; a page went
    in twice, the next one was dropped, and a KeyError restarted the pass.)"""
    quo = QuoSimConfig(api_keys=[QUO_KEY], requests_per_second=500,
                       bulk_visibility_delay=(0.05, 0.4))
    async with pipeline_env(tmp_path, people=600, quo=quo) as env:
        commits: list[tuple[int, int]] = []
        commit_page = env.store.checkpoints.commit_page

        async def watched(
            tenant: str, crm_object: str, value: str, *, run_id: int, counts: dict[str, int]
        ) -> None:
            if value.isdigit():
                mapped = len(await env.mappings())
                commits.append((int(value), mapped))
            await commit_page(tenant, crm_object, value, run_id=run_id, counts=counts)

        monkeypatch.setattr(env.store.checkpoints, "commit_page", watched)
        before = restarts()
        result = await env.pipeline(
            bulk_batch_size=30, bulk=BulkOptions(first_check_after=0.05, deadline=20),
        ).run()

        assert result.ok
        assert restarts() == before
        counts = result.run.counts
        assert (counts.fetched, counts.created, counts.failed) == (600, 600, 0)
        assert [offset for offset, _ in commits] == list(range(20, 601, 20)), commits
        ahead = [(offset, mapped) for offset, mapped in commits if mapped < offset]
        assert not ahead, f"cursor committed past unmapped records: {ahead}"
        assert len(await env.mappings()) == 600
