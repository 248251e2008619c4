"""`write_intents`: the intent log that makes Quo writes safe across crashes.

Before a Quo request that changes a contact, the writer records "about to create/update/
delete X with this payload" (`begin`) and commits it; after Quo answered and the mapping
was saved it deletes the row (`settle`). A crash in between leaves the intent behind, and
on the next start `pending()` lists exactly the records whose Quo state is unknown: the
reconciler looks each up in Quo (by `externalId`) instead of blindly creating it again.
"""

from __future__ import annotations

from typing import ClassVar, Generic, Literal, TypeVar

import msgspec

from crmsync.store.database import Database, Statement, columns, to_struct

Operation = Literal["create", "update", "delete", "bulk_create"]


IntentT = TypeVar("IntentT", bound=msgspec.Struct)


def settle_statement(
    table: str, tenant_id: str, crm_object: str, crm_record_id: str
) -> Statement:
    """`IntentLog.settle` as a statement, for a unit of work (`Database.execute_batch`)."""
    return (
        f"DELETE FROM {table}"  # noqa: S608 (a fixed name)
        " WHERE tenant_id = ? AND crm_object = ? AND crm_record_id = ?",
        (tenant_id, crm_object, crm_record_id),
    )


class WriteIntent(msgspec.Struct, frozen=True, kw_only=True):
    tenant_id: str
    crm_object: str
    crm_record_id: str
    operation: Operation
    payload_hash: str
    started_at: float


class IntentLog(Generic[IntentT]):
    """An intent table: at most one open intent per record; a new `begin` replaces it.

    Subclasses name the table and its row Struct and write their own `begin` (the
    columns differ); settling, reading and listing are the same for every API.
    """

    table: ClassVar[str]
    row: type[IntentT]

    def __init__(self, db: Database) -> None:
        self._db = db

    async def settle(self, tenant_id: str, crm_object: str, crm_record_id: str) -> bool:
        """The write is done (or known not to have happened); returns whether one was open."""
        changed = await self._db.execute(
            *settle_statement(self.table, tenant_id, crm_object, crm_record_id)
        )
        return changed > 0

    async def get(self, tenant_id: str, crm_object: str, crm_record_id: str) -> IntentT | None:
        row = await self._db.fetchone(
            f"SELECT {columns(self.row)} FROM {self.table}"  # noqa: S608 (fixed names)
            " WHERE tenant_id = ? AND crm_object = ? AND crm_record_id = ?",
            (tenant_id, crm_object, crm_record_id),
        )
        return None if row is None else to_struct(self.row, row)

    async def pending(self, tenant_id: str) -> list[IntentT]:
        """Open intents, oldest first: after a crash, the writes to reconcile."""
        rows = await self._db.fetchall(
            f"SELECT {columns(self.row)} FROM {self.table}"  # noqa: S608 (fixed names)
            " WHERE tenant_id = ? ORDER BY started_at, crm_object, crm_record_id",
            (tenant_id,),
        )
        return [to_struct(self.row, row) for row in rows]


class Intents(IntentLog[WriteIntent]):
    """Quo write intents."""

    table = "write_intents"
    row = WriteIntent

    async def begin(
        self,
        tenant_id: str,
        crm_object: str,
        crm_record_id: str,
        operation: Operation,
        payload_hash: str,
    ) -> None:
        # Grouped: every writer task of every tenant notes an intent before each create,
        # and a commit each was what bounded the initial syncs (`execute_grouped`).
        await self._db.execute_grouped(
            "INSERT INTO write_intents (tenant_id, crm_object, crm_record_id, operation,"
            " payload_hash, started_at) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (tenant_id, crm_object, crm_record_id) DO UPDATE SET"
            " operation = excluded.operation, payload_hash = excluded.payload_hash,"
            " started_at = excluded.started_at",
            (tenant_id, crm_object, crm_record_id, operation, payload_hash, self._db.now()),
        )
