"""Deterministic seeding of awkward Pipedrive persons (`random.Random(seed)`).

The same seed gives the same persons, ids and times. Of N persons (every odd case
appears once N >= 20: each share is rounded, then raised to at least one; the shared
phone to at least one pair):

* 10% no phone; 15% one phone typed the national way of the company's country
  (`(415) 555-0134` in a US company); 12% one foreign number typed internationally
  (`+49 176 83533740`); 4% junk (`call me`), half of them next to a valid number;
  4% in pairs sharing one number (one typed E.164, the other nationally);
  10% two or three phones in mixed formats; 5% a name only in `name` (`Björk`,
  first and last name null); 3% deleted (never listed, 404 on get);
* the rest one phone of the company's country, typed E.164, international or national.
Independently: names from seven countries (Žiga Novak, 田中 太郎, Zoë O'Brien, ...),
~70% in one of max(1, N // 8) organizations (shared), ~60% with a job title, ~8% no
email, ~12% two or three emails (some with capitals), ~10% imported (an `add_time`
older than their id suggests, so `add_time` order is not id order) and ~30% updated
after they were added. `SeedFacts` lists the ids of each case for tests.

Names and number plans are the Attio simulator's pools (`crmsync.sim.attio.names`,
`.phones`): the same realistic data, one copy of it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from crmsync.sim._kit.seed import ShapeFacts, shape_schedule
from crmsync.sim.attio import names
from crmsync.sim.attio.phones import INVALID_ORIGINALS, PLANS, random_number
from crmsync.sim.pipedrive.model import JSONObject, Organization, Person

SHAPE_MIX: tuple[tuple[str, float], ...] = (
    ("no_phone", 0.10), ("national_phone", 0.15), ("international_phone", 0.12),
    ("junk_phone", 0.04), ("shared_phone", 0.04), ("multi_phone", 0.10),
    ("name_only", 0.05), ("deleted", 0.03),
)
ORG_SHARE, JOB_TITLE_SHARE, NO_EMAIL_SHARE, MULTI_EMAIL_SHARE = 0.70, 0.60, 0.08, 0.12
IMPORTED_SHARE, UPDATED_SHARE = 0.10, 0.30
EPOCH = datetime(2022, 1, 3, 9, 0, tzinfo=UTC)
SPAN_MINUTES = 3 * 365 * 24 * 60  # seeded add_times stay within three years of EPOCH


@dataclass(slots=True)
class SeedFacts(ShapeFacts):
    """Ids (as strings) of each seeded case, so tests can assert on them."""

    shared_phones: dict[str, list[str]] = field(default_factory=dict)  # E.164 -> ids
    with_org: list[str] = field(default_factory=list)
    with_job_title: list[str] = field(default_factory=list)
    multi_email: list[str] = field(default_factory=list)
    no_email: list[str] = field(default_factory=list)
    imported: list[str] = field(default_factory=list)
    unicode_names: list[str] = field(default_factory=list)


@dataclass(slots=True)
class SeedResult:
    persons: list[Person]
    orgs: list[Organization]
    facts: SeedFacts


def seed_company(rng: random.Random, people: int, *, country: str, owner_id: int) -> SeedResult:
    orgs = _orgs(rng, max(1, people // 8) if people else 0, owner_id)
    seeder = _Seeder(rng, orgs, country.upper(), owner_id, people)
    shapes = shape_schedule(rng, people, SHAPE_MIX)
    persons = [seeder.person(i + 1, shape) for i, shape in enumerate(shapes)]
    return SeedResult(persons, orgs, seeder.facts)


def _orgs(rng: random.Random, count: int, owner_id: int) -> list[Organization]:
    result: list[Organization] = []
    moment = EPOCH - timedelta(days=200)
    for i in range(count):
        company = names.company_name(rng, i)
        moment += timedelta(hours=rng.randint(1, 48))
        result.append(Organization(i + 1, company.name, moment, owner_id,
                                   domain=company.domain))
    return result


class _Seeder:
    """Builds persons one by one; keeps the timeline, used emails and a pending pair."""

    def __init__(self, rng: random.Random, orgs: list[Organization], country: str,
                 owner_id: int, people: int) -> None:
        self.rng, self.orgs, self.owner_id = rng, orgs, owner_id
        # National formats mean the company's country; without a number plan for it the
        # seed types its "home" numbers in E.164 (US) instead.
        self.home = country if country in PLANS else None
        self.foreign = tuple(c for c in PLANS if c != country)
        self.step = max(2, 2 * SPAN_MINUTES // max(people, 1))
        self.facts = SeedFacts()
        self.moment = EPOCH
        self.emails: set[str] = set()
        self.pending_shared: tuple[str, str] | None = None  # (E.164, national)

    def person(self, person_id: int, shape: str) -> Person:
        rng, key = self.rng, str(person_id)
        self.moment += timedelta(minutes=rng.randint(1, self.step), seconds=rng.randrange(60))
        self.facts.shapes.setdefault(shape, []).append(key)
        locale = rng.choice(names.LOCALES)
        (first, first_ascii), (last, last_ascii) = (
            rng.choice(locale.first_names), rng.choice(locale.last_names))
        full = f"{last} {first}" if locale.family_name_first else f"{first} {last}"
        person = Person(person_id, full, first, last, self.moment, self.moment, self.owner_id)
        if shape == "name_only":
            person.name, person.first_name, person.last_name = (
                rng.choice(names.FULL_NAME_ONLY), None, None)
        if not person.name.isascii():
            self.facts.unicode_names.append(key)
        org = self._org(key)
        person.org_id = None if org is None else org.id
        person.emails = self._emails(key, first_ascii, last_ascii, org)
        person.phones = self._phones(key, shape)
        if rng.random() < JOB_TITLE_SHARE:
            person.job_title = rng.choice(names.JOB_TITLES)
            self.facts.with_job_title.append(key)
        self._times(person, key, deleted=shape == "deleted")
        return person

    def _org(self, key: str) -> Organization | None:
        if not self.orgs or self.rng.random() >= ORG_SHARE:
            return None
        self.facts.with_org.append(key)
        return self.rng.choice(self.orgs)

    def _emails(self, key: str, first: str, last: str, org: Organization | None
                ) -> list[JSONObject]:
        roll = self.rng.random()
        if roll < NO_EMAIL_SHARE:
            self.facts.no_email.append(key)
            return []
        count = self.rng.randint(2, 3) if roll < NO_EMAIL_SHARE + MULTI_EMAIL_SHARE else 1
        if count > 1:
            self.facts.multi_email.append(key)
        result = []
        for i in range(count):
            work = i == 0 and org is not None and org.domain is not None
            domain = org.domain if work and org else self.rng.choice(names.FREE_MAIL_DOMAINS)
            local, n = f"{first}.{last}", 1
            address = f"{local}@{domain}"
            while address in self.emails:
                n += 1
                address = f"{local}{n}@{domain}"
            self.emails.add(address)
            if self.rng.random() < 0.2:
                address = f"{first.capitalize()}.{last.capitalize()}{address[len(local):]}"
            label = "work" if work else ("home" if i else "other")
            result.append({"value": address, "primary": i == 0, "label": label})
        return result

    def _phones(self, key: str, shape: str) -> list[JSONObject]:
        rng = self.rng
        typed: list[str] = []
        if shape == "no_phone":
            return []
        if shape == "national_phone":
            typed = [self._home_typed("national")]
        elif shape == "international_phone":
            typed = [random_number(rng, rng.choice(self.foreign)).international()]
        elif shape == "junk_phone":
            typed = [rng.choice(INVALID_ORIGINALS)]
            if rng.random() < 0.5:
                typed.append(self._home_typed(rng.choice(("e164", "national"))))
        elif shape == "shared_phone":
            typed = [self._shared(key)]
        elif shape == "multi_phone":
            typed = [self._home_typed(rng.choice(("e164", "international", "national")))
                     for _ in range(rng.randint(1, 2))]
            typed.append(random_number(rng, rng.choice(self.foreign)).international())
        else:
            typed = [self._home_typed(rng.choice(("e164", "international", "national")))]
        labels = ("mobile", "work", "home", "other")
        return [{"value": v, "primary": i == 0, "label": labels[i % len(labels)]}
                for i, v in enumerate(typed)]

    def _home_typed(self, style: str) -> str:
        number = random_number(self.rng, self.home or "US")
        if self.home is None or style == "e164":
            return number.e164
        return number.international() if style == "international" else number.national()

    def _shared(self, key: str) -> str:
        if self.pending_shared is None:
            number = random_number(self.rng, self.home or "US")
            local = number.national() if self.home else number.international()
            self.pending_shared = (number.e164, local)
            e164, typed = number.e164, number.e164
        else:  # the second of the pair: the same number, typed the local way
            (e164, typed), self.pending_shared = self.pending_shared, None
        self.facts.shared_phones.setdefault(e164, []).append(key)
        return typed

    def _times(self, person: Person, key: str, *, deleted: bool) -> None:
        rng = self.rng
        if rng.random() < IMPORTED_SHARE:
            person.add_time -= timedelta(days=rng.randint(30, 700))
            self.facts.imported.append(key)
        person.update_time = person.add_time
        if deleted or rng.random() < UPDATED_SHARE:
            person.update_time = self.moment + timedelta(days=rng.randint(1, 300),
                                                         seconds=rng.randrange(86400))
        person.is_deleted = deleted
