"""End to end: CRM people → Metakocka partners (`crmsync sync` as a subprocess against
the Attio, Quo and Metakocka simulators in this process).

Each `crmsync sync` runs the tenant's pass (CRM → Quo) and then its Metakocka sweep
over what the pass wrote. Counted in the Metakocka simulator: calls per endpoint and
per company, and its partners.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from support.e2e import E2E, e2e_env
from support.sizes import sized

from crmsync.sim.metakocka import CompanyConfig, MetakockaSimConfig, run_metakocka_simulator
from crmsync.sim.metakocka.state import MetakockaSim

pytestmark = pytest.mark.slow

PEOPLE = sized(60, 300)  # 300 in a full run (CRMSYNC_FULL=1): ~2 min at 10 calls/s
COMPANY, KEY = "16", "mk-e2e-key"
SYNC_WITHIN = 600.0  # Metakocka's default pace: 10 calls a second


def link_config(e2e: E2E, url: str) -> None:
    with e2e.config_path.open("a") as config:
        config.write(
            "\n[tenants.metakocka]\n"
            f'company_id = "{COMPANY}"\nsecret_key = "env:ACME_MK_SECRET"\n'
            f'base_url = "{url}"\ndirection = "to_metakocka"\n'
        )
    e2e.env["ACME_MK_SECRET"] = KEY


def business_duplicates(mk: MetakockaSim) -> list[str]:
    names = Counter(p.customer.casefold() for p in mk.companies[COMPANY].partners.values()
                    if p.business_entity)
    return [name for name, n in names.items() if n > 1]


def writes(mk: MetakockaSim) -> dict[str, int]:
    return {e: mk.stats.count(e, company_id=COMPANY) for e in ("add_partner", "update_partner")}


async def test_people_become_partners_exactly_once(tmp_path: Path) -> None:
    config = MetakockaSimConfig(companies=[CompanyConfig(COMPANY, KEY, calls_per_window=1000)])
    async with (
        run_metakocka_simulator(config=config) as (mk, url),
        e2e_env(tmp_path, people=PEOPLE) as e2e,
    ):
        link_config(e2e, url)
        partners = mk.companies[COMPANY].partners
        # The answer to one add_partner is lost after Metakocka applied it.
        mk.faults.drop_after(1, route="/rest/eshop/v1/add_partner")

        first = await e2e.sync(within=SYNC_WITHIN)
        assert first.code == 0, first.describe()
        assert mk.faults.dropped_after_apply == 1
        adds = mk.stats.count("add_partner", company_id=COMPANY)
        assert adds == len(partners)
        print(f"first sync: {len(partners)} partners, calls {mk.stats.by_endpoint()}")

        # The next run finds the partner whose answer was lost instead of adding it again.
        mk.stats.reset()
        second = await e2e.sync(within=SYNC_WITHIN)
        assert second.code == 0, second.describe()
        assert writes(mk)["add_partner"] == 0
        assert len(partners) == adds
        assert business_duplicates(mk) == []
        print(f"second sync: calls {mk.stats.by_endpoint()}")

        # A full re-sync: every person written to Quo again, unchanged: 0 Metakocka writes.
        mk.stats.reset()
        third = await e2e.sync("--full", within=SYNC_WITHIN)
        assert third.code == 0, third.describe()
        assert writes(mk) == {"add_partner": 0, "update_partner": 0}
        print(f"full re-sync: calls {mk.stats.total}")

        # 10 people changed in the CRM → exactly 10 update_partner calls.
        changed = list(e2e.attio.facts.of("normal"))[:10]
        for n, record_id in enumerate(changed):
            e2e.attio.update_person(record_id, notify=False,
                                    emails=[f"changed{n}@example.si"])
        mk.stats.reset()
        fourth = await e2e.sync(within=SYNC_WITHIN)
        assert fourth.code == 0, fourth.describe()
        assert writes(mk) == {"add_partner": 0, "update_partner": 10}
        assert len(partners) == adds
        emails = {c.email for p in partners.values() for c in p.contacts}
        assert {f"changed{n}@example.si" for n in range(10)} <= emails
