"""`TenantSet`: the daemon's running tenants — launch, stop, apply a reload, summarise.

Each tenant runs `TenantRuntime.run()` (its own supervisor, which contains its
failures) as one task of the daemon's TaskGroup, beside a `StallDetector` the monitor
checks. Stopping a tenant is drain → cancel: no new page is fetched, fetched pages run
to their committed checkpoint until the deadline (or a forced stop), then the task is
cancelled with the reason. The webhook targets the HTTP listener looks up live here
too, so a removed tenant answers 404 from the moment its stop begins.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from crmsync import log_context
from crmsync.config import TenantConfig
from crmsync.daemon.reload import ReloadPlan
from crmsync.store import Store
from crmsync.tenant.gauges import forget_tenant, refresh_dead_letters
from crmsync.tenant.resources import Resources
from crmsync.tenant.runtime import TenantRuntime
from crmsync.tenant.stall import StallDetector
from crmsync.web.health import Health
from crmsync.web.targets import WebhookTarget

log = logging.getLogger(__name__)

#: how long a cancelled tenant may take to write its final state
CANCEL_GRACE_SECONDS = 10.0
#: the order of states in STATUS=
STATUS_ORDER = ("running", "initial sync", "starting", "parked", "failed", "stopped")


@dataclass
class _Running:
    runtime: TenantRuntime
    task: asyncio.Task[None]
    stall: StallDetector


def count_tenants(count: int) -> str:
    return f"{count} tenant{'' if count == 1 else 's'}"


class TenantSet:
    """The tenants of one daemon; `bind(group)` before the first `launch`."""

    def __init__(self, *, store: Store, health: Health, force: asyncio.Event) -> None:
        self._store = store
        self._health = health
        self._force = force  # a second SIGINT: skip what is left of a drain
        self._running: dict[str, _Running] = {}
        self._targets: dict[str, WebhookTarget] = {}
        self._group: asyncio.TaskGroup | None = None
        #: with a shared state: the target of a tenant another replica runs, so that a
        #: webhook may arrive at any replica (stored here, applied by the owner)
        self.standby: Callable[[str], WebhookTarget | None] | None = None

    def bind(self, group: asyncio.TaskGroup) -> None:
        self._group = group

    def __len__(self) -> int:
        return len(self._running)

    def target(self, tenant_id: str) -> WebhookTarget | None:
        """The HTTP listener's lookup: None for unknown, removed or stopped tenants,
        unless another replica runs them (`standby`)."""
        target = self._targets.get(tenant_id)
        if target is None and self.standby is not None:
            return self.standby(tenant_id)
        return target

    def ids(self) -> set[str]:
        return set(self._running)

    def runtime(self, tenant_id: str) -> TenantRuntime | None:
        running = self._running.get(tenant_id)
        return None if running is None else running.runtime

    def runtimes(self) -> list[TenantRuntime]:
        return [running.runtime for running in self._running.values()]

    # -- launch and stop ----------------------------------------------------------------

    def build(self, resources: Resources, tenant: TenantConfig) -> TenantRuntime:
        return TenantRuntime(tenant, resources=resources, store=self._store, health=self._health)

    def launch(self, runtime: TenantRuntime) -> None:
        assert self._group is not None, "bind() the daemon's task group first"
        runtime.launching()
        stall = StallDetector(
            runtime.id, progress=runtime.progress, store=self._store, health=self._health,
            inbox_active=lambda: runtime.state == "running" and runtime.phase == "live",
        )
        task = self._group.create_task(_run(runtime), name=f"tenant:{runtime.id}")
        self._running[runtime.id] = _Running(runtime, task, stall)
        self._targets[runtime.id] = runtime.target

    async def stop_all(self, reason: str, deadline: float) -> None:
        await asyncio.gather(*(
            self._stop(running, reason, deadline) for running in self._running.values()
        ))

    async def stop_some(
        self, tenant_ids: Iterable[str], reason: str, deadline: float, *, fenced: bool = False
    ) -> None:
        """Stop these running tenants (drain until `deadline`) and forget them;
        `fenced`: another process may run them now, so their end is not recorded."""
        leaving = [tid for tid in tenant_ids if tid in self._running]
        for tenant_id in leaving:
            self._targets.pop(tenant_id, None)
            self._running[tenant_id].runtime.fenced = fenced
        await asyncio.gather(*(
            self._stop(self._running[tid], reason, deadline) for tid in leaving
        ))
        for tenant_id in leaving:
            del self._running[tenant_id]
            self._health.forget(tenant_id)

    async def _stop(self, running: _Running, reason: str, deadline: float) -> None:
        """Drain until `deadline` (loop time), then cancel with a reason; wait for it."""
        runtime, task = running.runtime, running.task
        with log_context.tenant(runtime.id):
            why = await runtime.drain(task, reason=reason, deadline=deadline, force=self._force)
            if not task.done():
                log.info("stopping (%s)", why)
                task.cancel(why)
                _, pending = await asyncio.wait({task}, timeout=CANCEL_GRACE_SECONDS)
                if pending:
                    log.error("tenant supervisor did not stop within %gs of being cancelled",
                              CANCEL_GRACE_SECONDS)
        running.stall.close()
        forget_tenant(runtime.id)

    # -- reload ---------------------------------------------------------------------------

    async def apply(
        self,
        plan: ReloadPlan,
        resources: Resources,
        deadline: float,
        *,
        owned: Callable[[TenantConfig], bool] = lambda _: True,
    ) -> list[TenantRuntime]:
        """Stop the removed and changed tenants, then launch the changed and added ones
        that this process runs (`owned`: its leases say so); returns those launched.

        Only tenants running here are stopped or restarted: with replicas, the others
        are another replica's to apply the reload to.
        """
        stopping = []
        removed = [tid for tid in plan.stop if tid in self._running]
        for tenant_id in removed:
            self._targets.pop(tenant_id, None)  # new deliveries: 404, the tenant is gone
            stopping.append(self._stop(self._running[tenant_id], "removed", deadline))
        changed = {tid: t for tid, t in plan.restart.items() if tid in self._running}
        replacements = {
            tid: self.build(resources, t) for tid, t in changed.items() if owned(t)
        }
        for tenant_id in changed:
            runtime = replacements.get(tenant_id)
            if runtime is None:  # it moved to a group this process does not hold
                self._targets.pop(tenant_id, None)
            else:
                self._targets[tenant_id] = runtime.target  # deliveries verified the new way
            stopping.append(self._stop(self._running[tenant_id], "config changed", deadline))
        await asyncio.gather(*stopping)
        for tenant_id in [*removed, *(tid for tid in changed if tid not in replacements)]:
            del self._running[tenant_id]
            self._health.forget(tenant_id)
        started = [
            *replacements.values(),
            *(self.build(resources, t) for t in plan.start if owned(t)),
        ]
        for runtime in started:
            self.launch(runtime)
        return started

    # -- monitoring -----------------------------------------------------------------------

    async def check(self) -> None:
        """Stall checks and the store-backed gauges of every tenant (the monitor's tick)."""
        for running in list(self._running.values()):
            await running.stall.check()
            await refresh_dead_letters(self._store, running.runtime.id)

    def summary(self) -> str:
        """One line for STATUS=, e.g. `3 tenants: 2 running, 1 parked`."""
        states: Counter[str] = Counter()
        stalled = 0
        for running in self._running.values():
            runtime = running.runtime
            state: str = runtime.state
            if state == "running" and runtime.phase == "initial_sync":
                state = "initial sync"
            states[state] += 1
            stalled += bool(running.stall.stalled)
        if not self._running:
            return "no tenants enabled"
        parts = [f"{states[s]} {s}" for s in STATUS_ORDER if states[s]]
        if stalled:
            parts.append(f"{stalled} stalled")
        return f"{count_tenants(len(self._running))}: {', '.join(parts)}"


async def _run(runtime: TenantRuntime) -> None:
    """One tenant's task: its runtime contains its own failures (STYLE rule 3)."""
    try:
        await runtime.run()
    except Exception:  # a bug the runtime could not even report: keep the others up
        with log_context.tenant(runtime.id):
            log.exception("tenant runtime escaped its supervisor")
