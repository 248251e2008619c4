"""Records of one object, in creation order, with exact-match indexes for lookups.

The phone and email indexes map a current E.164 number / normalised email address to
record ids. They are rebuilt lazily after a change, so a page of a 10k-person query or
a phone lookup never scans every record's history.
"""

from __future__ import annotations

from collections.abc import Iterator

from crmsync.sim.attio.model import StoredRecord

# attribute -> field indexed for exact lookups
INDEXED_FIELDS = {"phone_numbers": "phone_number", "email_addresses": "email_address"}


class RecordStore:
    """All live records of one object (deleted records are removed, as in Attio)."""

    def __init__(self, object_slug: str) -> None:
        self.object_slug = object_slug
        self._records: dict[str, StoredRecord] = {}
        self._ordered: list[StoredRecord] | None = None
        self._indexes: dict[str, dict[str, list[str]]] | None = None

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[StoredRecord]:
        return iter(self._records.values())

    def __contains__(self, record_id: object) -> bool:
        return record_id in self._records

    def get(self, record_id: str) -> StoredRecord | None:
        return self._records.get(record_id)

    def add(self, record: StoredRecord) -> None:
        self._records[record.record_id] = record
        self.changed()

    def remove(self, record_id: str) -> StoredRecord | None:
        record = self._records.pop(record_id, None)
        self.changed()
        return record

    def changed(self) -> None:
        """Call after any value of any record changed."""
        self._ordered = None
        self._indexes = None

    def ordered(self) -> list[StoredRecord]:
        """Default order: creation time, then record id (stable for offset paging)."""
        if self._ordered is None:
            self._ordered = sorted(
                self._records.values(), key=lambda r: (r.created_at, r.record_id)
            )
        return self._ordered

    def lookup(self, attribute: str, value: str) -> list[StoredRecord]:
        """Records whose current `attribute` value matches exactly, in default order."""
        if self._indexes is None:
            self._indexes = self._build_indexes()
        ids = self._indexes.get(attribute, {}).get(value, [])
        records = [self._records[i] for i in ids]
        return sorted(records, key=lambda r: (r.created_at, r.record_id))

    def _build_indexes(self) -> dict[str, dict[str, list[str]]]:
        indexes: dict[str, dict[str, list[str]]] = {a: {} for a in INDEXED_FIELDS}
        for record in self._records.values():
            for attribute, field in INDEXED_FIELDS.items():
                for value in record.active(attribute):
                    key = value.get(field)
                    if isinstance(key, str):
                        ids = indexes[attribute].setdefault(key, [])
                        if record.record_id not in ids:
                            ids.append(record.record_id)
        return indexes
