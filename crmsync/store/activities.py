"""`activities`: which Quo calls and messages were logged to which CRM person, and how.

One row per (Quo call/message id, CRM person): a call with two matched people is logged
twice. A later webhook for the same call (its summary or transcript became ready) finds
the row, compares `content_hash` and replaces the note (`crm_note_id`) rather than
adding a second one.

`pending_hash` is a write-ahead marker: `set_pending` commits it before a note is
created, `finish_write` clears it once the note id is saved. A row that still has it
after a crash says "a note with this content may exist in the CRM": the logger looks
for it there before writing again.

Rows are pruned by age (`prune`, by the activity logger): once no event of the
activity can come again (replayed from the inbox, retried by Quo, a late call event),
its row has done its work. A row with a write in flight is kept.
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec

from crmsync.store.database import Database, Row, columns, marks

ActivityKind = Literal["message", "call"]
PRUNE_BATCH: Final = 1000


class Activity(msgspec.Struct, frozen=True, kw_only=True):
    tenant_id: str
    quo_object_id: str
    crm_person_id: str
    kind: ActivityKind
    crm_note_id: str | None
    has_summary: bool
    has_transcript: bool
    content_hash: str
    created_at: float
    updated_at: float
    pending_hash: str | None = None  # set while a note write is in flight


_COLUMNS: Final = columns(Activity)
_UPSERT: Final = (
    f"INSERT INTO activities ({_COLUMNS})"  # noqa: S608 (fixed names)
    f" VALUES ({marks(len(Activity.__struct_fields__))})"
    " ON CONFLICT (tenant_id, quo_object_id, crm_person_id) DO UPDATE SET"
    " kind = excluded.kind, crm_note_id = excluded.crm_note_id,"
    " has_summary = excluded.has_summary, has_transcript = excluded.has_transcript,"
    " content_hash = excluded.content_hash, updated_at = excluded.updated_at,"
    " pending_hash = excluded.pending_hash"
)


def _activity(row: Row) -> Activity:
    return Activity(
        tenant_id=row["tenant_id"],
        quo_object_id=row["quo_object_id"],
        crm_person_id=row["crm_person_id"],
        kind=row["kind"],
        crm_note_id=row["crm_note_id"],
        has_summary=bool(row["has_summary"]),
        has_transcript=bool(row["has_transcript"]),
        content_hash=row["content_hash"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        pending_hash=row["pending_hash"],
    )


class Activities:
    """Logged activities; `upsert` keeps the first `created_at` of a row."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, tenant_id: str, quo_object_id: str, crm_person_id: str) -> Activity | None:
        row = await self._db.fetchone(
            f"SELECT {_COLUMNS} FROM activities"  # noqa: S608 (fixed names)
            " WHERE tenant_id = ? AND quo_object_id = ? AND crm_person_id = ?",
            (tenant_id, quo_object_id, crm_person_id),
        )
        return None if row is None else _activity(row)

    async def for_quo_object(self, tenant_id: str, quo_object_id: str) -> list[Activity]:
        """Every person a call or message was logged to."""
        rows = await self._db.fetchall(
            f"SELECT {_COLUMNS} FROM activities"  # noqa: S608 (fixed names)
            " WHERE tenant_id = ? AND quo_object_id = ? ORDER BY crm_person_id",
            (tenant_id, quo_object_id),
        )
        return [_activity(row) for row in rows]

    async def upsert(self, row: Activity) -> None:
        """Insert or update the row of (`row.tenant_id`, quo object, person)."""
        await self._db.execute(_UPSERT, msgspec.structs.astuple(row))

    async def set_pending(
        self,
        tenant_id: str,
        quo_object_id: str,
        crm_person_id: str,
        kind: ActivityKind,
        pending_hash: str,
    ) -> None:
        """Before writing a note: record its hash (a new row has no note and no hash yet)."""
        now = self._db.now()
        await self._db.execute(
            "INSERT INTO activities (tenant_id, quo_object_id, crm_person_id, kind,"
            " crm_note_id, has_summary, has_transcript, content_hash, created_at,"
            " updated_at, pending_hash) VALUES (?, ?, ?, ?, NULL, FALSE, FALSE, '', ?, ?, ?)"
            " ON CONFLICT (tenant_id, quo_object_id, crm_person_id) DO UPDATE SET"
            " pending_hash = excluded.pending_hash, updated_at = excluded.updated_at",
            (tenant_id, quo_object_id, crm_person_id, kind, now, now, pending_hash),
        )

    async def finish_write(
        self,
        tenant_id: str,
        quo_object_id: str,
        crm_person_id: str,
        *,
        crm_note_id: str,
        content_hash: str,
        has_summary: bool,
        has_transcript: bool,
    ) -> bool:
        """The note is written: save its id and hash, clear `pending_hash`."""
        changed = await self._db.execute(
            "UPDATE activities SET crm_note_id = ?, content_hash = ?, has_summary = ?,"
            " has_transcript = ?, pending_hash = NULL, updated_at = ?"
            " WHERE tenant_id = ? AND quo_object_id = ? AND crm_person_id = ?",
            (crm_note_id, content_hash, has_summary, has_transcript, self._db.now(),
             tenant_id, quo_object_id, crm_person_id),
        )
        return changed > 0

    async def prune(self, tenant_id: str, before: float, limit: int = PRUNE_BATCH) -> int:
        """Delete up to `limit` rows last changed before `before` with no note write in
        flight; call again until it returns less than `limit` (each statement stays
        short)."""
        return await self._db.execute(
            "DELETE FROM activities WHERE (tenant_id, quo_object_id, crm_person_id) IN"
            " (SELECT tenant_id, quo_object_id, crm_person_id FROM activities"
            " WHERE tenant_id = ? AND updated_at < ? AND pending_hash IS NULL LIMIT ?)",
            (tenant_id, before, limit),
        )
