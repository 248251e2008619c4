"""Deterministic seeding of awkward HubSpot contacts and companies (`random.Random(seed)`).

The same seed always gives the same ids, properties and times. The mix of N contacts,
chosen so every odd case appears once N >= 20 (each share rounded, then raised to one):

* 4%  email only (no names, phone, company or title); 3% first name only.
* 10% no phone; 4% only `mobilephone`; 10% `phone` and a different `mobilephone`.
* 10% `phone` typed in national format with `hs_country_region_code` set (parses);
  4%  national format WITHOUT a region (cannot be parsed: dropped).
* 5%  `mobilephone` repeating `phone` in another format; 3% junk ("call me", "12").
* the rest one `phone`, typed in E.164 or international format.
Independently: unicode names from seven countries; ~60% a job title; ~10% one or two
`hs_additional_emails`; ~55% associated with one company, ~8% with two (the primary is
the one associated second), ~10% only the free-text `company` property, and a third of
the associated ones also carry a stale `company` text that differs from the company's
name; 3% archived. Create dates spread over four years, ~5% sharing the exact
millisecond of the contact before (ties), ~3% backdated (imported: older than
contacts with lower ids). `SeedFacts` lists the ids of each case for tests.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime

from crmsync.sim._kit.seed import ShapeFacts, gc_paused, shape_schedule
from crmsync.sim.attio import names, phones
from crmsync.sim.hubspot.model import COMPANIES, CONTACTS, CrmObject
from crmsync.sim.hubspot.store import ObjectStore

SHAPE_MIX: tuple[tuple[str, float], ...] = (
    ("email_only", 0.04), ("first_name_only", 0.03), ("no_phone", 0.10),
    ("mobile_only", 0.04), ("two_phones", 0.10), ("national_with_region", 0.10),
    ("national_no_region", 0.04), ("mobile_duplicate", 0.05), ("junk_phone", 0.03),
)
ONE_COMPANY, TWO_COMPANIES, TEXT_COMPANY, STALE_TEXT = 0.55, 0.08, 0.10, 1 / 3
JOB_TITLE, EXTRA_EMAILS, ARCHIVED, TIED, BACKDATED = 0.60, 0.10, 0.03, 0.05, 0.03
EPOCH_MS = int(datetime(2020, 1, 6, 9, 0, tzinfo=UTC).timestamp() * 1000)
COMPANY_EPOCH_MS = int(datetime(2019, 6, 3, 9, 0, tzinfo=UTC).timestamp() * 1000)
SPAN_MS = 4 * 365 * 86_400_000  # seeded contacts were created over four years
DAY_MS = 86_400_000


@dataclass(slots=True)
class SeedFacts(ShapeFacts):
    """Ids (as strings) of each seeded case, so tests can assert on them."""

    archived: list[str] = field(default_factory=list)
    one_company: list[str] = field(default_factory=list)
    two_companies: list[str] = field(default_factory=list)
    company_text_only: list[str] = field(default_factory=list)
    stale_company_text: list[str] = field(default_factory=list)
    additional_emails: list[str] = field(default_factory=list)
    unicode_names: list[str] = field(default_factory=list)
    tied: list[list[str]] = field(default_factory=list)  # groups sharing one createdate
    backdated: list[str] = field(default_factory=list)


def seed_portal(rng: random.Random, people: int, contacts: ObjectStore,
                companies: ObjectStore) -> SeedFacts:
    """Fill the stores; about 15 µs per contact (12k contacts: a fifth of a second)."""
    with gc_paused():  # many small dicts, none of them garbage
        seeded = _companies(rng, companies, max(1, people // 10) if people else 0)
        seeder = _ContactSeeder(rng, contacts, companies, seeded, people)
        for shape in shape_schedule(rng, people, SHAPE_MIX):
            seeder.contact(shape)
        return seeder.facts


def _companies(rng: random.Random, store: ObjectStore, count: int) -> list[CrmObject]:
    result: list[CrmObject] = []
    moment = COMPANY_EPOCH_MS
    for i in range(count):
        named = names.company_name(rng, i)
        moment += rng.randint(3_600_000, 48 * 3_600_000)
        company = CrmObject(COMPANIES, store.new_id(gap=rng.randint(1, 40)), moment, moment, {
            "name": named.name, "domain": named.domain})
        store.add(company, indexed=True)
        result.append(company)
    return result


class _ContactSeeder:
    """Builds contacts one by one; keeps the timeline and the emails used."""

    def __init__(self, rng: random.Random, contacts: ObjectStore, companies: ObjectStore,
                 seeded: list[CrmObject], people: int) -> None:
        self.rng, self.contacts, self.companies, self.seeded = rng, contacts, companies, seeded
        self.facts = SeedFacts()
        self.moment = EPOCH_MS
        self.step = max(2, 2 * SPAN_MS // max(1, people))
        self.emails: set[str] = set()
        self.last_tie: list[str] | None = None

    def contact(self, shape: str) -> None:
        rng = self.rng
        created = self.created()
        contact = CrmObject(CONTACTS, self.contacts.new_id(gap=rng.randint(1, 3)), created,
                            created + rng.randrange(400 * DAY_MS))
        record_id = str(contact.id)
        self.facts.shapes.setdefault(shape, []).append(record_id)
        self.tie_or_backdate(contact, created)
        props = contact.properties
        locale = rng.choice(names.LOCALES)
        (first, first_ascii), (last, last_ascii) = (
            rng.choice(locale.first_names), rng.choice(locale.last_names))
        if shape != "email_only":
            props["firstname"] = first
            if shape != "first_name_only":
                props["lastname"] = last
            if not (first + last).isascii():
                self.facts.unicode_names.append(record_id)
        domain = None if shape == "email_only" else self.company(contact)
        props["email"] = self.email(first_ascii, last_ascii, domain)
        if shape != "email_only" and rng.random() < EXTRA_EMAILS:
            extra = [self.email(first_ascii, last_ascii, None) for _ in range(rng.randint(1, 2))]
            props["hs_additional_emails"] = ";".join(extra)
            self.facts.additional_emails.append(record_id)
        self.phones(props, shape, locale.country)
        if shape != "email_only" and rng.random() < JOB_TITLE:
            props["jobtitle"] = rng.choice(names.JOB_TITLES)
        if rng.random() < ARCHIVED:
            contact.archived, contact.archived_ms = True, contact.updated_ms
            self.facts.archived.append(record_id)
        self.contacts.add(contact, indexed=True)

    def created(self) -> int:
        self.moment += self.rng.randint(1, self.step)
        return self.moment

    def tie_or_backdate(self, contact: CrmObject, created: int) -> None:
        """Some contacts share the previous one's createdate; some were imported older."""
        roll = self.rng.random()
        if roll < TIED and self.contacts.last is not None:
            previous = self.contacts.last
            contact.created_ms = contact.updated_ms = previous.created_ms
            if self.last_tie is not None and self.last_tie[-1] == str(previous.id):
                self.last_tie.append(str(contact.id))
            else:
                self.last_tie = [str(previous.id), str(contact.id)]
                self.facts.tied.append(self.last_tie)
        elif roll < TIED + BACKDATED:
            contact.created_ms = EPOCH_MS + self.rng.randrange(max(1, created - EPOCH_MS))
            contact.updated_ms = created
            self.facts.backdated.append(str(contact.id))

    def company(self, contact: CrmObject) -> str | None:
        """Associations and the `company` text; the email domain of the company, if any."""
        rng, record_id = self.rng, str(contact.id)
        roll = rng.random()
        if not self.seeded or roll >= ONE_COMPANY + TWO_COMPANIES + TEXT_COMPANY:
            return None
        if roll >= ONE_COMPANY + TWO_COMPANIES:
            contact.properties["company"] = rng.choice(self.seeded).properties["name"] + " (typed)"
            self.facts.company_text_only.append(record_id)
            return None
        chosen = rng.sample(self.seeded, 2 if roll >= ONE_COMPANY and len(self.seeded) > 1
                            else 1)
        for company in chosen:
            contact.links.setdefault("companies", []).append(company.id)
            company.links.setdefault("contacts", []).append(contact.id)
        contact.primary_company = chosen[-1].id  # with two: the primary is not listed first
        (self.facts.two_companies if len(chosen) == 2 else self.facts.one_company).append(
            record_id)
        if rng.random() < STALE_TEXT:
            contact.properties["company"] = rng.choice(names.COMPANY_STEMS) + " (old employer)"
            self.facts.stale_company_text.append(record_id)
        return chosen[-1].properties["domain"]

    def email(self, first: str, last: str, domain: str | None) -> str:
        local = f"{first}.{last}"
        domain = domain or self.rng.choice(names.FREE_MAIL_DOMAINS)
        address, n = f"{local}@{domain}", 1
        while address in self.emails:
            n += 1
            address = f"{local}{n}@{domain}"
        self.emails.add(address)
        return address

    def phones(self, props: dict[str, str], shape: str, country: str) -> None:
        rng = self.rng
        if shape in ("email_only", "no_phone"):
            return
        if shape == "junk_phone":
            props["phone"] = rng.choice(phones.INVALID_ORIGINALS)
            return
        number = phones.random_number(rng, country if rng.random() < 0.8 else "US")
        if shape in ("national_with_region", "national_no_region"):
            props["phone"] = number.national()
            if shape == "national_with_region":
                props["hs_country_region_code"] = number.country
        elif shape == "mobile_only":
            props["mobilephone"] = rng.choice((number.e164, number.international()))
        elif shape == "mobile_duplicate":
            props["phone"], props["mobilephone"] = rng.choice(
                ((number.e164, number.international()), (number.international(), number.e164)))
        else:
            props["phone"] = rng.choice((number.e164, number.international()))
            if shape == "two_phones":
                props["mobilephone"] = phones.random_number(rng, number.country).international()
