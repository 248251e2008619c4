"""Helpers shared by the read-mostly commands (`status`, `mappings`, `errors`, `retry`).

They load the config, check `--tenant` against it, and open the state database without
ever creating it: a read command on a fresh install sees "no state yet", not a new file
(or, on PostgreSQL, a database without crmsync's tables yet).
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from crmsync.config import Config, TenantConfig
from crmsync.domain.status import rfc3339
from crmsync.errors import UsageError
from crmsync.store import Store, open_store, state_exists

__all__ = ["add_tenant_argument", "open_state", "require_tenant", "rfc3339"]


def add_tenant_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tenant", required=True, metavar="ID", help="tenant id")


def require_tenant(config: Config, tenant_id: str) -> TenantConfig:
    """The configured tenant `tenant_id`; a `UsageError` (exit 2) naming the known ones."""
    tenant = config.tenant(tenant_id)
    if tenant is None:
        known = ", ".join(t.id for t in config.tenants) or "none"
        raise UsageError(f"unknown tenant '{tenant_id}' (configured: {known})")
    return tenant


@asynccontextmanager
async def open_state(
    config: Config, *, readonly: bool = True, command: str = "crmsync"
) -> AsyncIterator[Store | None]:
    """The state database, or None when it does not exist yet (it is never created here).

    Read-only opens are safe while the daemon runs (WAL readers never block the writer).
    A writer (`readonly=False`) holds the state lock while the store is open, as
    `command` (e.g. `crmsync retry --tenant acme`), so it is refused with one line (exit
    2) while the daemon or another writer runs; it runs no tenant, so `crmsync status`
    beside it still reports a stale `running` row as stopped.
    """
    location = config.daemon.state_location
    if not await state_exists(location):
        yield None
        return
    async with open_store(location, readonly=readonly, command=command, tenants=()) as store:
        yield store
