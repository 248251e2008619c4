"""The Metakocka link's state (schema v7): pairs, unsynced partners, discovery, intents.

* `MkLinks` (`mk_links`): one row per CRM person paired with a Metakocka partner: the
  partner's `mk_id`, the contact that is this person (`mk_contact_id`), the partner's
  billing address (`mk_address_id`), the `direction` that made the pair, and per side
  the content hash of the partner fields as that side held them after the last sync
  (`mk_hash`: Metakocka, `crm_hash`: the CRM; `domain/partner.py` computes both) with
  the `snapshot` both agreed on. An unchanged hash means no call to that side; a
  partner re-read with `mk_hash` unchanged is crmsync's own write coming back. Several
  people at one company share one partner (one contact each); a contact is never
  paired with two people (the insert fails instead of relinking).
* `MkUnsynced` (`mk_unsynced`): partners found on documents and not paired, for the
  unsynced list (paired ones are never listed, even before `remove` ran).
* `MkDiscovery` (`mk_discovery`): per document type, the `last_change_from` watermark
  of the document search and the offset of the page to fetch next.
* `MkIntents` (`mk_intents`): Metakocka writes that must not be repeated blindly
  (`add_partner`, an `update_partner` adding a contact), recorded before the call and
  settled after its answer was saved, as `write_intents` does for Quo; an intent
  still open after a crash or an unsure failure means: look the partner up first.

Every method takes `tenant_id` first (row upserts take it from the row).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Final, Literal

import msgspec

from crmsync.store.database import Database, columns, to_struct
from crmsync.store.intents import IntentLog
from crmsync.store.record_rows import RecordRows

Direction = Literal["to_metakocka", "from_metakocka"]
MkOperation = Literal["add_partner", "add_contact", "update_partner"]


class MkLink(msgspec.Struct, frozen=True, kw_only=True):
    tenant_id: str
    crm_object: str
    crm_record_id: str
    mk_id: str
    mk_contact_id: str | None
    mk_address_id: str | None
    direction: Direction  # which side the pair was made from
    mk_hash: str | None  # the partner fields Metakocka held after the last sync
    crm_hash: str | None  # the partner fields the CRM person gave after the last sync
    snapshot: str | None  # those fields as both sides agreed (JSON, domain/partner.py)
    last_synced_at: float
    last_checked_at: float | None = None  # the partner's last re-read


class UnsyncedPartner(msgspec.Struct, frozen=True, kw_only=True):
    tenant_id: str
    mk_id: str
    name: str | None
    email: str | None
    phone: str | None
    doc_type: str | None  # the document type it was found on
    discovered_at: float
    last_seen_at: float


class DiscoveryMark(msgspec.Struct, frozen=True, kw_only=True):
    tenant_id: str
    doc_type: str
    last_change_from: str | None  # ISO time the next search starts from
    next_offset: int  # the page to fetch next within that search
    updated_at: float


class MkIntent(msgspec.Struct, frozen=True, kw_only=True):
    tenant_id: str
    crm_object: str
    crm_record_id: str
    operation: MkOperation
    mk_id: str | None  # the partner an `add_contact` / `update_partner` writes to
    payload_hash: str
    started_at: float


_LINK_COLUMNS: Final = columns(MkLink)


class MkLinks(RecordRows[MkLink]):
    """Person ⇄ partner pairs, keyed by (tenant, CRM object, CRM record id)."""

    table = "mk_links"
    row = MkLink

    async def by_mk_id(self, tenant_id: str, mk_id: str) -> list[MkLink]:
        """The people paired with a partner (one per contact), oldest pair first."""
        rows = await self._db.fetchall(
            f"{self.select} WHERE tenant_id = ? AND mk_id = ? ORDER BY id", (tenant_id, mk_id)
        )
        return [to_struct(MkLink, row) for row in rows]

    async def iter_all(self, tenant_id: str, *, chunk_size: int = 500) -> AsyncIterator[MkLink]:
        """Every pair of the tenant, streamed by keyset paging (no lock held between
        chunks)."""
        after = 0
        while True:
            rows = await self._db.fetchall(
                f"SELECT id, {_LINK_COLUMNS} FROM mk_links"  # noqa: S608 (fixed names)
                " WHERE tenant_id = ? AND id > ? ORDER BY id LIMIT ?",
                (tenant_id, after, chunk_size),
            )
            for row in rows:
                yield to_struct(MkLink, row)
            if len(rows) < chunk_size:
                return
            after = rows[-1]["id"]

    async def count(self, tenant_id: str) -> int:
        row = await self._db.fetchone(
            "SELECT count(*) FROM mk_links WHERE tenant_id = ?", (tenant_id,)
        )
        return 0 if row is None else int(row[0])

    async def due(self, tenant_id: str, checked_before: float, limit: int) -> list[str]:
        """Up to `limit` paired partners (`mk_id`s) not re-read since `checked_before`,
        never-read ones first, then the longest unread."""
        rows = await self._db.fetchall(
            "SELECT mk_id, min(coalesce(last_checked_at, -1)) AS checked FROM mk_links"
            " WHERE tenant_id = ? GROUP BY mk_id HAVING min(coalesce(last_checked_at, -1)) < ?"
            " ORDER BY checked, mk_id LIMIT ?",
            (tenant_id, checked_before, limit),
        )
        return [str(row["mk_id"]) for row in rows]

    async def mark_checked(self, tenant_id: str, mk_id: str, at: float) -> int:
        """The partner was re-read at `at`; returns how many pairs it has."""
        return await self._db.execute(
            "UPDATE mk_links SET last_checked_at = ? WHERE tenant_id = ? AND mk_id = ?",
            (at, tenant_id, mk_id),
        )

    async def delete(self, tenant_id: str, crm_object: str, crm_record_id: str) -> bool:
        """Forget the pair (neither the person nor the partner is touched)."""
        changed = await self._db.execute(
            "DELETE FROM mk_links WHERE tenant_id = ? AND crm_object = ? AND crm_record_id = ?",
            (tenant_id, crm_object, crm_record_id),
        )
        return changed > 0


_UNSYNCED_COLUMNS: Final = columns(UnsyncedPartner)


class MkUnsynced:
    """Partners discovered on documents and not paired with a CRM person."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def upsert(
        self,
        tenant_id: str,
        mk_id: str,
        *,
        name: str | None = None,
        email: str | None = None,
        phone: str | None = None,
        doc_type: str | None = None,
    ) -> None:
        """Seen (again) now: the first sighting's time stays, known details are kept
        unless new ones are given."""
        now = self._db.now()
        await self._db.execute(
            "INSERT INTO mk_unsynced (tenant_id, mk_id, name, email, phone, doc_type,"
            " discovered_at, last_seen_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (tenant_id, mk_id) DO UPDATE SET"
            " name = coalesce(excluded.name, mk_unsynced.name),"
            " email = coalesce(excluded.email, mk_unsynced.email),"
            " phone = coalesce(excluded.phone, mk_unsynced.phone),"
            " doc_type = coalesce(excluded.doc_type, mk_unsynced.doc_type),"
            " last_seen_at = excluded.last_seen_at",
            (tenant_id, mk_id, name, email, phone, doc_type, now, now),
        )

    async def get(self, tenant_id: str, mk_id: str) -> UnsyncedPartner | None:
        row = await self._db.fetchone(
            f"SELECT {_UNSYNCED_COLUMNS} FROM mk_unsynced"  # noqa: S608 (fixed names)
            " WHERE tenant_id = ? AND mk_id = ?",
            (tenant_id, mk_id),
        )
        return None if row is None else to_struct(UnsyncedPartner, row)

    async def list(self, tenant_id: str, *, limit: int = 1000) -> list[UnsyncedPartner]:
        """Unpaired partners, first discovered first (a pair made meanwhile hides one)."""
        rows = await self._db.fetchall(
            f"SELECT {_UNSYNCED_COLUMNS} FROM mk_unsynced AS u"  # noqa: S608 (fixed names)
            " WHERE tenant_id = ? AND NOT EXISTS (SELECT 1 FROM mk_links AS l"
            " WHERE l.tenant_id = u.tenant_id AND l.mk_id = u.mk_id)"
            " ORDER BY discovered_at, mk_id LIMIT ?",
            (tenant_id, limit),
        )
        return [to_struct(UnsyncedPartner, row) for row in rows]

    async def count(self, tenant_id: str) -> int:
        row = await self._db.fetchone(
            "SELECT count(*) FROM mk_unsynced AS u WHERE tenant_id = ? AND NOT EXISTS"
            " (SELECT 1 FROM mk_links AS l WHERE l.tenant_id = u.tenant_id"
            " AND l.mk_id = u.mk_id)",
            (tenant_id,),
        )
        return 0 if row is None else int(row[0])

    async def remove(self, tenant_id: str, mk_id: str) -> bool:
        """Paired or imported: no longer unsynced."""
        changed = await self._db.execute(
            "DELETE FROM mk_unsynced WHERE tenant_id = ? AND mk_id = ?", (tenant_id, mk_id)
        )
        return changed > 0


class MkDiscovery:
    """Where the partner discovery stands, per document type."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, tenant_id: str, doc_type: str) -> DiscoveryMark | None:
        row = await self._db.fetchone(
            f"SELECT {columns(DiscoveryMark)} FROM mk_discovery"  # noqa: S608 (fixed names)
            " WHERE tenant_id = ? AND doc_type = ?",
            (tenant_id, doc_type),
        )
        return None if row is None else to_struct(DiscoveryMark, row)

    async def set(
        self, tenant_id: str, doc_type: str, *, last_change_from: str | None, next_offset: int
    ) -> None:
        """Commit only after the partners of the pages before it were recorded."""
        await self._db.execute(
            "INSERT INTO mk_discovery (tenant_id, doc_type, last_change_from, next_offset,"
            " updated_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (tenant_id, doc_type) DO UPDATE"
            " SET last_change_from = excluded.last_change_from,"
            " next_offset = excluded.next_offset, updated_at = excluded.updated_at",
            (tenant_id, doc_type, last_change_from, next_offset, self._db.now()),
        )

    async def all(self, tenant_id: str) -> list[DiscoveryMark]:
        rows = await self._db.fetchall(
            f"SELECT {columns(DiscoveryMark)} FROM mk_discovery"  # noqa: S608 (fixed names)
            " WHERE tenant_id = ? ORDER BY doc_type",
            (tenant_id,),
        )
        return [to_struct(DiscoveryMark, row) for row in rows]


class MkIntents(IntentLog[MkIntent]):
    """Metakocka write intents (`add_partner` and contact-adding updates are not
    idempotent: an open intent means "look it up before writing again")."""

    table = "mk_intents"
    row = MkIntent

    async def begin(
        self,
        tenant_id: str,
        crm_object: str,
        crm_record_id: str,
        operation: MkOperation,
        payload_hash: str,
        *,
        mk_id: str | None = None,
    ) -> None:
        await self._db.execute(
            "INSERT INTO mk_intents (tenant_id, crm_object, crm_record_id, operation, mk_id,"
            " payload_hash, started_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (tenant_id, crm_object, crm_record_id) DO UPDATE SET"
            " operation = excluded.operation, mk_id = excluded.mk_id,"
            " payload_hash = excluded.payload_hash, started_at = excluded.started_at",
            (tenant_id, crm_object, crm_record_id, operation, mk_id, payload_hash,
             self._db.now()),
        )
