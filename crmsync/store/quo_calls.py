"""`quo_calls`: what the webhook events of one Quo call said, kept across restarts.

A call's note is enriched by up to six events arriving in any order, possibly days
apart and across restarts; the activity logger merges what each one said into one
record (`services/quo_events.CallRecord`, stored here as opaque JSON bytes) and renders
the note from it, so the note never depends on which event came last. Rows are
pruned by age (`prune`): a call whose events are all older than that is settled.
"""

from __future__ import annotations

from typing import Final

from crmsync.store.database import Database

PRUNE_BATCH: Final = 1000


class QuoCalls:
    """One JSON record per (tenant, Quo call id)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, tenant_id: str, call_id: str) -> bytes | None:
        row = await self._db.fetchone(
            "SELECT facts FROM quo_calls WHERE tenant_id = ? AND call_id = ?",
            (tenant_id, call_id),
        )
        return None if row is None else bytes(row["facts"])

    async def put(self, tenant_id: str, call_id: str, facts: bytes) -> None:
        await self._db.execute(
            "INSERT INTO quo_calls (tenant_id, call_id, facts, updated_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (tenant_id, call_id)"
            " DO UPDATE SET facts = excluded.facts, updated_at = excluded.updated_at",
            (tenant_id, call_id, facts, self._db.now()),
        )

    async def prune(self, tenant_id: str, before: float, limit: int = PRUNE_BATCH) -> int:
        """Delete up to `limit` records last changed before `before`; call again until
        it returns less than `limit` (each statement stays short)."""
        return await self._db.execute(
            "DELETE FROM quo_calls WHERE (tenant_id, call_id) IN (SELECT tenant_id, call_id"
            " FROM quo_calls WHERE tenant_id = ? AND updated_at < ? LIMIT ?)",
            (tenant_id, before, limit),
        )
