"""What the web handlers find on the application, and the JSON answers they give.

The daemon's state reaches the handlers through typed `web.AppKey`s (aiohttp's
`AppKey` keeps `app[KEY]` typed), set once by `build_app`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, Final, Protocol

import msgspec
from aiohttp import web

from crmsync.config import Config, TenantConfig
from crmsync.services.metakocka_pull import PullResult
from crmsync.services.metakocka_push import PushResult
from crmsync.services.on_demand import SyncReport
from crmsync.store import Store
from crmsync.store.metakocka import MkLink, UnsyncedPartner
from crmsync.web.guard import IntakeGuard
from crmsync.web.health import Health
from crmsync.web.targets import WebhookTarget


class ManagedTenant(Protocol):
    """What the management API (`api.py`) needs of one running tenant; the daemon's
    `TenantRuntime` is one (the web layer never imports `tenant/`)."""

    @property
    def id(self) -> str: ...

    @property
    def config(self) -> TenantConfig: ...

    async def sync_records(self, record_ids: Sequence[str]) -> SyncReport:
        """CRM → Quo now, on the live lane (`services/on_demand.py`)."""
        ...

    # The Metakocka link (`tenant/metakocka_link.py`); the API calls these only for a
    # tenant with `[tenants.metakocka]` (409 otherwise).

    async def push(self, crm_record_ids: Sequence[str]) -> list[PushResult]:
        """CRM person → Metakocka partner now, one result per id."""
        ...

    async def pull(self, mk_ids: Sequence[str]) -> list[PullResult]:
        """Metakocka partner → CRM person now (unpaired partners are imported)."""
        ...

    async def unsynced(self) -> list[UnsyncedPartner]:
        """Partners discovered on documents and not paired with a CRM person."""
        ...

    async def mappings(
        self, crm_record_id: str | None = None, mk_id: str | None = None
    ) -> list[MkLink]:
        """The person ⇄ partner pairs (all, or those of one CRM record or partner)."""
        ...


TargetLookup = Callable[[str], WebhookTarget | None]
#: a running tenant by id for the management API; None for unknown or stopped ones
ManagedLookup = Callable[[str], ManagedTenant | None]
ConfigGetter = Callable[[], Config]

TARGETS_KEY: Final[web.AppKey[TargetLookup]] = web.AppKey("crmsync_targets")
MANAGED_KEY: Final[web.AppKey[ManagedLookup]] = web.AppKey("crmsync_managed")
STORE_KEY: Final = web.AppKey("crmsync_store", Store)
CONFIG_KEY: Final[web.AppKey[ConfigGetter]] = web.AppKey("crmsync_config")
HEALTH_KEY: Final = web.AppKey("crmsync_health", Health)
MAX_BODY_KEY: Final = web.AppKey("crmsync_max_body_bytes", int)
GUARD_KEY: Final = web.AppKey("crmsync_intake_guard", IntakeGuard)
PENDING_COMMITS_KEY: Final = web.AppKey("crmsync_pending_commits", set[asyncio.Task[Any]])


def json_response(data: object, status: int = 200) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(data), status=status, content_type="application/json"
    )


def error_response(status: int, message: str) -> web.Response:
    """Every error is a short JSON `{"error": ...}`."""
    return json_response({"error": message}, status)
