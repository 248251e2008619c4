"""The CRMs crmsync can sync with: one line per CRM in `ADAPTERS`.

Config validation checks a tenant's `crm` against `crmsync.config.model.KNOWN_CRMS`;
adding a CRM means writing its adapter module and adding it here (STYLE rule 10).
"""

from __future__ import annotations

from collections.abc import Callable

import aiohttp

from crmsync.adapters.attio import AttioAdapter
from crmsync.adapters.base import CrmAdapter
from crmsync.adapters.hubspot import HubSpotAdapter
from crmsync.adapters.pipedrive import PipedriveAdapter
from crmsync.errors import CrmsyncError
from crmsync.net.ratelimit import LimiterRegistry
from crmsync.net.retry import RetryPolicy

AdapterFactory = Callable[..., CrmAdapter]

ADAPTERS: dict[str, AdapterFactory] = {
    "attio": AttioAdapter,
    "pipedrive": PipedriveAdapter,
    "hubspot": HubSpotAdapter,
}


class UnsupportedCrmError(CrmsyncError):
    """The CRM is a valid config value but its adapter is not in this release."""


def build_adapter(
    crm: str,
    session: aiohttp.ClientSession,
    *,
    api_key: str,
    base_url: str | None,
    timeout: float,
    limiters: LimiterRegistry,
    retry: RetryPolicy,
    max_pause: float,
) -> CrmAdapter:
    """The tenant's adapter, sharing the process's session and limiters."""
    factory = ADAPTERS.get(crm)
    if factory is None:
        raise UnsupportedCrmError(
            f"the {crm} adapter is not available in this release "
            f"(available: {', '.join(ADAPTERS)})"
        )
    return factory(
        session, api_key=api_key, base_url=base_url, timeout=timeout, limiters=limiters,
        retry=retry, max_pause=max_pause,
    )
