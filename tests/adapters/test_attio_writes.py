"""Person writes: the Attio adapter's `update_person` / `create_person` against the
Attio simulator on a real socket, and the simulator's strict record-write routes.

The adapter sends PATCH for single-value changes and PUT when emails or phones are
replaced; companies are referenced by the oldest company of that name, created when
missing; what the adapter returns is the record as Attio holds it after the write. The
simulator answers malformed values with Attio's error bodies and fires `record.*`
webhooks for API writes, with the API token as the actor.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from support.adapter_http import served

from crmsync.adapters.attio import AttioAdapter
from crmsync.adapters.base import PersonChanges
from crmsync.adapters.errors import CrmConflictError, CrmNotFoundError, CrmRejectedError
from crmsync.net.retry import RetryPolicy
from crmsync.sim.attio import AttioSim, AttioSimConfig, run_attio_simulator

KEY = "attio-test-key"
PERSON_ROUTE = "/v2/objects/{object}/records/{record_id}"
CREATE_ROUTE = "/v2/objects/{object}/records"


@dataclass
class Env:
    sim: AttioSim
    base: str
    adapter: AttioAdapter
    http: aiohttp.ClientSession
    hooks: list[dict[str, Any]]

    def requests(self) -> dict[str, int]:
        return dict(self.sim.stats.requests)

    async def raw(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        async with self.http.request(method, self.base + path, json=body) as response:
            return response.status, await response.json()


@contextlib.asynccontextmanager
async def env() -> AsyncIterator[Env]:
    hooks: list[dict[str, Any]] = []

    async def receive(request: web.Request) -> web.Response:
        hooks.append(json.loads(await request.read()))
        return web.Response()

    app = web.Application()
    app.router.add_post("/hook", receive)
    async with (
        served(app) as root,
        run_attio_simulator(config=AttioSimConfig(api_keys=[KEY])) as (sim, base),
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {KEY}"}) as http,
    ):
        adapter = AttioAdapter(http, api_key=KEY, base_url=base, timeout=5,
                               retry=RetryPolicy(max_retries=0))
        await adapter.ensure_webhook(f"{root}/hook")
        yield Env(sim, base, adapter, http, hooks)


async def test_update_person_writes_each_field_and_returns_the_record() -> None:
    """1. Ada exists with a name, one email and one phone; no company "Engines" exists
    2. update_person sets a new last name, title, company, two emails, another phone
    Result: one query and one create for the company, one PUT for the person; the
    returned record reads back as the new values (company name resolved, E.164)."""
    async with env() as e:
        ada = e.sim.add_person(first_name="Ada", last_name="L", emails=["ada@x.com"],
                               phones=["+14155552671"], notify=False)
        record = await e.adapter.update_person("people", ada, PersonChanges(
            first_name="Ada", last_name="Lovelace", job_title="Countess", company="Engines",
            emails=("ada@x.com", "lady@x.com"), phones=("+14155552672",),
        ))
        person = e.adapter.to_person(record)
        assert (person.first_name, person.last_name, person.full_name) == (
            "Ada", "Lovelace", "Ada Lovelace")
        assert (person.job_title, person.company) == ("Countess", "Engines")
        assert [m.value for m in person.emails] == ["ada@x.com", "lady@x.com"]
        assert [p.e164 for p in person.phones] == ["+14155552672"]
        assert e.sim.person_phones(ada) == ["+14155552672"]  # PUT replaced the list
        requests = e.requests()
        assert requests[f"PUT {PERSON_ROUTE} 200"] == 1
        assert requests[f"POST {CREATE_ROUTE} 200"] == 1  # the company
        # A second write naming the same company finds it (no second company).
        await e.adapter.update_person("people", ada, PersonChanges(company="Engines"))
        assert len(e.sim.companies) == 1
        assert e.requests()[f"PATCH {PERSON_ROUTE} 200"] == 1


async def test_single_value_changes_go_by_patch_and_none_clears() -> None:
    async with env() as e:
        company = e.sim.write_record("companies", None, {"name": [{"value": "Engines"}]})
        ada = e.sim.add_person(first_name="Ada", job_title="CTO", company_id=company.record_id,
                               emails=["ada@x.com"], notify=False)
        record = await e.adapter.update_person("people", ada, PersonChanges(
            job_title=None, company=None, first_name=None, last_name=None,
        ))
        person = e.adapter.to_person(record)
        assert (person.job_title, person.company, person.first_name) == (None, None, None)
        assert [m.value for m in person.emails] == ["ada@x.com"]  # untouched
        assert e.requests() == {
            f"PATCH {PERSON_ROUTE} 200": 1, "GET /v2/webhooks 200": 1,
            "GET /v2/objects/{object} 200": 1, "POST /v2/webhooks 200": 1,
        }


async def test_create_person_and_its_webhook_names_the_api_token() -> None:
    async with env() as e:
        record = await e.adapter.create_person("people", PersonChanges(
            first_name="Grace", last_name="Hopper", phones=("+14155552673",),
            emails=("grace@navy.example",), company="Navy",
        ))
        person = e.adapter.to_person(record)
        assert (person.first_name, person.last_name, person.company) == ("Grace", "Hopper", "Navy")
        assert record.record_id in e.sim.people
        await e.sim.deliver_pending()
        created = [h["events"][0] for h in e.hooks
                   if h["events"][0]["id"]["record_id"] == record.record_id]
        assert [c["event_type"] for c in created] == ["record.created"]
        assert created[0]["actor"] == {"type": "api-token", "id": e.sim.api_token_id}
        # An update fires one record.updated per changed attribute.
        await e.adapter.update_person("people", record.record_id,
                                      PersonChanges(job_title="Rear Admiral"))
        await e.sim.deliver_pending()
        updated = [h["events"][0] for h in e.hooks
                   if h["events"][0]["event_type"] == "record.updated"]
        assert len(updated) == 1
        assert updated[0]["id"]["attribute_id"] == e.sim.workspace.attribute_id(
            "people", "job_title")


async def test_refused_writes_are_typed_errors() -> None:
    async with env() as e:
        ada = e.sim.add_person(first_name="Ada", emails=["ada@x.com"], notify=False)
        e.sim.add_person(first_name="Bob", emails=["bob@x.com"], notify=False)
        with pytest.raises(CrmRejectedError, match="phone_numbers"):
            await e.adapter.update_person("people", ada, PersonChanges(phones=("4155552671",)))
        with pytest.raises(CrmConflictError, match="uniqueness_conflict"):
            await e.adapter.update_person("people", ada, PersonChanges(emails=("bob@x.com",)))
        with pytest.raises(CrmNotFoundError):
            await e.adapter.update_person("people", "no-such-record", PersonChanges(
                job_title="x"))
        assert e.sim.person(ada).active("email_addresses")[0]["email_address"] == "ada@x.com"


@pytest.mark.parametrize(("values", "status", "code"), [
    ({"nickname": "Ada"}, 400, "value_not_found"),
    ({"created_at": "2020-01-01T00:00:00Z"}, 400, "immutable_value"),
    ({"name": {"first_name": "Ada", "last_name": "L"}}, 400, "validation_type"),
    ({"email_addresses": ["not an email"]}, 400, "validation_type"),
    ({"phone_numbers": ["+1 555"]}, 400, "validation_type"),
    ({"job_title": ["CTO", "CEO"]}, 400, "validation_type"),
    ({"company": [{"target_object": "companies", "target_record_id": "nope"}]}, 400,
     "value_not_found"),
    ({"company": [{"target_object": "people", "target_record_id": "x"}]}, 400,
     "validation_type"),
])
async def test_the_simulator_refuses_bad_values_in_attios_shape(
    values: dict[str, Any], status: int, code: str
) -> None:
    async with env() as e:
        ada = e.sim.add_person(first_name="Ada", notify=False)
        before = e.sim.render(e.sim.person(ada))
        for method, path in (("PATCH", f"/objects/people/records/{ada}"),
                             ("PUT", f"/objects/people/records/{ada}"),
                             ("POST", "/objects/people/records")):
            got_status, body = await e.raw(method, path, {"data": {"values": values}})
            assert got_status == status, (method, body)
            assert set(body) == {"status_code", "type", "code", "message"}
            assert (body["status_code"], body["type"], body["code"]) == (
                status, "invalid_request_error", code)
        assert e.sim.render(e.sim.person(ada)) == before
        assert len(e.sim.people) == 1


async def test_patch_adds_to_lists_put_replaces_them_and_bodies_are_strict() -> None:
    async with env() as e:
        ada = e.sim.add_person(first_name="Ada", phones=["+14155552671"], notify=False)
        path = f"/objects/people/records/{ada}"
        status, _ = await e.raw("PATCH", path, {"data": {"values": {
            "phone_numbers": [{"original_phone_number": "(415) 555-2672", "country_code": "US"}],
        }}})
        assert status == 200
        assert sorted(e.sim.person_phones(ada)) == ["+14155552671", "+14155552672"]
        status, body = await e.raw("PUT", path, {"data": {"values": {
            "phone_numbers": ["+14155552673"], "name": "Lovelace, Ada"}}})
        assert status == 200
        assert e.sim.person_phones(ada) == ["+14155552673"]
        (name,) = [v for v in body["data"]["values"]["name"] if v["active_until"] is None]
        assert (name["first_name"], name["last_name"]) == ("Ada", "Lovelace")
        for bad in ({"values": {}}, {"data": {"values": {}, "extra": 1}}, {"data": {"values": []}}):
            status, body = await e.raw("PATCH", path, bad)
            assert (status, body["code"]) == (400, "validation_type"), bad
