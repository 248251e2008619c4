"""The management API (INTERFACE §9), served for real on 127.0.0.1.

The listener is `build_app` + `serve` as the daemon runs it; its tenants are
`ManagedTenant`s over real collaborators: a SQLite state database, the Attio simulator
(through `AttioAdapter`) and the Quo simulator (through `QuoClient`), both real servers.
Tenant `acme` has no Metakocka link, tenant `mk` has one.

Order of the checks, whatever the path or method: the bearer token (401) → the path
(404) → the tenant (404) → the method (405) → the body or query (400) → the Metakocka
link (409) → the handler (the `/metakocka/…` handlers on a linked tenant:
`tests/web/test_api_metakocka.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from actors.harness import ATTIO_KEY, QUO_KEY, attio_env, quo_env
from prometheus_client import REGISTRY

from crmsync.config import (
    Config,
    DaemonConfig,
    HttpConfig,
    MetakockaConfig,
    Secret,
    TenantConfig,
)
from crmsync.domain.mapping_rows import MappingRow
from crmsync.net.ratelimit import Lane
from crmsync.services.contact_writes import QuoContactSync, RecordWriter
from crmsync.services.crm_changes import CrmChangeHandler
from crmsync.services.on_demand import OnDemandSync, SyncReport
from crmsync.store import Store, open_store
from crmsync.web.api import MAX_IDS, authorised
from crmsync.web.app import build_app, serve
from crmsync.web.health import Health

TOKEN = "admin-TOKEN-s3cr3t-0123456789abcdef"
TENANT = "acme"
LINKED = "mk"
#: every route of §9, one path each
ROUTES = [
    ("POST", "sync"), ("GET", "mappings"), ("POST", "metakocka/push"),
    ("POST", "metakocka/pull"), ("GET", "metakocka/unsynced"), ("GET", "metakocka/mappings"),
]
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
#: paths that match no route, and paths of unknown tenants
OTHER_PATHS = [
    "/api", "/api/", "/api/nope", "/api/tenants", "/api/tenants/", f"/api/tenants/{TENANT}",
    f"/api/tenants/{TENANT}/nope", "/api/tenants/ghost/sync", "/api/tenants/ghost/mappings",
    f"/api/tenants/{TENANT}/sync/extra",
]
BAD_AUTH: list[dict[str, str]] = [
    {},
    {"Authorization": ""},
    {"Authorization": "Bearer"},
    {"Authorization": "Bearer "},
    {"Authorization": "Bearer wrong-token"},
    {"Authorization": f"Bearer {TOKEN[:-1]}"},  # a prefix
    {"Authorization": f"Bearer {TOKEN}x"},  # one more character
    {"Authorization": f"Basic {TOKEN}"},  # another scheme
    {"Authorization": TOKEN},  # no scheme
    {"Authorization": f"Token {TOKEN}"},
    {"X-Api-Key": TOKEN},  # the right token, in the wrong header
]


@dataclass
class Managed:
    """A `ManagedTenant` over real collaborators (the daemon's is `TenantRuntime`)."""

    config: TenantConfig
    on_demand: OnDemandSync

    @property
    def id(self) -> str:
        return self.config.id

    async def sync_records(self, record_ids: Sequence[str]) -> SyncReport:
        return await self.on_demand.sync(record_ids)


@dataclass
class Api:
    base: str
    http: aiohttp.ClientSession
    store: Store
    attio: Any  # actors.harness.Attio
    quo: Any  # actors.harness.Quo

    async def call(
        self, method: str, path: str, *, body: bytes | None = None,
        headers: dict[str, str] | None = None, token: str | None = TOKEN,
    ) -> tuple[int, Any, str]:
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        async with self.http.request(method, self.base + path, data=body, headers=sent) as r:
            text = await r.text()
            return r.status, json.loads(text) if text else None, text

    async def sync(self, ids: list[Any], tenant: str = TENANT) -> tuple[int, Any]:
        status, body, _ = await self.call(
            "POST", f"/api/tenants/{tenant}/sync", body=json.dumps({"crmRecordIds": ids}).encode()
        )
        return status, body


def tenant_config(tenant_id: str, *, linked: bool) -> TenantConfig:
    return TenantConfig(
        id=tenant_id, crm="attio",
        quo_api_key=Secret("env:QUO", QUO_KEY), crm_api_key=Secret("env:ATTIO", ATTIO_KEY),
        metakocka=MetakockaConfig(
            company_id="4321", secret_key=Secret("env:MK", "mk-secret-never-shown")
        ) if linked else None,
    )


@contextlib.asynccontextmanager
async def running_api(
    tmp_path: Path, *, token: str | None = TOKEN, concurrency: int = 4
) -> AsyncIterator[Api]:
    config = Config(
        daemon=DaemonConfig(state_path=str(tmp_path / "state.db")),
        http=HttpConfig(admin_token=None if token is None else Secret("env:ADMIN", token)),
        tenants=(tenant_config(TENANT, linked=False), tenant_config(LINKED, linked=True)),
    )
    async with (
        attio_env() as attio, quo_env() as quo,
        open_store(config.daemon.state_path) as store,
        aiohttp.ClientSession() as http,
    ):
        managed: dict[str, Managed] = {}
        for tenant in config.tenants:
            await store.tenants.upsert(tenant.id, "attio")
            records = RecordWriter(
                tenant.id, store=store, sync=QuoContactSync(quo.client, lane=Lane.LIVE)
            )
            handler = CrmChangeHandler(tenant.id, adapter=attio.adapter, store=store,
                                       quo=quo.client, records=records, sync_method="manual")
            managed[tenant.id] = Managed(tenant, OnDemandSync(
                tenant.id, adapter=attio.adapter, store=store, handler=handler,
                crm_objects=tenant.object_types, concurrency=concurrency,
            ))
        app = build_app(
            targets=lambda _: None, store=store, config=lambda: config, health=Health(),
            max_body_bytes=1024 * 1024, managed=managed.get,
        )
        async with serve(app, "127.0.0.1", 0) as port:
            yield Api(f"http://127.0.0.1:{port}", http, store, attio, quo)


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with running_api(tmp_path) as running:
        yield running


def requests_counted(tenant: str, route: str, status: int) -> float:
    labels = {"tenant": tenant, "route": route, "status": str(status)}
    return REGISTRY.get_sample_value("crmsync_api_requests_total", labels) or 0.0


def synced(tenant: str, action: str) -> float:
    labels = {"tenant": tenant, "action": action}
    return REGISTRY.get_sample_value("crmsync_records_synced_total", labels) or 0.0


# -- 401 first ---------------------------------------------------------------------------


async def test_every_route_and_any_path_is_401_without_the_right_token(api: Api) -> None:
    """Every §9 route, unknown paths and unknown tenants, with every method: no token, a
    wrong one, a malformed header → 401 with `WWW-Authenticate: Bearer`, and nothing
    else happens (no CRM or Quo call, no body read). The token is never in an answer."""
    paths = [f"/api/tenants/{tenant}/{path}" for tenant in (TENANT, LINKED)
             for _, path in ROUTES] + OTHER_PATHS
    before = requests_counted("_unknown", "_unknown", 401)
    answered = 0
    for path in paths:
        for method in METHODS:
            for headers in BAD_AUTH:
                status, body, text = await api.call(
                    method, path, body=b"not even json", headers=headers, token=None
                )
                assert status == 401, (method, path, headers, text)
                assert body == {"error": "missing or wrong bearer token"}
                assert TOKEN not in text
                answered += 1
    async with api.http.get(api.base + f"/api/tenants/{TENANT}/sync") as response:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert api.attio.sim.stats.total() == 0
    assert sum(api.quo.sim.stats.requests.values()) == 0
    # The unauthenticated are counted without their tenant or path (bounded labels).
    assert requests_counted("_unknown", "_unknown", 401) == before + answered + 1


def test_the_token_check_compares_the_whole_token() -> None:
    assert authorised(f"Bearer {TOKEN}", TOKEN)
    assert authorised(f"bearer {TOKEN}", TOKEN)  # the scheme is case-insensitive
    assert not authorised(f"Bearer {TOKEN}", "other")
    assert not authorised(None, TOKEN)
    assert not authorised("Bearer ", "")  # an empty token opens nothing
    assert not authorised("Bearer x", None)  # nor an unresolved one
    assert not authorised("Bearer \udcff", TOKEN)  # undecodable bytes are just wrong


async def test_the_api_is_off_without_an_admin_token(tmp_path: Path) -> None:
    async with running_api(tmp_path, token=None) as api:
        status, body, _ = await api.call("POST", f"/api/tenants/{TENANT}/sync",
                                         body=b'{"crmRecordIds": ["x"]}', token="anything")
        assert status == 404
        assert "admin_token" in body["error"]


# -- then 404, 405, 400, 409 -------------------------------------------------------------


@pytest.mark.parametrize("path", OTHER_PATHS)
async def test_unknown_routes_and_tenants_are_404_once_authorised(api: Api, path: str) -> None:
    status, body, _ = await api.call("POST", path, body=b'{"crmRecordIds": ["x"]}')
    assert status == 404, body
    assert body["error"] in ("unknown tenant", "no such management API route")


async def test_an_unknown_tenant_is_404_before_its_body_is_looked_at(api: Api) -> None:
    status, body, _ = await api.call("POST", "/api/tenants/ghost/sync", body=b"{not json")
    assert (status, body) == (404, {"error": "unknown tenant"})


async def test_a_known_route_with_another_method_is_405(api: Api) -> None:
    status, body, _ = await api.call("GET", f"/api/tenants/{TENANT}/sync")
    assert status == 405
    assert "POST" in body["error"]


BAD_BODIES = [
    (b"", "not JSON"),
    (b"{not json", "not JSON"),
    (b'["a"]', 'the body must be JSON {"crmRecordIds"'),
    (b'{"ids": ["a"]}', 'the body must be JSON {"crmRecordIds"'),
    (b'{"crmRecordIds": ["a"], "extra": 1}', 'the body must be JSON {"crmRecordIds"'),
    (b'{"crmRecordIds": "a"}', "crmRecordIds is not a list"),
    (b'{"crmRecordIds": []}', "must list 1 to 1000 ids, got 0"),
    (json.dumps({"crmRecordIds": [f"id-{i}" for i in range(MAX_IDS + 1)]}).encode(),
     "must list 1 to 1000 ids, got 1001"),
    (b'{"crmRecordIds": ["a", 7]}', "crmRecordIds[1] must be a non-empty string"),
    (b'{"crmRecordIds": ["a", null]}', "crmRecordIds[1] must be a non-empty string"),
    (b'{"crmRecordIds": [["a"]]}', "crmRecordIds[0] must be a non-empty string"),
    (b'{"crmRecordIds": ["a", " "]}', "crmRecordIds[1] must be a non-empty string"),
]


@pytest.mark.parametrize(("body", "message"), BAD_BODIES)
async def test_a_bad_sync_body_is_400_with_one_line(api: Api, body: bytes, message: str) -> None:
    status, answer, _ = await api.call("POST", f"/api/tenants/{TENANT}/sync", body=body)
    assert status == 400
    assert message in answer["error"]
    assert "\n" not in answer["error"]
    assert sum(api.quo.sim.stats.requests.values()) == 0


@pytest.mark.parametrize("query", ["?nope=1", "?crmRecordId=", "?crmRecordId=a&crmRecordId=b"])
async def test_a_bad_mappings_query_is_400(api: Api, query: str) -> None:
    status, answer, _ = await api.call("GET", f"/api/tenants/{TENANT}/mappings{query}")
    assert status == 400, answer
    assert "\n" not in answer["error"]


METAKOCKA_CALLS = [
    ("POST", "metakocka/push", b'{"crmRecordIds": ["a"]}'),
    ("POST", "metakocka/pull", b'{"mkIds": ["123"]}'),
    ("GET", "metakocka/unsynced", None),
    ("GET", "metakocka/mappings", None),
    ("GET", "metakocka/mappings?mkId=123", None),
]


@pytest.mark.parametrize(("method", "path", "body"), METAKOCKA_CALLS)
async def test_metakocka_routes_are_409_without_a_link(
    api: Api, method: str, path: str, body: bytes | None
) -> None:
    status, answer, _ = await api.call(method, f"/api/tenants/{TENANT}/{path}", body=body)
    assert status == 409
    assert "no Metakocka link" in answer["error"]


async def test_a_metakocka_body_is_checked_before_the_link(api: Api) -> None:
    status, answer, _ = await api.call("POST", f"/api/tenants/{TENANT}/metakocka/pull",
                                       body=b'{"mkIds": [123]}')
    assert status == 400
    assert answer["error"] == "mkIds[0] must be a non-empty string"


# -- POST /sync --------------------------------------------------------------------------


async def test_sync_of_good_unknown_and_bad_phone_ids_answers_the_aggregate(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    """1. Attio holds Ada (valid phone, email) and a person whose only detail is a phone
    that is no phone number  2. POST /sync [ada, unknown, bad-phone, ada]
    Result: total 3 (a repeated id once), succeeded 1 (Ada created in Quo, mapping
    `manual`), failed 2: `not_found` (the CRM has no such record; nothing deleted) and
    `validation` (no name, email or valid phone). Both failures are dead letters with
    their category and counted as `failed`; a second call finds Ada `unchanged`."""
    caplog.set_level(logging.DEBUG)
    attio = api.attio.sim
    ada = attio.add_person(first_name="Ada", last_name="Lovelace", emails=["ada@example.com"],
                           phones=["+14155552671"], notify=False)
    bad = attio.add_person(phones=["+1 555"], notify=False)
    unknown = "00000000-0000-4000-8000-000000000000"
    failed_before = synced(TENANT, "failed")
    route = "/api/tenants/{t}/sync"
    ok_before = requests_counted(TENANT, route, 200)

    status, report = await api.sync([ada, unknown, bad, ada])

    assert status == 200, report
    assert (report["total"], report["succeeded"], report["failed"]) == (3, 1, 2)
    by_id = {result["crmRecordId"]: result for result in report["results"]}
    assert [r["crmRecordId"] for r in report["results"]] == [ada, unknown, bad]
    contact = api.quo.contacts_by_external_id()[ada]
    assert by_id[ada] == {"crmRecordId": ada, "ok": True, "quoContactId": contact["id"],
                          "action": "created", "error": None}
    assert by_id[unknown]["ok"] is False
    assert by_id[unknown]["quoContactId"] is None
    assert by_id[unknown]["action"] == "failed"
    assert by_id[unknown]["error"]["category"] == "not_found"
    assert by_id[bad]["error"]["category"] == "validation"
    assert "no name, email or phone" in by_id[bad]["error"]["message"]
    assert list(api.quo.contacts_by_external_id()) == [ada]

    letters = {d.crm_record_id: d for d in await api.store.dead_letters.list(TENANT)}
    assert {rid: d.category for rid, d in letters.items()} == {
        unknown: "not_found", bad: "validation"
    }
    mapping = await api.store.mappings.get(TENANT, "people", ada)
    assert mapping is not None
    assert (mapping.sync_method, mapping.quo_contact_id) == ("manual", contact["id"])
    assert synced(TENANT, "failed") == failed_before + 2
    assert requests_counted(TENANT, route, 200) == ok_before + 1

    status, again = await api.sync([ada])
    assert status == 200
    assert again["results"] == [{"crmRecordId": ada, "ok": True,
                                 "quoContactId": contact["id"], "action": "unchanged",
                                 "error": None}]
    assert TOKEN not in caplog.text


async def test_a_record_synced_on_demand_closes_its_dead_letter(api: Api) -> None:
    attio = api.attio.sim
    person = attio.add_person(phones=["+1 555"], notify=False)
    _, report = await api.sync([person])
    assert report["failed"] == 1
    attio.update_person(person, first_name="Grace", notify=False)
    _, report = await api.sync([person])
    assert report["succeeded"] == 1
    assert await api.store.dead_letters.list(TENANT) == []


async def test_many_ids_go_through_a_bounded_number_of_workers(tmp_path: Path) -> None:
    """40 ids, 4 workers: never more than 4 records in flight, and all 40 synced."""
    async with running_api(tmp_path) as api:
        ids = [api.attio.sim.add_person(first_name=f"P{i}", emails=[f"p{i}@example.com"],
                                        notify=False) for i in range(40)]
        adapter: Any = CountingAdapter(api.attio.adapter)
        handler = CrmChangeHandler(
            TENANT, adapter=adapter, store=api.store, quo=api.quo.client,
            records=RecordWriter(TENANT, store=api.store,
                                 sync=QuoContactSync(api.quo.client, lane=Lane.LIVE)),
        )
        on_demand = OnDemandSync(TENANT, adapter=adapter, store=api.store,
                                 handler=handler, crm_objects=("people",), concurrency=4)
        report = await on_demand.sync(ids)
        assert (report.total, report.succeeded) == (40, 40)
        assert len(api.quo.contacts_by_external_id()) == 40
        assert adapter.peak == 4


class CountingAdapter:
    """The Attio adapter, counting the records fetched at the same time."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.in_flight = self.peak = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def fetch_one(self, crm_object: str, record_id: str) -> Any:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(0.01)  # let the other workers start theirs
            return await self._inner.fetch_one(crm_object, record_id)
        finally:
            self.in_flight -= 1


# -- GET /mappings -----------------------------------------------------------------------


async def test_mappings_are_the_rows_of_crmsync_mappings(api: Api) -> None:
    attio = api.attio.sim
    ids = [attio.add_person(first_name=name, emails=[f"{name}@example.com"], notify=False)
           for name in ("ada", "grace", "linus")]
    await api.sync(ids)
    stored = [m async for m in api.store.mappings.iter_all(TENANT, include_deleted=True)]
    cli_rows = [_encode(MappingRow.of(m)) for m in stored]

    status, body, _ = await api.call("GET", f"/api/tenants/{TENANT}/mappings")
    assert status == 200
    assert body == {"mappings": cli_rows}
    assert {row["crmRecordId"] for row in body["mappings"]} == set(ids)

    status, body, _ = await api.call("GET", f"/api/tenants/{TENANT}/mappings?crmRecordId={ids[1]}")
    assert status == 200
    assert body == {"mappings": [row for row in cli_rows if row["crmRecordId"] == ids[1]]}

    status, body, _ = await api.call("GET", f"/api/tenants/{TENANT}/mappings?crmRecordId=nope")
    assert (status, body) == (200, {"mappings": []})
    # Tenants are separate: the other tenant has none of them.
    status, body, _ = await api.call("GET", f"/api/tenants/{LINKED}/mappings")
    assert (status, body) == (200, {"mappings": []})


def _encode(row: MappingRow) -> Any:
    return msgspec.json.decode(msgspec.json.encode(row))
