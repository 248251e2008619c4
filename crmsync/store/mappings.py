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

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Final, Literal

import msgspec

from crmsync.store.database import Database, Params, Statement, columns, marks, to_struct
from crmsync.store.intents import Intents
from crmsync.store.record_rows import ID_CHUNK, KEY, RecordRows

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

_FIELDS: Final = Mapping.__struct_fields__
_ROW_MARKS: Final = f"({marks(len(_FIELDS))})"
#: rows per multi-row INSERT: within SQLite's 999 bound parameters (before 3.32)
_ROWS_PER_INSERT: Final = 999 // len(_FIELDS)
_UPSERT_SET: Final = f" ON CONFLICT ({', '.join(KEY)}) DO UPDATE SET " + ", ".join(
    f"{name} = excluded.{name}" for name in _FIELDS if name not in KEY
)
#: `touch` when the record has a live mapping, else `upsert`, in one statement: a live
#: row keeps every column but `last_synced_at` and `missed_scans` (0); a deleted or
#: missing one takes the new row whole (inside `DO UPDATE`, `mappings.x` is the
#: existing row's column and `excluded.x` the new one's, before any change).
_TOUCH_OR_UPSERT_SET: Final = f" ON CONFLICT ({', '.join(KEY)}) DO UPDATE SET " + ", ".join(
    f"{name} = excluded.{name}" if name in ("last_synced_at", "missed_scans") else
    f"{name} = CASE WHEN mappings.deleted_at IS NULL THEN mappings.{name}"
    f" ELSE excluded.{name} END"
    for name in _FIELDS if name not in KEY
)


def _insert_rows(rows: Sequence[Mapping], conflict: str) -> list[Statement]:
    """Multi-row INSERTs of `rows` (whose keys differ: one statement may not update a
    row twice in PostgreSQL) with the `ON CONFLICT` clause `conflict`."""
    statements: list[Statement] = []
    for start in range(0, len(rows), _ROWS_PER_INSERT):
        chunk = rows[start : start + _ROWS_PER_INSERT]
        statements.append((
            f"INSERT INTO mappings ({_COLUMNS}) VALUES "  # noqa: S608 (fixed names)
            + ", ".join([_ROW_MARKS] * len(chunk)) + conflict,
            [value for row in chunk for value in msgspec.structs.astuple(row)],
        ))
    return statements


def _by_record(table: str, sql: str, head: Params, rows: Sequence[Mapping]) -> list[Statement]:
    """`sql` (`… WHERE <head columns> AND tenant_id = ? AND crm_object = ? AND
    crm_record_id IN (…)`) once per tenant and CRM object of `rows`, ids in chunks."""
    ids: dict[tuple[str, str], list[str]] = {}
    for row in rows:
        ids.setdefault((row.tenant_id, row.crm_object), []).append(row.crm_record_id)
    statements: list[Statement] = []
    for (tenant_id, crm_object), record_ids in ids.items():
        for start in range(0, len(record_ids), ID_CHUNK):
            chunk = record_ids[start : start + ID_CHUNK]
            statements.append((
                sql.format(table=table, ids=marks(len(chunk))),
                (*head, tenant_id, crm_object, *chunk),
            ))
    return statements


#: settles the intents of records (`IntentLog.settle`'s statement, for many records)
_SETTLE_MANY: Final = (
    "DELETE FROM {table} WHERE tenant_id = ? AND crm_object = ? AND crm_record_id IN ({ids})"
)
#: `dead_letters.resolve_for_record`'s statement (that module owns the table), for many
#: records: their open dead letters close with their saved mappings, in the same unit
_RESOLVE_MANY: Final = (
    "UPDATE {table} SET resolved_at = ?, next_retry_at = NULL WHERE tenant_id = ?"
    " AND crm_object = ? AND crm_record_id IN ({ids}) AND resolved_at IS NULL"
)

#: a record's mapping (NULL columns when it has none) and whether a write intent is
#: open for it: one query, where the writer otherwise asks twice per record
#: what `lookup` answers: the record's mapping, and whether an intent is open for it
Looked = tuple[Mapping | None, bool]
_M_COLUMNS: Final = ", ".join(f"m.{name}" for name in Mapping.__struct_fields__)
_LOOKUP: Final = (
    f"SELECT {_M_COLUMNS}, EXISTS (SELECT 1 FROM {Intents.table} i"  # noqa: S608
    " WHERE i.tenant_id = ? AND i.crm_object = ? AND i.crm_record_id = ?) AS intent_open"
    " FROM (SELECT 1 AS one) AS probe LEFT JOIN mappings m"
    " ON m.tenant_id = ? AND m.crm_object = ? AND m.crm_record_id = ?"
)


class Mappings(RecordRows[Mapping]):
    """Mapping rows; `upsert` is keyed by the row's tenant, object and record id."""

    table = "mappings"
    row = Mapping

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        #: lookups waiting for the next batch: (tenant, object) → record id → callers
        self._lookups: dict[tuple[str, str], dict[str, list[asyncio.Future[Looked]]]] = {}
        self._looking: asyncio.Future[None] | None = None

    async def lookup(
        self, tenant_id: str, crm_object: str, crm_record_id: str
    ) -> tuple[Mapping | None, bool]:
        """The record's mapping, and whether a write intent is open for it.

        The lookups that tasks make meanwhile are answered together: two queries per
        tenant and CRM object, all in one round trip (`_look_up_batches`). The writer
        of every tenant asks this before each record, and one query (and one hop to
        SQLite's thread) each was the store's largest share of statements. Each
        batch is sent after its callers asked, so it sees every write they awaited.
        """
        if self._db.in_transaction():
            key = (tenant_id, crm_object, crm_record_id)
            row = await self._db.fetchone(_LOOKUP, (*key, *key))
            if row is None:  # never: the probe row is always there
                return None, False
            mapping = None if row["tenant_id"] is None else to_struct(Mapping, row)
            return mapping, bool(row["intent_open"])
        done: asyncio.Future[Looked] = asyncio.get_running_loop().create_future()
        waiting = self._lookups.setdefault((tenant_id, crm_object), {})
        waiting.setdefault(crm_record_id, []).append(done)
        if self._looking is None:
            # Its own future: a cancelled caller must not stop the others' answers.
            self._looking = asyncio.ensure_future(self._look_up_batches())
        return await done

    async def _look_up_batches(self) -> None:
        try:
            while self._lookups:
                batch, self._lookups = self._lookups, {}
                queries: list[Statement] = []
                for (tenant_id, crm_object), waiting in batch.items():
                    ids = list(waiting)
                    for start in range(0, len(ids), ID_CHUNK):
                        chunk = ids[start : start + ID_CHUNK]
                        where = (f" WHERE tenant_id = ? AND crm_object = ?"
                                 f" AND crm_record_id IN ({marks(len(chunk))})")
                        queries += [
                            (self.select + where, (tenant_id, crm_object, *chunk)),
                            (f"SELECT {', '.join(KEY)} FROM {Intents.table}" + where,  # noqa: S608
                             (tenant_id, crm_object, *chunk)),
                        ]
                try:
                    results = await self._db.fetch_batch(queries)
                except BaseException as exc:
                    for waiting in batch.values():
                        for callers in waiting.values():
                            for done in callers:
                                if not done.done():
                                    done.set_exception(exc)
                    if isinstance(exc, asyncio.CancelledError):
                        raise
                    continue
                mappings = {
                    (row["tenant_id"], row["crm_object"], row["crm_record_id"]):
                        to_struct(Mapping, row)
                    for rows in results[0::2] for row in rows
                }
                intents = {
                    (row["tenant_id"], row["crm_object"], row["crm_record_id"])
                    for rows in results[1::2] for row in rows
                }
                for (tenant_id, crm_object), waiting in batch.items():
                    for record_id, callers in waiting.items():
                        key = (tenant_id, crm_object, record_id)
                        answer = (mappings.get(key), key in intents)
                        for done in callers:
                            if not done.done():
                                done.set_result(answer)
        finally:
            self._looking = None
            for waiting in self._lookups.values():  # only if cancelled: none answers them
                for callers in waiting.values():
                    for done in callers:
                        if not done.done():
                            done.set_exception(RuntimeError("the store stopped looking up"))
            self._lookups = {}

    def _save_statements(self, rows: Sequence[Mapping]) -> list[Statement]:
        """Writes' outcomes as one unit: the mappings (an `unchanged` one only touched,
        keeping the action and sync method that made it), their intents settled, their
        records' dead letters resolved (`save_synced`). A few statements for the whole
        batch, not three a record: each statement costs the store's thread two GIL
        hand-overs with the busy loop."""
        keys = {(row.tenant_id, row.crm_object, row.crm_record_id) for row in rows}
        if len(keys) < len(rows):
            # A record twice (offset paging hands one out twice): one row at a time, in
            # the order given, as a multi-row INSERT may not touch a row twice.
            return [statement for row in rows for statement in self._save_statements([row])]
        return [
            *_insert_rows([row for row in rows if row.action != "unchanged"], _UPSERT_SET),
            *_insert_rows([row for row in rows if row.action == "unchanged"],
                          _TOUCH_OR_UPSERT_SET),
            *_by_record(Intents.table, _SETTLE_MANY, (), rows),
            *_by_record("dead_letters", _RESOLVE_MANY, (self._db.now(),), rows),
        ]

    async def save_synced(self, rows: Sequence[Mapping]) -> None:
        """Store the outcomes of several writes atomically, in one unit of work
        (`_save_statements`): one round trip for a batch of records."""
        await self._db.execute_batch(self._save_statements(rows))

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

    async def save_written(
        self,
        tenant_id: str,
        crm_object: str,
        crm_record_id: str,
        *,
        content_hash: str,
        fields: str,
        quo_updated_at: str | None,
    ) -> None:
        """crmsync wrote `fields` to Quo: the new snapshot (origin `write`), whose base
        is what the previous one held (none without one), in one statement; the same as
        reading `snapshot` and saving a `ContactSnapshot` with that base. Grouped with
        other tasks' writes (one per created contact: `Database.execute_grouped`)."""
        await self._db.execute_grouped(
            "INSERT INTO contact_snapshots (tenant_id, crm_object, crm_record_id,"
            " content_hash, fields, quo_updated_at, origin, base_fields, base_quo_updated_at,"
            " updated_at) VALUES (?, ?, ?, ?, ?, ?, 'write', NULL, NULL, ?)"
            " ON CONFLICT (tenant_id, crm_object, crm_record_id) DO UPDATE SET"
            " content_hash = excluded.content_hash, fields = excluded.fields,"
            " quo_updated_at = excluded.quo_updated_at, origin = excluded.origin,"
            " base_fields = contact_snapshots.fields,"
            " base_quo_updated_at = contact_snapshots.quo_updated_at,"
            " updated_at = excluded.updated_at",
            (tenant_id, crm_object, crm_record_id, content_hash, fields, quo_updated_at,
             self._db.now()),
        )

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
