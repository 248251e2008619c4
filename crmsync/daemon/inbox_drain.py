"""Apply a tenant's pending webhook events in the foreground (`crmsync inbox replay`)."""

from __future__ import annotations

from crmsync.config import Config
from crmsync.daemon.health import Health
from crmsync.daemon.resources import open_resources
from crmsync.daemon.tenant import TenantRuntime
from crmsync.errors import UsageError
from crmsync.store import open_store


async def drain_inbox(config: Config, tenant_id: str) -> int:
    tenant = config.tenant(tenant_id)
    if tenant is None:
        raise UsageError(f"unknown tenant '{tenant_id}'")
    async with open_resources(config) as resources, open_store(config.daemon.state_path) as store:
        runtime = TenantRuntime(tenant, resources=resources, store=store, health=Health())
        return await runtime.drain_inbox()
