"""A strict in-process simulator of Metakocka's REST API (partners and document search).

Used by tests, the benchmark and `crmsync demo`. Behaves like the API where it matters
to a sync client (`/work/shared/research/metakocka-api.md`): POST-only JSON under
`/rest/eshop/v1/` with `secret_key` + `company_id` in the body (`opr_code 3`
otherwise), application errors as HTTP 200 `opr_code` / `opr_desc`, an HTML 404 page
on the wrong endpoint family (`json/get_partner`), string scalars, one-element lists
sometimes answered as the bare object, "No partner with such properties." as
`opr_code 2`, `add_partner` answering ids without any `opr_code` and never
deduplicating, one `search` at a time per company (concurrent ones queue and are
counted), and a per-company call limit answering `opr_code 5` "Quote exceeds".
Several companies in one simulator, each with its own key and id range. See `seed.py`
for the seeded data, `gateway.py` for the order of checks and faults, `admin.py` for
the `/_sim/` routes.
"""

from __future__ import annotations

from crmsync.sim.metakocka.app import create_metakocka_app
from crmsync.sim.metakocka.company import Company
from crmsync.sim.metakocka.config import CompanyConfig, MetakockaSimConfig
from crmsync.sim.metakocka.model import Address, Contact, Document, Partner
from crmsync.sim.metakocka.seed import SeedFacts
from crmsync.sim.metakocka.server import (
    run_metakocka_simulator,
    serve_metakocka_simulator_forever,
)
from crmsync.sim.metakocka.state import METAKOCKA_SIM_KEY, MetakockaSim
from crmsync.sim.metakocka.stats import MetakockaSimStats

__all__ = [
    "METAKOCKA_SIM_KEY",
    "Address",
    "Company",
    "CompanyConfig",
    "Contact",
    "Document",
    "MetakockaSim",
    "MetakockaSimConfig",
    "MetakockaSimStats",
    "Partner",
    "SeedFacts",
    "create_metakocka_app",
    "run_metakocka_simulator",
    "serve_metakocka_simulator_forever",
]
