"""The person ⇄ partner rule (issue 12 item 2), both directions, pure.

A CRM person who works at a company is a *business* partner named after the company,
with the person as one of its contacts (name, email, mobile `gsm`, `phone`); a person
without a company is a *private* partner named after the person, with the person as
its one contact. Metakocka requires an address on create: the company's address when
the CRM knows it, else the tenant's `default_country` and `PLACEHOLDER` for street,
post number and city. Placeholders are sent on create only: an update never
overwrites an address with them, and nothing is ever cleared in Metakocka (its API has
no documented way to clear a field), so a value the CRM lacks is left alone there.

Both sides reduce to one comparable form, `PartnerFields` (names with whitespace
collapsed, emails lower-cased, phones in E.164 where they parse, tax numbers as given),
hashed per side (`fields_hash`): the Metakocka side's hash after a sync is what
crmsync last wrote there (or agreed with), the CRM side's what it last wrote to the
CRM, so an unchanged hash means no call and a write coming back is no echo.

Lookups (`LOOKUP_ORDER`, after the stored pair): tax number (a company with one) →
email → phone → name. `get_partner` matches names by substring, so every candidate is
checked here (`matches`): names compare exactly, case- and space-insensitively (a
private partner's name also in the other order, "Novak Ana"); a partner "Ana Novak
Trgovina d.o.o." is never the person Ana Novak, and a business partner never a private
person or the other way round.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Collection, Iterable, Sequence
from typing import Final, Literal

import msgspec
import phonenumbers

from crmsync.adapters.base import Person, PersonChanges, PersonPhone
from crmsync.domain.contact import to_e164
from crmsync.metakocka.models import (
    BILLING,
    Partner,
    PartnerAddress,
    PartnerContact,
    PartnerInput,
    PartnerUpdate,
)

#: Metakocka's field lengths (research §4); contact name and phones are undocumented
#: and held to the partner name's length.
LIMITS: Final = {
    "customer": 100, "street": 150, "post_number": 20, "city": 100, "country": 50,
    "tax_id_number": 50, "contact_name": 100, "email": 255, "gsm": 100, "phone": 100,
}
#: street, post number and city of a partner created for a person whose company's
#: address the CRM does not know (Metakocka refuses a partner without them)
PLACEHOLDER: Final = "-"

LookupBy = Literal["tax_number", "email", "phone", "name"]
LOOKUP_ORDER: Final[tuple[LookupBy, ...]] = ("tax_number", "email", "phone", "name")
Conflict = Literal["crm_wins", "metakocka_wins"]

# Country names Metakocka partners carry (free text, research §4) → the region that
# national-format phone numbers of that partner are read in.
_REGIONS: Final = {
    "slovenija": "SI", "slovenia": "SI", "hrvatska": "HR", "croatia": "HR",
    "avstrija": "AT", "austria": "AT", "österreich": "AT", "nemčija": "DE",
    "germany": "DE", "deutschland": "DE", "italija": "IT", "italy": "IT", "italia": "IT",
    "madžarska": "HU", "hungary": "HU", "srbija": "RS", "serbia": "RS",
    "bosna in hercegovina": "BA", "bosnia and herzegovina": "BA", "črna gora": "ME",
    "montenegro": "ME", "severna makedonija": "MK", "north macedonia": "MK",
}
_MOBILE: Final = (phonenumbers.PhoneNumberType.MOBILE,
                  phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE)


class PartnerError(Exception):
    """The person cannot become a partner; `category` names why (dead letters)."""

    def __init__(self, category: str, message: str) -> None:
        super().__init__(message)
        self.category = category


class Company(msgspec.Struct, frozen=True, kw_only=True):
    """What the CRM knows of the person's company (its name at least)."""

    name: str
    tax_number: str | None = None
    street: str | None = None
    post_number: str | None = None
    city: str | None = None
    country: str | None = None


class PartnerFields(msgspec.Struct, frozen=True, kw_only=True):
    """The synced fields of one person ⇄ partner pair, normalised (module docstring).

    None is "not known on this side". The address fields are the billing address.
    """

    customer: str
    business_entity: bool
    tax_id_number: str | None = None
    contact_name: str | None = None
    email: str | None = None
    gsm: str | None = None
    phone: str | None = None
    street: str | None = None
    post_number: str | None = None
    city: str | None = None
    country: str | None = None


FIELDS: Final = PartnerFields.__struct_fields__
_CONTACT: Final = ("contact_name", "email", "gsm", "phone")
_ADDRESS: Final = ("street", "post_number", "city", "country")


# -- normalising ----------------------------------------------------------------------------


def clean(value: str | None, limit: int | None = None) -> str | None:
    """Stripped, inner whitespace collapsed, cut to `limit`; empty as None."""
    if value is None:
        return None
    text = " ".join(value.split())
    if limit is not None:
        text = text[:limit].rstrip()
    return text or None


def name_key(name: str | None) -> str:
    """The form names compare in: NFKC, case-folded, whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFKC", name or "").casefold().split())


def same_name(a: str | None, b: str | None) -> bool:
    """Exactly the same name, ignoring case and spacing (never a substring)."""
    key = name_key(a)
    return bool(key) and key == name_key(b)


def same_person_name(a: str | None, b: str | None) -> bool:
    """`same_name`, or the same words in another order ("Novak Ana" is Ana Novak)."""
    return same_name(a, b) or (
        bool(name_key(a)) and sorted(name_key(a).split()) == sorted(name_key(b).split())
    )


def tax_key(tax_number: str | None) -> str:
    """A tax number without spacing, punctuation or a VAT country prefix (`SI12345678`
    and `12345678` are one number)."""
    key = re.sub(r"[\s.\-/]", "", (tax_number or "").upper())
    return key[2:] if re.fullmatch(r"[A-Z]{2}[0-9]+", key) else key


def _email(value: str | None) -> str | None:
    text = clean(value)
    if text is None or "@" not in text or len(text) > LIMITS["email"]:
        return None
    return text.lower()


def region(country: str | None) -> str | None:
    """The phone region of a country name or ISO code, if known."""
    key = name_key(country)
    if re.fullmatch(r"[a-z]{2}", key):
        return key.upper()
    return _REGIONS.get(key)


def _phone(value: str | None, country: str | None) -> str | None:
    """E.164 when the number parses (national numbers in `country`), else the cleaned
    text (a number is never dropped for being odd)."""
    text = clean(value, LIMITS["phone"])
    if text is None:
        return None
    return to_e164(PersonPhone(label="", raw=text, country_code=region(country))) or text


def _is_mobile(e164: str) -> bool:
    try:
        return phonenumbers.number_type(phonenumbers.parse(e164)) in _MOBILE
    except phonenumbers.NumberParseException:
        return False


def person_name(person: Person) -> str | None:
    """The person's name as one string: first and last, else the full name."""
    joined = " ".join(p for p in (clean(person.first_name), clean(person.last_name)) if p)
    return clean(joined or person.full_name, LIMITS["contact_name"])


def _split(name: str) -> tuple[str, str | None]:
    first, _, rest = name.partition(" ")
    return first, rest or None


# -- CRM person → Metakocka partner -----------------------------------------------------------


def partner_fields(person: Person, company: Company | None = None) -> PartnerFields:
    """The CRM side of the rule: the partner `person` is (with `company` when the CRM
    knows more of it than `person.company`, the name)."""
    company_name = clean(company.name if company else person.company, LIMITS["customer"])
    emails = [e for item in person.emails if (e := _email(item.value))]
    phones = [p for item in person.phones if (p := to_e164(item))]
    mobiles = [p for p in phones if _is_mobile(p)]
    landlines = [p for p in phones if not _is_mobile(p)]
    name = person_name(person)
    email = emails[0] if emails else None
    gsm = mobiles[0] if mobiles else None
    phone = landlines[0] if landlines else None
    if name is None and company_name is None and not (email or gsm or phone):
        raise PartnerError("empty_person", "person has no name, company, email or phone")
    known = company if company is not None and company_name else None
    return PartnerFields(
        customer=company_name or clean(name or email or gsm or phone, LIMITS["customer"]) or "",
        business_entity=company_name is not None,
        tax_id_number=clean(known.tax_number, LIMITS["tax_id_number"]) if known else None,
        contact_name=name,
        email=email,
        gsm=gsm,
        phone=phone,
        street=clean(known.street, LIMITS["street"]) if known else None,
        post_number=clean(known.post_number, LIMITS["post_number"]) if known else None,
        city=clean(known.city, LIMITS["city"]) if known else None,
        country=clean(known.country, LIMITS["country"]) if known else None,
    )


def _contact(fields: PartnerFields, **ids: str | None) -> PartnerContact | None:
    if not (fields.contact_name or fields.email or fields.gsm or fields.phone):
        return None
    return PartnerContact(
        name=fields.contact_name, email=fields.email, gsm=fields.gsm, phone=fields.phone, **ids
    )


def partner_input(fields: PartnerFields, *, default_country: str) -> PartnerInput:
    """The `add_partner` of a new pair; a missing address gets the placeholders."""
    has_address = bool(fields.street and fields.post_number and fields.city)
    return PartnerInput(
        customer=fields.customer,
        business_entity=fields.business_entity,
        street=fields.street if has_address and fields.street else PLACEHOLDER,
        post_number=fields.post_number if has_address and fields.post_number else PLACEHOLDER,
        city=fields.city if has_address and fields.city else PLACEHOLDER,
        country=fields.country or clean(default_country, LIMITS["country"]) or PLACEHOLDER,
        tax_id_number=fields.tax_id_number,
        contact=_contact(fields),
    )


def billing_address(partner: Partner) -> PartnerAddress | None:
    """The partner's main address: the first billing one, else the first."""
    return next(
        (a for a in partner.addresses if a.address_type == BILLING),
        partner.addresses[0] if partner.addresses else None,
    )


def _differs(wanted: str | None, current: str | None) -> bool:
    return wanted is not None and wanted != current


def partner_update(
    partner: Partner, wanted: PartnerFields, *, contact_id: str | None, default_country: str
) -> PartnerUpdate | None:
    """The `update_partner` that makes `partner` (the pair's contact `contact_id`) hold
    `wanted`: only differing fields, nothing cleared, no placeholder; None when nothing
    differs. Without the contact on the partner, the contact is added on the billing
    address (the update then `adds_something`: never repeat it blindly)."""
    current = fields_from_partner(partner, contact_id=contact_id, default_country=default_country)
    contact = next((c for c in partner.contacts if contact_id and c.mk_id == contact_id), None)
    address = billing_address(partner)
    contacts: list[PartnerContact] = []
    if contact is None:
        new = _contact(wanted, mk_address_id=address.mk_id if address else None)
        if new is not None and address is not None and address.mk_id:
            contacts.append(new)
    elif any(_differs(getattr(wanted, f), getattr(current, f)) for f in _CONTACT):
        contacts.append(PartnerContact(
            mk_id=contact.mk_id, mk_address_id=contact.mk_address_id,
            **{("name" if f == "contact_name" else f): getattr(wanted, f) for f in _CONTACT
               if _differs(getattr(wanted, f), getattr(current, f))},
        ))
    addresses: list[PartnerAddress] = []
    if address is not None and address.mk_id and any(
        _differs(getattr(wanted, f), getattr(current, f)) for f in _ADDRESS
    ):
        addresses.append(PartnerAddress(
            mk_id=address.mk_id,
            **{f: getattr(wanted, f) for f in _ADDRESS
               if _differs(getattr(wanted, f), getattr(current, f))},
        ))
    update = PartnerUpdate(
        mk_id=partner.mk_id,
        customer=wanted.customer if _differs(wanted.customer, current.customer) else None,
        tax_id_number=(
            wanted.tax_id_number
            if wanted.tax_id_number and tax_key(wanted.tax_id_number)
            != tax_key(current.tax_id_number) else None
        ),
        business_entity=(
            wanted.business_entity if wanted.business_entity != current.business_entity else None
        ),
        contacts=contacts,
        addresses=addresses,
    )
    return None if update == PartnerUpdate(mk_id=partner.mk_id) else update


# -- Metakocka partner → CRM person -----------------------------------------------------------


def fields_from_partner(
    partner: Partner, *, contact_id: str | None = None, default_country: str
) -> PartnerFields:
    """The Metakocka side of the rule: the pair's contact (`contact_id`, else the first
    contact) and the billing address; national phone numbers are read in the address's
    country, else `default_country`."""
    contact = next(
        (c for c in partner.contacts if contact_id and c.mk_id == contact_id),
        None if contact_id else (partner.contacts[0] if partner.contacts else None),
    )
    address = billing_address(partner)
    country = clean(address.country if address else None, LIMITS["country"])
    phone_country = country or default_country
    return PartnerFields(
        customer=clean(partner.customer, LIMITS["customer"]) or "",
        business_entity=partner.business_entity,
        tax_id_number=clean(partner.tax_id_number, LIMITS["tax_id_number"]),
        contact_name=clean(contact.name, LIMITS["contact_name"]) if contact else None,
        email=_email(contact.email) if contact else None,
        gsm=_phone(contact.gsm, phone_country) if contact else None,
        phone=_phone(contact.phone, phone_country) if contact else None,
        street=clean(address.street, LIMITS["street"]) if address else None,
        post_number=clean(address.post_number, LIMITS["post_number"]) if address else None,
        city=clean(address.city, LIMITS["city"]) if address else None,
        country=country,
    )


def _crm_name(fields: PartnerFields) -> str | None:
    return fields.contact_name or (None if fields.business_entity else clean(fields.customer))


def _replace(items: Sequence[str], old: str | None, new: str | None) -> tuple[str, ...] | None:
    """`items` with `old` replaced by `new` (or `new` first); None when unchanged."""
    if new is None or any(name_key(i) == name_key(new) for i in items):
        return None
    if old is not None and any(name_key(i) == name_key(old) for i in items):
        return tuple(new if name_key(i) == name_key(old) else i for i in items)
    return (new, *items)


def person_changes(
    person: Person, mk: PartnerFields, base: PartnerFields | None = None
) -> PersonChanges:
    """What to write on the paired CRM person so it holds what Metakocka changed since
    `base` (the pair's snapshot; None: everything Metakocka has). A value Metakocka
    dropped is not cleared in the CRM; emails and phones Metakocka does not hold stay."""
    unset = msgspec.UNSET

    def changed(name: str) -> bool:
        return base is None or getattr(mk, name) != getattr(base, name)

    name = _crm_name(mk)
    names = (
        _split(name) if name and (base is None or name != _crm_name(base))
        and not same_name(name, person_name(person)) else None
    )
    company = (
        mk.customer if mk.business_entity and mk.customer and changed("customer")
        and not same_name(mk.customer, person.company) else None
    )
    emails = _replace(
        [e.value.strip() for e in person.emails if e.value.strip()],
        base.email if base else None, mk.email if changed("email") else None,
    )
    phones: tuple[str, ...] | None = None
    current = [to_e164(p) or p.raw.strip() for p in person.phones if p.raw.strip() or p.e164]
    for field in ("gsm", "phone"):
        new = getattr(mk, field)
        if changed(field) and new and new.startswith("+"):
            replaced = _replace(
                phones if phones is not None else current,
                getattr(base, field) if base else None, new,
            )
            phones = replaced if replaced is not None else phones
    return PersonChanges(
        first_name=names[0] if names else unset,
        last_name=names[1] if names else unset,
        company=company if company is not None else unset,
        emails=emails if emails is not None else unset,
        phones=phones if phones is not None else unset,
    )


def new_person(mk: PartnerFields) -> PersonChanges:
    """The CRM person an imported partner becomes (its company: a business partner)."""
    name = _crm_name(mk)
    first, last = _split(name) if name else (None, None)
    phones = tuple(dict.fromkeys(p for p in (mk.gsm, mk.phone) if p and p.startswith("+")))
    return PersonChanges(
        first_name=first if name else msgspec.UNSET,
        last_name=last if name else msgspec.UNSET,
        company=mk.customer if mk.business_entity and mk.customer else msgspec.UNSET,
        emails=(mk.email,) if mk.email else msgspec.UNSET,
        phones=phones or msgspec.UNSET,
    )


# -- lookups --------------------------------------------------------------------------------


def lookup_filters(fields: PartnerFields) -> list[tuple[LookupBy, str]]:
    """The `get_partner` searches to try before a create, in order, with their value."""
    steps: list[tuple[LookupBy, str | None]] = [
        ("tax_number", fields.tax_id_number if fields.business_entity else None),
        ("email", fields.email),
        ("phone", fields.gsm),
        ("phone", fields.phone),
        ("name", fields.customer),
    ]
    return [(by, value) for by, value in steps if value]


def matches(partner: Partner, fields: PartnerFields, by: LookupBy, *, default_country: str) -> bool:
    """Whether a candidate `get_partner` found `by` this value really is the pair's
    partner (exact comparisons; the kind must agree)."""
    if partner.business_entity != fields.business_entity:
        return False
    if by == "tax_number":
        return bool(tax_key(fields.tax_id_number)) and (
            tax_key(partner.tax_id_number) == tax_key(fields.tax_id_number)
        )
    if by == "name":
        compare = same_name if fields.business_entity else same_person_name
        return compare(partner.customer, fields.customer)
    return contact_for(partner, fields, by=by, default_country=default_country) is not None


def contact_for(
    partner: Partner,
    fields: PartnerFields,
    *,
    by: LookupBy | None = None,
    default_country: str,
    exclude: Collection[str] = (),
) -> PartnerContact | None:
    """The partner's contact that is the person: same email, else same phone, else the
    same name (only the one `by` when given). Contacts in `exclude` (paired with other
    people) are passed over: colleagues share a switchboard phone or a name, and the
    first contact matching one is not the person when it is already someone else."""
    seen = [
        (c, fields_from_partner(partner, contact_id=c.mk_id, default_country=default_country))
        for c in partner.contacts if c.mk_id and c.mk_id not in exclude
    ]
    wanted_phones = {p for p in (fields.gsm, fields.phone) if p}

    def same(key: LookupBy, found: PartnerFields) -> bool:
        if key == "email":
            return fields.email is not None and found.email == fields.email
        if key == "phone":
            return bool(wanted_phones & {found.gsm, found.phone})
        return same_person_name(found.contact_name, fields.contact_name)

    keys: tuple[LookupBy, ...] = (by,) if by is not None else ("email", "phone", "name")
    for key in keys:
        match = next((c for c, f in seen if same(key, f)), None)
        if match is not None:
            return match
    return None


def pick(
    candidates: Iterable[Partner], fields: PartnerFields, by: LookupBy, *, default_country: str
) -> Partner | None:
    """The matching candidate (`matches`); of several, the oldest (lowest `mk_id`)."""
    found = [p for p in candidates if matches(p, fields, by, default_country=default_country)]
    return min(found, key=lambda p: (len(p.mk_id), p.mk_id), default=None)


# -- hashes, snapshots and the three-way merge ------------------------------------------------


def fields_hash(fields: PartnerFields) -> str:
    """The content hash of one side (Struct fields encode in declaration order)."""
    return hashlib.sha256(msgspec.json.encode(fields)).hexdigest()


def encode(fields: PartnerFields) -> str:
    return msgspec.json.encode(fields).decode()


def decode(stored: str | None) -> PartnerFields | None:
    """A stored snapshot; None if it is not one (then it is as good as missing)."""
    if not stored:
        return None
    try:
        return msgspec.json.decode(stored, type=PartnerFields)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


class PartnerMerge(msgspec.Struct, frozen=True, kw_only=True):
    result: PartnerFields
    conflicts: tuple[str, ...] = ()  # fields changed on both sides to different values


def merge(
    base: PartnerFields | None, crm: PartnerFields, mk: PartnerFields, conflict: Conflict
) -> PartnerMerge:
    """Per field: a side that left it as in `base` takes the other side's value; both
    changed differently is a conflict settled by `conflict`. A value one side does not
    know (None) never wins over a known one. Without a base every difference is a
    conflict."""
    crm_wins = conflict == "crm_wins"
    values: dict[str, object] = {}
    conflicts: list[str] = []
    for name in FIELDS:
        old = getattr(base, name) if base is not None else None
        ours, theirs = getattr(crm, name), getattr(mk, name)
        if ours == theirs or theirs is None or (base is not None and theirs == old):
            values[name] = ours
        elif ours is None or (base is not None and ours == old):
            values[name] = theirs
        else:
            values[name] = ours if crm_wins else theirs
            conflicts.append(name)
    return PartnerMerge(result=msgspec.convert(values, PartnerFields), conflicts=tuple(conflicts))
