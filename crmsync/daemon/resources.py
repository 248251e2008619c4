"""Process-wide resources and the per-tenant clients built from them.

One aiohttp `ClientSession` and one `LimiterRegistry` serve every tenant: tenants that
share a Quo API key share its limiter, whatever else differs between them.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp

from crmsync.adapters.base import CrmAdapter
from crmsync.adapters.registry import build_adapter
from crmsync.config import Config, TenantConfig
from crmsync.quo.client import QuoClient
from crmsync.quo.ratelimit import LimiterRegistry, slot_trace_config
from crmsync.quo.retry import RetryPolicy


@dataclass
class TenantClients:
    quo: QuoClient
    adapter: CrmAdapter


class Resources:
    def __init__(self, config: Config, session: aiohttp.ClientSession) -> None:
        self.config = config
        self.session = session
        self.limiters = LimiterRegistry(
            config.quo.requests_per_second,
            window=1.0 + config.quo.rate_limit_margin,
            basis=config.quo.rate_limit_basis,
        )

    def clients_for(self, tenant: TenantConfig) -> TenantClients:
        quo_config = self.config.quo
        quo_key = tenant.quo_api_key.reveal()
        quo = QuoClient(
            self.session,
            base_url=quo_config.base_url,
            api_key=quo_key,
            limiter=self.limiters.for_key(quo_key),
            tenant=tenant.id,
            timeout=quo_config.request_timeout,
            retry=RetryPolicy(max_retries=quo_config.max_retries),
        )
        adapter = build_adapter(
            tenant.crm,
            self.session,
            api_key=tenant.crm_api_key.reveal(),
            base_url=tenant.crm_base_url,
            timeout=quo_config.request_timeout,
        )
        return TenantClients(quo=quo, adapter=adapter)


@contextlib.asynccontextmanager
async def open_resources(config: Config) -> AsyncIterator[Resources]:
    # limit=0: concurrency is bounded by the actors and the rate limiter, not the pool.
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
    async with aiohttp.ClientSession(
        connector=connector, trace_configs=[slot_trace_config()]
    ) as session:
        yield Resources(config, session)
