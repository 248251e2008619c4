"""Deterministic seeding of realistic, awkward Attio people (`random.Random(seed)`).

The same seed always gives the same workspace id, records, ids and timestamps. The mix
of N people, chosen so every odd case appears once N >= 20 (each share is rounded, then
raised to at least one; the shared-phone share to at least one pair):

* 4%  email only: no name, phone, company or title, just one email address.
* 5%  `full_name` only ("Björk", "山田さん"): empty `first_name` / `last_name`.
* 10% no phone number; 15% two or three phones.
* 3%  one invalid phone ("12", "not a phone"): only `original_phone_number`, no
  `phone_number` key, `country_code` null.
* 5%  one national-format phone ("040 123 456", country "SI") with no E.164 value.
* 4%  in pairs sharing one E.164 number (typed differently by each person).
* the rest: one valid phone, typed in E.164, international or national format.
Independently: names from seven countries (Žiga Novak, José Álvarez, 田中 太郎,
Zoë O'Brien, ...), ~70% linked to one of max(1, N // 10) companies, ~60% with a job
title, ~85% one email and ~10% two (some mixed-case), and ~15% with history: an older
name, phone, title or email closed by `active_until` and listed *before* the current
value. `SeedFacts` lists the record ids of each case for tests.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from crmsync.sim._kit.seed import ShapeFacts, gc_paused, shape_schedule
from crmsync.sim.attio import model, names, phones
from crmsync.sim.attio.model import JSONObject, StoredRecord, Workspace

SHAPE_MIX: tuple[tuple[str, float], ...] = (
    ("email_only", 0.04), ("full_name_only", 0.05), ("no_phone", 0.10),
    ("multi_phone", 0.15), ("invalid_phone", 0.03), ("national_phone", 0.05),
    ("shared_phone", 0.04),
)
COMPANY_SHARE, JOB_TITLE_SHARE, HISTORY_SHARE = 0.70, 0.60, 0.15
PEOPLE_EPOCH = datetime(2021, 3, 1, 9, 0, tzinfo=UTC)
COMPANY_EPOCH = datetime(2020, 6, 1, 9, 0, tzinfo=UTC)


@dataclass(slots=True)
class SeedFacts(ShapeFacts):
    """Record ids of each seeded case, so tests can assert on them."""

    shared_phones: dict[str, list[str]] = field(default_factory=dict)  # E.164 -> ids
    with_company: list[str] = field(default_factory=list)
    with_job_title: list[str] = field(default_factory=list)
    with_history: list[str] = field(default_factory=list)
    unicode_names: list[str] = field(default_factory=list)


@dataclass(slots=True)
class SeedResult:
    workspace: Workspace
    people: list[StoredRecord]
    companies: list[StoredRecord]
    facts: SeedFacts


def new_id(rng: random.Random) -> str:
    return model.random_uuid(rng.getrandbits(128))


def seed_workspace(rng: random.Random, people: int, slug: str, name: str) -> SeedResult:
    """About 80 µs per person (10k people: under a second)."""
    workspace = Workspace(new_id(rng), slug, name, new_id(rng), COMPANY_EPOCH)
    with gc_paused():  # millions of small dicts, none of them garbage
        companies = _companies(rng, workspace, max(1, people // 10) if people else 0)
        seeder = _PeopleSeeder(rng, workspace, companies)
        return SeedResult(workspace, seeder.seed(people), companies, seeder.facts)


def _companies(rng: random.Random, ws: Workspace, count: int) -> list[StoredRecord]:
    result: list[StoredRecord] = []
    moment = COMPANY_EPOCH
    for i in range(count):
        company = names.company_name(rng, i)
        moment += timedelta(hours=rng.randint(1, 48), microseconds=rng.randrange(10**6))
        record = StoredRecord("companies", new_id(rng), moment)
        model.creation_values(record, actor=ws.member_actor())
        record.append("name", model.text(company.name), at=moment, actor=ws.member_actor())
        record.append("domains", model.domain(company.domain),
                      at=moment, actor=ws.member_actor())
        result.append(record)
    return result


class _PeopleSeeder:
    """Builds people one by one; keeps the timeline, used emails and shared numbers."""

    def __init__(self, rng: random.Random, ws: Workspace, companies: list[StoredRecord]):
        self.rng, self.ws, self.companies = rng, ws, companies
        self.facts = SeedFacts()
        self.moment = PEOPLE_EPOCH
        self.emails: set[str] = set()
        self.pending_shared: phones.GeneratedNumber | None = None

    def seed(self, n: int) -> list[StoredRecord]:
        return [self.person(shape) for shape in shape_schedule(self.rng, n, SHAPE_MIX)]

    def person(self, shape: str) -> StoredRecord:
        rng = self.rng
        self.moment += timedelta(minutes=rng.randint(1, 600), microseconds=rng.randrange(10**6))
        record = StoredRecord("people", new_id(rng), self.moment)
        self.facts.shapes.setdefault(shape, []).append(record.record_id)
        model.creation_values(record, actor=self.ws.member_actor())
        locale = rng.choice(names.LOCALES)
        (first, first_ascii), (last, last_ascii) = (
            rng.choice(locale.first_names), rng.choice(locale.last_names))
        full = f"{last} {first}" if locale.family_name_first else f"{first} {last}"
        current: dict[str, list[JSONObject]] = {
            "name": [], "email_addresses": [], "phone_numbers": [],
            "job_title": [], "company": [],
        }
        if shape == "full_name_only":
            full = rng.choice(names.FULL_NAME_ONLY)
            current["name"] = [model.personal_name("", "", full)]
        elif shape != "email_only":
            current["name"] = [model.personal_name(first, last, full)]
        if current["name"] and not full.isascii():
            self.facts.unicode_names.append(record.record_id)
        company = self.company(record, shape, current)
        email_count = 1 if shape == "email_only" else rng.choices((0, 1, 2), (5, 85, 10))[0]
        for i in range(email_count):
            domain = company if i == 0 and company else rng.choice(names.FREE_MAIL_DOMAINS)
            current["email_addresses"].append(self.email(first_ascii, last_ascii, domain))
        current["phone_numbers"] = self.phones(record.record_id, shape, locale.country)
        if shape != "email_only" and rng.random() < JOB_TITLE_SHARE:
            current["job_title"] = [model.text(rng.choice(names.JOB_TITLES))]
            self.facts.with_job_title.append(record.record_id)
        self.write(record, current, locale.country)
        return record

    def company(self, record: StoredRecord, shape: str,
                current: dict[str, list[JSONObject]]) -> str | None:
        if shape == "email_only" or not self.companies or self.rng.random() >= COMPANY_SHARE:
            return None
        company = self.rng.choice(self.companies)
        current["company"] = [model.reference("companies", company.record_id)]
        self.facts.with_company.append(record.record_id)
        domains = company.active("domains")
        return str(domains[0]["domain"]) if domains else None

    def email(self, first: str, last: str, domain: str) -> JSONObject:
        local = f"{first}.{last}"
        address, n = f"{local}@{domain}", 1
        while address in self.emails:
            n += 1
            address = f"{local}{n}@{domain}"
        self.emails.add(address)
        if self.rng.random() < 0.2:  # typed with capitals; email_address is lower-cased
            address = f"{first.capitalize()}.{last.capitalize()}{address[len(local):]}"
        return model.email_address(address)

    def phones(self, record_id: str, shape: str, country: str) -> list[JSONObject]:
        rng = self.rng
        if shape in ("email_only", "no_phone"):
            return []
        if shape == "invalid_phone":
            return [phones.invalid_value(rng.choice(phones.INVALID_ORIGINALS))]
        if shape == "national_phone":
            return [phones.national_only_value(phones.random_number(rng, country))]
        if shape == "shared_phone":
            if self.pending_shared is None:
                self.pending_shared = phones.random_number(rng, country)
                shared = phones.valid_value(self.pending_shared)
            else:  # second of the pair: same number, typed the local way
                number, self.pending_shared = self.pending_shared, None
                shared = phones.valid_value(number, original=number.national())
            self.facts.shared_phones.setdefault(str(shared["phone_number"]), []).append(
                record_id)
            return [shared]
        count = rng.randint(2, 3) if shape == "multi_phone" else 1
        result = []
        for _ in range(count):
            number = phones.random_number(rng, country if rng.random() < 0.8 else "US")
            original = rng.choice((number.e164, number.international(), number.national()))
            result.append(phones.valid_value(number, original=original))
        return result

    def write(self, record: StoredRecord, current: dict[str, list[JSONObject]],
              country: str) -> None:
        """Store the values; for some people, first an older value that was replaced."""
        actor, created = self.ws.member_actor(), record.created_at
        changed = created + timedelta(days=self.rng.randint(1, 400))
        history_attr: str | None = None
        if current["name"] and self.rng.random() < HISTORY_SHARE:
            history_attr = self.rng.choice(
                ("name", "phone_numbers", "job_title", "email_addresses"))
            self.facts.with_history.append(record.record_id)
        for attribute, payloads in current.items():
            if attribute == history_attr:
                record.append(attribute, self.old_value(attribute, current, country),
                              at=created, actor=actor)
                record.set_values(attribute, payloads, at=changed, actor=actor)
            else:
                record.set_values(attribute, payloads, at=created, actor=actor)

    def old_value(self, attribute: str, current: dict[str, list[JSONObject]],
                  country: str) -> JSONObject:
        if attribute == "name":
            old = dict(current["name"][0])
            old["last_name"] = old["last_name"] + "-Former" if old["last_name"] else ""
            old["full_name"] = f"{old['full_name']} (née Former)"
            return old
        if attribute == "phone_numbers":
            return phones.valid_value(phones.random_number(self.rng, country))
        if attribute == "job_title":
            return model.text("Intern")
        return model.email_address(f"old.address{self.rng.randrange(10**6)}@oldcorp.example")
