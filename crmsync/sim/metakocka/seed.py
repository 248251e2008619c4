"""Deterministic seeding of one company's partners and documents.

The generator is seeded from the simulator's seed and the company id, so a company's
data does not depend on the other companies. Names come from the Attio simulator's
pools (`attio.names`). The mix of N partners:

* about half business partners (`business_entity`, a company name, a VAT number
  `SI` + 8 digits, a few without the prefix) with one contact person, half private
  partners named after their one contact;
* once N >= 10, each awkward case at least once: two private partners with the same
  name (names are not unique); a private "Ana Novak" beside the business partner
  "Ana Novak Trgovina d.o.o." (a name lookup by substring finds both); a partner
  without contacts; a contact without an email; a partner with two contacts; a
  foreign partner (Croatia, `foreign_county`).

`documents` documents cycle through the document types; each references one of the
partners "on documents" (about 80% of them), so the rest can only be found by lookup.
Times start on 2026-01-05 in Europe/Ljubljana; `last_change` follows `doc_date`.
`SeedFacts` lists the `mk_id`s of each case for tests.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from crmsync.sim.attio.names import COMPANY_STEMS, FREE_MAIL_DOMAINS, LOCALES, Locale
from crmsync.sim.metakocka.company import Company
from crmsync.sim.metakocka.model import BILLING, Address, Contact, Partner

LJUBLJANA = ZoneInfo("Europe/Ljubljana")
EPOCH = datetime(2026, 1, 5, 8, 0, tzinfo=LJUBLJANA)
PLACES = (("1000", "Ljubljana"), ("2000", "Maribor"), ("3000", "Celje"), ("4000", "Kranj"),
          ("6000", "Koper"), ("8000", "Novo mesto"))
STREETS = ("Tehnološki park", "Slovenska cesta", "Trubarjeva ulica", "Celovška cesta",
           "Dunajska cesta", "Ulica heroja Šaranoviča")
ON_DOCUMENTS_SHARE = 0.8


@dataclass(slots=True)
class SeedFacts:
    """`mk_id`s of each seeded case of one company."""

    business: list[str] = field(default_factory=list)
    private: list[str] = field(default_factory=list)
    same_name: list[str] = field(default_factory=list)
    name_inside_other: list[str] = field(default_factory=list)  # [private, business]
    without_contacts: list[str] = field(default_factory=list)
    without_email: list[str] = field(default_factory=list)
    two_contacts: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    on_documents: list[str] = field(default_factory=list)
    without_documents: list[str] = field(default_factory=list)


class _Seeder:
    def __init__(self, rng: random.Random, company: Company) -> None:
        self.rng = rng
        self.company = company
        self.facts = SeedFacts()

    def person(self) -> tuple[str, str, Locale]:
        locale = self.rng.choice(LOCALES)
        first, first_ascii = self.rng.choice(locale.first_names)
        last, last_ascii = self.rng.choice(locale.last_names)
        name = f"{last} {first}" if locale.family_name_first else f"{first} {last}"
        return name, f"{first_ascii}.{last_ascii}", locale

    def address(self, country: str = "Slovenija") -> Address:
        post_number, city = self.rng.choice(PLACES)
        street = f"{self.rng.choice(STREETS)} {self.rng.randint(1, 120)}"
        return Address(self.company.new_id(), BILLING, street, post_number, city, "",
                       country)

    def contact(self, address: Address, name: str, email: str) -> Contact:
        gsm = f"0{self.rng.choice((30, 31, 40, 41, 51, 68, 70))}{self.rng.randint(0, 999999):06d}"
        return Contact(self.company.new_id(), address.mk_id, name, email, gsm)

    def partner(self, customer: str, *, business: bool, country: str = "Slovenija") -> Partner:
        company = self.company
        mk_id = company.new_id()
        partner = Partner(mk_id, company.new_count_code(), customer, [self.address(country)],
                          business_entity=business, taxpayer=business,
                          foreign_county=country != "Slovenija")
        if business:
            digits = f"{self.rng.randint(10_000_000, 99_999_999)}"
            partner.tax_id_number = digits if self.rng.random() < 0.1 else f"SI{digits}"
        (self.facts.business if business else self.facts.private).append(mk_id)
        return company.add(partner)

    def private(self, name: str | None = None, mailbox: str | None = None) -> Partner:
        person, random_mailbox, _ = self.person()
        mailbox = mailbox or random_mailbox
        name = name or person
        partner = self.partner(name, business=False)
        email = f"{mailbox}@{self.rng.choice(FREE_MAIL_DOMAINS)}"
        partner.contacts.append(self.contact(partner.main_address, name, email))
        return partner

    def business(self, customer: str | None = None) -> Partner:
        person, mailbox, locale = self.person()
        stem = self.rng.choice(COMPANY_STEMS)
        customer = customer or f"{stem} {locale.company_suffix}"
        partner = self.partner(customer, business=True)
        domain = "".join(ch for ch in stem.lower() if ch.isalnum()) + f".{locale.tld}"
        partner.contacts.append(self.contact(partner.main_address, person,
                                             f"{mailbox}@{domain}"))
        return partner

    def seed(self, count: int) -> None:
        if count >= 10:
            self.awkward()
        while len(self.company.partners) < count:
            (self.business if self.rng.random() < 0.5 else self.private)()

    def awkward(self) -> None:
        facts = self.facts
        twin = self.private()
        facts.same_name += [twin.mk_id, self.private(twin.customer).mk_id]
        facts.name_inside_other += [self.private("Ana Novak", "ana.novak").mk_id,
                                    self.business("Ana Novak Trgovina d.o.o.").mk_id]
        bare = self.business()
        bare.contacts.clear()
        facts.without_contacts.append(bare.mk_id)
        no_mail = self.private()
        no_mail.contacts[0].email = ""
        facts.without_email.append(no_mail.mk_id)
        two = self.business()
        name, mailbox, _ = self.person()
        two.contacts.append(self.contact(two.main_address, name, f"{mailbox}@example.si"))
        facts.two_contacts.append(two.mk_id)
        foreign = self.partner("Jadran Trade d.o.o.", business=True, country="Croatia")
        foreign.contacts.append(self.contact(foreign.main_address, "Ivana Horvat",
                                             "ivana@jadran-trade.hr"))
        facts.foreign.append(foreign.mk_id)

    def documents(self, count: int, doc_types: tuple[str, ...]) -> None:
        ids = list(self.company.partners)
        if not ids or not doc_types:
            return
        on_documents = [i for i in ids if self.rng.random() < ON_DOCUMENTS_SHARE] or ids[:1]
        moment = EPOCH
        for n in range(count):
            moment += timedelta(minutes=self.rng.randint(5, 90))
            changed = moment + timedelta(minutes=self.rng.randint(0, 600))
            partner_id = on_documents[n % len(on_documents)] if n < len(on_documents) \
                else self.rng.choice(on_documents)
            self.company.add_document(doc_types[n % len(doc_types)], partner_id, moment,
                                      changed)
        used = {d.partner_mk_id for d in self.company.documents}
        self.facts.on_documents = [i for i in ids if i in used]
        self.facts.without_documents = [i for i in ids if i not in used]


def seed_company(company: Company, seed: int, doc_types: tuple[str, ...]) -> SeedFacts:
    """Seed `company.config.partners` partners and `.documents` documents."""
    seeder = _Seeder(random.Random(f"{seed}:{company.company_id}"), company)
    seeder.seed(company.config.partners)
    seeder.documents(company.config.documents, doc_types)
    return seeder.facts
