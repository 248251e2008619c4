"""The daemon's HTTP listener, served for real on 127.0.0.1 with a real SQLite inbox.

1. a tenant `acme` (Attio) has a CRM webhook secret and a Quo webhook key in the state
   database  2. signed deliveries arrive on /webhooks/acme/crm and /webhooks/acme/quo
   3. each answer is checked against the inbox table and the wake event
Result: 200 only with a committed row (duplicates 200 without a new row); bad or
missing signatures 401, unknown tenants 404, oversized bodies 413, malformed 400, and
nothing is stored for any of them. The Quo and Attio simulators' own signed deliveries
are accepted, health/readiness/metrics/status answer, and a handler bug is one 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import REGISTRY, generate_latest

from crmsync.adapters.attio import AttioAdapter
from crmsync.config import Config, DaemonConfig, Secret, TenantConfig
from crmsync.quo.signature import HEADER as QUO_HEADER
from crmsync.quo.signature import sign as quo_sign
from crmsync.sim.attio import AttioSimConfig, run_attio_simulator
from crmsync.sim.quo import QuoSimConfig, run_quo_simulator
from crmsync.sim.quo.testing import SimApi
from crmsync.store import Store, open_store
from crmsync.store.subscriptions import Source, Subscription
from crmsync.web.app import build_app, serve
from crmsync.web.guard import IntakeGuard
from crmsync.web.health import Health
from crmsync.web.targets import WebhookTarget

TENANT = "acme"
QUO_API_KEY = "quo-API-KEY-never-shown"
CRM_API_KEY = "attio-API-KEY-never-shown"
CRM_SECRET = "attio-webhook-SECRET-0123456789abcdef"
CONFIG_CRM_SECRET = "configured-attio-SECRET-fedcba9876543210"
QUO_KEY = "R2ZLM2o0bFhBNVpyUnU2NG9mYXQ1MHNyR3pvSUhIVVg="  # base64 of Quo's doc example key
MAX_BODY = 4096
CALLER = "+14155550999"


@dataclass
class Listener:
    base: str
    http: aiohttp.ClientSession
    store: Store
    target: WebhookTarget
    health: Health
    config: Config

    async def post(
        self, path: str, body: bytes | Any, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, Any]]:
        async with self.http.post(self.base + path, data=body, headers=headers or {}) as resp:
            return resp.status, await resp.json()

    async def get(self, path: str) -> tuple[int, str, str]:
        async with self.http.get(self.base + path) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), await resp.text()

    async def rows(self, source: Source | None = None) -> list[Any]:
        events = await self.store.inbox.list(TENANT, limit=1000)
        return [e for e in events if source is None or e.source == source]


async def add_secret(store: Store, source: Source, name: str, secret: str) -> None:
    await store.subscriptions.upsert(Subscription(
        tenant_id=TENANT, source=source, name=name, remote_id=f"remote-{name}", secret=secret,
        url=f"http://127.0.0.1/webhooks/{TENANT}/{source}", detail="{}", healthy=True,
        checked_at=time.time(),
    ))


def make_config(tmp_path: Path, *, crm_base_url: str | None, configured_secret: bool) -> Config:
    tenant = TenantConfig(
        id=TENANT,
        crm="attio",
        quo_api_key=Secret("env:ACME_QUO", QUO_API_KEY),
        crm_api_key=Secret("env:ACME_ATTIO", CRM_API_KEY),
        crm_base_url=crm_base_url,
        crm_webhook_secret=(
            Secret("env:ACME_ATTIO_HOOK", CONFIG_CRM_SECRET) if configured_secret else None
        ),
    )
    return Config(daemon=DaemonConfig(state_path=str(tmp_path / "state.db")), tenants=(tenant,))


@contextlib.asynccontextmanager
async def running_listener(
    tmp_path: Path,
    *,
    crm_base_url: str = "http://127.0.0.1:9/v2",  # never called: the listener makes no calls
    configured_secret: bool = False,
    secrets: bool = True,
    targets: Callable[[WebhookTarget], Callable[[str], WebhookTarget | None]] | None = None,
    guard: IntakeGuard | None = None,
    max_body: int = MAX_BODY,
) -> AsyncIterator[Listener]:
    config = make_config(tmp_path, crm_base_url=crm_base_url, configured_secret=configured_secret)
    async with (
        open_store(config.daemon.state_path) as store,
        aiohttp.ClientSession() as http,
    ):
        await store.tenants.upsert(TENANT, "attio")
        if secrets:
            await add_secret(store, "crm", "crm", CRM_SECRET)
            await add_secret(store, "quo", "quo:messages:0", QUO_KEY)
        [tenant] = config.tenants
        adapter = AttioAdapter(http, api_key=CRM_API_KEY, base_url=crm_base_url)
        target = WebhookTarget.for_tenant(config, tenant, adapter=adapter, store=store)
        health = Health()
        lookup = {TENANT: target}.get if targets is None else targets(target)
        app = build_app(
            targets=lookup, store=store, config=lambda: config, health=health,
            max_body_bytes=max_body, guard=guard,
        )
        async with serve(app, "127.0.0.1", 0) as port:
            yield Listener(f"http://127.0.0.1:{port}", http, store, target, health, config)


@pytest.fixture
async def listener(tmp_path: Path) -> AsyncIterator[Listener]:
    async with running_listener(tmp_path) as box:
        yield box


def counted(outcome: str, source: str = "crm", tenant: str = TENANT) -> float:
    labels = {"tenant": tenant, "source": source, "outcome": outcome}
    return REGISTRY.get_sample_value("crmsync_webhook_events_total", labels) or 0.0


def attio_body(record_id: str = "rec-1", event_type: str = "record.updated") -> bytes:
    return json.dumps({
        "webhook_id": "wh-1",
        "events": [{
            "event_type": event_type,
            "id": {"workspace_id": "ws-1", "object_id": "obj-people", "record_id": record_id},
            "actor": {"type": "workspace-member", "id": "m-1"},
        }],
    }).encode()


def attio_headers(body: bytes, *, secret: str = CRM_SECRET, key: str = "idem-1") -> dict[str, str]:
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "Attio-Signature": signature,
            "Idempotency-Key": key}


def quo_body(event_id: str = "EV0ea54cadfbf342e6ac4ca1f22ed1700c") -> bytes:
    return json.dumps({
        "id": event_id, "object": "event", "apiVersion": "v4",
        "createdAt": "2026-11-23T10:00:00.000Z", "type": "message.received",
        "data": {"object": {"id": "AC1", "object": "message", "from": CALLER, "text": "hi"}},
    }).encode()


# -- CRM webhooks -----------------------------------------------------------------------


async def test_signed_attio_delivery_is_stored_once(listener: Listener) -> None:
    body = attio_body()
    headers = {**attio_headers(body), "Authorization": "Bearer leaked", "Cookie": "s=1"}
    before = counted("accepted"), counted("duplicate")

    assert await listener.post(f"/webhooks/{TENANT}/crm", body, headers) == (
        200, {"status": "accepted"}
    )
    [row] = await listener.rows()
    # The id is the signed body's hash: the unsigned Idempotency-Key could be anything.
    assert (row.source, row.event_id, row.event_type) == (
        "crm", hashlib.sha256(body).hexdigest(), "record.updated"
    )
    assert (row.state, row.body) == ("pending", body)
    assert row.headers["Attio-Signature"] == headers["Attio-Signature"]
    assert row.headers["Idempotency-Key"] == "idem-1"
    assert not {"authorization", "cookie"} & {name.lower() for name in row.headers}
    assert listener.target.wake.is_set()

    listener.target.wake.clear()
    assert await listener.post(f"/webhooks/{TENANT}/crm", body, headers) == (
        200, {"status": "duplicate"}
    )
    assert len(await listener.rows()) == 1
    assert not listener.target.wake.is_set()
    assert (counted("accepted"), counted("duplicate")) == (before[0] + 1, before[1] + 1)


@pytest.mark.parametrize("signature", ["wrong", "missing", "other-secret"])
async def test_bad_crm_signature_is_401_and_stores_nothing(
    listener: Listener, signature: str
) -> None:
    body = attio_body()
    headers = attio_headers(body, secret="not-the-secret")
    if signature == "wrong":
        headers["Attio-Signature"] = "0" * 64
    elif signature == "missing":
        del headers["Attio-Signature"]
    before = counted("bad_signature")
    status, answer = await listener.post(f"/webhooks/{TENANT}/crm", body, headers)
    assert (status, answer) == (401, {"error": "bad or missing signature"})
    assert await listener.rows() == []
    assert not listener.target.wake.is_set()
    assert counted("bad_signature") == before + 1


async def test_malformed_json_with_a_valid_signature_is_400(listener: Listener) -> None:
    before = counted("malformed")
    for body in (b"{not json", b'{"webhook_id": "wh-1"}', b"[1, 2]"):
        status, answer = await listener.post(
            f"/webhooks/{TENANT}/crm", body, attio_headers(body, key=f"k-{len(body)}")
        )
        assert status == 400, answer
        assert answer["error"].startswith("malformed webhook")
    assert await listener.rows() == []
    assert counted("malformed") == before + 3


async def test_unknown_tenant_is_404_under_one_metric_label(listener: Listener) -> None:
    body = attio_body()
    before = counted("unknown_tenant", tenant="_unknown")
    for tenant in ("ghost", "another-ghost"):
        status, answer = await listener.post(f"/webhooks/{tenant}/crm", body, attio_headers(body))
        assert (status, answer) == (404, {"error": "unknown tenant"})
    assert counted("unknown_tenant", tenant="_unknown") == before + 2
    assert counted("unknown_tenant", tenant="ghost") == 0.0
    assert await listener.rows() == []


async def test_body_over_the_limit_is_413(listener: Listener) -> None:
    big = b'{"pad": "' + b"x" * MAX_BODY + b'"}'
    before = counted("too_large")
    status, answer = await listener.post(f"/webhooks/{TENANT}/crm", big, attio_headers(big))
    assert status == 413 and "larger than" in answer["error"]

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the read cap decides
        for _ in range(8):
            yield b"y" * 1024

    status, answer = await listener.post(f"/webhooks/{TENANT}/quo", chunks(), {})
    assert status == 413
    assert await listener.rows() == []
    assert counted("too_large") == before + 1
    assert counted("too_large", source="quo") >= 1


async def test_a_body_exactly_at_the_limit_is_read_whole(listener: Listener) -> None:
    event = json.loads(attio_body())
    event["pad"] = ""
    event["pad"] = "p" * (MAX_BODY - len(json.dumps(event).encode()))
    body = json.dumps(event).encode()
    assert len(body) == MAX_BODY
    status, _ = await listener.post(f"/webhooks/{TENANT}/crm", body, attio_headers(body))
    assert status == 200
    [row] = await listener.rows()
    assert row.body == body


async def test_configured_secret_and_a_secret_stored_a_moment_ago_verify(
    tmp_path: Path,
) -> None:
    async with running_listener(tmp_path, configured_secret=True) as box:
        first = attio_body("rec-1")
        status, _ = await box.post(
            f"/webhooks/{TENANT}/crm", first, attio_headers(first, secret=CONFIG_CRM_SECRET)
        )
        assert status == 200  # the secrets are now cached
        await add_secret(box.store, "crm", "crm-rotated", "brand-new-SECRET")
        second = attio_body("rec-2")
        status, _ = await box.post(
            f"/webhooks/{TENANT}/crm", second,
            attio_headers(second, secret="brand-new-SECRET", key="idem-2"),
        )
        assert status == 200  # a miss re-reads the store at once
        assert [r.event_id for r in await box.rows()] == [
            hashlib.sha256(second).hexdigest(), hashlib.sha256(first).hexdigest()
        ]


async def test_no_secret_at_all_rejects_everything(tmp_path: Path) -> None:
    async with running_listener(tmp_path, secrets=False) as box:
        body = attio_body()
        status, _ = await box.post(f"/webhooks/{TENANT}/crm", body, attio_headers(body))
        assert status == 401
        status, _ = await box.post(
            f"/webhooks/{TENANT}/quo", quo_body(), {QUO_HEADER: quo_sign(QUO_KEY, quo_body())}
        )
        assert status == 401
        assert await box.rows() == []


async def test_attio_simulator_delivery_is_accepted_and_its_redelivery_deduplicated(
    tmp_path: Path,
) -> None:
    sim_config = AttioSimConfig(api_keys=[CRM_API_KEY], people=3, auto_deliver_webhooks=False)
    async with (
        run_attio_simulator(config=sim_config) as (sim, attio_url),
        running_listener(tmp_path, crm_base_url=attio_url, secrets=False) as box,
    ):
        hook_url = f"{box.base}/webhooks/{TENANT}/crm"
        webhook_id, secret = await box.target.adapter.ensure_webhook(hook_url)
        assert secret is not None
        await add_secret(box.store, "crm", "crm", secret)
        person = sim.people.ordered()[0].record_id
        sim.update_person(person, job_title="Chief Phone Officer")
        await sim.deliver_pending()
        assert await sim.redeliver_last() == 200
        assert [a.status for a in sim.deliverer.attempts] == [200, 200]
        [row] = await box.rows()
        assert row.event_type == "record.updated" and row.source == "crm"
        assert json.loads(row.body)["webhook_id"] == webhook_id
        assert box.target.parse_crm(row.headers, row.body).changes[0].record_id == person


# -- Quo webhooks -----------------------------------------------------------------------


async def test_signed_quo_event_is_accepted(listener: Listener) -> None:
    body = quo_body()
    status, answer = await listener.post(
        f"/webhooks/{TENANT}/quo", body,
        {"Content-Type": "application/json", QUO_HEADER: quo_sign(QUO_KEY, body)},
    )
    assert (status, answer) == (200, {"status": "accepted"})
    [row] = await listener.rows("quo")
    assert (row.event_id, row.event_type) == ("EV0ea54cadfbf342e6ac4ca1f22ed1700c",
                                              "message.received")
    assert QUO_HEADER in {name.lower() for name in row.headers}
    assert listener.target.wake.is_set()


@pytest.mark.parametrize("problem", ["stale", "future", "wrong-key", "missing", "garbled"])
async def test_bad_quo_signature_is_401(listener: Listener, problem: str) -> None:
    body = quo_body()
    now_ms = int(time.time() * 1000)
    header = {
        "stale": quo_sign(QUO_KEY, body, now_ms - 10 * 60 * 1000),
        "future": quo_sign(QUO_KEY, body, now_ms + 10 * 60 * 1000),
        "wrong-key": quo_sign("d3Jvbmcta2V5LXdyb25nLWtleQ==", body),
        "garbled": "hmac;1;nonsense",
    }.get(problem)
    before = counted("bad_signature", source="quo")
    status, _ = await listener.post(
        f"/webhooks/{TENANT}/quo", body, {} if header is None else {QUO_HEADER: header}
    )
    assert status == 401
    assert await listener.rows() == []
    assert counted("bad_signature", source="quo") == before + 1


@pytest.mark.parametrize(
    "body", [b"not json", b'{"type": "message.received"}', b'{"id": "EV1"}', b'"EV1"']
)
async def test_malformed_quo_event_is_400(listener: Listener, body: bytes) -> None:
    status, _ = await listener.post(
        f"/webhooks/{TENANT}/quo", body, {QUO_HEADER: quo_sign(QUO_KEY, body)}
    )
    assert status == 400
    assert await listener.rows() == []


async def test_quo_simulator_delivery_is_accepted(listener: Listener) -> None:
    # Warm the key cache first, so the simulator's brand-new key is a cache miss.
    warm = quo_body("EVwarm")
    status, _ = await listener.post(
        f"/webhooks/{TENANT}/quo", warm, {QUO_HEADER: quo_sign(QUO_KEY, warm)}
    )
    assert status == 200
    async with run_quo_simulator(
        config=QuoSimConfig(requests_per_second=10_000, seed=5)
    ) as (sim, base_url):
        api = SimApi(listener.http, base_url, sim.api_key)
        created = await api.post("/webhooks/messages", json={
            "url": f"{listener.base}/webhooks/{TENANT}/quo", "events": ["message.received"],
        })
        assert created.status == 201, created.json
        hook = created.json["data"]
        await add_secret(listener.store, "quo", "quo:messages:1", hook["key"])
        message = sim.add_message(CALLER, "hello from the simulator")
        [result] = await sim.deliver_event(
            "message.received", sim.workspace.message_event_object(message)
        )
        assert (result.status, result.error) == (200, None)
        [again] = await sim.redeliver(result.event, resign=True)
        assert again.status == 200
    stored = await listener.store.inbox.get_by_event_id(TENANT, "quo", result.event.id)
    assert stored is not None and stored.body == result.event.body
    assert stored.event_type == "message.received"
    assert [r.event_id for r in await listener.rows("quo")] == [result.event.id, "EVwarm"]


# -- health, readiness, metrics, status, robustness -------------------------------------


async def test_healthz_and_readyz(listener: Listener) -> None:
    status, content_type, text = await listener.get("/healthz")
    assert (status, json.loads(text)) == (200, {"status": "ok"})
    assert content_type.startswith("application/json")

    listener.health.set_reason(TENANT, "starting")
    listener.health.set_reason("beta", "parked: 5 restarts in 30 s")
    status, _, text = await listener.get("/readyz")
    assert status == 503
    assert json.loads(text) == {
        "status": "not ready", "reasons": ["acme: starting", "beta: parked: 5 restarts in 30 s"]
    }
    listener.health.set_reason(TENANT, None)
    listener.health.set_reason("beta", None)
    status, _, text = await listener.get("/readyz")
    assert (status, json.loads(text)) == (200, {"status": "ready"})

    listener.health.mark_alive(False)
    assert (await listener.get("/healthz"))[0] == 503
    assert (await listener.get("/readyz"))[0] == 503


async def test_metrics_exposition(listener: Listener) -> None:
    body = attio_body()
    await listener.post(f"/webhooks/{TENANT}/crm", body, attio_headers(body))
    status, content_type, text = await listener.get("/metrics")
    assert status == 200 and content_type.startswith("text/plain")
    assert (
        'crmsync_webhook_events_total{outcome="accepted",source="crm",tenant="acme"}' in text
    )


async def test_a_metrics_scrape_does_not_hold_the_loop(
    listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1. the exposition takes 300 ms (200 tenants' series took 180 ms in
       `bench/multi_tenant.py`) 2. a scrape while a timer ticks every 10 ms
    Result: the ticks go on during the scrape (no gap of 100 ms).
    Regression: the exposition ran on the event loop: every scrape stalled every
    tenant's limiter grants and webhooks for as long as it took."""
    exposition = generate_latest

    def slow_exposition() -> bytes:
        time.sleep(0.3)
        return exposition()

    monkeypatch.setattr("crmsync.web.app.generate_latest", slow_exposition)
    loop = asyncio.get_running_loop()
    ticks: list[float] = []

    async def tick() -> None:
        while True:
            ticks.append(loop.time())
            await asyncio.sleep(0.01)

    ticker = asyncio.create_task(tick())
    started = loop.time()
    status, _, text = await listener.get("/metrics")
    ended = loop.time()
    ticker.cancel()
    assert status == 200 and "crmsync_" in text and ended - started >= 0.3
    during = [started, *(t for t in ticks if started <= t <= ended), ended]
    assert max(b - a for a, b in itertools.pairwise(during)) < 0.1


async def test_status_is_the_status_json_without_secrets(listener: Listener) -> None:
    status, content_type, text = await listener.get("/status")
    assert status == 200 and content_type.startswith("application/json")
    [tenant] = json.loads(text)["tenants"]
    assert (tenant["id"], tenant["crm"], tenant["state"]) == (TENANT, "attio", "starting")
    for secret in (QUO_API_KEY, CRM_API_KEY, CRM_SECRET, QUO_KEY, CONFIG_CRM_SECRET):
        assert secret not in text


async def test_a_handler_bug_is_one_500_and_the_server_goes_on(tmp_path: Path) -> None:
    def lookup(target: WebhookTarget) -> Callable[[str], WebhookTarget | None]:
        def find(tenant: str) -> WebhookTarget | None:
            if tenant == "boom":
                raise RuntimeError("a bug in the tenant lookup")
            return target if tenant == TENANT else None

        return find

    async with running_listener(tmp_path, targets=lookup) as box:
        body = attio_body()
        assert await box.post("/webhooks/boom/crm", body, attio_headers(body)) == (
            500, {"error": "internal error"}
        )
        assert (await box.post(f"/webhooks/{TENANT}/crm", body, attio_headers(body)))[0] == 200


async def test_unknown_routes_and_methods_answer_json(listener: Listener) -> None:
    status, _, text = await listener.get("/nope")
    assert (status, json.loads(text)) == (404, {"error": "Not Found"})
    status, _, text = await listener.get(f"/webhooks/{TENANT}/crm")
    assert (status, json.loads(text)) == (405, {"error": "Method Not Allowed"})
    status, _ = await listener.post(f"/webhooks/{TENANT}/other", b"{}")
    assert status == 404
