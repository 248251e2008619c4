"""One tenant's Quo webhooks end to end, in one process: the Quo and Attio simulators,
the daemon's real listener (verifying, storing in a real inbox) and the services.

    async with hook_world(tmp_path) as world:
        await world.manager.ensure()             # the tenant's webhooks, as the daemon
        world.accepting = False                  # the listener answers 404 (an outage)

The listener is the daemon's (`web.app.build_app` with the tenant's `WebhookTarget`),
served on a free loopback port that is also `http.public_url`, so a Quo test event
really is verified with the key the services stored. `accepting` switches the tenant
off at the listener (as a stopped tenant is: 404), which makes Quo's deliveries fail
without stopping the server.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import aiohttp

from crmsync.adapters.attio import AttioAdapter
from crmsync.config import Config, DaemonConfig, HttpConfig, QuoConfig, Secret, TenantConfig
from crmsync.net.ratelimit import SlidingWindowLimiter, slot_trace_config
from crmsync.net.retry import RetryPolicy
from crmsync.quo.client import QuoClient
from crmsync.quo.webhooks import QuoWebhooksClient
from crmsync.services.catch_up import DeliveryCatchUp
from crmsync.services.subscriptions import SubscriptionManager
from crmsync.sim.attio import AttioSim, AttioSimConfig, run_attio_simulator
from crmsync.sim.quo import QuoSim, QuoSimConfig, run_quo_simulator
from crmsync.store import Store, open_store
from crmsync.web.app import build_app, serve
from crmsync.web.health import Health
from crmsync.web.targets import WebhookTarget

TENANT = "acme"
QUO_KEY = "quo-hooks-test-key"
ATTIO_KEY = "attio-hooks-test-key"
#: a fast schedule: first attempt, one retry 0.2 s later, then `failed`
FAST_RETRIES = (0.0, 0.2)


@dataclass
class HookWorld:
    quo_sim: QuoSim
    attio_sim: AttioSim
    store: Store
    http: aiohttp.ClientSession
    quo: QuoClient
    hooks: QuoWebhooksClient
    adapter: AttioAdapter
    config: Config
    public_url: str
    accepting: bool = True
    attio_url: str = ""

    @property
    def url(self) -> str:
        """Where Quo delivers the tenant's events."""
        return f"{self.public_url}/webhooks/{TENANT}/quo"

    def manager(
        self,
        system: Literal["2026-03-30", "legacy"] = "2026-03-30",
        *,
        contact_events: bool = True,
        verify_within: float = 10.0,
    ) -> SubscriptionManager:
        return SubscriptionManager(
            TENANT, adapter=self.adapter, quo=self.quo, store=self.store,
            public_url=self.public_url, hooks=self.hooks, system=system,
            contact_events=contact_events, verify_within=verify_within,
        )

    def catch_up(self, *, margin: float = 600.0) -> DeliveryCatchUp:
        return DeliveryCatchUp(TENANT, hooks=self.hooks, store=self.store, margin=margin)

    def ours_v2(self) -> list[dict[str, Any]]:
        return [w for w in self.quo_sim.webhooks_v2.values() if w["url"] == self.url]

    def ours_legacy(self) -> list[dict[str, Any]]:
        return [w for w in self.quo_sim.webhooks.values() if w["url"] == self.url]

    async def inbox(self) -> list[str]:
        """The event ids the tenant's inbox holds (Quo's), oldest first."""
        events = await self.store.inbox.list(TENANT, limit=10_000)
        return [e.event_id for e in reversed(events) if e.source == "quo"]


@contextlib.asynccontextmanager
async def hook_world(
    tmp_path: Path,
    *,
    retry_schedule: tuple[float, ...] = FAST_RETRIES,
    rps: int = 1000,
) -> AsyncIterator[HookWorld]:
    quo_config = QuoSimConfig(api_keys=[QUO_KEY], requests_per_second=rps,
                              webhook_retry_schedule=retry_schedule)
    async with (
        run_quo_simulator(config=quo_config) as (quo_sim, quo_url),
        run_attio_simulator(config=AttioSimConfig(api_keys=[ATTIO_KEY], people=0)) as (
            attio_sim, attio_url),
        aiohttp.ClientSession(trace_configs=[slot_trace_config()]) as http,
        open_store(tmp_path / "state.db") as store,
    ):
        tenant = TenantConfig(
            id=TENANT, crm="attio", quo_api_key=Secret("env:Q", QUO_KEY),
            crm_api_key=Secret("env:A", ATTIO_KEY), crm_base_url=attio_url,
        )
        limiter = SlidingWindowLimiter(rps)
        retry = RetryPolicy(max_retries=3, base_delay=0.01, max_delay=0.05)
        quo = QuoClient(http, base_url=quo_url, api_key=QUO_KEY, limiter=limiter,
                        tenant=TENANT, timeout=5, retry=retry)
        hooks = QuoWebhooksClient(http, base_url=quo_url.removesuffix("/v1"), api_key=QUO_KEY,
                                  limiter=limiter, tenant=TENANT, timeout=5, retry=retry)
        adapter = AttioAdapter(http, api_key=ATTIO_KEY, base_url=attio_url)
        await store.tenants.upsert(TENANT, "attio")
        config = Config(
            daemon=DaemonConfig(state_path=str(tmp_path / "state.db")),
            quo=QuoConfig(base_url=quo_url, webhooks_base_url=quo_url.removesuffix("/v1")),
            tenants=(tenant,),
        )
        target = WebhookTarget.for_tenant(config, tenant, adapter=adapter, store=store)
        box: list[HookWorld] = []

        def lookup(tenant_id: str) -> WebhookTarget | None:
            return target if tenant_id == TENANT and box[0].accepting else None

        app = build_app(targets=lookup, store=store, config=lambda: config, health=Health(),
                        max_body_bytes=1024 * 1024)
        async with serve(app, "127.0.0.1", 0) as port:
            public_url = f"http://127.0.0.1:{port}"
            config = Config(daemon=config.daemon, quo=config.quo, tenants=config.tenants,
                            http=HttpConfig(public_url=public_url))
            world = HookWorld(quo_sim, attio_sim, store, http, quo, hooks, adapter, config,
                              public_url, attio_url=attio_url)
            box.append(world)
            yield world
