"""The status report (INTERFACE §2): what `crmsync status --json` prints and `/status` serves.

Built from the state database only, so a read-only connection can make it while the
daemon writes. Every configured tenant appears (one never seen is `stopped`), then any
tenant that is only in the database (removed from the config, kept for its history).
Field names are camelCase on the wire; fields may be added, never renamed.

A stored state is only as live as the process that wrote it. `/status` is served by the
daemon, so it is live by definition; `crmsync status` asks the state lock whether a
process runs the tenant (`live`). On a PostgreSQL state, shared by replicas, either asks
the leases: a tenant is live while its group's lease is current, and `replica` names
the holder. For a tenant nobody runs, a stored `starting`,
`running` or `parked` (states only a live process can be in) is reported `stopped`,
phase, counts and last error as stored; and its last run, if still `pending` or
`running` in the store, is reported as what the next pass will record for it: `failed`
with error `interrupted`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

import msgspec

from crmsync.config import Config
from crmsync.store import (
    INTERRUPTED,
    Counts,
    RunKind,
    RunState,
    Store,
    SyncRun,
    Tenant,
    TenantPhase,
    TenantState,
)
from crmsync.store.leases import Held
from crmsync.store.subscriptions import POLLING_ONLY

#: states only a live process can be in: stale when no process runs the tenant
LIVE_STATES: frozenset[TenantState] = frozenset({"starting", "running", "parked"})


class LastRun(msgspec.Struct, rename="camel", frozen=True, kw_only=True):
    """The latest sync run, which the tenant's `counts` come from."""

    id: int
    kind: RunKind
    state: RunState
    started_at: str | None
    finished_at: str | None
    error: str | None


class TenantStatus(msgspec.Struct, rename="camel", frozen=True, kw_only=True):
    id: str
    crm: str
    state: TenantState
    phase: TenantPhase
    initial_sync_completed_at: str | None
    last_success_at: str | None
    last_error: str | None
    counts: Counts
    dead_letters: int
    dead_letters_by_category: dict[str, int]
    #: saved checkpoints, `{crm_object: {name: value}}`, or None when there are none
    watermark: dict[str, dict[str, str]] | None
    configured: bool
    last_run: LastRun | None
    #: how CRM changes arrive: "webhooks", "polling only: <why>", or "not set up yet"
    crm_changes: str = "not set up yet"
    #: the process running the tenant (`host:pid`): its lease's holder, while current
    replica: str | None = None


class StatusReport(msgspec.Struct, frozen=True, kw_only=True):
    tenants: list[TenantStatus]


def rfc3339(timestamp: float | None) -> str | None:
    """Unix seconds as RFC 3339 UTC (`2026-11-23T10:00:00Z`; milliseconds only if any)."""
    if timestamp is None:
        return None
    moment = datetime.fromtimestamp(round(timestamp, 3), UTC)
    spec = "seconds" if moment.microsecond == 0 else "milliseconds"
    return moment.isoformat(timespec=spec).replace("+00:00", "Z")


async def build_status(
    config: Config, store: Store | None, *, live: Callable[[str], bool] | None = None
) -> StatusReport:
    """The report for every tenant; `store` None means no state database exists yet.

    `live(tenant_id)` says whether a process runs that tenant now; None means every one
    does (the daemon serving `/status`). See the module docstring for what a tenant that
    nobody runs is reported as.
    """
    stored: dict[str, Tenant] = {}
    held: dict[str, Held] = {}
    if store is not None:
        stored = {t.tenant_id: t for t in await store.tenants.list_all()}
        held = await store.leases.current(now=await store.leases.clock())
        if store.backend == "postgresql":
            # Replicas share the state: a tenant is live while its group's lease is.
            def live(tenant_id: str) -> bool:
                return tenant_id in held
    configured = {t.id: t.crm for t in config.tenants}
    ids = list(configured) + sorted(stored.keys() - configured.keys())
    tenants = []
    for tenant_id in ids:
        row = stored.get(tenant_id)
        crm = configured.get(tenant_id) or (row.crm if row else "")
        if store is None or row is None:
            tenants.append(_never_seen(tenant_id, crm, configured=tenant_id in configured))
        else:
            running = live is None or live(tenant_id)
            lease = held.get(tenant_id)
            tenants.append(
                await _tenant_status(store, row, crm, tenant_id in configured, live=running,
                                     public_url=config.http.public_url,
                                     replica=lease.holder if lease and running else None)
            )
    return StatusReport(tenants=tenants)


def encode_status(report: StatusReport) -> bytes:
    return msgspec.json.encode(report)


def _never_seen(tenant_id: str, crm: str, *, configured: bool) -> TenantStatus:
    return TenantStatus(
        id=tenant_id,
        crm=crm,
        state="stopped",
        phase="setup",
        initial_sync_completed_at=None,
        last_success_at=None,
        last_error=None,
        counts=Counts(),
        dead_letters=0,
        dead_letters_by_category={},
        watermark=None,
        configured=configured,
        last_run=None,
    )


async def _crm_changes(store: Store, tenant_id: str, public_url: str | None) -> str:
    """How the tenant learns of CRM changes, from its CRM subscription row."""
    if public_url is None:
        return "polling only: http.public_url is not set"
    crm = next(iter(await store.subscriptions.list(tenant_id, "crm")), None)
    if crm is None:
        return "not set up yet"
    try:
        detail = json.loads(crm.detail)
    except ValueError:
        detail = {}
    reason = detail.get(POLLING_ONLY) if isinstance(detail, dict) else None
    if reason:
        return f"polling only: {reason}"
    return "webhooks" if crm.healthy else "webhooks (unhealthy: re-checked)"


async def _tenant_status(
    store: Store, row: Tenant, crm: str, configured: bool, *, live: bool,
    public_url: str | None = None, replica: str | None = None,
) -> TenantStatus:
    tenant_id = row.tenant_id
    run = await store.runs.latest(tenant_id)
    state = row.state
    if not live:
        state = "stopped" if state in LIVE_STATES else state
        run = None if run is None else _as_closed(run)
    by_category = await store.dead_letters.counts_by_category(tenant_id)
    watermark: dict[str, dict[str, str]] = {}
    for checkpoint in await store.checkpoints.all(tenant_id):
        watermark.setdefault(checkpoint.crm_object, {})[checkpoint.name] = checkpoint.value
    return TenantStatus(
        id=tenant_id,
        crm=crm,
        state=state,
        phase=row.phase,
        initial_sync_completed_at=rfc3339(row.initial_sync_completed_at),
        last_success_at=rfc3339(row.last_success_at),
        last_error=row.last_error,
        counts=Counts() if run is None else run.counts,
        dead_letters=sum(by_category.values()),
        dead_letters_by_category=by_category,
        watermark=watermark or None,
        configured=configured,
        crm_changes=await _crm_changes(store, tenant_id, public_url),
        replica=replica,
        last_run=None if run is None else LastRun(
            id=run.id,
            kind=run.kind,
            state=run.state,
            started_at=rfc3339(run.started_at),
            finished_at=rfc3339(run.finished_at),
            error=run.error,
        ),
    )


def _as_closed(run: SyncRun) -> SyncRun:
    """A run left open by a process that is gone, as the next pass will close it."""
    if run.state not in ("pending", "running"):
        return run
    return msgspec.structs.replace(run, state="failed", error=INTERRUPTED)
