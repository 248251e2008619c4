"""`checkpoints`: small named values per tenant and CRM object, e.g. a page cursor.

Typical names: `cursor` (where the initial sync's paging stands) and `watermark` (the
last modification time the poller has fully seen). A checkpoint is committed only after
the writes it covers were acknowledged, so resuming from it never skips a record.
"""

from __future__ import annotations

import msgspec

from crmsync.store.database import Database, columns, to_struct

#: where a pass's paging stands, per CRM object (committed by the mapping verifier)
CURSOR = "cursor"
#: the cursor of an object whose pages were all committed in the pass under way
CURSOR_DONE = "__done__"


class Checkpoint(msgspec.Struct, frozen=True, kw_only=True):
    tenant_id: str
    crm_object: str
    name: str
    value: str
    updated_at: float


_KEY = "tenant_id = ? AND crm_object = ? AND name = ?"


class Checkpoints:
    """Checkpoint values, keyed by (tenant, CRM object, name)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, tenant_id: str, crm_object: str, name: str) -> str | None:
        row = await self._db.fetchone(
            f"SELECT value FROM checkpoints WHERE {_KEY}",  # noqa: S608 (constant)
            (tenant_id, crm_object, name),
        )
        return None if row is None else str(row["value"])

    async def set(self, tenant_id: str, crm_object: str, name: str, value: str) -> None:
        await self._db.execute(
            "INSERT INTO checkpoints (tenant_id, crm_object, name, value, updated_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (tenant_id, crm_object, name)"
            " DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            (tenant_id, crm_object, name, value, self._db.now()),
        )

    async def delete(self, tenant_id: str, crm_object: str, name: str) -> bool:
        """Forget a checkpoint (e.g. a finished initial sync's cursor)."""
        changed = await self._db.execute(
            f"DELETE FROM checkpoints WHERE {_KEY}",  # noqa: S608 (constant)
            (tenant_id, crm_object, name),
        )
        return changed > 0

    async def all(self, tenant_id: str) -> list[Checkpoint]:
        """Every checkpoint of the tenant, for `status`."""
        rows = await self._db.fetchall(
            f"SELECT {columns(Checkpoint)} FROM checkpoints WHERE tenant_id = ?"  # noqa: S608
            " ORDER BY crm_object, name",
            (tenant_id,),
        )
        return [to_struct(Checkpoint, row) for row in rows]
