"""`crmsync metakocka push|pull|unsynced|mappings` run for real, in a subprocess.

The Attio, Quo and Metakocka simulators serve from this test's process. Without a
holder of the state the command runs the operation itself; while "the daemon" holds
the state lock (held here as `crmsync run` describes itself) it must go through the
daemon's management API, served here by `build_app` over the daemon's own
`TenantRuntime`s: the API's request counter proves the way it went.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import REGISTRY
from support.cli import CRM_SECRET, SECRET, Cli, write_config

from crmsync.config import load_config
from crmsync.sim.attio import AttioSim, AttioSimConfig, run_attio_simulator
from crmsync.sim.metakocka import CompanyConfig, MetakockaSimConfig, run_metakocka_simulator
from crmsync.sim.metakocka.state import MetakockaSim
from crmsync.sim.quo import QuoSimConfig, run_quo_simulator
from crmsync.store import DAEMON_COMMAND, hold_state_lock, open_store
from crmsync.tenant.resources import open_resources
from crmsync.tenant.runtime import TenantRuntime
from crmsync.web.app import build_app, serve
from crmsync.web.health import Health

COMPANY = "16"
MK_SECRET = "mk-SECRET-16-never-shown"
ADMIN = "admin-SECRET-token-0123456789"
KEYS = {"MK_KEY": MK_SECRET, "ADMIN_TOKEN": ADMIN}
UNKNOWN = "99999999"

CONFIG = """\
[daemon]
state_path = "{{state}}"

[http]
host = "127.0.0.1"
port = {port}
{admin}

[quo]
base_url = "{quo}"

[[tenants]]
id = "acme"
crm = "attio"
crm_base_url = "{attio}"
quo_api_key = "env:QUO_KEY"
crm_api_key = "env:CRM_KEY"

[[tenants]]
id = "mk"
crm = "attio"
crm_base_url = "{attio}"
quo_api_key = "env:QUO_KEY"
crm_api_key = "env:CRM_KEY"

[tenants.metakocka]
company_id = "{company}"
secret_key = "env:MK_KEY"
base_url = "{mk}"
"""


@dataclass
class Sims:
    tmp_path: Path
    state: Path
    attio: AttioSim
    mk: MetakockaSim
    urls: dict[str, str]

    def configure(self, *, port: int = 1, admin: bool = True) -> None:
        text = CONFIG.format(port=port, admin='admin_token = "env:ADMIN_TOKEN"' if admin
                             else "", company=COMPANY, **self.urls)
        write_config(self.tmp_path, text)

    def partner_ids(self) -> list[str]:
        return sorted(self.mk.companies[COMPANY].partners, key=int)

    def people(self) -> list[str]:
        return [p.record_id for p in self.attio.people.ordered()]


@contextlib.asynccontextmanager
async def sims(tmp_path: Path) -> AsyncIterator[Sims]:
    config = MetakockaSimConfig(companies=[
        CompanyConfig(COMPANY, MK_SECRET, partners=6, calls_per_window=100_000)])
    async with (
        run_attio_simulator(config=AttioSimConfig(api_keys=[CRM_SECRET], people=3))
        as (attio, attio_url),
        run_quo_simulator(config=QuoSimConfig(api_keys=[SECRET], requests_per_second=500))
        as (_, quo_url),
        run_metakocka_simulator(config=config) as (mk, mk_url),
    ):
        s = Sims(tmp_path, tmp_path / "crmsync.db", attio, mk,
                 {"attio": attio_url, "quo": quo_url, "mk": mk_url})
        s.configure()
        yield s


@contextlib.asynccontextmanager
async def fake_daemon(s: Sims) -> AsyncIterator[int]:
    """The daemon's state lock and its management API (its runtimes, its listener)."""
    config = load_config(s.tmp_path / "crmsync.toml",
                         environ={"QUO_KEY": SECRET, "CRM_KEY": CRM_SECRET, **KEYS})
    async with (
        open_store(s.state, command=DAEMON_COMMAND) as store,  # holds the lock as the daemon
        open_resources(config) as resources,
    ):
        runtimes = {}
        for tenant in config.tenants:
            await store.tenants.upsert(tenant.id, "attio")
            runtimes[tenant.id] = TenantRuntime(tenant, resources=resources, store=store,
                                                health=Health())
        app = build_app(targets=lambda _: None, store=store, config=lambda: config,
                        health=Health(), max_body_bytes=1024 * 1024, managed=runtimes.get)
        async with serve(app, "127.0.0.1", 0) as port:
            s.configure(port=port)
            yield port


def api_answers(route: str, status: int = 200) -> float:
    labels = {"tenant": "mk", "route": f"/api/tenants/{{t}}/metakocka/{route}",
              "status": str(status)}
    return REGISTRY.get_sample_value("crmsync_api_requests_total", labels) or 0.0


async def test_pull_in_process_then_mappings_and_unsynced(cli: Cli, tmp_path: Path) -> None:
    """Nobody holds the state: the command pulls itself. 3 real ids + 1 unknown → exit 1,
    the §9 aggregate 4/3/1 (`not_found`) in `--json`, a table without; the pairs are then
    listed by `mappings` (all, by --mk-id, by --crm-record-id), read from the store."""
    async with sims(tmp_path) as s:
        real = s.partner_ids()[:3]
        result = await cli("metakocka", "pull", "--tenant", "mk", "--json", *real, UNKNOWN,
                           env=KEYS)
        assert result.code == 1, result.describe()
        report = json.loads(result.out)
        assert (report["total"], report["succeeded"], report["failed"]) == (4, 3, 1)
        by_mk = {r["mkId"]: r for r in report["results"]}
        assert by_mk[UNKNOWN]["error"]["category"] == "not_found"
        assert all(by_mk[m]["ok"] and by_mk[m]["action"] == "imported" for m in real)
        assert len(s.people()) == 3 + 3  # the pulled partners are CRM people now

        result = await cli("metakocka", "mappings", "--tenant", "mk", "--json", env=KEYS)
        assert result.code == 0, result.describe()
        rows = json.loads(result.out)["mappings"]
        assert {r["mkId"] for r in rows} == set(real)
        crm_id = by_mk[real[1]]["crmRecordId"]
        for flag, value in (("--mk-id", real[1]), ("--crm-record-id", crm_id)):
            result = await cli("metakocka", "mappings", "--tenant", "mk", "--json", flag,
                               value, env=KEYS)
            [row] = json.loads(result.out)["mappings"]
            assert (row["mkId"], row["crmRecordId"]) == (real[1], crm_id)

        table = await cli("metakocka", "mappings", "--tenant", "mk", env=KEYS)
        assert table.code == 0 and "3 CRM person <-> Metakocka partner pairs" in table.out
        assert all(m in table.out for m in real)

        # A pull that all succeeds is exit 0, and its table names every id.
        result = await cli("metakocka", "pull", "--tenant", "mk", *real, env=KEYS)
        assert result.code == 0, result.describe()
        assert "3 ids, 3 succeeded, 0 failed" in result.out
        assert all(m in result.out for m in real)

        result = await cli("metakocka", "unsynced", "--tenant", "mk", "--json", env=KEYS)
        assert (result.code, json.loads(result.out)) == (0, {"partners": []})


async def test_push_goes_through_the_daemon_when_it_holds_the_state(
    cli: Cli, tmp_path: Path
) -> None:
    """The daemon holds the state lock: `push` asks its API (the request is counted there)
    and prints the same aggregate; a person the CRM lacks fails, so exit 1."""
    async with sims(tmp_path) as s, fake_daemon(s):
        people = s.people()[:2]
        before = api_answers("push")
        result = await cli("metakocka", "push", "--tenant", "mk", "--json", *people,
                           "nobody", env=KEYS)
        assert result.code == 1, result.describe()
        assert api_answers("push") == before + 1
        report = json.loads(result.out)
        assert (report["total"], report["succeeded"], report["failed"]) == (3, 2, 1)
        assert all(r["mkId"] for r in report["results"] if r["ok"])

        before = api_answers("pull")
        result = await cli("metakocka", "pull", "--tenant", "mk", s.partner_ids()[0],
                           env=KEYS)
        assert result.code == 0, result.describe()
        assert api_answers("pull") == before + 1
        assert "1 ids, 1 succeeded, 0 failed" in result.out

        # The readers read the store, the daemon running or not.
        result = await cli("metakocka", "mappings", "--tenant", "mk", "--json", env=KEYS)
        assert len(json.loads(result.out)["mappings"]) == 3


async def test_refusals_are_one_line_exit_2(cli: Cli, tmp_path: Path) -> None:
    async with sims(tmp_path) as s:
        for args in (("--tenant", "ghost", "1"), ("--tenant", "acme", "1")):
            result = await cli("metakocka", "pull", *args, env=KEYS)
            assert result.code == 2, result.describe()
            assert len(result.err.strip().splitlines()) == 1
        assert "no Metakocka link" in result.err

        # The daemon holds the state and no admin token is configured.
        s.configure(admin=False)
        async with hold_state_lock(s.state, command=DAEMON_COMMAND):
            result = await cli("metakocka", "push", "--tenant", "mk", "x", env=KEYS)
        assert result.code == 2, result.describe()
        assert "http.admin_token is not set" in result.err
        assert len(result.err.strip().splitlines()) == 1

        # Another writer (`crmsync sync`) holds it: named, never bypassed.
        async with hold_state_lock(s.state, command="crmsync sync --tenant mk",
                                   tenants=["mk"]):
            result = await cli("metakocka", "pull", "--tenant", "mk", "1", env=KEYS)
        assert result.code == 2, result.describe()
        assert "crmsync sync --tenant mk" in result.err
        assert s.mk.stats.count(None, company_id=COMPANY) == 0
