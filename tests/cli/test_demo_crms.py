"""`crmsync demo --crm NAME` for every CRM whose simulator the demo can start.

README command 1 with another CRM: a subprocess, no config file, loopback only. The
seed may include deleted people, which no listing shows: the demo says how many it
seeded that are live, and exactly those are created.
"""

from __future__ import annotations

import re

import pytest
from support.cli import Cli, summary_value

from crmsync.sim.crms import CRM_SIMULATORS

pytestmark = pytest.mark.slow

CONTACTS = 25


@pytest.mark.parametrize("crm", sorted(set(CRM_SIMULATORS) - {"attio"}))
async def test_the_demo_syncs_every_live_seeded_person_of_the_crm(cli: Cli, crm: str) -> None:
    result = await cli("demo", "--crm", crm, "--contacts", str(CONTACTS), config=None,
                       env={"COLUMNS": "120"}, within=90)

    assert result.code == 0, result.describe()
    out = result.out
    seeded = re.search(r"simulator http://127\.0\.0\.1:\d+\S*  \((\d+) seeded people\)", out)
    assert seeded, out
    assert 0 < int(seeded[1]) <= CONTACTS
    assert summary_value(out, "created") == seeded[1], out
    assert summary_value(out, "failed (dead-lettered)") == "0", out
    assert summary_value(out, "Quo 429s") == "0", out


async def test_an_unknown_crm_is_a_usage_error_naming_the_simulators(cli: Cli) -> None:
    result = await cli("demo", "--crm", "salesforce", config=None, within=30)

    assert result.code == 2, result.describe()
    assert "no simulator for CRM 'salesforce' (available: attio, pipedrive, hubspot)" in \
        result.err, result.err
