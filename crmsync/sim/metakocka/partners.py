"""`get_partner`, `add_partner`, `update_partner`, strict where Metakocka is.

- `get_partner` needs at least one filter (`partner_id`, `partner_name`,
  `partner_tax_number`, `partner_email`, `partner_phone_number`); no match is the
  error `opr_code 2` "No partner with such properties.", not an empty list.
- `add_partner` needs `partner.customer` and the main address (`street`,
  `post_number`, `place`, `country`); takes one `partner_contact` and one
  `partner_delivery_address` (objects, not lists); answers only ids, with no
  `opr_code`. It never deduplicates: the same body twice makes two partners.
- `update_partner` targets `mk_id` or `count_code`, changes only the fields sent; a
  contact item with `mk_id` updates that contact, one without needs `mk_address_id`
  and adds a contact (so repeating it adds another); address items likewise. Every
  item is checked before anything is applied. Answers the whole partner.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from crmsync.sim._kit.http import json_response
from crmsync.sim.metakocka import wire
from crmsync.sim.metakocka.company import Company
from crmsync.sim.metakocka.model import ADDRESS_TYPES, BILLING, DELIVERY, Address, Contact, Partner
from crmsync.sim.metakocka.state import BODY_KEY, COMPANY_KEY, answer
from crmsync.sim.metakocka.wire import NO_PARTNER, JSONObject, MkError, parameter_error

API_PATH = "/rest/eshop/v1"
routes = web.RouteTableDef()

FILTERS = {"partner_id": "mk_id", "partner_name": "name", "partner_tax_number": "tax_number",
           "partner_email": "email", "partner_phone_number": "phone"}
FLAGS = ("business_entity", "taxpayer", "foreign_county", "buyer", "supplier")
CONTACT_TEXT = ("name", "email", "gsm", "phone", "fax")
ADDRESS_TEXT = ("street", "post_number", "city", "province", "country")


@routes.post(f"{API_PATH}/get_partner")
async def get_partner(request: web.Request) -> web.Response:
    body, company = request[BODY_KEY], request[COMPANY_KEY]
    filters = {field: wire.text(body, key) for key, field in FILTERS.items()}
    given = {field: value.strip() for field, value in filters.items() if value and value.strip()}
    if not given:
        raise parameter_error("Partner data are missing")
    found = company.find(**given)
    if not found:
        raise MkError(wire.PARAMETER, NO_PARTNER)
    return json_response(answer(request, {
        "opr_code": "0", "partner_list_count": len(found),
        "partner_list": [p.render() for p in found],
    }))


@routes.post(f"{API_PATH}/add_partner")
async def add_partner(request: web.Request) -> web.Response:
    company, body = request[COMPANY_KEY], request[BODY_KEY]
    data = wire.child(body, "partner")
    if data is None:
        raise parameter_error("Partner data are missing")
    customer = wire.text(data, "customer")
    if not customer:
        raise parameter_error("Partner data are missing: customer")
    main = {key: wire.text(data, key) for key in ("street", "post_number", "place", "country")}
    if not all(main.values()):
        raise parameter_error("Partner must declare street, post number, place and country.")
    province = wire.text(data, "province") or ""
    flags = {key: wire.flag(data, key) for key in FLAGS}
    tax_id_number = wire.text(data, "tax_id_number") or ""
    registration_number = wire.text(data, "registration_number") or ""
    contact_in = wire.child(data, "partner_contact")
    contact = _contact_fields(contact_in) if contact_in is not None else None
    use_customer = contact_in is not None and wire.flag(contact_in, "useCustomerAsContact")
    extra_in = wire.child(data, "partner_delivery_address")
    extra = _address_fields(extra_in, DELIVERY) if extra_in is not None else None

    mk_id = company.new_id()
    addresses = [Address(company.new_id(), BILLING, main["street"] or "",
                         main["post_number"] or "", main["place"] or "", province,
                         main["country"] or "")]
    if extra is not None:
        addresses.append(Address(company.new_id(), **extra))
    partner = Partner(mk_id, company.new_count_code(), customer, addresses,
                      tax_id_number=tax_id_number, registration_number=registration_number)
    for key, value in flags.items():
        if value is not None:
            setattr(partner, key, value)
    answered: JSONObject = {"mk_id": mk_id}
    if contact is not None:
        if use_customer:
            contact["name"] = customer
        new = Contact(company.new_id(), addresses[0].mk_id, **contact)
        partner.contacts.append(new)
        answered["mk_contact_id"] = new.mk_id
    company.add(partner)
    answered["mk_address_id_list"] = [{"mk_id": a.mk_id, "street": a.street} for a in addresses]
    return json_response(answer(request, answered))


@routes.post(f"{API_PATH}/update_partner")
async def update_partner(request: web.Request) -> web.Response:
    company, body = request[COMPANY_KEY], request[BODY_KEY]
    data = wire.child(body, "partner")
    if data is None:
        raise parameter_error("Partner data are missing")
    partner = _target(company, data)
    changes: dict[str, Any] = {key: wire.text(data, key)
                               for key in ("customer", "tax_id_number", "registration_number")}
    changes.update({key: wire.flag(data, key) for key in FLAGS})
    main = {key: wire.text(data, source) for key, source in
            (("street", "street"), ("post_number", "post_number"), ("city", "place"),
             ("province", "province"), ("country", "country"))}
    contacts = [_contact_change(partner, item)
                for item in wire.children(data, "partner_contact_list")]
    addresses = [_address_change(partner, item)
                 for item in wire.children(data, "partner_delivery_address_list")]
    if changes.get("customer") == "":
        raise parameter_error("Partner data are missing: customer")
    # Everything checked: apply.
    for key, value in changes.items():
        if value is not None:
            setattr(partner, key, value)
    for key, value in main.items():
        if value is not None:
            setattr(partner.main_address, key, value)
    for target, fields in addresses:
        if target is None:
            partner.addresses.append(Address(company.new_id(), **fields))
        else:
            for key, value in fields.items():
                setattr(target, key, value)
    for contact, fields in contacts:
        if isinstance(contact, Contact):
            for key, value in fields.items():
                setattr(contact, key, value)
        else:
            partner.contacts.append(Contact(company.new_id(), contact, **fields))
    return json_response(answer(request, {
        "opr_code": "0", "partner_list_count": 1, "partner_list": [partner.render()],
    }))


def _target(company: Company, data: JSONObject) -> Partner:
    mk_id, count_code = wire.text(data, "mk_id"), wire.text(data, "count_code")
    if not mk_id and not count_code:
        raise parameter_error("Partner must have mk_id or count_code for identification.")
    partner = company.partners.get(mk_id) if mk_id else company.by_count_code(count_code or "")
    if partner is None:
        raise MkError(wire.PARAMETER, NO_PARTNER)
    return partner


def _contact_fields(item: JSONObject) -> dict[str, str]:
    return {key: value for key in CONTACT_TEXT if (value := wire.text(item, key)) is not None}


def _contact_change(partner: Partner, item: JSONObject) -> tuple[Contact | str, dict[str, str]]:
    """(the contact to update, or the address id of a new one; its fields)."""
    fields = _contact_fields(item)
    mk_id = wire.text(item, "mk_id")
    if mk_id:
        contact = partner.contact(mk_id)
        if contact is None:
            raise parameter_error(f"Contact with mk_id = {mk_id} doesn't exist on partner.")
        return contact, fields
    address_id = wire.text(item, "mk_address_id")
    if not address_id:
        raise parameter_error("New contact must have mk_address_id.")
    if partner.address(address_id) is None:
        raise parameter_error(f"Address with mk_id = {address_id} doesn't exist on partner.")
    return address_id, fields


def _address_fields(item: JSONObject, default_type: str) -> dict[str, str]:
    fields = {key: value for key in ADDRESS_TEXT if (value := wire.text(item, key)) is not None}
    address_type = wire.text(item, "address_type") or default_type
    if address_type not in ADDRESS_TYPES:
        raise parameter_error(f"Unknown address_type {address_type}.")
    return {"address_type": address_type, **fields}


def _address_change(
    partner: Partner, item: JSONObject
) -> tuple[Address | None, dict[str, str]]:
    mk_id = wire.text(item, "mk_id")
    if not mk_id:
        fields = _address_fields(item, DELIVERY)
        if not fields.get("street"):
            raise parameter_error("New address must declare street.")
        return None, fields
    address = partner.address(mk_id)
    if address is None:
        raise parameter_error(f"Address with mk_id = {mk_id} doesn't exist on partner.")
    fields = _address_fields(item, address.address_type)
    return address, fields
