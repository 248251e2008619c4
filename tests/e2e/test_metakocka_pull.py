"""End to end: Metakocka → CRM (and on to Quo) with `crmsync run` as a subprocess.

The daemon runs against the Attio, Quo and Metakocka simulators (all real servers in
this process) with `http.admin_token` set and `[tenants.metakocka]` linking tenant
`acme` to company 16: `direction = "both"`, `discover_from = ["sales_order"]`, and
`poll_interval = 5`, the config's minimum. The simulator seeds partners and documents;
the partners on sales orders are what discovery finds.

A pair made at t is first re-read in the round after t + `poll_interval`, so a partner
edited just after its pull reaches the CRM person about 2 poll intervals later; the
deadline is 3 poll intervals from the edit, and the figure measured is printed. The
push of many ids runs while that wait goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from support.e2e import active_values, attio_record
from support.live import TENANT, LiveEnv, live_env
from support.sizes import sized

from crmsync.sim.metakocka import CompanyConfig, MetakockaSimConfig, run_metakocka_simulator
from crmsync.sim.metakocka.state import MetakockaSim

# 1000 ids (a full run, CRMSYNC_FULL=1) take ~10 min at Metakocka's 10 calls per second
pytestmark = [pytest.mark.slow, pytest.mark.timeout(sized(600, 1800))]

TOKEN = "e2e-mk-admin-TOKEN-never-shown-0123"
COMPANY, MK_KEY = "16", "mk-e2e-SECRET-key-16"
POLL = 5  # [tenants.metakocka] poll_interval: the config's minimum
RPS = 10  # Quo's own limit, enforced by the simulator
PUSH_IDS = sized(30, 1000)
UNKNOWN = "99999999"
MK_WRITES = ("add_partner", "update_partner")
ATTIO_WRITES = ("POST /v2/objects/{object}/records ",
                "PATCH /v2/objects/{object}/records/{record_id} ",
                "PUT /v2/objects/{object}/records/{record_id} ")


def mk_calls(mk: MetakockaSim, *endpoints: str) -> int:
    if not endpoints:
        return mk.stats.count(None, company_id=COMPANY)
    return sum(mk.stats.count(e, company_id=COMPANY) for e in endpoints)


def attio_writes(env: LiveEnv) -> int:
    """Record writes through Attio's API (the test's own `/_sim/`-style edits are not)."""
    return sum(n for key, n in env.attio.stats.requests.items()
               if key.startswith(ATTIO_WRITES))


def emails(env: LiveEnv, record_id: str) -> set[str]:
    values = attio_record(env.attio, record_id)["values"]
    return {v["email_address"] for v in active_values(values.get("email_addresses"))}


@contextlib.asynccontextmanager
async def mk_live_env(tmp_path: Path) -> AsyncIterator[tuple[LiveEnv, MetakockaSim]]:
    sim_config = MetakockaSimConfig(companies=[
        CompanyConfig(COMPANY, MK_KEY, partners=12, documents=30, calls_per_window=50)])
    async with (
        run_metakocka_simulator(config=sim_config) as (mk, mk_url),
        live_env(tmp_path, people=0, rps=RPS) as env,  # CRM polling: 300 s
    ):
        with env.e2e.config_path.open("a") as config:
            config.write(  # into [http], then the tenant's link (TOML allows it here)
                'admin_token = "env:CRMSYNC_ADMIN_TOKEN"\n\n'
                "[tenants.metakocka]\n"
                f'company_id = "{COMPANY}"\n'
                'secret_key = "env:ACME_MK_KEY"\n'
                f'base_url = "{mk_url}"\n'
                'direction = "both"\n'
                f"poll_interval = {POLL}\n"
                'discover_from = ["sales_order"]\n'
            )
        env.e2e.env.update({"CRMSYNC_ADMIN_TOKEN": TOKEN, "ACME_MK_KEY": MK_KEY})
        yield env, mk


async def api(http: aiohttp.ClientSession, env: LiveEnv, method: str, route: str,
              body: Any = None) -> tuple[int, Any]:
    url = f"{env.base_url}/api/tenants/{TENANT}/{route}"
    async with http.request(method, url, data=None if body is None else json.dumps(body),
                            headers={"Authorization": f"Bearer {TOKEN}"}) as response:
        return response.status, await response.json()


async def test_discover_pull_edit_and_push_through_the_daemon(tmp_path: Path) -> None:
    """1. discovery lists the sales-order partners as unsynced (API and CLI agree)
    2. pull of 3 of them + 1 unknown id: 4/3/1 (`not_found`); 3 CRM people, then 3 Quo
       contacts; no Metakocka write comes of it (the pusher sees its own import)
    3. one of them edited in Metakocka → the CRM person within 3 poll intervals, with one
       Attio write and no Metakocka write (no echo either way)
    4. meanwhile: PUSH_IDS new CRM people pushed in one call, a CRM → Quo sync of as
       many others beside it: each partner added once; time, Metakocka calls (the
       sweep's for the others included), the Quo limit held."""
    async with mk_live_env(tmp_path) as (env, mk):
        company = mk.companies[COMPANY]
        on_orders = {d.partner_mk_id for d in company.documents if d.doc_type == "sales_order"}
        assert len(on_orders) >= 4
        timeout = aiohttp.ClientTimeout(total=1800)
        async with env.daemon() as daemon, aiohttp.ClientSession(timeout=timeout) as http:
            started = time.monotonic()

            # 1. discovery (the poller's first round runs at start)
            async def discovered() -> bool:
                status, body = await api(http, env, "GET", "metakocka/unsynced")
                assert status == 200, body
                return {p["mkId"] for p in body["partners"]} == on_orders

            await daemon.wait_for(discovered, within=30, message="partners discovered")
            cli = await env.e2e.cli("metakocka", "unsynced", "--tenant", TENANT, "--json")
            assert cli.code == 0, cli.describe()
            assert {p["mkId"] for p in json.loads(cli.out)["partners"]} == on_orders
            assert mk_calls(mk, *MK_WRITES) == 0

            print(f"{time.monotonic() - started:.1f} s: discovered", flush=True)
            # 2. pull 3 + 1 unknown
            real = sorted(on_orders, key=int)[:3]
            people_before = len(env.attio.people)
            status, report = await api(http, env, "POST", "metakocka/pull",
                                       {"mkIds": [*real, UNKNOWN]})
            assert status == 200, report
            assert (report["total"], report["succeeded"], report["failed"]) == (4, 3, 1)
            by_mk = {r["mkId"]: r for r in report["results"]}
            assert by_mk[UNKNOWN]["error"]["category"] == "not_found"
            people = {m: by_mk[m]["crmRecordId"] for m in real}
            assert all(people.values())
            assert len(env.attio.people) == people_before + 3
            for mk_id, record_id in people.items():
                assert emails(env, record_id), mk_id  # the partner's contact email

            async def in_quo() -> bool:
                contacts = env.e2e.contacts_by_external_id()
                return all(len(contacts.get(r, [])) == 1 for r in people.values())

            await daemon.wait_for(in_quo, within=60, message="pulled people in Quo")
            status, body = await api(http, env, "GET", "metakocka/unsynced")
            assert {p["mkId"] for p in body["partners"]} == on_orders - set(real)

            print(f"{time.monotonic() - started:.1f} s: pulled, in Quo", flush=True)
            # 3. an edit in Metakocka reaches the CRM person; nothing echoes
            edited_mk = real[0]
            edited_person = people[edited_mk]
            new_email = "edited.in.metakocka@example.si"
            mk.edit_partner(COMPANY, edited_mk, email=new_email)
            edited_at = time.monotonic()
            writes_before_edit = attio_writes(env)
            updates_before_edit = mk_calls(mk, "update_partner")
            assert mk_calls(mk, *MK_WRITES) == 0  # the pulled people were not pushed back
            await daemon.wait_for(lambda: new_email in emails(env, edited_person),
                                  within=3 * POLL, message="the Metakocka edit in the CRM")
            edit_seconds = time.monotonic() - edited_at

            # 4. then the push of many ids (people the CRM → Quo path has not
            # seen), with other Quo work of the tenant beside it: a sync of as many other
            # people (whose partners the pusher's sweep then adds on its own)
            def add(prefix: str) -> list[str]:
                return [env.attio.add_person(
                    first_name=f"{prefix}{i}", last_name="Partner",
                    emails=[f"{prefix.lower()}{i}@partners.example"], notify=False)
                    for i in range(PUSH_IDS)]

            ids, others = add("Push"), add("Other")
            env.quo.reset_stats()
            calls_before = {e: mk_calls(mk, e) for e in
                            ("get_partner", "add_partner", "update_partner", "search")}
            push_started = time.monotonic()
            (status, pushed), (sync_status, synced) = await asyncio.gather(
                api(http, env, "POST", "metakocka/push", {"crmRecordIds": ids}),
                api(http, env, "POST", "sync", {"crmRecordIds": others}),
            )
            push_seconds = time.monotonic() - push_started
            assert status == 200, pushed
            assert (pushed["total"], pushed["succeeded"], pushed["failed"]) == (
                PUSH_IDS, PUSH_IDS, 0)
            assert all(r["mkId"] for r in pushed["results"])
            assert len({r["mkId"] for r in pushed["results"]}) == PUSH_IDS
            assert sync_status == 200 and synced["succeeded"] == PUSH_IDS, synced
            push_calls = {e: mk_calls(mk, e) - n for e, n in calls_before.items()}
            quo_window = env.quo.max_in_any_window
            env.e2e.assert_rate_respected()
            partners = Counter(p.customer for p in company.partners.values())
            assert all(partners[f"Push{i} Partner"] == 1 for i in range(PUSH_IDS)), partners
            print(f"{time.monotonic() - started:.1f} s: pushed {PUSH_IDS} in"
                  f" {push_seconds:.1f} s, Metakocka calls {push_calls},"
                  f" Quo max in any window {quo_window}", flush=True)
            assert push_calls["update_partner"] == 0, push_calls

            # the edit made exactly one CRM write; its way back to Metakocka none
            await asyncio.sleep(5)  # two pusher sweeps: an echo would be sent by now
            crm_writes = attio_writes(env) - writes_before_edit
            echo_mk_writes = mk_calls(mk, "update_partner") - updates_before_edit
            assert (crm_writes, echo_mk_writes) == (1, 0)
            # The "Other" people reach Metakocka through the pusher's sweep, at
            # Metakocka's pace (~5 min for 1000): wait for them, then count.
            def others_pushed() -> bool:
                names = {p.customer for p in company.partners.values()}
                return all(f"Other{i} Partner" in names for i in range(PUSH_IDS))

            await daemon.wait_for(others_pushed, within=sized(60, 900),
                                  message="the sweep's partners")
            partners = Counter(p.customer for p in company.partners.values())
            assert all(partners[f"{prefix}{i} Partner"] == 1 for i in range(PUSH_IDS)
                       for prefix in ("Push", "Other")), partners
            # every add was one of those people's: nothing pulled was pushed back
            assert mk_calls(mk, "add_partner") == 2 * PUSH_IDS
            total = time.monotonic() - started

        print(  # the figures, for the report (pytest -s)
            f"\nmetakocka e2e: discovered {len(on_orders)} partners; pull 4/3/1;"
            f" edit reached the CRM after {edit_seconds:.1f} s (poll_interval {POLL} s)"
            f" with {crm_writes} CRM write and {echo_mk_writes} Metakocka echo writes;"
            f" push of {PUSH_IDS} ids: {push_seconds:.1f} s, Metakocka calls {push_calls};"
            f" Quo max in any window {quo_window} (limit {RPS}); test {total:.0f} s"
        )
