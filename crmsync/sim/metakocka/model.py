"""Partners, their contacts and addresses, and documents, as one company stores them.

Rendering gives Python values (`wire.to_wire` turns them into Metakocka's strings):
`Partner.render()` is the shape of `get_partner` and `update_partner` answers (contacts
in `partner_contact_list`, addresses in `partner_delivery_address_list`, where the
city is `city` although input calls it `place`); `Document.render()` is a `search`
result of `result_type: "doc"`, with the partner inline as documents carry it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

BILLING, DELIVERY, BUSINESS_UNIT = "Račun", "Dobava", "Poslovna enota"
ADDRESS_TYPES = (BILLING, DELIVERY, BUSINESS_UNIT)
PAYMENT_DUE_DAYS, LANGUAGE = 15, "Slovenski"

JSONObject = dict[str, Any]


@dataclass(slots=True)
class Address:
    mk_id: str
    address_type: str
    street: str = ""
    post_number: str = ""
    city: str = ""
    province: str = ""
    country: str = ""

    def render(self) -> JSONObject:
        return {
            "mk_id": self.mk_id, "address_type": self.address_type, "street": self.street,
            "post_number": self.post_number, "city": self.city, "province": self.province,
            "country": self.country, "payment_due_days": PAYMENT_DUE_DAYS,
            "language": LANGUAGE,
        }


@dataclass(slots=True)
class Contact:
    mk_id: str
    mk_address_id: str
    name: str = ""
    email: str = ""
    gsm: str = ""
    phone: str = ""
    fax: str = ""


@dataclass(slots=True)
class Partner:
    """One business partner; `addresses[0]` is the main (billing) address."""

    mk_id: str
    count_code: str
    customer: str
    addresses: list[Address]
    contacts: list[Contact] = field(default_factory=list)
    business_entity: bool = False
    taxpayer: bool = False
    foreign_county: bool = False
    buyer: bool = True
    supplier: bool = False
    tax_id_number: str = ""
    registration_number: str = ""

    @property
    def main_address(self) -> Address:
        return self.addresses[0]

    def address(self, mk_id: str) -> Address | None:
        return next((a for a in self.addresses if a.mk_id == mk_id), None)

    def contact(self, mk_id: str) -> Contact | None:
        return next((c for c in self.contacts if c.mk_id == mk_id), None)

    def render(self) -> JSONObject:
        streets = {a.mk_id: a.street for a in self.addresses}
        return {
            "mk_id": self.mk_id, "count_code": self.count_code, "customer": self.customer,
            "business_entity": self.business_entity, "taxpayer": self.taxpayer,
            "foreign_county": self.foreign_county, "buyer": self.buyer,
            "supplier": self.supplier, "tax_id_number": self.tax_id_number,
            "registration_number": self.registration_number,
            "partner_contact_list": [
                {"mk_id": c.mk_id, "mk_address_id": c.mk_address_id,
                 "contact_address": streets.get(c.mk_address_id, ""), "name": c.name,
                 "email": c.email, "gsm": c.gsm, "phone": c.phone, "fax": c.fax}
                for c in self.contacts
            ],
            "partner_delivery_address_list": [a.render() for a in self.addresses],
        }

    def render_on_document(self) -> JSONObject:
        """How a document carries its partner: flat, with the main address inline."""
        main = self.main_address
        first = self.contacts[0] if self.contacts else None
        return {
            "mk_id": self.mk_id, "mk_address_id": main.mk_id, "count_code": self.count_code,
            "customer": self.customer, "business_entity": self.business_entity,
            "taxpayer": self.taxpayer, "foreign_county": self.foreign_county,
            "tax_id_number": self.tax_id_number, "street": main.street,
            "post_number": main.post_number, "place": main.city, "country": main.country,
            "partner_contact": None if first is None else {
                "name": first.name, "gsm": first.gsm, "email": first.email,
            },
        }


@dataclass(slots=True)
class Document:
    mk_id: str
    doc_type: str
    count_code: str
    doc_date: datetime
    last_change: datetime
    partner_mk_id: str


def timestamp(moment: datetime) -> str:
    """`2019-12-17T14:28:54+02:00`, the form `last_change_ts` has."""
    return moment.isoformat(timespec="seconds")


def date(moment: datetime) -> str:
    """`2015-05-10+02:00`, the form `doc_date` has."""
    return moment.date().isoformat() + moment.isoformat()[-6:]
