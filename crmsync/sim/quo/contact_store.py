"""The simulated workspace's visible contacts: create, PATCH-replace, delete, list.

Contacts are kept in wire shape (`{"id", "externalId", "defaultFields", ...}`) in
creation order, each with a sequence number that page tokens point after, so a
deletion between two pages never makes the listing skip a contact. Bulk-created
contacts reach this store later, through `bulk.BulkQueue`.
"""

from __future__ import annotations

from collections.abc import Iterable

from crmsync.sim.quo.config import CustomFieldDefinition
from crmsync.sim.quo.wire import IdFactory, JsonObject, now_iso

NAME_FIELDS = ("firstName", "lastName", "company", "role")


class ExternalIdConflictError(Exception):
    """Another contact already has this `externalId` (409)."""


class ContactStore:
    """Visible contacts and their `externalId` index."""

    def __init__(
        self, ids: IdFactory, custom_fields: Iterable[CustomFieldDefinition] = ()
    ) -> None:
        self._ids = ids
        self.custom_fields = {d.key: (d, ids.hex(24)) for d in custom_fields}
        self.contacts: dict[str, JsonObject] = {}
        self._seq: dict[str, int] = {}
        self._by_external_id: dict[str, str] = {}
        self._next_seq = 1
        self.deleted = 0
        self.default_user_id: str | None = None  # createdByUserId when none is given

    @property
    def custom_field_names(self) -> set[str]:
        """Keys and ids a `customFields` item may name."""
        return {*self.custom_fields, *(field_id for _, field_id in self.custom_fields.values())}

    # -- single contacts --------------------------------------------------------------

    def create(self, body: JsonObject) -> JsonObject:
        """Store a validated create body; ExternalIdConflictError on a taken `externalId`."""
        external_id = body.get("externalId")
        if external_id is not None and external_id in self._by_external_id:
            raise ExternalIdConflictError(external_id)
        now = now_iso()
        fields: JsonObject = body["defaultFields"]
        contact: JsonObject = {
            "id": self._ids.contact(),
            "externalId": external_id,
            "source": body.get("source", "public-api"),
            "sourceUrl": body.get("sourceUrl"),
            "defaultFields": {
                **{name: fields.get(name) for name in NAME_FIELDS},
                "emails": self._items(fields.get("emails"), []),
                "phoneNumbers": self._items(fields.get("phoneNumbers"), []),
            },
            "customFields": self._custom(body.get("customFields"), []),
            "createdAt": now,
            "updatedAt": now,
            "createdByUserId": body.get("createdByUserId", self.default_user_id),
        }
        self._insert(contact)
        return contact

    def update(self, contact_id: str, body: JsonObject) -> JsonObject | None:
        """Apply a validated PATCH body with Quo's replace semantics; None if unknown.

        Top-level and name fields absent from the body are kept; `emails`,
        `phoneNumbers` and `customFields` absent from it are deleted.
        """
        contact = self.contacts.get(contact_id)
        if contact is None:
            return None
        if "externalId" in body:
            owner = self._by_external_id.get(body["externalId"] or "")
            if owner is not None and owner != contact_id:
                raise ExternalIdConflictError(body["externalId"])
            if contact["externalId"] is not None:
                del self._by_external_id[contact["externalId"]]
            contact["externalId"] = body["externalId"]
            if body["externalId"] is not None:
                self._by_external_id[body["externalId"]] = contact_id
        for key in ("source", "sourceUrl"):
            if key in body:
                contact[key] = body[key]
        fields: JsonObject = body.get("defaultFields") or {}
        stored: JsonObject = contact["defaultFields"]
        for name in NAME_FIELDS:
            if name in fields:
                stored[name] = fields[name]
        stored["emails"] = self._items(fields.get("emails"), stored["emails"])
        stored["phoneNumbers"] = self._items(fields.get("phoneNumbers"), stored["phoneNumbers"])
        contact["customFields"] = self._custom(body.get("customFields"), contact["customFields"])
        contact["updatedAt"] = now_iso()
        return contact

    def delete(self, contact_id: str) -> bool:
        contact = self.contacts.pop(contact_id, None)
        if contact is None:
            return False
        del self._seq[contact_id]
        if contact["externalId"] is not None:
            self._by_external_id.pop(contact["externalId"], None)
        self.deleted += 1
        return True

    def _insert(self, contact: JsonObject) -> None:
        self.contacts[contact["id"]] = contact
        self._seq[contact["id"]] = self._next_seq
        self._next_seq += 1
        if contact["externalId"] is not None:
            self._by_external_id[contact["externalId"]] = contact["id"]

    def _items(self, items: list[JsonObject] | None, old: list[JsonObject]) -> list[JsonObject]:
        """New emails/phones; an item keeps its id if it names an existing one."""
        old_ids = {item["id"] for item in old}
        result: list[JsonObject] = []
        for item in items or []:
            if item["value"] is None:  # a null value removes the item
                continue
            item_id = item.get("id")
            if item_id not in old_ids:
                item_id = self._ids.item()
            result.append({"id": item_id, "name": item["name"], "value": item["value"]})
        return result

    def _custom(self, items: list[JsonObject] | None, old: list[JsonObject]) -> list[JsonObject]:
        by_id = {field_id: key for key, (_, field_id) in self.custom_fields.items()}
        result: list[JsonObject] = []
        for item in items or []:
            key = item.get("key") or by_id.get(item.get("id", ""), "")
            definition, field_id = self.custom_fields[key]
            if item["value"] is not None:
                result.append(
                    {"name": definition.name, "key": key, "id": field_id,
                     "type": definition.type, "value": item["value"]}
                )
        return result

    def ids_with_phone(self, number: str) -> list[str]:
        """Ids of visible contacts that carry `number` (webhook `contactIds`)."""
        return [
            c["id"] for c in self.contacts.values()
            if any(p["value"] == number for p in c["defaultFields"]["phoneNumbers"])
        ]

    # -- listing ----------------------------------------------------------------------

    def page(
        self,
        *,
        external_ids: list[str],
        sources: list[str],
        max_results: int,
        after: int,
    ) -> tuple[list[JsonObject], int | None, int]:
        """One page after sequence number `after`: (contacts, last seq or None, total)."""
        if external_ids:
            found = (self._by_external_id.get(e) for e in dict.fromkeys(external_ids))
            candidates: Iterable[JsonObject] = sorted(
                (self.contacts[cid] for cid in found if cid is not None),
                key=lambda c: self._seq[c["id"]],
            )
        else:
            candidates = self.contacts.values()
        wanted = [s.lower() for s in sources]
        matches = [
            c for c in candidates
            if self._seq[c["id"]] > after and (not wanted or self._source_matches(c, wanted))
        ]
        page = matches[:max_results]
        more = len(matches) > max_results
        # Quo documents totalItems as inaccurate; ours counts deleted contacts too.
        total = len(self.contacts) + self.deleted + 1
        return page, self._seq[page[-1]["id"]] if more else None, total

    @staticmethod
    def _source_matches(contact: JsonObject, wanted: list[str]) -> bool:
        # Deliberately loose (substring), as the real filter seems to be: re-filter.
        source = (contact.get("source") or "").lower()
        return any(w in source for w in wanted)
