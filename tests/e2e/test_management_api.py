"""End to end: the management API of `crmsync run` (a subprocess) under a full load.

The daemon runs with `http.admin_token` set against the Quo simulator enforcing 10
requests per second (Quo's own limit) and the Attio simulator; 1000 people are added
to Attio without webhooks, then one `POST /api/tenants/acme/sync` carries all 1000 ids
(100 in the reduced run that CI makes; `CRMSYNC_FULL=1` for 1000).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import aiohttp
import pytest
from support.live import TENANT, live_env
from support.sizes import sized

pytestmark = pytest.mark.slow

TOKEN = "e2e-admin-TOKEN-never-shown-0123456789"
RPS = 10
IDS = sized(100, 1000)  # 1000 in a full run (CRMSYNC_FULL=1): ~100 s at Quo's limit


async def test_one_sync_call_of_1000_ids_keeps_the_quo_limit(tmp_path: Path) -> None:
    """1. daemon live (no people yet), the API on  2. 1000 people added to Attio
    3. one POST /sync with their 1000 ids (a call without the token first: 401)
    Result: total 1000, succeeded 1000, one Quo contact per person, exactly 1000 contact
    creates; the Quo simulator never saw more than 10 requests in any sliding second and
    answered no 429; `crmsync mappings` has the 1000 rows, sync method `manual`; the
    token is nowhere in the daemon's output or `/status`."""
    async with live_env(tmp_path, people=0, rps=RPS) as env:
        e2e = env.e2e
        with e2e.config_path.open("a") as config:
            config.write('admin_token = "env:CRMSYNC_ADMIN_TOKEN"\n')  # into [http]
        e2e.env["CRMSYNC_ADMIN_TOKEN"] = TOKEN
        async with env.daemon() as daemon:
            ids = [
                env.attio.add_person(first_name=f"Person{i}", last_name="Bulk",
                                     emails=[f"person{i}@bulk.example"], notify=False)
                for i in range(IDS)
            ]
            e2e.quo.reset_stats()
            url = f"{env.base_url}/api/tenants/{TENANT}/sync"
            body = json.dumps({"crmRecordIds": ids}).encode()
            timeout = aiohttp.ClientTimeout(total=600)
            async with aiohttp.ClientSession(timeout=timeout) as http:
                async with http.post(url, data=body) as response:
                    assert response.status == 401
                started = time.monotonic()
                async with http.post(
                    url, data=body, headers={"Authorization": f"Bearer {TOKEN}"}
                ) as response:
                    assert response.status == 200, await response.text()
                    report = await response.json()
                elapsed = time.monotonic() - started

            assert (report["total"], report["succeeded"], report["failed"]) == (IDS, IDS, 0)
            assert {r["action"] for r in report["results"]} == {"created"}
            by_external_id = e2e.contacts_by_external_id()
            assert len(by_external_id) == IDS
            assert all(len(by_external_id[record_id]) == 1 for record_id in ids)
            counts = e2e.request_counts()
            quo_requests = sum(counts.values())
            assert counts[("POST", "/v1/contacts")] == IDS, counts
            window = e2e.quo.max_in_any_window
            e2e.assert_rate_respected()
            status, status_body = await daemon.get("/status")
            assert status == 200
            assert TOKEN not in json.dumps(status_body)
        assert TOKEN not in daemon.output

        rows = await e2e.mappings()
        assert {row["crmRecordId"] for row in rows} == set(ids)
        assert {row["syncMethod"] for row in rows} == {"manual"}
        assert await e2e.dead_letters() == []
        print(  # the figures, for the report (pytest -s)
            f"\n1000 ids in one /sync call: {elapsed:.1f} s, {quo_requests} Quo requests"
            f" ({dict(counts)}), max in any sliding window: {window}"
        )
