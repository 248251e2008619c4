"""Typed Metakocka partners, and the normalisation of Metakocka's loose JSON into them.

Metakocka sends every scalar as a string (`"true"`, `"15"`) and a one-element list
sometimes as the bare object (`partner_contact_list: {…}`); field names differ between
input and output (`place` on a partner sent, `city` in an address read;
`partner_contact` on add, `partner_contact_list` on update and read). The client decodes
a body as plain JSON and turns it into these models here (pure functions, no I/O), so
nothing above the client ever sees the wire shapes. Research: `metakocka-api.md` §2, §4.

Every model is frozen; `None` means "Metakocka did not say" (read) or "do not send"
(write). No model carries credentials.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import msgspec

#: `address_type` of a partner's main (billing) address, as Metakocka names it
BILLING: Final = "Račun"
#: a delivery address
DELIVERY: Final = "Dobava"
#: a business unit
BUSINESS_UNIT: Final = "Poslovna enota"


class Model(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    pass


class PartnerContact(Model, frozen=True):
    """A contact person of a partner: the only place a partner's email and phones live.

    Read: `mk_id` and `mk_address_id` are set. In a `PartnerUpdate`: with `mk_id` it
    updates that contact; without `mk_id` but with `mk_address_id` it adds a contact on
    that address (not idempotent). In a `PartnerInput` the ids are ignored.
    """

    mk_id: str | None = None
    mk_address_id: str | None = None
    name: str | None = None
    email: str | None = None
    gsm: str | None = None  # mobile
    phone: str | None = None


class PartnerAddress(Model, frozen=True):
    """An address of a partner (`partner_delivery_address_list[]`). Read: `mk_id` set.

    In a `PartnerUpdate`: with `mk_id` it updates that address, without it adds one.
    """

    mk_id: str | None = None
    address_type: str | None = None  # BILLING | DELIVERY | BUSINESS_UNIT
    street: str | None = None
    post_number: str | None = None
    city: str | None = None
    country: str | None = None


class Partner(Model, frozen=True):
    """A business partner as `get_partner` / `update_partner` return it."""

    mk_id: str
    count_code: str | None = None
    customer: str | None = None  # the partner's name
    tax_id_number: str | None = None
    business_entity: bool = False  # a company (True) or a private person
    contacts: list[PartnerContact] = msgspec.field(default_factory=list)
    addresses: list[PartnerAddress] = msgspec.field(default_factory=list)


class PartnerInput(Model, frozen=True):
    """What `add_partner` sends. Metakocka requires a main address (`street`,
    `post_number`, `city`, `country`) and saves it as the billing address; one contact
    and one extra (delivery) address may come along, more only through update."""

    customer: str
    business_entity: bool
    street: str
    post_number: str
    city: str  # sent as `place`
    country: str
    tax_id_number: str | None = None
    contact: PartnerContact | None = None
    delivery_address: PartnerAddress | None = None
    buyer: bool = True


class PartnerUpdate(Model, frozen=True):
    """What `update_partner` sends: only the fields set (None: unchanged).

    Contacts and addresses follow `PartnerContact` / `PartnerAddress`: with an `mk_id`
    they update, without one they are added (then the call is not idempotent:
    `adds_something`)."""

    mk_id: str
    customer: str | None = None
    tax_id_number: str | None = None
    business_entity: bool | None = None
    contacts: list[PartnerContact] = msgspec.field(default_factory=list)
    addresses: list[PartnerAddress] = msgspec.field(default_factory=list)

    @property
    def adds_something(self) -> bool:
        """True when a repeat could add a second contact or address."""
        return any(c.mk_id is None for c in self.contacts) or any(
            a.mk_id is None for a in self.addresses
        )


class AddedPartner(Model, frozen=True):
    """`add_partner`'s answer: the new ids (no `count_code`: read it back)."""

    mk_id: str
    mk_contact_id: str | None = None
    #: address ids in Metakocka's order; the first is the billing (main) address
    address_ids: tuple[str, ...] = ()

    @property
    def billing_address_id(self) -> str | None:
        return self.address_ids[0] if self.address_ids else None


class DocumentRef(Model, frozen=True):
    """One document of a `search` page, reduced to what partner discovery needs."""

    mk_id: str
    doc_type: str | None = None
    partner_mk_id: str | None = None
    last_change_ts: str | None = None


class DocumentPage(Model, frozen=True):
    """One page of `search` (`result_type: "doc"`)."""

    documents: list[DocumentRef] = msgspec.field(default_factory=list)
    offset: int = 0
    limit: int = 0
    #: `result_all_records` (None when Metakocka leaves it out)
    total: int | None = None

    @property
    def partner_ids(self) -> list[str]:
        """Distinct partner `mk_id`s in page order."""
        return list(dict.fromkeys(d.partner_mk_id for d in self.documents if d.partner_mk_id))

    @property
    def last_change_ts(self) -> str | None:
        """The greatest `last_change_ts` on the page (ISO strings of one zone compare)."""
        stamps = [d.last_change_ts for d in self.documents if d.last_change_ts]
        return max(stamps) if stamps else None

    @property
    def has_more(self) -> bool:
        if self.total is not None:
            return self.offset + len(self.documents) < self.total
        return self.limit > 0 and len(self.documents) >= self.limit


# -- normalisation of Metakocka's JSON ------------------------------------------------------


class ShapeError(ValueError):
    """A body that does not have the shape Metakocka documents (the client raises it as
    its decode error)."""


def as_list(value: object) -> list[Any]:
    """A JSON list; a bare object (one element sent alone) as a list of one; absent/null
    as empty."""
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return value
    return [value]


def text(value: object) -> str | None:
    """A scalar as a string (Metakocka sends strings, but a number is accepted), stripped;
    empty as None."""
    if value is None or isinstance(value, bool):
        return None if value is None else ("true" if value else "false")
    if isinstance(value, str):
        stripped = value.strip()
        return stripped or None
    if isinstance(value, int | float):
        return str(value)
    raise ShapeError(f"expected a scalar, got {type(value).__name__}")


def flag(value: object, *, default: bool = False) -> bool:
    """`"true"` / `"false"` (any case), a JSON bool, `"1"` / `"0"`; absent: `default`."""
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("false", "0", "no"):
        return False
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ShapeError(f"expected a boolean, got {value!r}")


def number(value: object, *, default: int | None = None) -> int | None:
    """A count (`"15"`, 15); absent: `default`."""
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise ShapeError(f"expected a number, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise ShapeError(f"expected a number, got {value!r}")


def _object(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ShapeError(f"{what} is not a JSON object")
    return value


def _required_id(raw: Mapping[str, Any], what: str) -> str:
    mk_id = text(raw.get("mk_id"))
    if mk_id is None:
        raise ShapeError(f"{what} has no mk_id")
    return mk_id


def contact_from_json(value: object) -> PartnerContact:
    raw = _object(value, "a partner contact")
    return PartnerContact(
        mk_id=text(raw.get("mk_id")),
        mk_address_id=text(raw.get("mk_address_id")),
        name=text(raw.get("name")),
        email=text(raw.get("email")),
        gsm=text(raw.get("gsm")),
        phone=text(raw.get("phone")),
    )


def address_from_json(value: object) -> PartnerAddress:
    raw = _object(value, "a partner address")
    return PartnerAddress(
        mk_id=text(raw.get("mk_id")),
        address_type=text(raw.get("address_type")),
        street=text(raw.get("street")),
        post_number=text(raw.get("post_number")),
        city=text(raw.get("city") if raw.get("city") is not None else raw.get("place")),
        country=text(raw.get("country")),
    )


def partner_from_json(value: object) -> Partner:
    """One item of `partner_list`."""
    raw = _object(value, "a partner")
    return Partner(
        mk_id=_required_id(raw, "a partner"),
        count_code=text(raw.get("count_code")),
        customer=text(raw.get("customer")),
        tax_id_number=text(raw.get("tax_id_number")),
        business_entity=flag(raw.get("business_entity")),
        contacts=[contact_from_json(c) for c in as_list(raw.get("partner_contact_list"))],
        addresses=[
            address_from_json(a) for a in as_list(raw.get("partner_delivery_address_list"))
        ],
    )


def partners_from_json(body: object) -> list[Partner]:
    """`partner_list` of a `get_partner` / `update_partner` answer (absent: none)."""
    raw = _object(body, "the answer")
    return [partner_from_json(p) for p in as_list(raw.get("partner_list"))]


def added_partner_from_json(body: object) -> AddedPartner:
    raw = _object(body, "the answer")
    ids: list[str] = []
    for item in as_list(raw.get("mk_address_id_list")):
        # `{"mk_id", "street"}` objects; a bare id string is accepted too
        address_id = text(item.get("mk_id")) if isinstance(item, dict) else text(item)
        if address_id:
            ids.append(address_id)
    return AddedPartner(
        mk_id=_required_id(raw, "add_partner's answer"),
        mk_contact_id=text(raw.get("mk_contact_id")),
        address_ids=tuple(ids),
    )


def document_from_json(value: object) -> DocumentRef:
    raw = _object(value, "a document")
    partner = raw.get("partner")
    partner_id = text(partner.get("mk_id")) if isinstance(partner, dict) else None
    return DocumentRef(
        mk_id=_required_id(raw, "a document"),
        doc_type=text(raw.get("doc_type")),
        partner_mk_id=partner_id,
        last_change_ts=text(raw.get("last_change_ts")),
    )


def document_page_from_json(body: object) -> DocumentPage:
    raw = _object(body, "the answer")
    return DocumentPage(
        documents=[document_from_json(d) for d in as_list(raw.get("result"))],
        offset=number(raw.get("offset"), default=0) or 0,
        limit=number(raw.get("limit"), default=0) or 0,
        total=number(raw.get("result_all_records")),
    )


# -- what the client sends ------------------------------------------------------------------


def _bool_text(value: bool) -> str:
    return "true" if value else "false"


def _fields(pairs: Mapping[str, str | None]) -> dict[str, str]:
    return {key: value for key, value in pairs.items() if value is not None}


def contact_to_json(contact: PartnerContact, *, with_ids: bool) -> dict[str, str]:
    return _fields({
        **({"mk_id": contact.mk_id, "mk_address_id": contact.mk_address_id} if with_ids else {}),
        "name": contact.name, "email": contact.email, "gsm": contact.gsm,
        "phone": contact.phone,
    })


def address_to_json(address: PartnerAddress, *, with_id: bool) -> dict[str, str]:
    return _fields({
        **({"mk_id": address.mk_id} if with_id else {}),
        "address_type": address.address_type, "street": address.street,
        "post_number": address.post_number, "city": address.city, "country": address.country,
    })


def input_to_json(partner: PartnerInput) -> dict[str, Any]:
    """The `partner` object of `add_partner`."""
    body: dict[str, Any] = {
        "business_entity": _bool_text(partner.business_entity),
        "buyer": _bool_text(partner.buyer),
        "customer": partner.customer,
        "street": partner.street,
        "post_number": partner.post_number,
        "place": partner.city,
        "country": partner.country,
    }
    if partner.tax_id_number:
        body["tax_id_number"] = partner.tax_id_number
    if partner.contact is not None:
        body["partner_contact"] = contact_to_json(partner.contact, with_ids=False)
    if partner.delivery_address is not None:
        body["partner_delivery_address"] = address_to_json(
            partner.delivery_address, with_id=False
        )
    return body


def update_to_json(update: PartnerUpdate) -> dict[str, Any]:
    """The `partner` object of `update_partner`."""
    body: dict[str, Any] = {"mk_id": update.mk_id}
    body.update(_fields({"customer": update.customer, "tax_id_number": update.tax_id_number}))
    if update.business_entity is not None:
        body["business_entity"] = _bool_text(update.business_entity)
    if update.contacts:
        body["partner_contact_list"] = [
            contact_to_json(c, with_ids=True) for c in update.contacts
        ]
    if update.addresses:
        body["partner_delivery_address_list"] = [
            address_to_json(a, with_id=True) for a in update.addresses
        ]
    return body
