"""`mappings`: which Quo contact each CRM record became, and how it got there.

One row per (tenant, CRM object, CRM record), kept after the record is deleted
(`deleted_at` set, action `deleted`) so a deletion is reported and not re-created.
`content_hash` is the hash of the last payload written to Quo: an equal hash means the
record is unchanged and needs no request.

A mapping is `unlinked` when its Quo contact was deleted in Quo: the CRM record is
kept (and told so in a note); a later change of the record creates the contact again.

`contact_snapshots` keeps, per mapped record, the contact fields as last synced between
the CRM and Quo (`ContactSnapshot`): the base of the three-way merge of a Quo edit. It
is written with every Quo write of the record and is valid only while its
`content_hash` equals the mapping's (a write whose mapping was never saved leaves a
stale snapshot behind, which is then ignored).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Final, Literal

import msgspec

from crmsync.store.database import columns, to_struct
from crmsync.store.record_rows import RecordRows

SyncMethod = Literal["initial", "webhook", "poll", "bulk", "manual"]
#: what writing a record to Quo did
WriteAction = Literal["created", "updated", "linked", "unchanged"]
#: a mapping's last action: a write's, the record's deletion, or its Quo contact's
Action = Literal[WriteAction, "deleted", "unlinked"]


class Mapping(msgspec.Struct, frozen=True, kw_only=True):
    tenant_id: str
    crm_object: str
    crm_record_id: str
    quo_contact_id: str
    entity_type: str
    sync_method: SyncMethod
    action: Action
    content_hash: str | None
    last_synced_at: float
    deleted_at: float | None = None
    missed_scans: int = 0  # consecutive complete scans that did not see the record


class ContactSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """The synced fields of one record's contact (JSON, `domain.contact_fields`).

    `origin` says what made it: crmsync's `write` of the payload to Quo, or a Quo
    `event` (an edit) that both sides now hold. A write also keeps `base_fields` /
    `base_quo_updated_at`: the last state both sides held before crmsync's writes
    started overwriting Quo, which an edit made in Quo before the write (and delivered
    after it) is merged against.
    """

    content_hash: str
    fields: str
    quo_updated_at: str | None = None  # the Quo contact's `updatedAt` then
    origin: Literal["write", "event"] = "write"
    base_fields: str | None = None
    base_quo_updated_at: str | None = None


_COLUMNS: Final = columns(Mapping)


class Mappings(RecordRows[Mapping]):
    """Mapping rows; `upsert` is keyed by the row's tenant, object and record id."""

    table = "mappings"
    row = Mapping

    async def by_quo_contact(self, tenant_id: str, quo_contact_id: str) -> list[Mapping]:
        """The CRM records mapped to a Quo contact (normally one), e.g. to log a call."""
        rows = await self._db.fetchall(
            f"{self.select} WHERE tenant_id = ? AND quo_contact_id = ? ORDER BY id",
            (tenant_id, quo_contact_id),
        )
        return [to_struct(Mapping, row) for row in rows]

    async def iter_all(
        self, tenant_id: str, *, include_deleted: bool = True, chunk_size: int = 500
    ) -> AsyncIterator[Mapping]:
        """Every mapping of the tenant, streamed `chunk_size` rows per query.

        Keyset paging by rowid: no statement or lock stays open between chunks, so the
        writer carries on while a long export is consumed.
        """
        after = 0
        while True:
            rows = await self._db.fetchall(
                f"SELECT id, {_COLUMNS} FROM mappings WHERE tenant_id = ? AND id > ?"  # noqa: S608
                " AND (? OR deleted_at IS NULL) ORDER BY id LIMIT ?",
                (tenant_id, after, include_deleted, chunk_size),
            )
            for row in rows:
                yield to_struct(Mapping, row)
            if len(rows) < chunk_size:
                return
            after = rows[-1]["id"]

    async def count(self, tenant_id: str, *, include_deleted: bool = False) -> int:
        row = await self._db.fetchone(
            "SELECT count(*) FROM mappings WHERE tenant_id = ? AND (? OR deleted_at IS NULL)",
            (tenant_id, include_deleted),
        )
        return 0 if row is None else int(row[0])

    async def touch(
        self, tenant_id: str, crm_object: str, crm_record_id: str, at: float
    ) -> bool:
        """Seen again, unchanged: only `last_synced_at` moves (the action that made the
        mapping stays); returns whether a live mapping exists."""
        changed = await self._db.execute(
            "UPDATE mappings SET last_synced_at = ?, missed_scans = 0"
            " WHERE tenant_id = ? AND crm_object = ? AND crm_record_id = ?"
            " AND deleted_at IS NULL",
            (at, tenant_id, crm_object, crm_record_id),
        )
        return changed > 0

    async def record_scan(
        self, tenant_id: str, crm_object: str, scan_started_at: float
    ) -> list[Mapping]:
        """After a complete scan: live mappings not synced since it started missed it.

        Each one's `missed_scans` goes up by one (and back to 0 for those seen); returns
        the ones missed by two or more consecutive complete scans, the candidates for
        a delete that a direct fetch must still confirm.
        """
        async with self._db.transaction():
            await self._db.execute(
                "UPDATE mappings SET missed_scans = CASE WHEN last_synced_at < ?"
                " THEN missed_scans + 1 ELSE 0 END"
                " WHERE tenant_id = ? AND crm_object = ? AND deleted_at IS NULL",
                (scan_started_at, tenant_id, crm_object),
            )
            rows = await self._db.fetchall(
                f"{self.select} WHERE tenant_id = ? AND crm_object = ? AND deleted_at IS NULL"
                " AND missed_scans >= 2 ORDER BY crm_record_id",
                (tenant_id, crm_object),
            )
        return [to_struct(Mapping, row) for row in rows]

    async def mark_deleted(
        self, tenant_id: str, crm_object: str, crm_record_id: str, at: float
    ) -> bool:
        """The CRM record (and its Quo contact) is gone; returns whether it was mapped."""
        changed = await self._db.execute(
            "UPDATE mappings SET deleted_at = ?, action = 'deleted', last_synced_at = ?"
            " WHERE tenant_id = ? AND crm_object = ? AND crm_record_id = ?",
            (at, at, tenant_id, crm_object, crm_record_id),
        )
        return changed > 0

    async def unlink(
        self, tenant_id: str, crm_object: str, crm_record_id: str, at: float
    ) -> bool:
        """Its Quo contact was deleted in Quo: action `unlinked`, snapshot dropped (the
        record itself stays); returns whether a live mapping was unlinked."""
        async with self._db.transaction():
            changed = await self._db.execute(
                "UPDATE mappings SET action = 'unlinked', last_synced_at = ?"
                " WHERE tenant_id = ? AND crm_object = ? AND crm_record_id = ?"
                " AND deleted_at IS NULL",
                (at, tenant_id, crm_object, crm_record_id),
            )
            await self.drop_snapshot(tenant_id, crm_object, crm_record_id)
        return changed > 0

    async def set_content_hash(
        self, tenant_id: str, crm_object: str, crm_record_id: str, content_hash: str, at: float
    ) -> bool:
        """Quo and the CRM agree on the payload with `content_hash` (after a Quo edit
        reached the CRM): the record is in sync without a Quo write."""
        changed = await self._db.execute(
            "UPDATE mappings SET content_hash = ?, last_synced_at = ?, missed_scans = 0"
            " WHERE tenant_id = ? AND crm_object = ? AND crm_record_id = ?"
            " AND deleted_at IS NULL",
            (content_hash, at, tenant_id, crm_object, crm_record_id),
        )
        return changed > 0

    # -- snapshots ------------------------------------------------------------------

    async def snapshot(
        self, tenant_id: str, crm_object: str, crm_record_id: str
    ) -> ContactSnapshot | None:
        row = await self._db.fetchone(
            "SELECT content_hash, fields, quo_updated_at, origin, base_fields,"
            " base_quo_updated_at FROM contact_snapshots"
            " WHERE tenant_id = ? AND crm_object = ? AND crm_record_id = ?",
            (tenant_id, crm_object, crm_record_id),
        )
        return None if row is None else to_struct(ContactSnapshot, row)

    async def save_snapshot(
        self, tenant_id: str, crm_object: str, crm_record_id: str, snapshot: ContactSnapshot
    ) -> None:
        await self._db.execute(
            "INSERT INTO contact_snapshots (tenant_id, crm_object, crm_record_id,"
            " content_hash, fields, quo_updated_at, origin, base_fields, base_quo_updated_at,"
            " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (tenant_id, crm_object, crm_record_id) DO UPDATE SET"
            " content_hash = excluded.content_hash, fields = excluded.fields,"
            " quo_updated_at = excluded.quo_updated_at, origin = excluded.origin,"
            " base_fields = excluded.base_fields,"
            " base_quo_updated_at = excluded.base_quo_updated_at,"
            " updated_at = excluded.updated_at",
            (tenant_id, crm_object, crm_record_id, snapshot.content_hash, snapshot.fields,
             snapshot.quo_updated_at, snapshot.origin, snapshot.base_fields,
             snapshot.base_quo_updated_at, self._db.now()),
        )

    async def drop_snapshot(self, tenant_id: str, crm_object: str, crm_record_id: str) -> None:
        await self._db.execute(
            "DELETE FROM contact_snapshots"
            " WHERE tenant_id = ? AND crm_object = ? AND crm_record_id = ?",
            (tenant_id, crm_object, crm_record_id),
        )
