"""End to end: initial sync through Quo's bulk create (`[quo] bulk_create = true`).

`POST /v1/contacts/bulk` answers 202 with no ids and the contacts appear later (here
after 0.2-1.0 s), so the sync must find each one by externalId before mapping it.
One contact is accepted by the bulk endpoint but never appears: once the verify
deadline passes, the sync must create that one singly and say so.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from support.e2e import e2e_env

pytestmark = pytest.mark.slow

PEOPLE = 250
BATCH = 100
DEADLINE = 8.0
SEED = 77


async def test_bulk_initial_sync_recovers_a_contact_that_never_appears(tmp_path: Path) -> None:
    """1. seed 250 Attio people; config: bulk_create, batches of 100, verify deadline 8 s
    2. the Quo sim makes bulk contacts visible after 0.2-1.0 s, except one person's,
       which it accepts and silently drops (`bulk_never_visible`)
    3. `crmsync sync`
    Result: exit 0; 3 bulk requests (ceil(250 / 100)); every person has a mapping to
    an existing contact and is in Quo exactly once; the lost one was created with one
    POST /v1/contacts (mapping syncMethod `initial`, the others `bulk`) and is
    reported (summary line on stdout, its record id in the log on stderr); no 429.
    """
    async with e2e_env(
        tmp_path, people=PEOPLE, seed=SEED, bulk_create=True, bulk_batch_size=BATCH,
        bulk_verify_deadline=DEADLINE, bulk_visibility_delay=(0.2, 1.0),
    ) as e2e:
        lost = e2e.attio.facts.of("normal")[7]
        e2e.quo.bulk_never_visible = {lost}

        result = await e2e.sync(within=DEADLINE + 60)
        assert result.code == 0, result.describe()

        assert e2e.quo.count("POST", "/v1/contacts/bulk") == math.ceil(PEOPLE / BATCH)
        assert e2e.quo.count("POST", "/v1/contacts/bulk", 202) == math.ceil(PEOPLE / BATCH)
        assert e2e.quo.bulk.counters.never_visible == 1
        assert e2e.quo.bulk.pending_count == 0

        # Every person exactly once in Quo, every mapping to an existing contact.
        ids = {record.record_id for record in e2e.attio.people}
        by_external_id = e2e.contacts_by_external_id()
        assert set(by_external_id) == ids
        assert all(len(v) == 1 for v in by_external_id.values()), "duplicate contacts"
        rows = {r["crmRecordId"]: r for r in await e2e.mappings()}
        assert set(rows) == ids
        contacts = e2e.quo.contacts.contacts
        for record_id, row in rows.items():
            contact = contacts.get(row["quoContactId"])
            assert contact is not None, f"mapping to a missing contact: {row}"
            assert contact["externalId"] == record_id
            assert row["action"] == "created", row

        # The lost one: created singly, exactly once, and reported.
        assert e2e.quo.count("POST", "/v1/contacts") == 1
        assert e2e.quo.count("POST", "/v1/contacts", 201) == 1
        (single,) = by_external_id[lost]
        assert rows[lost]["quoContactId"] == single["id"]
        assert rows[lost]["syncMethod"] == "initial"
        assert {r["syncMethod"] for i, r in rows.items() if i != lost} == {"bulk"}
        assert "bulk contacts created singly: 1" in result.out, result.describe()
        assert lost in result.err, result.describe()

        counts = (await e2e.status())["counts"]
        assert counts["created"] == PEOPLE and counts["failed"] == 0, counts
        e2e.assert_rate_respected()
