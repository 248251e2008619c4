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
pass) tells stall detection and `drain` (a shutdown, a reload, Ctrl-C on `crmsync
sync`) what is in flight. `sync_once()` is `crmsync sync`: one pass in the foreground,
with the same bookkeeping and a restart budget without a time window.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from crmsync import log_context, metrics
from crmsync.actors.inbox_processor import InboxProcessor
from crmsync.config import TenantConfig
from crmsync.net.errors import AuthError
from crmsync.net.ratelimit import Lane
from crmsync.services.activity import ActivityLogger
from crmsync.services.catch_up import DeliveryCatchUp
from crmsync.services.contact_edits import ContactEditHandler
from crmsync.services.contact_writes import QuoContactSync, RecordWriter
from crmsync.services.crm_changes import CrmChangeHandler
from crmsync.services.metakocka_pull import PullResult
from crmsync.services.metakocka_push import PushResult
from crmsync.services.on_demand import OnDemandSync, SyncReport
from crmsync.services.quo_dispatch import QuoEventRouter
from crmsync.services.subscriptions import SubscriptionManager
from crmsync.store import Store
from crmsync.store.metakocka import MkLink, UnsyncedPartner
from crmsync.store.tenants import TenantPhase, TenantState
from crmsync.tenant.gauges import show_quo_key
from crmsync.tenant.metakocka_link import MetakockaLink
from crmsync.tenant.pipeline import SyncPipeline, SyncResult, pipeline_options
from crmsync.tenant.poller import Poller, advance_watermarks, changed_since_cursors
from crmsync.tenant.progress import Progress
from crmsync.tenant.resources import Resources
from crmsync.tenant.supervisor import (
    TENANT,
    RestartBudget,
    RestartBudgetSpentError,
    RestartCounter,
    describe,
    foreground_budget,
    one_for_all,
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
        self.quo_key = clients.quo_key  # the fingerprint, never the key
        self.target = WebhookTarget.for_tenant(
            resources.config, tenant, adapter=self.adapter, store=store
        )
        self.started = asyncio.Event()  # set once the tenant is live
        self.settled = asyncio.Event()  # set once the startup attempt is over
        self.halted = asyncio.Event()  # set while parked, failed or stopped
        self.state: TenantState = "starting"
        self.phase: TenantPhase = "setup"
        self.progress = Progress()
        #: set when this process lost the tenant's lease: its end is not recorded
        self.fenced = False
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
        # The management API's `POST /api/tenants/{t}/sync`: the webhook path, on demand.
        self.on_demand = OnDemandSync(
            self.id, adapter=self.adapter, store=store, crm_objects=tenant.object_types,
            handler=CrmChangeHandler(
                self.id, adapter=self.adapter, store=store, quo=self.quo,
                records=RecordWriter(self.id, store=store, sync=live), sync_method="manual",
            ),
        )
        self.activity = ActivityLogger(
            self.id, quo=self.quo, adapter=self.adapter, store=store,
            inbox_retention=resources.config.daemon.inbox_retention_days * 86400.0,
        )
        self.contact_edits = ContactEditHandler(
            self.id, adapter=self.adapter, store=store,
            records=RecordWriter(self.id, store=store, sync=live),
            mode=tenant.quo_to_crm, conflict=tenant.conflict, crm_objects=tenant.object_types,
        )
        # contact.* → the contact edits, every other Quo event → the activity logger
        self.quo_events = QuoEventRouter(contacts=self.contact_edits, activity=self.activity)
        self.subscriptions = SubscriptionManager(
            self.id, adapter=self.adapter, quo=self.quo, store=store,
            public_url=resources.config.http.public_url,
            has_static_crm_secret=tenant.crm_webhook_secret is not None,
            hooks=clients.quo_webhooks, system=resources.config.quo.webhooks,
            contact_events=tenant.quo_to_crm != "off",
        )
        # Quo deliveries missed while the daemon was down: retried at start and at every
        # subscription check (2026-03-30 webhooks only).
        self.catch_up = DeliveryCatchUp(self.id, hooks=clients.quo_webhooks, store=store)
        # The Metakocka link (INTERFACE §8), when the tenant has one.
        self.metakocka: MetakockaLink | None = (
            None if tenant.metakocka is None else MetakockaLink(
                tenant, tenant.metakocka, resources=resources, adapter=self.adapter,
                store=store,
            )
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
        """The daemon launched it: not ready until it says otherwise.

        Its Quo key's gauge is set here, not when it is built: a reload builds the
        replacement before the old runtime stops, and that stop forgets the tenant's
        gauges (`gauges.forget_tenant`).
        """
        self._show("starting", "setup", None)
        show_quo_key(self.id, self.quo_key)

    async def restarting(self, child: str, error: Exception) -> None:
        """Supervisor hook: a crash within the budget; the child starts again."""
        await self._restarts.restarting(child, error)

    async def parked(self, child: str, error: Exception, delay: float) -> None:
        """Supervisor hook: rejected credentials; retried after `delay`."""
        await self._set_state("parked", error=f"credentials rejected: {error}")
        log.error("credentials rejected (%s); parked, retrying in %.0fs", error, delay)

    # -- sync passes ----------------------------------------------------------------------

    def new_pass(
        self,
        *,
        full: bool = True,
        budget: RestartBudget | None = None,
        start_cursors: Mapping[str, str] | None = None,
    ) -> SyncPipeline:
        """A pass within `budget` (default: the tenant's pass budget, shared by its
        passes); `start_cursors`: an incremental pass's (`poller.changed_since_cursors`)."""
        self.progress.new_pass()
        return SyncPipeline(
            self.id, store=self._store, quo=self.quo, adapter=self.progress.watch(self.adapter),
            options=pipeline_options(self._resources.config, self.config, full=full,
                                     start_cursors=dict(start_cursors or {})),
            on_settled=self.progress.settled, budget=budget or self._pass_budget,
        )

    async def run_pass(
        self, *, full: bool = True, start_cursors: Mapping[str, str] | None = None
    ) -> SyncResult:
        """One pass inside the daemon; its outcome becomes the tenant's last error."""
        result = await self.new_pass(full=full, start_cursors=start_cursors).run()
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

        The pass has the foreground budget (`supervisor.foreground_budget`: 5 restarts
        in all, so a command against an unreachable CRM ends). A pass over
        `max_error_rate`, rejected credentials and a spent budget leave the tenant
        `failed` with the reason; the last two are raised after that. Cancelled (Ctrl-C,
        after `drain`), the pass closes its run as interrupted and the tenant is
        `stopped`.
        """
        with log_context.tenant(self.id):
            return await self._sync_once(full=full)

    async def _sync_once(self, *, full: bool) -> SyncResult:
        await self._store.tenants.upsert(self.id, self.config.crm)
        initial = not await self._initial_sync_done()
        await self._set_state("running", phase="initial_sync" if initial else "live")
        objects = list(self.config.object_types)
        # Not initial, not --full: from the saved watermark where the CRM can list changes.
        cursors = None if initial or full else await changed_since_cursors(
            self._store, self.id, self.adapter, objects)
        started = time.time()
        try:
            result = await self.new_pass(
                full=full, budget=foreground_budget(), start_cursors=cursors).run()
        except asyncio.CancelledError:
            await self._end("stopped")
            raise
        except AuthError as exc:
            await self._set_state("failed", error=f"credentials rejected: {exc}")
            raise
        except RestartBudgetSpentError as exc:
            await self._set_state("failed", error=str(exc))
            raise
        if self.metakocka is not None:
            await self.metakocka.sweep()  # the people this pass wrote, to Metakocka
        if result.ok:
            await advance_watermarks(self._store, self.id, objects, started)
            await self._set_state("running", phase="live", clear_error=True)
        else:
            await self._set_state("failed", error=result.run.error)
        return result

    async def sync_records(self, record_ids: Sequence[str]) -> SyncReport:
        """CRM → Quo now for chosen records, on the live lane (the management API)."""
        with log_context.tenant(self.id):
            return await self.on_demand.sync(record_ids)

    # -- the Metakocka link (the management API; 409 first when there is none) ------------

    def _link(self) -> MetakockaLink:
        if self.metakocka is None:
            raise LookupError(f"tenant {self.id} has no Metakocka link")
        return self.metakocka

    async def push(self, crm_record_ids: Sequence[str]) -> list[PushResult]:
        """CRM person → Metakocka partner now, per id (ok, mkId, error category)."""
        with log_context.tenant(self.id):
            return await self._link().push(crm_record_ids)

    async def pull(self, mk_ids: Sequence[str]) -> list[PullResult]:
        """Metakocka partner → CRM person now, per id (unpaired ones are imported)."""
        with log_context.tenant(self.id):
            return await self._link().pull(mk_ids)

    async def unsynced(self) -> list[UnsyncedPartner]:
        return await self._link().unsynced()

    async def mappings(
        self, crm_record_id: str | None = None, mk_id: str | None = None
    ) -> list[MkLink]:
        return await self._link().mappings(crm_record_id, mk_id)

    # -- the supervised tenant ------------------------------------------------------------

    def inbox_processor(self) -> InboxProcessor:
        daemon = self._resources.config.daemon
        return InboxProcessor(
            self.id, store=self._store, adapter=self.adapter, crm_changes=self.crm_changes,
            quo_events=self.quo_events, wake=self.target.wake,
            retry_window=daemon.inbox_retry_hours * 3600.0,
            retention=daemon.inbox_retention_days * 86400.0,
        )

    async def _children(self) -> None:
        """The tenant's work, started again as a whole after a crash (one_for_all)."""
        # Inside the restart loop: a store hiccup at start is a tenant crash, retried.
        await self._store.tenants.upsert(self.id, self.config.crm)
        await self._set_state("starting", phase="setup")
        await self._check_subscriptions()
        if not await self._initial_sync_done():
            await self._set_state("running", phase="initial_sync")
            self.initial_result = await self.run_pass(full=False)
        else:
            await self._set_state("running", phase="live")
        self.started.set()
        poller = Poller(
            self.id, store=self._store, run_pass=self.run_pass, crm_changes=self.crm_changes,
            crm_objects=list(self.config.object_types), interval=self.config.poll_interval,
            adapter=self.adapter,
        )
        await one_for_all([
            (f"{self.id}:inbox", self.inbox_processor().start()),
            (f"{self.id}:poller", poller.start()),
            (f"{self.id}:subscriptions", self._keep_subscriptions()),
            *(self.metakocka.children() if self.metakocka is not None else []),
        ])

    async def _keep_subscriptions(self) -> None:
        interval = min(SUBSCRIPTION_CHECK_SECONDS, self.config.poll_interval)
        while True:
            await asyncio.sleep(interval)
            await self._check_subscriptions()

    async def _check_subscriptions(self) -> None:
        """Webhooks as the tenant needs them (a legacy tenant moved to 2026-03-30), then
        the deliveries Quo could not make meanwhile retried."""
        await self.subscriptions.ensure()
        await self.catch_up.run(self.subscriptions.quo_webhook_id)

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

    async def drain(
        self,
        task: asyncio.Task[Any],
        *,
        reason: str,
        deadline: float,
        force: asyncio.Event,
        wait_for_fetch: bool = True,
    ) -> str:
        """Stop fetching new pages and let what was fetched settle and commit, until that
        is done, `deadline` (loop time), `force` or the end of `task` (the work being
        stopped); returns why the wait ended. The caller then cancels `task`.

        `wait_for_fetch=False` (a foreground stop) does not wait for a page fetch still
        in progress: a CRM that does not answer would hold the stop to the deadline.
        """
        self.progress.drain()
        settled = self.progress.wait_quiet() if wait_for_fetch else self.progress.wait_settled()
        quiet = asyncio.ensure_future(settled)
        forced = asyncio.ensure_future(force.wait())
        try:
            timeout = max(0.0, deadline - asyncio.get_running_loop().time())
            await asyncio.wait({quiet, forced, task}, timeout=timeout,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            quiet.cancel()
            forced.cancel()
        if quiet.done() and not quiet.cancelled():
            # The last record settles just before its page's checkpoint transaction
            # starts, and that transaction holds the store's lock: this read queues
            # behind it, so it returns once the checkpoint is committed.
            await self._store.tenants.get(self.id)
            return f"{reason}: drained"
        if force.is_set():
            return f"{reason}: forced, {self.progress.in_flight} records in flight"
        return (f"{reason}: drain deadline passed, {self.progress.in_flight} records in"
                " flight (resumed from the last checkpoint on the next start)")

    async def _end(self, state: TenantState, *, error: str | None = None) -> None:
        """The final state: shown even when the store cannot take it (the log says why).
        Not stored once `fenced`: another replica may run the tenant by now."""
        if self.fenced:
            self._show(state, self.phase, error)
            return
        try:
            await self._set_state(state, error=error)
        except Exception:
            log.exception("could not record the tenant as %s", state)
            self._show(state, self.phase, error)

    async def unsettled_events(self) -> int:
        """Webhook events stored and not yet applied (the demo waits for them)."""
        return await self._store.inbox.unsettled(self.id)

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
