"""Replicas on one PostgreSQL state (INTERFACE §10): leased tenants and failover.

Three `crmsync run` processes share 30 tenants (pairs of them share a Quo key, so there
are fewer lease groups than tenants) and one throwaway PostgreSQL cluster. Mid initial
sync the replica running the most tenants is SIGKILLed: the other two must take its
tenants over from their checkpoints and finish every initial sync, with every CRM person
in Quo exactly once and no Quo key ever over its limit in any one-second window (the
Quo simulator, in a process of its own so that its clock is not starved by this one,
counts every key's arrivals in a sliding window and answers 429 above the limit).

The figures (takeover time, keys' windows) are printed: `pytest -s` shows them.
People per tenant: 30, 100 in a full run (`CRMSYNC_FULL=1`), or
`CRMSYNC_FAILOVER_PEOPLE`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from support.cli import cli_env, spawn_cli
from support.postgres import PostgresCluster
from support.sizes import sized

from crmsync.sim.attio import AttioSim, AttioSimConfig, run_attio_simulator

pytestmark = pytest.mark.slow

TENANTS = 30
#: tenants i and i + SHARED_FROM use one Quo key: 30 tenants, 20 keys, 20 lease groups
SHARED_FROM = 20
REPLICAS = 3
LIMIT = 10
LEASE_SECONDS = 3.0
ADMIN_TOKEN = "admin-replica-SECRET"
PEOPLE = int(os.environ.get("CRMSYNC_FAILOVER_PEOPLE", sized(30, 100)))


def quo_key(tenant: int) -> str:
    return f"quo-replica-SECRET-{tenant % SHARED_FROM:02d}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(path: Path, *, state_url: str, port: int, quo_url: str,
                 attio_urls: list[str], public_url: str | None = None) -> None:
    lines = [
        "[daemon]",
        f'state_url = "{state_url}"',
        f"lease_seconds = {LEASE_SECONDS}",
        "shutdown_timeout = 10",
        "[http]",
        f"port = {port}",
        *([f'public_url = "{public_url}"'] if public_url else []),
        'admin_token = "env:ADMIN_TOKEN"',
        "[quo]",
        f'base_url = "{quo_url}/v1"',
        f'webhooks_base_url = "{quo_url}"',
        f"requests_per_second = {LIMIT}",
    ]
    for i, url in enumerate(attio_urls):
        lines += [
            "[[tenants]]",
            f'id = "t{i:02d}"',
            'crm = "attio"',
            f'quo_api_key = "env:QUO_KEY_{i % SHARED_FROM:02d}"',
            f'crm_api_key = "env:ATTIO_KEY_{i:02d}"',
            f'crm_base_url = "{url}"',
            "page_size = 10",
        ]
    path.write_text("\n".join(lines) + "\n")


def replica_env() -> dict[str, str]:
    return cli_env({
        "ADMIN_TOKEN": ADMIN_TOKEN,
        **{f"QUO_KEY_{k:02d}": quo_key(k) for k in range(SHARED_FROM)},
        **{f"ATTIO_KEY_{i:02d}": f"attio-replica-SECRET-{i:02d}" for i in range(TENANTS)},
    })


@dataclass
class Replica:
    port: int
    process: asyncio.subprocess.Process
    output: bytearray

    @property
    def log(self) -> str:
        return self.output.decode(errors="replace")

    async def status(self, session: aiohttp.ClientSession) -> list[dict[str, Any]]:
        async with session.get(f"http://127.0.0.1:{self.port}/status") as response:
            response.raise_for_status()
            return list((await response.json())["tenants"])


@contextlib.asynccontextmanager
async def running(configs: list[tuple[Path, int]], env: dict[str, str]
                  ) -> AsyncIterator[list[Replica]]:
    """`crmsync run -c CONFIG` per config; whatever still runs at the end is killed."""
    replicas: list[Replica] = []
    drains: list[asyncio.Task[None]] = []
    try:
        for config, port in configs:
            process = await spawn_cli("run", "-c", str(config), env=env)
            replicas.append(Replica(port, process, bytearray()))
            drains.append(asyncio.create_task(_drain(process, replicas[-1].output)))
        yield replicas
    finally:
        for replica in replicas:
            if replica.process.returncode is None:
                replica.process.kill()
                await replica.process.wait()
        await asyncio.gather(*drains)


async def stop(replicas: list[Replica]) -> list[int]:
    """SIGTERM each; their exit codes."""
    for replica in replicas:
        replica.process.send_signal(signal.SIGTERM)
    return [await asyncio.wait_for(r.process.wait(), 60) for r in replicas]


@contextlib.asynccontextmanager
async def quo_simulator(env: dict[str, str]) -> AsyncIterator[str]:
    """`crmsync sim quo` in its own process, accepting every tenant's key."""
    port = _free_port()
    keys = sorted({quo_key(i) for i in range(TENANTS)})
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "crmsync", "sim", "quo", "--port", str(port),
        "--rps", str(LIMIT), *(arg for key in keys for arg in ("--api-key", key)),
        env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            await _until(lambda: _answers(session, f"{url}/_sim/stats"), within=30,
                         what="the Quo simulator to listen")
        yield url
    finally:
        process.terminate()
        await process.wait()


async def _answers(session: aiohttp.ClientSession, url: str) -> bool:
    try:
        async with session.get(url) as response:
            return response.status == 200
    except aiohttp.ClientError:
        return False


async def _until(check: Any, *, within: float, what: str, every: float = 0.1) -> None:
    """Poll `await check()` until it is true; fail naming `what` after `within` s."""
    deadline = time.monotonic() + within
    while not await _answered(check):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {within:g}s waiting for {what}")
        await asyncio.sleep(every)


async def _answered(check: Any) -> bool:
    """`await check()`, False while what it asks is not listening yet."""
    try:
        return bool(await check())
    except aiohttp.ClientConnectorError:
        return False


async def _stats(session: aiohttp.ClientSession, quo_url: str) -> dict[str, Any]:
    async with session.get(f"{quo_url}/_sim/stats") as response:
        return dict(await response.json())


async def _contacts(session: aiohttp.ClientSession, quo_url: str) -> list[dict[str, Any]]:
    async with session.get(f"{quo_url}/_sim/contacts") as response:
        return list((await response.json())["data"])


@contextlib.asynccontextmanager
async def attio_sims(count: int, people: int) -> AsyncIterator[list[tuple[AttioSim, str]]]:
    async with contextlib.AsyncExitStack() as stack:
        fleet = []
        for i in range(count):
            config = AttioSimConfig(api_keys=[f"attio-replica-SECRET-{i:02d}"], people=people,
                                    seed=500 + i)
            fleet.append(await stack.enter_async_context(run_attio_simulator(config=config)))
        yield fleet


@pytest.fixture
async def attio_fleet() -> AsyncIterator[list[tuple[AttioSim, str]]]:
    async with attio_sims(TENANTS, PEOPLE) as fleet:
        yield fleet


async def test_a_killed_replica_s_tenants_finish_on_the_others_exactly_once(
    postgres_cluster: PostgresCluster, attio_fleet: list[tuple[AttioSim, str]], tmp_path: Path
) -> None:
    state_url = await postgres_cluster.new_url()
    env = replica_env()
    people = {record.record_id for sim, _ in attio_fleet for record in sim.people}
    assert len(people) == TENANTS * PEOPLE
    async with quo_simulator(env) as quo_url, aiohttp.ClientSession() as session:
        configs = []
        for n in range(REPLICAS):
            port = _free_port()
            config = tmp_path / f"replica{n}.toml"
            write_config(config, state_url=state_url, port=port, quo_url=quo_url,
                         attio_urls=[url for _, url in attio_fleet])
            configs.append((config, port))
        async with running(configs, env) as replicas:
            # Mid initial sync: a quarter of the people are in Quo.
            async def quarter_done() -> bool:
                return (await _stats(session, quo_url))["contacts"] >= len(people) // 4

            await _until(quarter_done, within=120, what="a quarter of the initial syncs")
            before = await replicas[0].status(session)
            held = Counter(t["replica"] for t in before if t["replica"])
            assert len(held) == REPLICAS, f"the tenants are not spread: {held}"
            victim_id, victim_tenants = held.most_common(1)[0]
            victim = next(r for r in replicas if str(r.process.pid) == victim_id.split(":")[1])
            orphans = {t["id"] for t in before if t["replica"] == victim_id}
            unfinished = {t["id"] for t in before if not t["initialSyncCompletedAt"]}
            assert orphans & unfinished, "the victim has no initial sync left to take over"
            victim.process.send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
            await victim.process.wait()
            survivors = [r for r in replicas if r is not victim]

            async def taken_over() -> bool:
                tenants = {t["id"]: t for t in await survivors[0].status(session)}
                return all(bool(tenants[o]["replica"] not in (None, victim_id)) for o in orphans)

            await _until(taken_over, within=LEASE_SECONDS * 5, what="the takeover")
            takeover = time.monotonic() - killed_at

            async def all_synced() -> bool:
                tenants = await survivors[0].status(session)
                return all(bool(t["initialSyncCompletedAt"]) for t in tenants)

            await _until(all_synced, within=240, what="every initial sync", every=0.5)
            finished = time.monotonic() - killed_at
            contacts = await _contacts(session, quo_url)
            stats = await _stats(session, quo_url)
            after = await survivors[0].status(session)
            codes = await stop(survivors)

    by_external_id = Counter(c["externalId"] for c in contacts)
    twice = {k: n for k, n in by_external_id.items() if n > 1}
    assert not twice, f"contacts more than once: {twice}"
    assert set(by_external_id) == people
    windows = {key: s["max_in_any_window"] for key, s in stats["keys"].items()}
    assert max(windows.values()) <= LIMIT, f"a key over its limit: {windows}"
    assert stats["rate_limited"] == 0
    assert {t["replica"] for t in after} <= {f"{_host()}:{s.process.pid}" for s in survivors}
    assert codes == [0, 0], [s.log[-3000:] for s in survivors]
    assert takeover <= LEASE_SECONDS + 10
    for replica in replicas:
        text = replica.log
        assert "Traceback" not in text, text[-3000:]
        assert "SECRET" not in text
    print(
        f"\nfailover: {TENANTS} tenants ({len(windows)} Quo keys), {len(people)} people, "
        f"{REPLICAS} replicas; killed {victim_id} holding {victim_tenants} tenants "
        f"({len(orphans & unfinished)} mid initial sync); takeover {takeover:.1f}s "
        f"(lease {LEASE_SECONDS:g}s); all synced {finished:.1f}s after the kill; "
        f"{len(contacts)} contacts, 0 twice; most requests of one key in any second "
        f"{max(windows.values())} (limit {LIMIT}), 429s {stats['rate_limited']}"
    )


def _host() -> str:
    return socket.gethostname()


async def _drain(process: asyncio.subprocess.Process, output: bytearray) -> None:
    """Keep the child's pipes flowing into `output` (a full pipe would stall it)."""
    assert process.stdout is not None and process.stderr is not None

    async def copy(stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            output.extend(line)

    await asyncio.gather(copy(process.stdout), copy(process.stderr))


async def test_a_webhook_at_any_replica_is_applied_by_the_owner_and_a_reload_reaches_all(
    postgres_cluster: PostgresCluster, tmp_path: Path
) -> None:
    """Two replicas, two tenants (two Quo keys: one lease group each). Every webhook is
    delivered to replica A (`http.public_url`, as behind a proxy that picks one); the
    tenant B runs still gets its CRM change into Quo, and the management API at A for
    that tenant answers as B (forwarded). Then a third tenant is added to both config
    files and only A gets SIGHUP: B re-reads too, and one of them runs it."""
    state_url = await postgres_cluster.new_url()
    env = replica_env()
    async with (
        attio_sims(3, 4) as sims,
        quo_simulator(env) as quo_url,
        aiohttp.ClientSession() as session,
    ):
        ports = [_free_port(), _free_port()]
        public_url = f"http://127.0.0.1:{ports[0]}"
        configs = [tmp_path / "a.toml", tmp_path / "b.toml"]

        def configure(tenants: int) -> None:
            for config, port in zip(configs, ports, strict=True):
                write_config(config, state_url=state_url, port=port, quo_url=quo_url,
                             attio_urls=[url for _, url in sims[:tenants]],
                             public_url=public_url)

        configure(2)
        async with running(list(zip(configs, ports, strict=True)), env) as replicas:
            a, b = replicas
            b_id = f"{_host()}:{b.process.pid}"

            async def spread_and_live() -> bool:
                tenants = await a.status(session)
                return {t["replica"] for t in tenants} == {f"{_host()}:{a.process.pid}", b_id} \
                    and all(t["phase"] == "live" and t["state"] == "running" for t in tenants)

            await _until(spread_and_live, within=90, what="both tenants live, one per replica")
            (on_b,) = [t["id"] for t in await a.status(session) if t["replica"] == b_id]
            attio, attio_url = sims[int(on_b[1:])]
            record_id = next(iter(attio.people)).record_id
            root = attio_url.removesuffix("/v2")
            async with session.patch(f"{root}/_sim/people/{record_id}",
                                     json={"job_title": "Head of Failover"}) as response:
                assert response.status == 200, await response.text()

            async def changed_in_quo() -> bool:
                contacts = await _contacts(session, quo_url)
                return any(c["externalId"] == record_id
                           and c["defaultFields"].get("role") == "Head of Failover"
                           for c in contacts)

            await _until(changed_in_quo, within=30, what="the CRM change, delivered to A, "
                         "applied by B")
            # The management API at A for B's tenant: A forwards it to B, which answers.
            auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            async with session.get(f"{public_url}/api/tenants/{on_b}/mappings",
                                   params={"crmRecordId": record_id}, headers=auth) as answer:
                assert answer.status == 200, await answer.text()
                assert answer.headers["X-Crmsync-Replica"] == b_id
                (row,) = (await answer.json())["mappings"]
                assert row["crmRecordId"] == record_id
            async with session.post(f"{public_url}/api/tenants/{on_b}/sync", headers=auth,
                                    json={"crmRecordIds": [record_id]}) as answer:
                assert answer.status == 200, await answer.text()
                assert answer.headers["X-Crmsync-Replica"] == b_id
            async with session.post(f"{public_url}/api/tenants/{on_b}/sync",
                                    headers={"Authorization": "Bearer wrong"},
                                    json={"crmRecordIds": [record_id]}) as answer:
                assert answer.status == 401  # A checks the token before it forwards
            # Forwarded once already (a loop between replicas): A answers itself.
            async with session.get(f"{public_url}/api/tenants/{on_b}/mappings",
                                   headers={**auth, "X-Crmsync-Forwarded-By": "1"}) as answer:
                assert answer.status == 409, await answer.text()
                assert (await answer.json())["error"] == (
                    f"tenant {on_b} runs on replica {b_id}: send the request to that replica")
            configure(3)
            a.process.send_signal(signal.SIGHUP)

            async def third_synced() -> bool:
                tenants = {t["id"]: t for t in await b.status(session)}
                third = tenants.get("t02")
                return bool(third and third["configured"] and third["initialSyncCompletedAt"])

            await _until(third_synced, within=60, what="the tenant added by the reload")
            assert "reloading too" in b.log, b.log[-3000:]
            codes = await stop(replicas)
    assert codes == [0, 0], [r.log[-3000:] for r in replicas]
    for replica in replicas:
        assert "Traceback" not in replica.log, replica.log[-3000:]
        assert "SECRET" not in replica.log
