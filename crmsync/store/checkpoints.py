"""`checkpoints`: small named values per tenant and CRM object, e.g. a page cursor.

Typical names: `cursor` (where the initial sync's paging stands) and `watermark` (the
last modification time the poller has fully seen). A checkpoint is committed only after
the writes it covers were acknowledged, so resuming from it never skips a record.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from crmsync.store.database import Database, Statement, columns, to_struct

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

    async def commit_page(
        self, tenant_id: str, crm_object: str, cursor: str, *, run_id: int,
        counts: Mapping[str, int],
    ) -> None:
        """A sync page is done: its object's `CURSOR` and its run's counters
        (`Runs.add_counts`) in one unit of work, one round trip (`execute_batch`).

        Why not `transaction()`: its lock is held over four round trips to the store,
        and with 200 tenants committing pages, that queue held a page's commit for
        seconds. Both writes require the run to exist; without it nothing is written
        and `KeyError` is raised, as from `add_counts`.
        """
        # Here, not at the top: runs.py imports this module.
        from crmsync.store.runs import COUNT_FIELDS

        unknown = sorted(set(counts) - set(COUNT_FIELDS))
        if unknown:
            raise ValueError(f"unknown sync run counters: {', '.join(unknown)}")
        run = "EXISTS (SELECT 1 FROM sync_runs WHERE tenant_id = ? AND id = ?)"
        statements: list[Statement] = [(
            "INSERT INTO checkpoints (tenant_id, crm_object, name, value, updated_at)"
            f" SELECT ?, ?, ?, ?, ? WHERE {run}"
            " ON CONFLICT (tenant_id, crm_object, name)"
            " DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            (tenant_id, crm_object, CURSOR, cursor, self._db.now(), tenant_id, run_id),
        )]
        if counts:
            # Column names come from COUNT_FIELDS (checked above), never from input text.
            assignments = ", ".join(f"{name} = {name} + ?" for name in counts)
            statements.append((
                f"UPDATE sync_runs SET {assignments} WHERE tenant_id = ? AND id = ?",  # noqa: S608
                (*counts.values(), tenant_id, run_id),
            ))
        if not (await self._db.execute_batch(statements))[0]:
            raise KeyError(f"tenant {tenant_id!r} has no sync run {run_id}")

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
