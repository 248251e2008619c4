"""`crmsync_tenant_quo_key{tenant, key}` through the daemon's tenant set: launch, reload, stop.

Quo limits requests per API key and tenants may share a key, so the dashboard sums
utilisation by key through this gauge. It must name each running tenant's key by its
fingerprint (never the key), follow a reload, and leave with the tenant.

1. three tenants against the simulators: acme and beta share key 1, gamma has key 2
2. a reload: acme restarts with the same key (its poll interval changed), beta moves
   to key 2, gamma is removed
3. every tenant stops
Result: 1. acme and beta carry key 1's fingerprint, gamma key 2's; 2. acme keeps key 1
(its old runtime's stop does not take the new one's series), beta shows only key 2,
gamma has none; 3. no series is left; no key appears in /metrics' text.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from prometheus_client import REGISTRY, generate_latest

from crmsync.config import Config, parse_config
from crmsync.daemon.reload import plan_reload
from crmsync.daemon.tenants import TenantSet
from crmsync.net.ratelimit import key_fingerprint
from crmsync.sim.attio import AttioSimConfig, run_attio_simulator
from crmsync.sim.quo import QuoSimConfig, run_quo_simulator
from crmsync.store import open_store
from crmsync.tenant.resources import open_resources
from crmsync.web.health import Health

KEY_1 = "quo-gauge-key-one"
KEY_2 = "quo-gauge-key-two"
ATTIO_KEY = "attio-gauge-key"
TENANT = """
[[tenants]]
id = "{id}"
crm = "attio"
quo_api_key = "env:{quo}"
crm_api_key = "env:ATTIO"
crm_base_url = "{attio_url}"
poll_interval = {poll}
"""


def config(state: Path, quo_url: str, attio_url: str, tenants: list[tuple[str, str, int]]
           ) -> Config:
    text = f'[daemon]\nstate_path = "{state}"\n[quo]\nbase_url = "{quo_url}"\n' + "".join(
        TENANT.format(id=tid, quo=quo, attio_url=attio_url, poll=poll)
        for tid, quo, poll in tenants
    )
    return parse_config(text, "<test>", {"KEY_1": KEY_1, "KEY_2": KEY_2, "ATTIO": ATTIO_KEY})


def keys() -> dict[str, set[str]]:
    """tenant -> the key fingerprints its crmsync_tenant_quo_key series carry."""
    found: dict[str, set[str]] = {}
    for family in REGISTRY.collect():
        if family.name == "crmsync_tenant_quo_key":
            for sample in family.samples:
                assert sample.value == 1.0
                if sample.labels["tenant"].startswith("qk-"):
                    found.setdefault(sample.labels["tenant"], set()).add(sample.labels["key"])
    return found


async def test_quo_key_gauge_follows_launch_reload_and_removal(tmp_path: Path) -> None:
    one, two = key_fingerprint(KEY_1), key_fingerprint(KEY_2)
    async with (
        run_quo_simulator(config=QuoSimConfig(api_keys=[KEY_1, KEY_2])) as (_, quo_url),
        run_attio_simulator(config=AttioSimConfig(api_keys=[ATTIO_KEY], people=3)) as (
            _, attio_url),
    ):
        state = tmp_path / "state.db"
        old = config(state, quo_url, attio_url, [
            ("qk-acme", "KEY_1", 300), ("qk-beta", "KEY_1", 300), ("qk-gamma", "KEY_2", 300)])
        new = config(state, quo_url, attio_url, [
            ("qk-acme", "KEY_1", 60), ("qk-beta", "KEY_2", 300)])
        loop = asyncio.get_running_loop()
        async with open_resources(old) as resources, open_store(state) as store:
            tenants = TenantSet(store=store, health=Health(), force=asyncio.Event())
            async with asyncio.TaskGroup() as group:
                tenants.bind(group)
                for tenant in old.tenants:
                    tenants.launch(tenants.build(resources, tenant))
                assert keys() == {"qk-acme": {one}, "qk-beta": {one}, "qk-gamma": {two}}

                plan = plan_reload(old, new)
                assert sorted(plan.restart) == ["qk-acme", "qk-beta"]
                assert plan.stop == ["qk-gamma"]
                await tenants.apply(plan, resources, deadline=loop.time() + 5)
                assert keys() == {"qk-acme": {one}, "qk-beta": {two}}

                await tenants.stop_all("test over", deadline=loop.time() + 5)
            assert keys() == {}
    exposition = generate_latest(REGISTRY).decode()
    assert KEY_1 not in exposition and KEY_2 not in exposition
