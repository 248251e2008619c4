"""One tenant's pass in the foreground (`crmsync sync`, `crmsync demo`, benchmarks)."""

from __future__ import annotations

from collections.abc import Callable

from crmsync.actors.verifier import BulkOptions
from crmsync.config import Config, TenantConfig
from crmsync.daemon.pipeline import PipelineOptions, SyncPipeline, SyncResult
from crmsync.daemon.resources import Resources
from crmsync.store import Store


def pipeline_options(config: Config, tenant: TenantConfig, *, full: bool) -> PipelineOptions:
    quo = config.quo
    return PipelineOptions(
        crm_objects=list(tenant.object_types),
        page_size=tenant.page_size,
        # Enough requests in flight to keep the key busy at ~1 s of Quo latency.
        writer_concurrency=max(4, 2 * quo.requests_per_second),
        bulk_batch_size=quo.bulk_batch_size if quo.bulk_create else None,
        bulk=BulkOptions(deadline=quo.bulk_verify_deadline),
        max_error_rate=config.daemon.max_error_rate,
        full=full,
    )


async def sync_tenant(
    resources: Resources,
    store: Store,
    tenant: TenantConfig,
    *,
    full: bool = False,
    on_settled: Callable[[str], None] | None = None,
    in_daemon: bool = False,
) -> SyncResult:
    await store.tenants.upsert(tenant.id, tenant.crm)
    clients = resources.clients_for(tenant)
    pipeline = SyncPipeline(
        tenant.id,
        store=store,
        quo=clients.quo,
        adapter=clients.adapter,
        options=pipeline_options(resources.config, tenant, full=full),
        on_settled=on_settled,
    )
    return await pipeline.run()
