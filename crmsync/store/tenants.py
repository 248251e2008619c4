"""`tenants`: one row per configured tenant — its lifecycle state, phase and health.

This is what `crmsync status` and `/status` report. The state, phase and last error are
written by the tenant runtime alone; a sync run records its facts (initial sync
completed, last success) through `runs.finish()`.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from crmsync.store.database import Database, columns, to_struct

TenantState = Literal["starting", "running", "parked", "failed", "stopped"]
TenantPhase = Literal["setup", "initial_sync", "live"]


class Tenant(msgspec.Struct, frozen=True, kw_only=True):
    tenant_id: str
    crm: str
    state: TenantState
    phase: TenantPhase
    last_error: str | None
    last_success_at: float | None
    initial_sync_completed_at: float | None
    updated_at: float


_SELECT = f"SELECT {columns(Tenant)} FROM tenants"  # noqa: S608 (column names from the Struct)


class Tenants:
    """Tenant rows. Updates of an unknown tenant raise `KeyError`: `upsert` it first."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def upsert(self, tenant_id: str, crm: str) -> None:
        """Register a tenant (state starting, phase setup) or update its CRM name."""
        await self._db.execute(
            "INSERT INTO tenants (tenant_id, crm, updated_at) VALUES (?, ?, ?)"
            " ON CONFLICT (tenant_id) DO UPDATE SET crm = excluded.crm,"
            " updated_at = excluded.updated_at",
            (tenant_id, crm, self._db.now()),
        )

    async def get(self, tenant_id: str) -> Tenant | None:
        row = await self._db.fetchone(f"{_SELECT} WHERE tenant_id = ?", (tenant_id,))
        return None if row is None else to_struct(Tenant, row)

    async def list_all(self) -> list[Tenant]:
        """Every tenant, by id. The one unscoped read: `status` reports all tenants."""
        rows = await self._db.fetchall(f"{_SELECT} ORDER BY tenant_id")
        return [to_struct(Tenant, row) for row in rows]

    async def set_state(
        self,
        tenant_id: str,
        state: TenantState,
        *,
        phase: TenantPhase | None = None,
        last_error: str | None = None,
        clear_error: bool = False,
    ) -> None:
        """Set the state; `phase` and `last_error` change only when given, and
        `clear_error` forgets the last error (a later success ended it)."""
        error = "NULL" if clear_error else "coalesce(?, last_error)"
        await self._update(
            tenant_id,
            f"state = ?, phase = coalesce(?, phase), last_error = {error}",
            (state, phase) if clear_error else (state, phase, last_error),
        )

    async def clear_error(self, tenant_id: str) -> None:
        await self._update(tenant_id, "last_error = NULL", ())

    async def mark_success(self, tenant_id: str, at: float) -> None:
        """Record a successful sync pass or write at `at` (unix seconds); an earlier
        error is over, so `last_error` is cleared."""
        await self._update(tenant_id, "last_success_at = ?, last_error = NULL", (at,))

    async def mark_initial_sync_completed(self, tenant_id: str, at: float) -> None:
        """The initial sync finished: later starts do incremental syncs instead."""
        await self._update(
            tenant_id, "initial_sync_completed_at = ?, last_success_at = ?", (at, at)
        )

    async def _update(self, tenant_id: str, assignments: str, params: tuple[object, ...]) -> None:
        changed = await self._db.execute(
            f"UPDATE tenants SET {assignments}, updated_at = ? WHERE tenant_id = ?",  # noqa: S608
            (*params, self._db.now(), tenant_id),
        )
        if not changed:
            raise KeyError(f"unknown tenant {tenant_id!r}")
