"""Associations between objects: HubSpot's defined type ids and how each side shows them.

Kept on both objects' `links` (oldest first). A contact has at most one primary
company: HubSpot shows it twice in v3 (`contact_to_company`, the primary label, and
`contact_to_company_unlabeled`), first; v4 shows its types 1 ("Primary") and 279.
"""

from __future__ import annotations

from collections.abc import Callable

from crmsync.sim.hubspot.model import CrmObject, JSONObject

#: (from type, HUBSPOT_DEFINED type id) -> to type, for writes naming a type id
TYPE_IDS: dict[tuple[str, int], str] = {
    ("contacts", 1): "companies", ("contacts", 279): "companies",
    ("companies", 2): "contacts", ("companies", 280): "contacts",
    ("contacts", 201): "notes", ("notes", 202): "contacts",
    ("companies", 189): "notes", ("notes", 190): "companies",
}
#: (from type, to type) -> (default type id, v3 label of it)
DEFAULTS: dict[tuple[str, str], tuple[int, str]] = {
    ("contacts", "companies"): (279, "contact_to_company_unlabeled"),
    ("companies", "contacts"): (280, "company_to_contact_unlabeled"),
    ("contacts", "notes"): (201, "contact_to_note"),
    ("notes", "contacts"): (202, "note_to_contact"),
    ("companies", "notes"): (189, "company_to_note"),
    ("notes", "companies"): (190, "note_to_company"),
}
PRIMARY: dict[tuple[str, str], tuple[int, str]] = {
    ("contacts", "companies"): (1, "contact_to_company"),
    ("companies", "contacts"): (2, "company_to_contact"),
}


def link(a: CrmObject, b: CrmObject) -> bool:
    """Associate `a` and `b` (both ends); False if they already were."""
    ids = a.links.setdefault(b.schema.object_type, [])
    if b.id in ids:
        return False
    ids.append(b.id)
    b.links.setdefault(a.schema.object_type, []).append(a.id)
    return True


def unlink(a: CrmObject, b: CrmObject) -> bool:
    """Remove the association (a primary company stops being primary); False if none."""
    ids = a.links.get(b.schema.object_type, [])
    if b.id not in ids:
        return False
    ids.remove(b.id)
    back = b.links.get(a.schema.object_type, [])
    if a.id in back:
        back.remove(a.id)
    for one, other in ((a, b), (b, a)):
        if one.primary_company == other.id:
            one.primary_company = None
    return True


def ordered(obj: CrmObject, to_type: str) -> list[int]:
    """Ids of `to_type` associated with `obj`, the contact's primary company first."""
    if obj.schema.object_type == "contacts" and to_type == "companies":
        return obj.companies_primary_first()
    return list(obj.linked(to_type))


def is_primary(obj: CrmObject, to_type: str, other: CrmObject | int) -> bool:
    other_id = other if isinstance(other, int) else other.id
    if (obj.schema.object_type, to_type) == ("contacts", "companies"):
        return obj.primary_company == other_id
    return False


def v3_associations(obj: CrmObject, to_type: str,
                    primary_of: Callable[[int], int | None]) -> list[JSONObject]:
    """`{"id", "type"}` items of v3 reads; `primary_of(contact id)` is that contact's
    primary company (for the company -> contact direction)."""
    pair = (obj.schema.object_type, to_type)
    _, plain = DEFAULTS[pair]
    items: list[JSONObject] = []
    for other in ordered(obj, to_type):
        primary = is_primary(obj, to_type, other) or (
            pair == ("companies", "contacts") and primary_of(other) == obj.id)
        if primary:
            items.append({"id": str(other), "type": PRIMARY[pair][1]})
        items.append({"id": str(other), "type": plain})
    return items


def v4_types(pair: tuple[str, str], primary: bool) -> list[JSONObject]:
    """The `associationTypes` of one v4 association."""
    types: list[JSONObject] = []
    if primary:
        types.append({"category": "HUBSPOT_DEFINED", "typeId": PRIMARY[pair][0],
                      "label": "Primary"})
    types.append({"category": "HUBSPOT_DEFINED", "typeId": DEFAULTS[pair][0], "label": None})
    return types
