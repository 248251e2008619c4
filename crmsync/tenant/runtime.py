"""One tenant inside the process: its clients, its actors' supervision, and its state.

Lifecycle: setup (webhook subscriptions, before any sync so no change is missed) →
initial sync (if none completed yet) → live: inbox processor, poller and subscription
keeper run together. `run()` supervises all of that with `supervisor.TENANT`
(one_for_all, 5 restarts in 30 s; rejected credentials — 401/403 from Quo or the CRM,
a new Quo key takes ~30 s to activate — park the tenant with backoff). Each sync pass
supervises its own actors within the tenant's pass budget. A spent budget, at either
level, marks the tenant failed with the reason; other tenants are unaffected.

The runtime is the only writer of the tenant's lifecycle state (state, phase, last
error): `_set_state` writes the store first, then the in-memory copy, readiness and
`crmsync_tenant_up`, with no await in between, so the store, `/status`, `/readyz` and
`STATUS=` agree. Sync passes only return their results.

For the daemon: `settled` is set once the startup attempt is over (the initial sync
began, or the tenant is live, parked, failed or stopped), and `progress` (fed by every
pass) tells stall detection and the shutdown drain what is in flight.
`sync_once()` is `crmsync sync`: one pass in the foreground, with the same bookkeeping.
"""

from __future__ import annotations

import asyncio
import logging

from crmsync import log_context, metrics
from crmsync.actors.inbox_processor import InboxProcessor
from crmsync.config import TenantConfig
from crmsync.net.errors import AuthError
from crmsync.net.ratelimit import Lane
from crmsync.services.activity import ActivityLogger
from crmsync.services.contact_writes import QuoContactSync, RecordWriter
from crmsync.services.crm_changes import CrmChangeHandler
from crmsync.services.subscriptions import SubscriptionManager
from crmsync.store import Store
from crmsync.store.tenants import TenantPhase, TenantState
from crmsync.tenant.pipeline import SyncPipeline, SyncResult, pipeline_options
from crmsync.tenant.poller import Poller
from crmsync.tenant.progress import Progress
from crmsync.tenant.resources import Resources
from crmsync.tenant.supervisor import (
    TENANT,
    RestartBudget,
    RestartBudgetSpentError,
    RestartCounter,
    describe,
    supervise,
)
from crmsync.web.health import Health
from crmsync.web.targets import WebhookTarget

log = logging.getLogger(__name__)

SUBSCRIPTION_CHECK_SECONDS = 300.0


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
        self._budget = RestartBudget()  # the tenant level's
        self._pass_budget = RestartBudget()  # shared by all the tenant's passes
        self._restarts = RestartCounter(self.id)
        # Counters exist from the start at 0: rate() and alerts see "none yet", not absence.
        metrics.phones_dropped.labels(self.id)
        metrics.rate_limited_responses.labels(self.id)
        metrics.actor_restarts.labels(self.id, "tenant")
        metrics.actor_restarts.labels(self.id, "sync_pipeline")
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

    # -- the one writer of the tenant's state --------------------------------------------

    async def _set_state(
        self,
        state: TenantState,
        *,
        phase: TenantPhase | None = None,
        error: str | None = None,
        clear_error: bool = False,
    ) -> None:
        await self._store.tenants.set_state(
            self.id, state, phase=phase, last_error=error, clear_error=clear_error
        )
        self._show(state, phase or self.phase, error)

    def _show(self, state: TenantState, phase: TenantPhase, error: str | None) -> None:
        """The in-memory copy of what was just written: readiness, metrics, events."""
        self.state, self.phase = state, phase
        if state in ("parked", "failed", "stopped"):
            self.halted.set()
        else:
            self.halted.clear()
        if state != "starting":
            self.settled.set()
        metrics.tenant_up.labels(self.id).set(1 if state == "running" else 0)
        if state == "running" and phase == "live":
            reason = None
        elif state == "running":
            reason = "initial sync running"
        else:
            reason = state + (f" ({error})" if error else "")
        self._health.set_reason(self.id, reason)

    def launching(self) -> None:
        """The daemon launched it: not ready until it says otherwise."""
        self._show("starting", "setup", None)

    async def restarting(self, child: str, error: Exception) -> None:
        """Supervisor hook: a crash within the budget; the child starts again."""
        await self._restarts.restarting(child, error)

    async def parked(self, child: str, error: Exception, delay: float) -> None:
        """Supervisor hook: rejected credentials; retried after `delay`."""
        await self._set_state("parked", error=f"credentials rejected: {error}")
        log.error("credentials rejected (%s); parked, retrying in %.0fs", error, delay)

    # -- sync passes ----------------------------------------------------------------------

    def new_pass(self, *, full: bool = True) -> SyncPipeline:
        self.progress.new_pass()
        return SyncPipeline(
            self.id, store=self._store, quo=self.quo, adapter=self.progress.watch(self.adapter),
            options=pipeline_options(self._resources.config, self.config, full=full),
            on_settled=self.progress.settled, budget=self._pass_budget,
        )

    async def run_pass(self, *, full: bool = True) -> SyncResult:
        """One pass inside the daemon; its outcome becomes the tenant's last error."""
        result = await self.new_pass(full=full).run()
        if result.ok:
            await self._set_state("running", phase="live", clear_error=True)
        else:
            # Still running: the failed records are dead-lettered, the next pass retries.
            log.error("sync pass finished with too many failures: %s", result.run.error)
            await self._set_state("running", phase="live", error=result.run.error)
        return result

    async def _initial_sync_done(self) -> bool:
        tenant = await self._store.tenants.get(self.id)
        return tenant is not None and tenant.initial_sync_completed_at is not None

    async def sync_once(self, *, full: bool = False) -> SyncResult:
        """`crmsync sync`: one pass in the foreground, the tenant's state around it.

        A pass over `max_error_rate`, rejected credentials and a spent budget leave the
        tenant `failed` with the reason; the last two are raised after that.
        """
        with log_context.tenant(self.id):
            return await self._sync_once(full=full)

    async def _sync_once(self, *, full: bool) -> SyncResult:
        await self._store.tenants.upsert(self.id, self.config.crm)
        initial = not await self._initial_sync_done()
        await self._set_state("running", phase="initial_sync" if initial else "live")
        try:
            result = await self.new_pass(full=full).run()
        except AuthError as exc:
            await self._set_state("failed", error=f"credentials rejected: {exc}")
            raise
        except RestartBudgetSpentError as exc:
            await self._set_state("failed", error=str(exc))
            raise
        if result.ok:
            await self._set_state("running", phase="live", clear_error=True)
        else:
            await self._set_state("failed", error=result.run.error)
        return result

    # -- the supervised tenant ------------------------------------------------------------

    def inbox_processor(self) -> InboxProcessor:
        return InboxProcessor(
            self.id, store=self._store, adapter=self.adapter, crm_changes=self.crm_changes,
            quo_events=self.activity, wake=self.target.wake,
        )

    async def _children(self) -> None:
        """The tenant's work, started again as a whole after a crash (one_for_all)."""
        # Inside the restart loop: a store hiccup at start is a tenant crash, retried.
        await self._store.tenants.upsert(self.id, self.config.crm)
        await self._set_state("starting", phase="setup")
        await self.subscriptions.ensure()
        if not await self._initial_sync_done():
            await self._set_state("running", phase="initial_sync")
            self.initial_result = await self.run_pass(full=False)
        else:
            await self._set_state("running", phase="live")
        self.started.set()
        poller = Poller(
            self.id, store=self._store, run_pass=self.run_pass, crm_changes=self.crm_changes,
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
        """Supervise the tenant until it is cancelled (stop) or forfeited (failed)."""
        with log_context.tenant(self.id):  # every task started below inherits it
            await self._run()

    async def _run(self) -> None:
        try:
            await supervise(self._children, TENANT, self._budget, name="tenant", hooks=self)
        except asyncio.CancelledError:  # stopped: also while parked or backing off
            await self._end("stopped")
            raise
        except RestartBudgetSpentError as spent:
            log.error("tenant failed: %s", spent, exc_info=spent.__cause__)  # noqa: TRY400
            await self._end("failed", error=str(spent))
        except Exception as bug:  # a bug outside any child: contain it, report it
            log.exception("tenant runtime failed")
            await self._end("failed", error=describe(bug))
        finally:
            self.settled.set()

    async def _end(self, state: TenantState, *, error: str | None = None) -> None:
        """The final state: shown even when the store cannot take it (the log says why)."""
        try:
            await self._set_state(state, error=error)
        except Exception:
            log.exception("could not record the tenant as %s", state)
            self._show(state, self.phase, error)

    async def drain_inbox(self) -> int:
        """Apply every pending event now (for `crmsync inbox replay`)."""
        with log_context.tenant(self.id):
            return await self._drain_inbox()

    async def _drain_inbox(self) -> int:
        processor = self.inbox_processor()
        await processor.setup()
        total = 0
        while (applied := await processor.process_available()) > 0:
            total += applied
        return total
