"""Process-wide resources and the per-tenant clients built from them.

One aiohttp `ClientSession` and one `LimiterRegistry` serve every tenant: tenants that
share an API key (Quo's or a CRM's) share its limiters, whatever else differs between
them. Both kinds of client get the same timeout, retry policy and `Retry-After` cap.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp

from crmsync.adapters.base import CrmAdapter
from crmsync.adapters.registry import build_adapter
from crmsync.config import Config, TenantConfig
from crmsync.net.ratelimit import LimiterRegistry, Limits, key_fingerprint, slot_trace_config
from crmsync.net.retry import RetryPolicy
from crmsync.quo.client import QuoClient
from crmsync.quo.webhooks import QuoWebhooksClient


@dataclass
class TenantClients:
    quo: QuoClient
    adapter: CrmAdapter
    #: the Quo key's fingerprint (`crmsync_tenant_quo_key`): which tenants share a limit
    quo_key: str
    #: Quo's 2026-03-30 webhook API, on the same key's limiter as `quo` (Quo's limit is
    #: per key across v1 and 2026-03-30)
    quo_webhooks: QuoWebhooksClient


class Resources:
    def __init__(self, config: Config, session: aiohttp.ClientSession) -> None:
        self.config = config
        self.session = session
        self.limiters = LimiterRegistry()
        quo = config.quo
        self.quo_limits = Limits(
            quo.requests_per_second, window=1.0 + quo.rate_limit_margin,
            basis=quo.rate_limit_basis, warm=True,
        )
        self.retry = RetryPolicy(max_retries=quo.max_retries)

    def clients_for(self, tenant: TenantConfig) -> TenantClients:
        quo_config = self.config.quo
        quo_key = tenant.quo_api_key.reveal()
        limiter = self.limiters.for_account("quo", quo_key, self.quo_limits).read
        quo = QuoClient(
            self.session,
            base_url=quo_config.base_url,
            api_key=quo_key,
            limiter=limiter,
            tenant=tenant.id,
            timeout=quo_config.request_timeout,
            retry=self.retry,
            max_pause=quo_config.max_retry_after,
        )
        quo_webhooks = QuoWebhooksClient(
            self.session,
            base_url=quo_config.webhooks_base_url,
            api_key=quo_key,
            limiter=limiter,
            tenant=tenant.id,
            timeout=quo_config.request_timeout,
            retry=self.retry,
            max_pause=quo_config.max_retry_after,
        )
        adapter = build_adapter(
            tenant.crm,
            self.session,
            api_key=tenant.crm_api_key.reveal(),
            base_url=tenant.crm_base_url,
            timeout=quo_config.request_timeout,
            limiters=self.limiters,
            retry=self.retry,
            max_pause=quo_config.max_retry_after,
        )
        return TenantClients(quo=quo, adapter=adapter, quo_key=key_fingerprint(quo_key),
                             quo_webhooks=quo_webhooks)


@contextlib.asynccontextmanager
async def open_resources(config: Config) -> AsyncIterator[Resources]:
    # limit=0: concurrency is bounded by the actors and the rate limiter, not the pool.
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
    async with aiohttp.ClientSession(
        connector=connector, trace_configs=[slot_trace_config()]
    ) as session:
        yield Resources(config, session)
