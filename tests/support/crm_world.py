"""One tenant against any CRM: the Quo simulator, a CRM driver, the real CLI and daemon.

    async with crm_world(tmp_path, "hubspot", people=30) as world:
        await world.cli("sync", "--tenant", TENANT)       # a foreground sync
        async with world.daemon() as daemon:               # `crmsync run`, live
            ...

The CRM comes from `support.crm_drivers` (its simulator and what a person in its app
would do), so the tests that use this run unchanged for every CRM. The config is
`support.e2e.write_config`'s with the listener of `support.live.add_listener`: a free
loopback port that is also `http.public_url` (the daemons are `support.live`'s, reaped
on exit); hand-configured CRM webhooks (HubSpot) are pointed at it, and their secret
is the tenant's `crm_webhook_secret`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crmsync.sim.quo import QuoSim, QuoSimConfig, run_quo_simulator
from support.cli import Result, cli_env, run_cli, spawn_cli
from support.crm_drivers import CrmDriver, driver_start
from support.e2e import QUO_KEY, TENANT, WRITE_METHODS, write_config
from support.live import DaemonHost, add_listener, free_port, reaping

CRM_KEY_ENV = "ACME_CRM_KEY"
WEBHOOK_SECRET_ENV = "ACME_CRM_WEBHOOK_SECRET"


@dataclass
class CrmWorld(DaemonHost):
    crm: CrmDriver
    quo: QuoSim
    rps: int

    @property
    def crm_webhook_url(self) -> str:
        return f"{self.base_url}/webhooks/{TENANT}/crm"

    async def cli(self, *args: str, within: float = 90.0) -> Result:
        """`crmsync ARGS -c crmsync.toml`, checked: no traceback, no key shown."""
        return await run_cli(
            *args, "-c", str(self.config_path), env=self.env, within=within,
            cwd=self.config_path.parent, secrets=(QUO_KEY, self.crm.api_key),
        )

    async def sync(self, *extra: str) -> Result:
        result = await self.cli("sync", "--tenant", TENANT, *extra)
        assert result.code == 0, result.describe()
        return result

    async def spawn_sync(self) -> Any:
        return await spawn_cli("sync", "--tenant", TENANT, "-c", str(self.config_path),
                               env=self.env, cwd=self.config_path.parent)

    # -- what Quo holds ---------------------------------------------------------------

    def contacts_by_external_id(self) -> dict[str, list[dict[str, Any]]]:
        result: dict[str, list[dict[str, Any]]] = {}
        for contact in self.quo.contacts.contacts.values():
            result.setdefault(contact["externalId"], []).append(contact)
        return result

    def contact_of(self, record_id: str) -> dict[str, Any] | None:
        found = self.contacts_by_external_id().get(record_id, [])
        assert len(found) <= 1, f"{len(found)} Quo contacts for {record_id}"
        return found[0] if found else None

    def creation_order(self) -> list[str]:
        """External ids of the Quo contacts in the order they were created."""
        return [c["externalId"] for c in self.quo.contacts.contacts.values()]

    def contact_writes(self) -> int:
        """POST/PATCH/DELETE requests on /v1/contacts* so far (any status)."""
        return sum(
            n for (method, route, _status), n in self.quo.stats.requests.items()
            if method in WRITE_METHODS and route.startswith("/v1/contacts")
        )

    def assert_quo_rate_respected(self) -> None:
        window = self.quo.max_in_any_window
        assert all(n <= self.rps for n in window.values()), window
        assert self.quo.rate_limited == 0, f"{self.quo.rate_limited} 429s from the Quo sim"


@contextlib.asynccontextmanager
async def crm_world(
    tmp_path: Path,
    crm: str,
    *,
    people: int,
    seed: int = 20261207,
    rps: int = 100,
    page_size: int = 50,
    poll_interval: float = 300.0,
    webhook_secret: bool = True,
    public_url: bool = True,
    tenant_options: Mapping[str, str] | None = None,
) -> AsyncIterator[CrmWorld]:
    """`webhook_secret` False leaves `crm_webhook_secret` out even where the CRM needs it
    (HubSpot then runs on polling only); `public_url` False leaves `http.public_url`
    out (no webhooks at all); `tenant_options` adds tenant keys (TOML)."""
    quo_config = QuoSimConfig(api_keys=[QUO_KEY], requests_per_second=rps, seed=seed)
    async with (
        run_quo_simulator(config=quo_config) as (quo, quo_url),
        driver_start(crm)(people, seed) as driver,
    ):
        extra = dict(tenant_options or {})
        environ = {"ACME_QUO_KEY": QUO_KEY, CRM_KEY_ENV: driver.api_key}
        if driver.webhook_secret is not None and webhook_secret:
            extra["crm_webhook_secret"] = f'"env:{WEBHOOK_SECRET_ENV}"'
            environ[WEBHOOK_SECRET_ENV] = driver.webhook_secret
        config_path, _ = write_config(
            tmp_path, quo_url=quo_url, rps=rps, crm=crm, crm_url=driver.base_url,
            crm_key_env=CRM_KEY_ENV, page_size=page_size,
            daemon_options={"shutdown_timeout": "5"}, tenant_options=extra,
        )
        port = free_port()
        add_listener(config_path, port, poll_interval=poll_interval, public_url=public_url)
        world = CrmWorld(config_path, cli_env(environ), port, crm=driver, quo=quo, rps=rps)
        driver.point_webhooks(world.crm_webhook_url)
        async with reaping(world):
            yield world
