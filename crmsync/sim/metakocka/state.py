"""`MetakockaSim`: the companies one simulator serves, its counters, faults and test hooks.

Tests reach everything directly: `sim.companies[company_id].partners` (mk_id →
`Partner`, creation order), `.documents`, `sim.facts[company_id]` (the seeded cases),
`sim.stats`, `sim.faults` (`quo.faults.Faults`: the same counted and rate-based
faults, route filters such as `"/rest/eshop/v1/add_partner"`), and
`sim.max_concurrent_searches`. Changes made "in the Metakocka app" (not through the
API, so never counted): `edit_partner`, `add_partner`, `add_document`.
"""

from __future__ import annotations

import hmac
import random
import time
from datetime import datetime
from typing import Any

from aiohttp import web

from crmsync.sim.metakocka.company import Company
from crmsync.sim.metakocka.config import MetakockaSimConfig
from crmsync.sim.metakocka.model import BILLING, Address, Contact, Document, Partner
from crmsync.sim.metakocka.seed import LJUBLJANA, SeedFacts, seed_company
from crmsync.sim.metakocka.stats import MetakockaSimStats
from crmsync.sim.metakocka.wire import Collapse, JSONObject, to_wire
from crmsync.sim.quo.faults import Faults

PARTNER_FIELDS = frozenset({
    "customer", "tax_id_number", "registration_number", "business_entity", "taxpayer",
    "foreign_county", "buyer", "supplier",
})
ADDRESS_FIELDS = frozenset({"street", "post_number", "city", "province", "country"})
CONTACT_FIELDS = {"contact_name": "name", "email": "email", "gsm": "gsm", "phone": "phone",
                  "fax": "fax"}
EDITABLE = PARTNER_FIELDS | ADDRESS_FIELDS | frozenset(CONTACT_FIELDS)


class MetakockaSim:
    """State of one simulator: several companies, each with its own secret key."""

    def __init__(self, config: MetakockaSimConfig) -> None:
        ids = [c.company_id for c in config.companies]
        if len(set(ids)) != len(ids):
            raise ValueError(f"company ids must be unique: {ids}")
        self.config = config
        self.companies: dict[str, Company] = {}
        self.facts: dict[str, SeedFacts] = {}
        for index, company_config in enumerate(config.companies):
            company = Company(company_config, index, config.rate_window_seconds)
            self.facts[company.company_id] = seed_company(
                company, config.seed, config.document_types
            )
            self.companies[company.company_id] = company
        self.stats = MetakockaSimStats()
        # Their own generators: faults and list shapes replay from the seed.
        self.faults = Faults(rng=random.Random(config.seed + 1))
        self.collapse = Collapse(config.one_element_as_object, config.seed + 2)
        self.latency_rng = random.Random(config.seed + 3)

    # -- the API's view ------------------------------------------------------------

    def authenticate(self, company_id: object, secret_key: object) -> Company | None:
        """The company these credentials open, or None (`opr_code 3`)."""
        company = self.companies.get(company_id) if isinstance(company_id, str) else None
        if company is None or not isinstance(secret_key, str):
            return None
        if not hmac.compare_digest(secret_key.encode(), company.secret_key.encode()):
            return None
        return company

    def wire(self, payload: JSONObject) -> JSONObject:
        """`payload` in Metakocka's shape: string scalars, lists maybe collapsed."""
        rendered: JSONObject = to_wire(payload, self.collapse)
        return rendered

    @property
    def max_concurrent_searches(self) -> int:
        """The most searches in flight at once for any one company (1: serialised)."""
        return max((c.max_concurrent_searches for c in self.companies.values()), default=0)

    @property
    def search_overlaps(self) -> int:
        """Searches that arrived while another of the same company was in flight."""
        return sum(c.search_overlaps for c in self.companies.values())

    def now(self) -> datetime:
        return datetime.now(LJUBLJANA)

    # -- changes made in the Metakocka app -------------------------------------------

    def partner(self, company_id: str, mk_id: str) -> Partner:
        partner = self.companies[company_id].partners.get(mk_id)
        if partner is None:
            raise KeyError(mk_id)
        return partner

    def edit_partner(self, company_id: str, mk_id: str, **fields: Any) -> Partner:
        """Change a partner as a user would in Metakocka.

        Fields: customer, tax_id_number, registration_number, business_entity,
        taxpayer, foreign_county, buyer, supplier (the partner); street, post_number,
        city, province, country (its main address); contact_name, email, gsm, phone,
        fax (its first contact, created on the main address when it has none).
        """
        unknown = set(fields) - EDITABLE
        if unknown:
            raise ValueError(f"unknown partner fields: {', '.join(sorted(unknown))}")
        company = self.companies[company_id]
        partner = self.partner(company_id, mk_id)
        for name, value in fields.items():
            if name in PARTNER_FIELDS:
                setattr(partner, name, value)
            elif name in ADDRESS_FIELDS:
                setattr(partner.main_address, name, value)
        contact_changes = {CONTACT_FIELDS[k]: v for k, v in fields.items() if k in CONTACT_FIELDS}
        if contact_changes:
            if not partner.contacts:
                partner.contacts.append(Contact(company.new_id(), partner.main_address.mk_id))
            for name, value in contact_changes.items():
                setattr(partner.contacts[0], name, value)
        return partner

    def add_partner(
        self,
        company_id: str,
        customer: str,
        *,
        business_entity: bool = False,
        tax_id_number: str = "",
        street: str = "Slovenska cesta 1",
        post_number: str = "1000",
        city: str = "Ljubljana",
        country: str = "Slovenija",
        contact_name: str | None = None,
        email: str = "",
        gsm: str = "",
        phone: str = "",
    ) -> Partner:
        """Create a partner in the app (one contact unless it would be empty)."""
        company = self.companies[company_id]
        mk_id = company.new_id()
        address = Address(company.new_id(), BILLING, street, post_number, city, "", country)
        partner = Partner(mk_id, company.new_count_code(), customer, [address],
                          business_entity=business_entity, taxpayer=business_entity,
                          tax_id_number=tax_id_number)
        if contact_name or email or gsm or phone:
            partner.contacts.append(Contact(company.new_id(), address.mk_id,
                                            contact_name or customer, email, gsm, phone))
        return company.add(partner)

    def add_document(
        self, company_id: str, partner_mk_id: str, doc_type: str = "sales_order",
        *, at: datetime | None = None,
    ) -> Document:
        """A new document for a partner, changed `at` (default: now)."""
        moment = at or self.now()
        return self.companies[company_id].add_document(doc_type, partner_mk_id, moment,
                                                       moment)

    def snapshot(self) -> JSONObject:
        """What `GET /_sim/stats` shows (never a secret key)."""
        return {
            "calls": self.stats.by_endpoint(),
            "total_calls": self.stats.total,
            "max_concurrent_searches": self.max_concurrent_searches,
            "search_overlaps": self.search_overlaps,
            "companies": {
                cid: {"partners": len(c.partners), "documents": len(c.documents),
                      "max_concurrent_searches": c.max_concurrent_searches,
                      "search_overlaps": c.search_overlaps}
                for cid, c in self.companies.items()
            },
        }


METAKOCKA_SIM_KEY = web.AppKey("metakocka_sim", MetakockaSim)
COMPANY_KEY = web.RequestKey("metakocka_company", Company)
BODY_KEY: web.RequestKey[JSONObject] = web.RequestKey("metakocka_body", dict)
STARTED_KEY = web.RequestKey("metakocka_started", float)


def answer(request: web.Request, payload: JSONObject) -> JSONObject:
    """A success payload in wire form, with `opr_time_ms` when it carries `opr_code`."""
    sim = request.app[METAKOCKA_SIM_KEY]
    if "opr_code" in payload:
        elapsed = time.monotonic() - request.get(STARTED_KEY, time.monotonic())
        payload = {"opr_code": payload["opr_code"], "opr_time_ms": int(elapsed * 1000),
                   **{k: v for k, v in payload.items() if k != "opr_code"}}
    return sim.wire(payload)
