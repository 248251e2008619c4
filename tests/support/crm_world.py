"""One tenant against any CRM: the Quo simulator, a CRM driver, the real CLI and daemon.

    async with crm_world(tmp_path, "hubspot", people=30) as world:
        await world.cli("sync", "--tenant", TENANT)       # a foreground sync
        async with world.daemon() as daemon:               # `crmsync run`, live
            ...

The CRM comes from `support.crm_drivers` (its simulator and what a person in its app
would do), so the tests that use this run unchanged for every CRM. The daemon's
listener is on a free loopback port that is also `http.public_url`; hand-configured
CRM webhooks (HubSpot) are pointed at it, and their secret is the tenant's
`crm_webhook_secret`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crmsync.sim.quo import QuoSim, QuoSimConfig, run_quo_simulator
from support.cli import Result, cli_env, run_cli, spawn_cli
from support.crm_drivers import CrmDriver, driver_start
from support.live import Daemon, free_port

TENANT = "acme"
QUO_KEY = "quo-world-SECRET-key"
WEBHOOK_SECRET_ENV = "ACME_CRM_WEBHOOK_SECRET"
WRITE_METHODS = frozenset({"POST", "PATCH", "DELETE"})

CONFIG = """\
[daemon]
state_path = "{state_path}"
log_level = "info"
shutdown_timeout = 5

[http]
host = "127.0.0.1"
port = {port}
{public_url}
[quo]
base_url = "{quo_url}"
webhooks_base_url = "{quo_root}"
requests_per_second = {rps}

[[tenants]]
id = "{tenant}"
crm = "{crm}"
quo_api_key = "env:ACME_QUO_KEY"
crm_api_key = "env:ACME_CRM_KEY"
crm_base_url = "{crm_url}"
page_size = {page_size}
poll_interval = {poll_interval}
{extra}"""


@dataclass
class CrmWorld:
    crm: CrmDriver
    quo: QuoSim
    config_path: Path
    env: dict[str, str]
    port: int
    rps: int
    daemons: list[Daemon] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

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

    async def start(self, *, wait: bool = True) -> Daemon:
        process = await spawn_cli("run", "-c", str(self.config_path), env=self.env,
                                  cwd=self.config_path.parent)
        daemon = Daemon(process, self.base_url)
        self.daemons.append(daemon)
        if wait:
            await daemon.wait_ready()
        return daemon

    @contextlib.asynccontextmanager
    async def daemon(self) -> AsyncIterator[Daemon]:
        """A live daemon; on a clean exit of the block, SIGTERM must end it with 0."""
        daemon = await self.start()
        yield daemon
        rc = await daemon.terminate()
        assert rc == 0, f"daemon exited with {rc} after SIGTERM\n{daemon.output}"
        assert "Traceback" not in daemon.output, daemon.output

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
        port = free_port()
        state_path = tmp_path / "state" / "crmsync.db"
        state_path.parent.mkdir()
        extra = dict(tenant_options or {})
        environ = {"ACME_QUO_KEY": QUO_KEY, "ACME_CRM_KEY": driver.api_key}
        if driver.webhook_secret is not None and webhook_secret:
            extra["crm_webhook_secret"] = f'"env:{WEBHOOK_SECRET_ENV}"'
            environ[WEBHOOK_SECRET_ENV] = driver.webhook_secret
        config_path = tmp_path / "crmsync.toml"
        config_path.write_text(CONFIG.format(
            state_path=state_path, port=port, quo_url=quo_url,
            public_url=f'public_url = "http://127.0.0.1:{port}"\n' if public_url else "",
            quo_root=quo_url.removesuffix("/v1"), rps=rps, tenant=TENANT, crm=crm,
            crm_url=driver.base_url, page_size=page_size, poll_interval=poll_interval,
            extra="".join(f"{k} = {v}\n" for k, v in extra.items()),
        ))
        world = CrmWorld(driver, quo, config_path, cli_env(environ), port, rps)
        driver.point_webhooks(world.crm_webhook_url)
        try:
            yield world
        finally:
            for daemon in world.daemons:
                await daemon.close()
