"""Tables with one row per CRM record, keyed by (tenant, CRM object, record id).

`mappings` (the Quo contact of each record) and `mk_links` (its Metakocka partner) are
read and written the same way: a row Struct whose fields are the table's columns, an
upsert on the key, a lookup of one record and of many. `RecordRows` holds that once.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar, Final, Generic, TypeVar

import msgspec

from crmsync.store.database import Database, Statement, columns, marks, to_struct

RowT = TypeVar("RowT", bound=msgspec.Struct)

KEY: Final = ("tenant_id", "crm_object", "crm_record_id")
#: ids per `IN (...)` query: far below SQLite's bound-parameter limit (999 before 3.32)
ID_CHUNK: Final = 500


def select_sql(table: str, row: type[msgspec.Struct]) -> str:
    return f"SELECT {columns(row)} FROM {table}"  # noqa: S608 (fixed names)


def upsert_sql(table: str, row: type[msgspec.Struct]) -> str:
    fields = row.__struct_fields__
    return (
        f"INSERT INTO {table} ({columns(row)})"  # noqa: S608 (fixed names)
        f" VALUES ({marks(len(fields))})"
        f" ON CONFLICT ({', '.join(KEY)}) DO UPDATE SET "
        + ", ".join(f"{name} = excluded.{name}" for name in fields if name not in KEY)
    )


class RecordRows(Generic[RowT]):
    """The repository base of a per-record table: subclasses name `table` and `row`."""

    table: ClassVar[str]
    row: type[RowT]
    select: ClassVar[str]
    _upsert: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.select = select_sql(cls.table, cls.row)
        cls._upsert = upsert_sql(cls.table, cls.row)

    def __init__(self, db: Database) -> None:
        self._db = db

    def _upsert_statement(self, row: RowT) -> Statement:
        """`upsert` as a statement, for a unit of work (`Database.execute_batch`)."""
        return self._upsert, msgspec.structs.astuple(row)

    async def upsert(self, row: RowT) -> None:
        """Insert or replace the row of `row.crm_record_id` (tenant from the row)."""
        await self._db.execute(*self._upsert_statement(row))

    async def get(self, tenant_id: str, crm_object: str, crm_record_id: str) -> RowT | None:
        found = await self._db.fetchone(
            f"{self.select} WHERE tenant_id = ? AND crm_object = ? AND crm_record_id = ?",
            (tenant_id, crm_object, crm_record_id),
        )
        return None if found is None else to_struct(self.row, found)

    async def get_many(
        self, tenant_id: str, crm_object: str, crm_record_ids: Iterable[str]
    ) -> dict[str, RowT]:
        """The rows of those records that have one, by CRM record id."""
        ids = list(dict.fromkeys(crm_record_ids))
        found: dict[str, RowT] = {}
        for start in range(0, len(ids), ID_CHUNK):
            chunk = ids[start : start + ID_CHUNK]
            rows = await self._db.fetchall(
                f"{self.select} WHERE tenant_id = ? AND crm_object = ?"
                f" AND crm_record_id IN ({marks(len(chunk))})",
                (tenant_id, crm_object, *chunk),
            )
            found.update((row["crm_record_id"], to_struct(self.row, row)) for row in rows)
        return found
