"""`activities`: which Quo calls and messages were logged to which CRM person, and how.

One row per (Quo call/message id, CRM person): a call with two matched people is logged
twice. The logger upserts the row after writing the CRM note; a later webhook for the
same call (its summary or transcript became ready) finds the row, compares
`content_hash` and updates the existing note (`crm_note_id`) instead of adding one.
"""

from __future__ import annotations

import sqlite3
from typing import Final, Literal

import msgspec

from crmsync.store.database import Database, columns

ActivityKind = Literal["message", "call"]


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


_COLUMNS: Final = columns(Activity)
_UPSERT: Final = (
    f"INSERT INTO activities ({_COLUMNS})"  # noqa: S608 (fixed names)
    f" VALUES ({', '.join('?' * len(Activity.__struct_fields__))})"
    " ON CONFLICT (tenant_id, quo_object_id, crm_person_id) DO UPDATE SET"
    " kind = excluded.kind, crm_note_id = excluded.crm_note_id,"
    " has_summary = excluded.has_summary, has_transcript = excluded.has_transcript,"
    " content_hash = excluded.content_hash, updated_at = excluded.updated_at"
)


def _activity(row: sqlite3.Row) -> Activity:
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
