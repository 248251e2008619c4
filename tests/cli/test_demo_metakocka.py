"""`crmsync demo --metakocka` through the real CLI: both directions with Metakocka.

A subprocess like tests/cli/test_demo.py: the demo starts the Quo, Attio and Metakocka
simulators, links its tenant to the Metakocka company both ways, and after the initial
sync waits until the CRM people are paired with partners and the partners on sales
orders were imported; the summary then carries the Metakocka rows.
"""

from __future__ import annotations

import pytest
from support.cli import Cli, summary_value

from crmsync.cli.demo import MK_CALLS, MK_CREATED, MK_FAILED, MK_IMPORTED, MK_UPDATED

pytestmark = pytest.mark.slow

CONTACTS = 20


async def test_demo_metakocka_shows_both_directions(cli: Cli) -> None:
    """1. `crmsync demo --contacts 20 --metakocka` (no config, fresh temp state)
    Result: exit 0; every CRM person (seeded and imported) paired with a partner;
    partners created and updated in Metakocka, every partner on a sales order imported
    into the CRM, Metakocka calls made, no failure; the line explaining both directions."""
    result = await cli("demo", "--contacts", str(CONTACTS), "--metakocka", config=None,
                       env={"COLUMNS": "120"}, within=120)
    assert result.code == 0, result.describe()
    out = result.out
    assert summary_value(out, "created") == str(CONTACTS), out
    assert summary_value(out, "failed (dead-lettered)") == "0", out
    paired, people = summary_value(out, "CRM people paired").split("/")
    imported, on_orders = summary_value(out, MK_IMPORTED).split("/")
    assert int(on_orders) > 0 and imported == on_orders, out
    assert paired == people and int(people) == CONTACTS + int(imported), out
    assert int(summary_value(out, MK_CREATED)) > 0, out
    assert int(summary_value(out, MK_UPDATED)) > 0, out
    assert int(summary_value(out, MK_CALLS)) > 0, out
    assert summary_value(out, MK_FAILED) == "0", out
    assert "Metakocka, both directions: CRM people -> partners" in out, out
    assert "was not done after" not in out, out
