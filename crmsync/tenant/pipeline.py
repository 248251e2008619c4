"""One tenant's sync pass: fetcher → transformer → Quo writer → mapping verifier.

The four actors run in one TaskGroup joined by bounded queues, so memory stays flat
whatever the CRM's size. They share in-flight records, so they are supervised as one
(`supervisor.PASS`, one_for_all): if any of them crashes, all stop and the pass restarts
from the last committed checkpoint under the same run, within the tenant's pass budget.
Records already written come back as unchanged (content hash) and cost no Quo request.

The pipeline keeps its run's books (`store.runs.begin` / `finish`) and returns a
`SyncResult`; what that means for the tenant's state is the tenant runtime's decision.
A pass that is cancelled (shutdown, Ctrl-C) closes its run as `failed` with error
`interrupted` and the counts of every record it settled, committed page or not.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from crmsync import metrics
from crmsync.actors.fetcher import Fetcher
from crmsync.actors.messages import RawMessage, VerifyMessage, WriteMessage
from crmsync.actors.transformer import Transformer
from crmsync.actors.verifier import BulkOptions, MappingVerifier
from crmsync.actors.writer import QuoWriter
from crmsync.adapters.base import CrmAdapter
from crmsync.config import Config, TenantConfig
from crmsync.net.errors import AuthError
from crmsync.quo.client import QuoClient
from crmsync.services.contact_writes import QuoContactSync
from crmsync.store import Store
from crmsync.store.runs import INTERRUPTED, RunStart, SyncRun
from crmsync.tenant.supervisor import (
    PASS,
    RestartBudget,
    RestartCounter,
    describe,
    one_for_all,
    supervise,
)

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
    #: per CRM object, where its listing starts when no unfinished pass's cursor is
    #: saved (an incremental pass: the adapter's `changed_since_cursor`)
    start_cursors: dict[str, str] = field(default_factory=dict)


@dataclass
class SyncResult:
    run: SyncRun
    ok: bool
    bulk_missing: list[str]
    dropped_phones: int
    #: the pass was (part of) the initial sync
    initial: bool = False


class SyncPipeline:
    """One pass for one tenant; `on_settled(action)` feeds progress displays.

    `budget` is the tenant's pass budget (shared by all its passes); restarts are
    counted in `crmsync_actor_restarts_total{actor="sync_pipeline"}`.
    """

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
        self._budget = budget or RestartBudget()
        self._hooks = RestartCounter(tenant)
        #: the current attempt's verifier: what an interrupted run still counts
        self._verifier: MappingVerifier | None = None

    async def _pass(self, start: RunStart) -> tuple[list[str], int]:
        options = self._options
        queue_size = max(2 * options.page_size, 2 * options.writer_concurrency)
        raw: asyncio.Queue[RawMessage] = asyncio.Queue(maxsize=4)
        writes: asyncio.Queue[WriteMessage] = asyncio.Queue(maxsize=queue_size)
        verify: asyncio.Queue[VerifyMessage] = asyncio.Queue(maxsize=queue_size)
        sync = QuoContactSync(self._quo)
        verifier = MappingVerifier(
            self.tenant, store=self._store, sync=sync, inbox=verify, run_id=start.run_id,
            bulk=options.bulk, on_settled=self._on_settled,
        )
        writer = QuoWriter(
            self.tenant, sync=sync, store=self._store, inbox=writes, out=verify,
            concurrency=options.writer_concurrency,
            sync_method="initial" if start.initial else "poll",
            bulk_batch_size=options.bulk_batch_size,
        )
        transformer = Transformer(self.tenant, adapter=self._adapter, inbox=raw, out=writes)
        fetcher = Fetcher(
            self.tenant, adapter=self._adapter, store=self._store,
            crm_objects=options.crm_objects, page_size=options.page_size, out=raw,
            start_cursors=options.start_cursors,
        )
        queues: dict[str, asyncio.Queue[Any]] = {"raw": raw, "write": writes, "verify": verify}
        sampler = asyncio.create_task(self._sample_queue_depths(queues))
        self._verifier = verifier
        try:
            # Sinks first, sources last (and the reverse on the way out).
            await one_for_all(
                (f"{self.tenant}:{actor.name}", actor.start())
                for actor in (verifier, writer, transformer, fetcher)
            )
        except Exception:
            # A crash: the restart redoes this attempt's uncommitted pages, so nothing of
            # them may be counted (only a cancellation counts them, see `run`).
            self._verifier = None
            raise
        finally:
            sampler.cancel()
            for name in queues:
                metrics.queue_depth.labels(self.tenant, name).set(0)
        return verifier.bulk_missing, transformer.dropped_phones

    async def _close_interrupted(self, run_id: int) -> None:
        """The pass was stopped (shutdown, Ctrl-C): close its run as `failed` with error
        `interrupted` and the counts of what it wrote.

        Committed pages carry their counts already; the records settled in pages that
        never completed (their mappings are stored, their cursor is not) are added
        here, so the run counts every record it settled, and the next pass, starting
        from the committed cursor, counts those again as its own (unchanged). Runs in
        the cancelled task: a second cancellation (a forced stop) abandons it, and the
        run is then closed by the next pass's `runs.begin`, as after a kill.
        """
        settled = self._verifier.uncommitted_counts() if self._verifier else Counter[str]()
        try:
            async with self._store.transaction():
                if settled:
                    await self._store.runs.add_counts(
                        self.tenant, run_id, fetched=settled.total(), **settled
                    )
                await self._store.runs.finish(self.tenant, run_id, ok=False, error=INTERRUPTED)
        except Exception:
            log.exception("could not close the interrupted run %d", run_id)
        else:
            for action, count in settled.items():
                metrics.records_synced.labels(self.tenant, action).inc(count)

    async def _sample_queue_depths(self, queues: dict[str, asyncio.Queue[Any]]) -> None:
        while True:
            for name, queue in queues.items():
                metrics.queue_depth.labels(self.tenant, name).set(queue.qsize())
            await asyncio.sleep(QUEUE_SAMPLE_SECONDS)

    async def run(self) -> SyncResult:
        """Run the pass to its end; raises what its supervisor gives up on (a rejected
        key, a spent budget) after closing the run as failed."""
        options = self._options
        start = await self._store.runs.begin(
            self.tenant, full=options.full, crm_objects=options.crm_objects
        )
        try:
            bulk_missing, dropped_phones = await supervise(
                lambda: self._pass(start), PASS, self._budget,
                name="sync_pipeline", hooks=self._hooks,
            )
        except asyncio.CancelledError:
            await self._close_interrupted(start.run_id)
            raise
        except AuthError as rejected:
            await self._store.runs.finish(
                self.tenant, start.run_id, ok=False, error=f"credentials rejected: {rejected}"
            )
            raise
        except Exception as crash:
            await self._store.runs.finish(
                self.tenant, start.run_id, ok=False, error=describe(crash.__cause__ or crash)
            )
            raise
        run = await self._store.runs.get(self.tenant, start.run_id)
        assert run is not None
        counts = run.counts
        failed_share = counts.failed / counts.fetched if counts.fetched else 0.0
        ok = failed_share <= options.max_error_rate
        error = None if ok else (
            f"{counts.failed} of {counts.fetched} records failed "
            f"({failed_share:.1%} > max_error_rate {options.max_error_rate:.1%})"
        )
        # The pass reached the end of every object: the next one starts from the top.
        finished = await self._store.runs.finish(
            self.tenant, start.run_id, ok=ok, error=error, crm_objects=options.crm_objects
        )
        if ok:
            metrics.last_successful_sync.labels(self.tenant).set(finished.finished_at or 0.0)
        return SyncResult(finished, ok, bulk_missing, dropped_phones, initial=start.initial)


def pipeline_options(
    config: Config,
    tenant: TenantConfig,
    *,
    full: bool,
    start_cursors: dict[str, str] | None = None,
) -> PipelineOptions:
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
        start_cursors=start_cursors or {},
    )
