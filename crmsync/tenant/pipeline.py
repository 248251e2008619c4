"""One tenant's sync pass: fetcher → transformer → Quo writer → mapping verifier.

The four actors run in one TaskGroup joined by bounded queues, so memory stays flat
whatever the CRM's size. They share in-flight records, so they are supervised as one
(one_for_all): if any of them crashes, all stop and the pass restarts from the last
committed checkpoint, within a restart budget. Records already written come back as
unchanged (content hash) and cost no Quo request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from crmsync import metrics
from crmsync.actors.fetcher import CURSOR, Fetcher
from crmsync.actors.messages import RawMessage, VerifyMessage, WriteMessage
from crmsync.actors.transformer import Transformer
from crmsync.actors.verifier import BulkOptions, MappingVerifier
from crmsync.actors.writer import QuoWriter
from crmsync.adapters.base import CrmAdapter
from crmsync.adapters.errors import CrmAuthError
from crmsync.config import Config, TenantConfig
from crmsync.quo.client import QuoClient
from crmsync.quo.errors import QuoAuthError
from crmsync.services.contact_writes import QuoContactSync
from crmsync.store import Store
from crmsync.store.mappings import SyncMethod
from crmsync.store.runs import RunKind, SyncRun
from crmsync.tenant.supervisor import RestartBudget, RestartBudgetSpentError, root_cause

log = logging.getLogger(__name__)

QUEUE_SAMPLE_SECONDS = 1.0


@dataclass
class PipelineOptions:
    crm_objects: list[str]
    page_size: int = 100
    writer_concurrency: int = 20
    bulk_batch_size: int | None = None  # None: single creates
    bulk: BulkOptions = field(default_factory=BulkOptions)
    max_error_rate: float = 0.01
    full: bool = False


@dataclass
class SyncResult:
    run: SyncRun
    ok: bool
    bulk_missing: list[str]
    dropped_phones: int


class SyncPipeline:
    """Runs passes for one tenant; `on_settled(action)` feeds progress displays."""

    def __init__(
        self,
        tenant: str,
        *,
        store: Store,
        quo: QuoClient,
        adapter: CrmAdapter,
        options: PipelineOptions,
        on_settled: Callable[[str], None] | None = None,
        budget: RestartBudget | None = None,
    ) -> None:
        self.tenant = tenant
        self._store = store
        self._quo = quo
        self._adapter = adapter
        self._options = options
        self._on_settled = on_settled
        self._budget = budget or RestartBudget(max_restarts=5, within_seconds=30)

    async def _start_run(self) -> int:
        runs = self._store.runs
        latest = await runs.latest(self.tenant)
        if latest is not None and latest.state in ("pending", "running"):
            # The process died mid-pass: close that run; checkpoints carry the progress.
            if latest.state == "pending":
                await runs.transition(self.tenant, latest.id, "running")
            await runs.transition(self.tenant, latest.id, "failed", error="interrupted")
        if self._options.full:
            for crm_object in self._options.crm_objects:
                await self._store.checkpoints.delete(self.tenant, crm_object, CURSOR)
        tenant = await self._store.tenants.get(self.tenant)
        initial = tenant is None or tenant.initial_sync_completed_at is None
        kind: RunKind = (
            "initial" if initial else ("full" if self._options.full else "incremental")
        )
        run_id = await runs.create(self.tenant, kind)
        await runs.transition(self.tenant, run_id, "running")
        await self._store.tenants.set_state(
            self.tenant, "running", phase="initial_sync" if initial else "live"
        )
        return run_id

    async def _pass(self, run_id: int) -> tuple[list[str], int]:
        options = self._options
        queue_size = max(2 * options.page_size, 2 * options.writer_concurrency)
        raw: asyncio.Queue[RawMessage] = asyncio.Queue(maxsize=4)
        writes: asyncio.Queue[WriteMessage] = asyncio.Queue(maxsize=queue_size)
        verify: asyncio.Queue[VerifyMessage] = asyncio.Queue(maxsize=queue_size)
        sync = QuoContactSync(self._quo)
        tenant = await self._store.tenants.get(self.tenant)
        method: SyncMethod = (
            "initial" if tenant is None or tenant.initial_sync_completed_at is None else "poll"
        )
        verifier = MappingVerifier(
            self.tenant, store=self._store, sync=sync, inbox=verify, run_id=run_id,
            bulk=options.bulk, on_settled=self._on_settled,
        )
        writer = QuoWriter(
            self.tenant, sync=sync, store=self._store, inbox=writes, out=verify,
            concurrency=options.writer_concurrency, sync_method=method,
            bulk_batch_size=options.bulk_batch_size,
        )
        transformer = Transformer(self.tenant, adapter=self._adapter, inbox=raw, out=writes)
        fetcher = Fetcher(
            self.tenant, adapter=self._adapter, store=self._store,
            crm_objects=options.crm_objects, page_size=options.page_size, out=raw,
        )
        queues: dict[str, asyncio.Queue[Any]] = {"raw": raw, "write": writes, "verify": verify}
        sampler = asyncio.create_task(self._sample_queue_depths(queues))
        try:
            # Sinks first, sources last (and the reverse on the way out).
            async with asyncio.TaskGroup() as actors:
                for actor in (verifier, writer, transformer, fetcher):
                    actors.create_task(actor.start(), name=f"{self.tenant}:{actor.name}")
        finally:
            sampler.cancel()
            for name in queues:
                metrics.queue_depth.labels(self.tenant, name).set(0)
        return verifier.bulk_missing, transformer.dropped_phones

    async def _sample_queue_depths(self, queues: dict[str, asyncio.Queue[Any]]) -> None:
        while True:
            for name, queue in queues.items():
                metrics.queue_depth.labels(self.tenant, name).set(queue.qsize())
            await asyncio.sleep(QUEUE_SAMPLE_SECONDS)

    async def run(self) -> SyncResult:
        run_id = await self._start_run()
        bulk_missing: list[str] = []
        dropped_phones = 0
        while True:
            try:
                bulk_missing, dropped_phones = await self._pass(run_id)
                break
            except* (QuoAuthError, CrmAuthError) as group:
                rejected = root_cause(group)
                await self._finish(run_id, ok=False, error=f"credentials rejected: {rejected}")
                raise rejected from None
            except* Exception as group:
                crash = root_cause(group)
                reason = f"{type(crash).__name__}: {crash}"
                try:
                    self._budget.spend()
                except RestartBudgetSpentError:
                    await self._finish(run_id, ok=False, error=reason)
                    raise crash from None
                metrics.actor_restarts.labels(self.tenant, "sync_pipeline").inc()
                log.warning("sync pass crashed (%s); restarting from the checkpoint", reason,
                            extra={"tenant": self.tenant})
        run = await self._store.runs.get(self.tenant, run_id)
        assert run is not None
        counts = run.counts
        failed_share = counts.failed / counts.fetched if counts.fetched else 0.0
        ok = failed_share <= self._options.max_error_rate
        error = None if ok else (
            f"{counts.failed} of {counts.fetched} records failed "
            f"({failed_share:.1%} > max_error_rate {self._options.max_error_rate:.1%})"
        )
        finished = await self._finish(run_id, ok=ok, error=error, pass_complete=True)
        return SyncResult(finished, ok, bulk_missing, dropped_phones)

    async def _finish(
        self, run_id: int, *, ok: bool, error: str | None, pass_complete: bool = False
    ) -> SyncRun:
        """Close the run; a pass that reached the end starts the next one from the top."""
        now = time.time()
        await self._store.runs.transition(
            self.tenant, run_id, "completed" if ok else "failed", error=error
        )
        if pass_complete:
            # Every record was written or dead-lettered (`crmsync retry` re-queues those).
            for crm_object in self._options.crm_objects:
                await self._store.checkpoints.delete(self.tenant, crm_object, CURSOR)
        if ok:
            tenant = await self._store.tenants.get(self.tenant)
            if tenant is None or tenant.initial_sync_completed_at is None:
                await self._store.tenants.mark_initial_sync_completed(self.tenant, now)
            await self._store.tenants.set_state(self.tenant, "running", phase="live")
            await self._store.tenants.mark_success(self.tenant, now)
            metrics.last_successful_sync.labels(self.tenant).set(now)
        else:
            await self._store.tenants.set_state(self.tenant, "failed", last_error=error)
        run = await self._store.runs.get(self.tenant, run_id)
        assert run is not None
        return run


def pipeline_options(config: Config, tenant: TenantConfig, *, full: bool) -> PipelineOptions:
    """A tenant's pass options from the config."""
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
