"""The management API's Metakocka routes (INTERFACE §9), served for real on 127.0.0.1.

The tenants are the daemon's own `TenantRuntime`s (built from the config, as `crmsync
run` builds them, not started), over a real SQLite state database and the Attio, Quo
and Metakocka simulators as real servers. Tenant `acme` has no Metakocka link, tenant
`mk` has one (company 16 of the Metakocka simulator, seeded with partners).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from crmsync.config import (
    Config,
    DaemonConfig,
    HttpConfig,
    MetakockaConfig,
    QuoConfig,
    Secret,
    TenantConfig,
)
from crmsync.sim.attio import AttioSim, AttioSimConfig, run_attio_simulator
from crmsync.sim.metakocka import CompanyConfig, MetakockaSimConfig, run_metakocka_simulator
from crmsync.sim.metakocka.state import MetakockaSim
from crmsync.sim.quo import QuoSimConfig, run_quo_simulator
from crmsync.store import Store, open_store
from crmsync.tenant.resources import open_resources
from crmsync.tenant.runtime import TenantRuntime
from crmsync.web.api import MAX_IDS
from crmsync.web.app import build_app, serve
from crmsync.web.health import Health

TOKEN = "mk-admin-TOKEN-0123456789abcdef"
PLAIN, LINKED = "acme", "mk"
COMPANY, MK_KEY = "16", "mk-key-never-shown-16"
ATTIO_KEY, QUO_KEY = "attio-key-web-mk", "quo-key-web-mk"
PEOPLE, PARTNERS = 4, 8
#: every Metakocka route with a valid request
CALLS: list[tuple[str, str, bytes | None]] = [
    ("POST", "metakocka/push", b'{"crmRecordIds": ["a"]}'),
    ("POST", "metakocka/pull", b'{"mkIds": ["123"]}'),
    ("GET", "metakocka/unsynced", None),
    ("GET", "metakocka/mappings", None),
    ("GET", "metakocka/mappings?mkId=123", None),
    ("GET", "metakocka/mappings?crmRecordId=a", None),
]
BAD_AUTH: list[str | None] = [None, "", "Bearer", "Bearer wrong", f"Bearer {TOKEN}x",
                              f"Basic {TOKEN}", TOKEN]


@dataclass
class Env:
    base: str
    http: aiohttp.ClientSession
    store: Store
    attio: AttioSim
    mk: MetakockaSim
    runtimes: dict[str, TenantRuntime]

    async def call(
        self, method: str, path: str, *, body: bytes | None = None,
        auth: str | None = f"Bearer {TOKEN}",
    ) -> tuple[int, Any, str]:
        headers = {} if auth is None else {"Authorization": auth}
        async with self.http.request(method, self.base + path, data=body,
                                     headers=headers) as response:
            text = await response.text()
            return response.status, json.loads(text) if text else None, text

    async def post(self, path: str, field: str, ids: list[str],
                   tenant: str = LINKED) -> tuple[int, Any]:
        status, body, _ = await self.call(
            "POST", f"/api/tenants/{tenant}/{path}", body=json.dumps({field: ids}).encode())
        return status, body

    def mk_calls(self) -> int:
        return self.mk.stats.count(None, company_id=COMPANY)

    def partner_ids(self) -> list[str]:
        return sorted(self.mk.companies[COMPANY].partners, key=int)


def tenant(tenant_id: str, attio_url: str, mk_url: str | None) -> TenantConfig:
    return TenantConfig(
        id=tenant_id, crm="attio", crm_base_url=attio_url,
        quo_api_key=Secret("env:QUO", QUO_KEY), crm_api_key=Secret("env:ATTIO", ATTIO_KEY),
        metakocka=None if mk_url is None else MetakockaConfig(
            company_id=COMPANY, secret_key=Secret("env:MK", MK_KEY), base_url=mk_url),
    )


@contextlib.asynccontextmanager
async def mk_env(tmp_path: Path) -> AsyncIterator[Env]:
    sim_config = MetakockaSimConfig(companies=[
        CompanyConfig(COMPANY, MK_KEY, partners=PARTNERS, calls_per_window=100_000)])
    async with (
        run_attio_simulator(config=AttioSimConfig(api_keys=[ATTIO_KEY], people=PEOPLE))
        as (attio, attio_url),
        run_quo_simulator(config=QuoSimConfig(api_keys=[QUO_KEY], requests_per_second=500))
        as (_, quo_url),
        run_metakocka_simulator(config=sim_config) as (mk, mk_url),
    ):
        config = Config(
            daemon=DaemonConfig(state_path=str(tmp_path / "state.db")),
            http=HttpConfig(admin_token=Secret("env:ADMIN", TOKEN)),
            quo=QuoConfig(base_url=quo_url),
            tenants=(tenant(PLAIN, attio_url, None), tenant(LINKED, attio_url, mk_url)),
        )
        async with (
            open_store(config.daemon.state_path) as store,
            open_resources(config) as resources,
            aiohttp.ClientSession() as http,
        ):
            runtimes: dict[str, TenantRuntime] = {}
            for t in config.tenants:
                await store.tenants.upsert(t.id, "attio")
                runtimes[t.id] = TenantRuntime(t, resources=resources, store=store,
                                               health=Health())
            app = build_app(
                targets=lambda _: None, store=store, config=lambda: config, health=Health(),
                max_body_bytes=1024 * 1024, managed=runtimes.get,
            )
            async with serve(app, "127.0.0.1", 0) as port:
                yield Env(f"http://127.0.0.1:{port}", http, store, attio, mk, runtimes)


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async with mk_env(tmp_path) as running:
        yield running


# -- the checks before the handler --------------------------------------------------------


async def test_every_metakocka_route_is_401_without_or_with_a_wrong_token(env: Env) -> None:
    """Both tenants, every route, every bad Authorization header: 401, and neither
    Metakocka nor the store is touched; the token is never in the answer."""
    for tenant_id in (PLAIN, LINKED, "ghost"):
        for method, path, body in CALLS:
            for auth in BAD_AUTH:
                status, answer, text = await env.call(
                    method, f"/api/tenants/{tenant_id}/{path}", body=body, auth=auth)
                assert status == 401, (tenant_id, path, auth, text)
                assert answer == {"error": "missing or wrong bearer token"}
                assert TOKEN not in text
    assert env.mk_calls() == 0
    assert [link async for link in env.store.mk_links.iter_all(LINKED)] == []


@pytest.mark.parametrize(("method", "path", "body"), CALLS)
async def test_unknown_tenant_is_404_and_a_tenant_without_a_link_409(
    env: Env, method: str, path: str, body: bytes | None
) -> None:
    status, answer, _ = await env.call(method, f"/api/tenants/ghost/{path}", body=body)
    assert (status, answer) == (404, {"error": "unknown tenant"})
    status, answer, _ = await env.call(method, f"/api/tenants/{PLAIN}/{path}", body=body)
    assert status == 409
    assert "no Metakocka link" in answer["error"]
    assert env.mk_calls() == 0


@pytest.mark.parametrize(("method", "path", "body"), [
    ("POST", "metakocka/push", b"not json"),
    ("POST", "metakocka/push", b'{"mkIds": ["1"]}'),  # the pull's field
    ("POST", "metakocka/push", b'{"crmRecordIds": []}'),
    ("POST", "metakocka/push", b'{"crmRecordIds": [""]}'),
    ("POST", "metakocka/pull", b'{"mkIds": "1"}'),
    ("POST", "metakocka/pull", b'{"mkIds": [1]}'),
    ("POST", "metakocka/pull", b'{"mkIds": ["1"], "more": 1}'),
    ("POST", "metakocka/pull",
     json.dumps({"mkIds": [str(i) for i in range(MAX_IDS + 1)]}).encode()),
    ("GET", "metakocka/mappings?name=x", None),
    ("GET", "metakocka/mappings?mkId=", None),
    ("GET", "metakocka/unsynced?mkId=1", None),
])
async def test_a_bad_body_or_query_is_400(
    env: Env, method: str, path: str, body: bytes | None
) -> None:
    status, answer, _ = await env.call(method, f"/api/tenants/{LINKED}/{path}", body=body)
    assert status == 400, answer
    assert "\n" not in answer["error"]
    assert env.mk_calls() == 0


# -- the handlers --------------------------------------------------------------------------


async def test_pull_of_3_real_ids_and_1_unknown_aggregates_4_3_1(env: Env) -> None:
    """3 seeded partners + 1 id Metakocka does not have: total 4, succeeded 3, failed 1
    (`not_found`); each pulled partner is a new CRM person, named in `crmRecordId`, and
    paired (the mappings route finds it by `mkId` and by `crmRecordId`)."""
    real = env.partner_ids()[:3]
    people_before = len(list(env.attio.people.ordered()))
    status, report = await env.post("metakocka/pull", "mkIds", [*real, "99999999"])
    assert status == 200, report
    assert (report["total"], report["succeeded"], report["failed"]) == (4, 3, 1)
    by_mk = {r["mkId"]: r for r in report["results"]}
    assert by_mk["99999999"]["ok"] is False
    assert by_mk["99999999"]["error"]["category"] == "not_found"
    assert by_mk["99999999"]["crmRecordId"] is None
    for mk_id in real:
        result = by_mk[mk_id]
        assert (result["ok"], result["action"], result["error"]) == (True, "imported", None)
        assert result["crmRecordIds"] == [result["crmRecordId"]]
    assert len(list(env.attio.people.ordered())) == people_before + 3

    mk_id = real[0]
    crm_id = by_mk[mk_id]["crmRecordId"]
    for query in (f"mkId={mk_id}", f"crmRecordId={crm_id}", f"crmRecordId={crm_id}&mkId={mk_id}"):
        status, answer, _ = await env.call(
            "GET", f"/api/tenants/{LINKED}/metakocka/mappings?{query}")
        assert status == 200
        [row] = answer["mappings"]
        assert (row["crmRecordId"], row["mkId"], row["direction"]) == (
            crm_id, mk_id, "from_metakocka")
        assert row["lastSyncedAt"].endswith("Z") and row["contentHash"]
    status, answer, _ = await env.call("GET", f"/api/tenants/{LINKED}/metakocka/mappings")
    assert {row["mkId"] for row in answer["mappings"]} == set(real)
    status, answer, _ = await env.call(
        "GET", f"/api/tenants/{LINKED}/metakocka/mappings?mkId=99999999")
    assert (status, answer) == (200, {"mappings": []})
    # the failure is a dead letter with its category (`crmsync errors`)
    letters = await env.store.dead_letters.list(LINKED)
    assert [(d.crm_record_id, d.category) for d in letters] == [("99999999", "metakocka_not_found")]


async def test_push_answers_the_partner_of_each_person(env: Env) -> None:
    """Two CRM people and an id the CRM does not have: 3/2/1, each pushed person with the
    `mkId` of its new partner; a second push of the same people makes no write."""
    people = [p.record_id for p in env.attio.people.ordered()][:2]
    partners_before = len(env.mk.companies[COMPANY].partners)
    status, report = await env.post("metakocka/push", "crmRecordIds", [*people, "nobody"])
    assert status == 200, report
    assert (report["total"], report["succeeded"], report["failed"]) == (3, 2, 1)
    by_crm = {r["crmRecordId"]: r for r in report["results"]}
    assert by_crm["nobody"]["error"]["category"] == "not_found"
    assert by_crm["nobody"]["mkId"] is None
    mk_ids = {by_crm[p]["mkId"] for p in people}
    assert None not in mk_ids
    assert mk_ids <= set(env.mk.companies[COMPANY].partners)
    assert len(env.mk.companies[COMPANY].partners) > partners_before

    writes = env.mk.stats.count("add_partner", company_id=COMPANY) + env.mk.stats.count(
        "update_partner", company_id=COMPANY)
    status, again = await env.post("metakocka/push", "crmRecordIds", people)
    assert (again["total"], again["succeeded"], again["failed"]) == (2, 2, 0)
    assert {r["action"] for r in again["results"]} == {"unchanged"}
    assert env.mk.stats.count("add_partner", company_id=COMPANY) + env.mk.stats.count(
        "update_partner", company_id=COMPANY) == writes


async def test_unsynced_lists_the_discovered_partners(env: Env) -> None:
    status, answer, _ = await env.call("GET", f"/api/tenants/{LINKED}/metakocka/unsynced")
    assert (status, answer) == (200, {"partners": []})
    await env.store.mk_unsynced.upsert(LINKED, "501", name="Trgovina d.o.o.",
                                       email="info@trgovina.si", phone="+38640111222",
                                       doc_type="sales_order")
    await env.store.mk_unsynced.upsert(PLAIN, "777", name="Not this tenant's")
    status, answer, _ = await env.call("GET", f"/api/tenants/{LINKED}/metakocka/unsynced")
    assert status == 200
    [row] = answer["partners"]
    assert {k: row[k] for k in ("mkId", "name", "email", "phone")} == {
        "mkId": "501", "name": "Trgovina d.o.o.", "email": "info@trgovina.si",
        "phone": "+38640111222"}
    assert row["discoveredAt"].endswith("Z")


async def test_a_push_beside_the_pushers_sweep_adds_each_partner_once(env: Env) -> None:
    """The people reach Quo (which makes them due for the link's sweep); the API push of
    the same people runs while the sweep pushes them: one partner each all the same."""
    people = [p.record_id for p in env.attio.people.ordered()]
    runtime = env.runtimes[LINKED]
    assert runtime.metakocka is not None
    report = await runtime.sync_records(people)
    assert report.succeeded == len(people)
    seeded = set(env.mk.companies[COMPANY].partners)  # a lookup may pair with one of these
    (status, pushed), _ = await asyncio.gather(
        env.post("metakocka/push", "crmRecordIds", people), runtime.metakocka.sweep())
    assert status == 200 and pushed["succeeded"] == len(people), pushed
    names = Counter(p.customer for p in env.mk.companies[COMPANY].partners.values())
    assert env.mk.stats.count("add_partner", company_id=COMPANY) == len(
        {r["mkId"] for r in pushed["results"]} - seeded), names
