"""One tenant inside the daemon: its actors, their supervision, and its state.

Lifecycle: setup (webhook subscriptions, before any sync so no change is missed) →
initial sync (if none completed yet) → live: inbox processor, poller and subscription
keeper run together. The tenant supervises them one_for_all with a restart budget
(5 restarts in 30 s): a crash restarts the live set; a spent budget marks the tenant
failed with the reason, and other tenants are unaffected. Rejected credentials
(401/403 from Quo or the CRM — a new Quo key takes ~30 s to activate) park the
tenant, retried with backoff.

For the daemon: `settled` is set once the startup attempt is over (the initial sync
began, or the tenant is live, parked, failed or stopped), `state`/`phase` mirror what
was last written to the store, and `progress` (fed by every pass) tells stall detection
and the shutdown drain what is in flight.
"""

from __future__ import annotations

import asyncio
import logging

from crmsync import metrics
from crmsync.actors.inbox_processor import InboxProcessor
from crmsync.adapters.errors import CrmAuthError
from crmsync.config import TenantConfig
from crmsync.net.ratelimit import Lane
from crmsync.net.retry import RetryPolicy
from crmsync.quo.errors import QuoAuthError
from crmsync.services.activity import ActivityLogger
from crmsync.services.contact_writes import QuoContactSync, RecordWriter
from crmsync.services.crm_changes import CrmChangeHandler
from crmsync.services.subscriptions import SubscriptionManager
from crmsync.store import Store
from crmsync.store.tenants import TenantPhase, TenantState
from crmsync.tenant.pipeline import SyncPipeline, SyncResult, pipeline_options
from crmsync.tenant.poller import Poller
from crmsync.tenant.resources import Resources
from crmsync.tenant.stall import Progress
from crmsync.tenant.supervisor import RestartBudget, RestartBudgetSpentError, root_cause
from crmsync.web.health import Health
from crmsync.web.targets import WebhookTarget

log = logging.getLogger(__name__)

SUBSCRIPTION_CHECK_SECONDS = 300.0
PARK_RETRY = RetryPolicy(base_delay=30.0, max_delay=3600.0)


class TenantRuntime:
    def __init__(
        self,
        tenant: TenantConfig,
        *,
        resources: Resources,
        store: Store,
        health: Health,
    ) -> None:
        self.config = tenant
        self.id = tenant.id
        self._resources = resources
        self._store = store
        self._health = health
        clients = resources.clients_for(tenant)
        self.quo = clients.quo
        self.adapter = clients.adapter
        self.target = WebhookTarget.for_tenant(
            resources.config, tenant, adapter=self.adapter, store=store
        )
        self.started = asyncio.Event()  # set once the tenant is live
        self.settled = asyncio.Event()  # set once the startup attempt is over
        self.halted = asyncio.Event()  # set while parked, failed or stopped
        self.state: TenantState = "starting"
        self.phase: TenantPhase = "setup"
        self.progress = Progress()
        # Counters exist from the start at 0: rate() and alerts see "none yet", not absence.
        metrics.phones_dropped.labels(self.id)
        metrics.rate_limited_responses.labels(self.id)
        metrics.actor_restarts.labels(self.id, "tenant")
        self.initial_result: SyncResult | None = None  # this process's initial sync
        live = QuoContactSync(self.quo, lane=Lane.LIVE)
        self.crm_changes = CrmChangeHandler(
            self.id, adapter=self.adapter, store=store, quo=self.quo,
            records=RecordWriter(self.id, store=store, sync=live),
        )
        self.activity = ActivityLogger(self.id, quo=self.quo, adapter=self.adapter, store=store)
        self.subscriptions = SubscriptionManager(
            self.id, adapter=self.adapter, quo=self.quo, store=store,
            public_url=resources.config.http.public_url,
            has_static_crm_secret=tenant.crm_webhook_secret is not None,
        )

    def new_pass(self, *, full: bool = True) -> SyncPipeline:
        self.progress.new_pass()
        return SyncPipeline(
            self.id, store=self._store, quo=self.quo, adapter=self.progress.watch(self.adapter),
            options=pipeline_options(self._resources.config, self.config, full=full),
            on_settled=self.progress.settled,
        )

    def inbox_processor(self) -> InboxProcessor:
        return InboxProcessor(
            self.id, store=self._store, adapter=self.adapter, crm_changes=self.crm_changes,
            quo_events=self.activity, wake=self.target.wake,
        )

    async def _set_state(
        self, state: TenantState, *, phase: TenantPhase | None = None, error: str | None = None
    ) -> None:
        await self._store.tenants.set_state(self.id, state, phase=phase, last_error=error)
        self.state, self.phase = state, phase or self.phase
        if state in ("parked", "failed", "stopped"):
            self.halted.set()
        else:
            self.halted.clear()
        if state != "starting":
            self.settled.set()
        metrics.tenant_up.labels(self.id).set(1 if state == "running" else 0)
        self._health.set_reason(
            self.id, None if state == "running" else state + (f" ({error})" if error else "")
        )

    async def _run_once(self) -> None:
        # Inside the restart loop: a store hiccup at start is a tenant crash, retried.
        await self._store.tenants.upsert(self.id, self.config.crm)
        await self._set_state("starting", phase="setup")
        await self.subscriptions.ensure()
        tenant = await self._store.tenants.get(self.id)
        if tenant is None or tenant.initial_sync_completed_at is None:
            await self._store.tenants.set_state(self.id, "running", phase="initial_sync")
            self.state, self.phase = "running", "initial_sync"
            self.settled.set()
            self._health.set_reason(self.id, "initial sync running")
            result = self.initial_result = await self.new_pass(full=False).run()
            if not result.ok:
                log.error("initial sync finished with too many failures: %s", result.run.error,
                          extra={"tenant": self.id})
        await self._set_state("running", phase="live")
        self.started.set()
        poller = Poller(
            self.id, store=self._store, new_pass=self.new_pass, crm_changes=self.crm_changes,
            crm_objects=list(self.config.object_types), interval=self.config.poll_interval,
        )
        async with asyncio.TaskGroup() as actors:
            actors.create_task(self.inbox_processor().start(), name=f"{self.id}:inbox")
            actors.create_task(poller.start(), name=f"{self.id}:poller")
            actors.create_task(self._keep_subscriptions(), name=f"{self.id}:subscriptions")

    async def _keep_subscriptions(self) -> None:
        interval = min(SUBSCRIPTION_CHECK_SECONDS, self.config.poll_interval)
        while True:
            await asyncio.sleep(interval)
            await self.subscriptions.ensure()

    async def run(self) -> None:
        """Supervise the tenant until cancelled (stop) or its restart budget is spent."""
        try:
            await self._supervise()
        except asyncio.CancelledError:  # stopped: also while parked or backing off
            await self._set_state("stopped")
            raise

    async def _supervise(self) -> None:
        budget = RestartBudget(max_restarts=5, within_seconds=30)
        parked = 0
        while True:
            try:
                await self._run_once()
            except BaseException as group:  # the supervision boundary
                error = root_cause(group)
                if isinstance(error, asyncio.CancelledError | KeyboardInterrupt | SystemExit):
                    raise
                reason = f"{type(error).__name__}: {error}"
                if isinstance(error, QuoAuthError | CrmAuthError):
                    delay = PARK_RETRY.backoff(parked) + PARK_RETRY.base_delay
                    parked += 1
                    await self._set_state("parked", error=f"credentials rejected: {error}")
                    log.error(  # noqa: TRY400 - an expected condition, no traceback
                        "credentials rejected (%s); parked, retrying in %.0fs",
                              error, delay, extra={"tenant": self.id})
                    await asyncio.sleep(delay)
                    continue
                try:
                    budget.spend()
                except RestartBudgetSpentError as spent:
                    await self._set_state("failed", error=f"{spent}; last: {reason}")
                    log.error(  # noqa: TRY400 - the traceback is the crash's, not this one's
                        "tenant failed: %s; last error: %s", spent, reason,
                        exc_info=error, extra={"tenant": self.id},
                    )
                    return
                metrics.actor_restarts.labels(self.id, "tenant").inc()
                log.warning("tenant actors crashed (%s); restarting", reason,
                            extra={"tenant": self.id})
                await asyncio.sleep(1.0)  # a crash loop must not spin
            else:
                return

    async def drain_inbox(self) -> int:
        """Apply every pending event now (for `crmsync inbox replay`)."""
        processor = self.inbox_processor()
        await processor.setup()
        total = 0
        while (applied := await processor.process_available()) > 0:
            total += applied
        return total
