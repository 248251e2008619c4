"""Fault suite: two tenants in one `crmsync run`; the simulators misbehave the whole time.

`acme` (40 people) runs against a Quo and an Attio simulator that answer 5 % of
requests with 500, drop 2 % of connections (half before the request is applied, half
after it was), add latency spikes, and, during the workload, force 429 bursts with and
without `Retry-After`; Attio also answers short and repeated pages, and acme's webhook
subscriptions are deleted (Quo) and expired (Attio) mid-run. `beta` (10 people) is
healthy until its Attio key is revoked: every CRM call answers 401.

What must hold: acme converges on the crash suite's invariants (every person in Quo
exactly once and current, every mapping on its contact, every acknowledged SMS and call
noted once, no note twice, the inbox settled, the subscriptions repaired); the daemon
never exits and `/healthz` answers 200 throughout; beta is `parked` in `/status` and
`/readyz` names it; and every error is counted where an operator looks:
`crmsync_quo_requests_total{status}` agrees with the faults Quo injected,
`crmsync_rate_limited_responses_total` with its 429s, `crmsync_dead_letters{category}`
with `crmsync errors`, `crmsync_webhook_events_total{outcome}` with what was delivered,
and a person that can never be a contact is in `crmsync errors` with its category.

Sized by the same knob as the crash suite: one workload round per 5
`CRMSYNC_CRASH_POINTS` (CI: 1 round; `CRMSYNC_FULL=1`, 24 points: 5 rounds).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.cli import cli_env, spawn_cli
from support.e2e import E2E
from support.live import Daemon, free_port
from support.reliability import (
    Expectations,
    QuoLedger,
    Step,
    Stopwatch,
    Workload,
    base_seed,
    cursor_problems,
    deliver_everything,
    fail,
    fault_rounds,
    sim_problems,
    store_problems,
)

from crmsync.sim.attio import AttioSim, AttioSimConfig, run_attio_simulator
from crmsync.sim.quo import QuoSim, QuoSimConfig, run_quo_simulator
from crmsync.store.dead_letters import CATEGORIES

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

ACME, BETA = "acme", "beta"
ACME_PEOPLE, BETA_PEOPLE = 150, 10
RPS = 50
KEYS = {
    "ACME_QUO_KEY": "quo-acme-SECRET-key",
    "ACME_ATTIO_KEY": "attio-acme-SECRET-key",
    "BETA_QUO_KEY": "quo-beta-SECRET-key",
    "BETA_ATTIO_KEY": "attio-beta-SECRET-key",
}
#: per request: 5 % 500s, 2 % dropped connections (1 % before, 1 % after applying),
#: 2 % latency spikes of 0.8 s
FAIL, DROP_BEFORE, DROP_AFTER, SPIKE, SPIKE_SECONDS = 0.05, 0.01, 0.01, 0.02, 0.8
SHORT_PAGES = REPEATED_PAGES = 0.05
MAX_RETRIES = 3  # [quo] max_retries, for Quo and the CRM alike
BURST = 6  # consecutive 429s per burst: more than a call's attempts
POLL_INTERVAL = 5  # the config's minimum: passes (and subscription checks) come often
CONVERGE_WITHIN = 120.0
ROUNDS = fault_rounds()
SEED = base_seed()

CONFIG = """\
[daemon]
state_path = "{state}"
log_level = "info"
shutdown_timeout = 10

[quo]
base_url = "{quo_url}"
# The fault suite deletes and counts legacy webhooks (`sim.webhooks`) and delivers
# through them: the legacy system's specifics.
webhooks = "legacy"
webhooks_base_url = "{quo_root}"
requests_per_second = {rps}
request_timeout = 10
max_retries = {retries}

[http]
host = "127.0.0.1"
port = {port}
public_url = "http://127.0.0.1:{port}"

[[tenants]]
id = "acme"
crm = "attio"
quo_api_key = "env:ACME_QUO_KEY"
crm_api_key = "env:ACME_ATTIO_KEY"
crm_base_url = "{acme_attio}"
page_size = 20
poll_interval = {poll}

[[tenants]]
id = "beta"
crm = "attio"
quo_api_key = "env:BETA_QUO_KEY"
crm_api_key = "env:BETA_ATTIO_KEY"
crm_base_url = "{beta_attio}"
page_size = 10
poll_interval = {poll}
"""


def inject(quo: QuoSim, attio: AttioSim) -> None:
    """The steady faults of the whole run (bursts come with the workload)."""
    quo.faults.set_rates(fail=FAIL, drop=DROP_BEFORE, drop_after=DROP_AFTER, spike=SPIKE,
                         spike_seconds=SPIKE_SECONDS)
    faults = attio.faults
    faults.fail_rate, faults.drop_rate, faults.drop_after_rate = FAIL, DROP_BEFORE, DROP_AFTER
    faults.spike_rate, faults.spike_seconds = SPIKE, SPIKE_SECONDS
    faults.short_page_rate, faults.repeat_page_rate = SHORT_PAGES, REPEATED_PAGES


@dataclass
class Env:
    e2e: E2E  # acme's view: its simulators and the CLI helpers (`TENANT` is acme)
    beta_attio: AttioSim
    daemon: Daemon
    healthz: Counter[str] = field(default_factory=Counter)

    @property
    def quo(self) -> QuoSim:
        return self.e2e.quo

    @property
    def attio(self) -> AttioSim:
        return self.e2e.attio

    async def tenants(self) -> dict[str, dict[str, Any]]:
        status, body = await self.daemon.get("/status")
        assert status == 200, (status, body)
        return {t["id"]: t for t in body["tenants"]}

    async def metrics(self) -> dict[str, list[tuple[dict[str, str], float]]]:
        async with self.daemon.session.get(self.daemon.base_url + "/metrics") as response:
            text = await response.text()
        found: dict[str, list[tuple[dict[str, str], float]]] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                found.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
        return found


@contextlib.asynccontextmanager
async def fault_env(tmp_path: Path, seed: int) -> AsyncIterator[Env]:
    quo_config = QuoSimConfig(api_keys=[KEYS["ACME_QUO_KEY"], KEYS["BETA_QUO_KEY"]],
                              requests_per_second=RPS, seed=seed)
    acme_config = AttioSimConfig(api_keys=[KEYS["ACME_ATTIO_KEY"]], people=ACME_PEOPLE,
                                 seed=seed)
    beta_config = AttioSimConfig(api_keys=[KEYS["BETA_ATTIO_KEY"]], people=BETA_PEOPLE,
                                 seed=seed + 1)
    async with (
        run_quo_simulator(config=quo_config) as (quo, quo_url),
        run_attio_simulator(config=acme_config) as (attio, attio_url),
        run_attio_simulator(config=beta_config) as (beta_attio, beta_url),
    ):
        state = tmp_path / "state" / "crmsync.db"
        state.parent.mkdir()
        port = free_port()
        config = tmp_path / "crmsync.toml"
        config.write_text(CONFIG.format(
            state=state, quo_url=quo_url, quo_root=quo_url.removesuffix("/v1"), rps=RPS,
            port=port, acme_attio=attio_url,
            beta_attio=beta_url, poll=POLL_INTERVAL, retries=MAX_RETRIES,
        ))
        env = cli_env(KEYS)
        e2e = E2E(quo=quo, attio=attio, quo_url=quo_url, attio_url=attio_url,
                  config_path=config, state_path=state, env=env, rps=RPS)
        inject(quo, attio)
        process = await spawn_cli("run", "-c", str(config), env=env, cwd=tmp_path)
        daemon = Daemon(process, f"http://127.0.0.1:{port}")
        try:
            yield Env(e2e, beta_attio, daemon)
        finally:
            await daemon.close()


async def watch_healthz(env: Env) -> None:
    """Sample `/healthz` every 0.2 s for the whole run: any answer but 200 is counted."""
    while True:
        try:
            status, _ = await env.daemon.get("/healthz")
            env.healthz[str(status)] += 1
        except Exception as exc:  # any failure to answer is what we count
            env.healthz[type(exc).__name__] += 1
        await asyncio.sleep(0.2)


# -- the workload of one round ---------------------------------------------------------------


@dataclass
class Half:
    """Half a round: its steps, and the 429 bursts that come with it."""

    steps: list[tuple[str, Step]]
    quo_retry_after: bool
    attio_retry_after: bool
    converged_in: float = 0.0
    #: 429s the bursts brought, by kind ("quo 429, Retry-After", ...)
    bursts: Counter[str] = field(default_factory=Counter)


def round_halves(env: Env, work: Workload, number: int, empty: list[str]) -> list[Half]:
    """Two halves of CRM changes, SMS and calls in a seeded order. Each half starts with
    a 429 burst at Quo and one at Attio, one with `Retry-After` and one without (swapped
    in the other half and in every other round), and has a disruption among its steps:
    a deleted Quo webhook, then an expired (odd rounds) or deleted Attio webhook; the
    first round also adds a person who can never be a contact."""
    quo, attio, rng = env.quo, env.attio, work.rng

    def drop_quo_webhook() -> None:
        ours = sorted(w["id"] for w in quo.webhooks.values() if "/webhooks/acme/" in w["url"])
        if ours:
            del quo.webhooks[rng.choice(ours)]

    def disable_attio_webhook() -> None:
        for webhook_id in [k for k, w in attio.webhooks.items() if w.status != "inactive"]:
            if number % 2:
                attio.expire_webhook(webhook_id)
            else:
                attio.remove_webhook(webhook_id)

    halves = []
    first = number % 2 == 1
    for index, disruption in enumerate((drop_quo_webhook, disable_attio_webhook)):
        work.crm_changes(updates=5, adds=2, deletes=1)
        work.sms(6)
        work.calls(2)
        work.shuffle()
        disruptions: list[Callable[[], object]] = [disruption]
        if number == 1 and index == 0:
            disruptions.append(lambda: empty.append(attio.add_person()))
        for action in disruptions:
            work.steps.insert(rng.randrange(len(work.steps) + 1),
                              (action.__name__, Workload.sync_step(action)))
        with_header = first if index == 0 else not first
        halves.append(Half(work.take(), quo_retry_after=with_header,
                           attio_retry_after=not with_header))
    return halves


def burst(env: Env, half: Half) -> None:
    """The next `BURST` requests to each API are answered 429."""
    env.quo.faults.force_429(BURST, retry_after=0.5 if half.quo_retry_after else None)
    env.attio.faults.rate_limit_next = BURST
    env.attio.faults.retry_after = half.attio_retry_after


def expectations(env: Env, empty: list[str]) -> Expectations:
    return Expectations(absent=frozenset(empty),
                        foreign=frozenset(r.record_id for r in env.beta_attio.people))


async def run_half(env: Env, work: Workload, half: Half, empty: list[str]) -> None:
    """The half's bursts, its steps (each delivery until acknowledged), then until acme
    holds the expected state again."""
    quo_before, attio_before = env.quo.faults.forced_429s, env.attio.faults.forced_429s
    burst(env, half)
    clock = Stopwatch()
    await work.run(half.steps)
    await deliver_everything(env.attio, work.ledger)
    expect = expectations(env, empty)
    try:
        await env.daemon.wait_for(lambda: not sim_problems(env.e2e, work.ledger, expect),
                                  within=CONVERGE_WITHIN, message="converged")
    except AssertionError:
        fail(f"not converged within {CONVERGE_WITHIN} s",
             sim_problems(env.e2e, work.ledger, expect), "\n" + env.daemon.output)
    half.converged_in = clock.seconds
    # Passes run every few seconds: whatever cursor one has committed, nothing before
    # it may be unmapped.
    cursor, problems = await cursor_problems(env.e2e)
    fail(f"cursor {cursor} ahead of the mappings", problems)
    header = {True: "Retry-After", False: "no Retry-After"}
    half.bursts[f"quo 429, {header[half.quo_retry_after]}"] += (
        env.quo.faults.forced_429s - quo_before)
    half.bursts[f"attio 429, {header[half.attio_retry_after]}"] += (
        env.attio.faults.forced_429s - attio_before)


# -- checks ------------------------------------------------------------------------------------


def total(samples: list[tuple[dict[str, str], float]], **labels: str) -> float:
    return sum(v for got, v in samples if all(got.get(k) == w for k, w in labels.items()))


async def both_live(env: Env) -> bool:
    assert env.daemon.running, env.daemon.output
    try:
        tenants = await env.tenants()
    except (OSError, TimeoutError):
        return False
    return all(tenants.get(t, {}).get("phase") == "live" and tenants[t]["state"] == "running"
               for t in (ACME, BETA))


def subscriptions_repaired(env: Env) -> bool:
    quo_ours = [w for w in env.quo.webhooks.values() if "/webhooks/acme/" in w["url"]]
    attio_ours = [w for w in env.attio.webhooks.values() if "/webhooks/acme/" in w.target_url]
    return (
        len(quo_ours) == 4 and all(w["status"] == "enabled" for w in quo_ours)
        and len(attio_ours) == 1 and attio_ours[0].status != "inactive"
    )


def faults_seen(quo: QuoSim, attio: AttioSim) -> dict[str, dict[str, int]]:
    q, a = quo.faults, attio.faults
    return {
        "quo": {
            "requests": quo.stats.total_requests + q.dropped_connections,
            "500": q.injected_failures, "dropped_before": q.dropped_connections,
            "dropped_after": q.dropped_after_apply, "spikes": q.latency_spikes,
            "forced_429": q.forced_429s, "429": quo.stats.rate_limited,
            "drops": q.dropped_connections + q.dropped_after_apply,
            "visible_drops": sum(q.fired[f"{kind} {method}"] for kind in ("drop", "drop_after")
                                 for method in ("POST", "PATCH")),
        },
        "attio": {
            "requests": sum(attio.stats.requests.values()) + a.dropped_connections,
            "500": attio.stats.injected_failures - a.forced_429s,
            "dropped_before": a.dropped_connections, "dropped_after": a.dropped_after_apply,
            "spikes": a.latency_spikes, "short_pages": a.short_pages,
            "repeated_pages": a.repeated_pages, "forced_429": a.forced_429s,
            "429": attio.stats.rate_limited,
        },
    }


@pytest.mark.timeout(300 + 150 * ROUNDS)
@pytest.mark.parametrize("seed", [SEED], ids=[f"seed{SEED}-rounds{ROUNDS}"])
async def test_faults_converge_and_are_counted(seed: int, tmp_path: Path) -> None:
    """1. Quo and acme's Attio inject 5 % 500s, 1 % drops before and 1 % after applying,
       2 % 0.8-s latency spikes; Attio also 5 % short and 5 % repeated pages; seeded
    2. `crmsync run` with acme (40 people) and beta (10 people); both go live
    3. beta's Attio key is revoked (every CRM call 401)
    4. per round: job-title updates, new people, a delete, SMS and calls (events in any
       order) for acme, with 429 bursts at Quo and Attio (with and without
       Retry-After), a deleted Quo webhook and an expired Attio webhook in between, and
       (first round) a person with no name, email or phone; every event is delivered
       until acknowledged, then acme must converge
    5. the faults stop; the books are compared
    Result: acme converged every round (the crash suite's invariants) and its webhooks
    are repaired; the daemon never exited and `/healthz` was always 200; beta is
    `parked` and `/readyz` (503) names it; `crmsync_quo_requests_total` counts every
    injected 500 and dropped connection, `crmsync_rate_limited_responses_total` every
    429; the empty person is dead-lettered `empty_person` in `crmsync errors` and
    `crmsync_dead_letters`, every dead letter has a known category; every accepted
    webhook was processed or ignored, none failed; SIGTERM exits 0 without a traceback.
    """
    rng = random.Random(seed)
    async with fault_env(tmp_path, seed) as env:
        clock = Stopwatch()
        await env.daemon.wait_for(lambda: both_live(env), within=90, message="both tenants live")
        live_after = clock.seconds
        watcher = asyncio.create_task(watch_healthz(env))  # answering from here on
        env.beta_attio.faults.revoked_keys.add(KEYS["BETA_ATTIO_KEY"])

        ledger = QuoLedger(env.quo, tenant=ACME)
        work = Workload(env.attio, env.quo, ledger, rng)
        empty: list[str] = []
        halves: list[Half] = []
        for number in range(1, ROUNDS + 1):
            for half in round_halves(env, work, number, empty):
                await run_half(env, work, half, empty)
                halves.append(half)
        bursts = sum((h.bursts for h in halves), Counter[str]())
        # Every burst was answered (the next requests came, and were refused).
        assert all(n >= BURST for n in bursts.values()) and len(bursts) == 4, bursts

        # beta: parked, and /readyz says so.
        async def beta_parked() -> bool:
            return (await env.tenants())[BETA]["state"] == "parked"

        await env.daemon.wait_for(beta_parked, within=30, message="beta parked")
        status, body = await env.daemon.get("/readyz")
        assert status == 503, (status, body)
        assert any(r.startswith("beta: parked") for r in body["reasons"]), body
        assert not any(r.startswith("acme") for r in body["reasons"]), body

        # The faults stop: the books must settle and agree.
        seen = faults_seen(env.quo, env.attio)
        env.quo.faults.clear()
        env.attio.faults.clear()
        settled_problems: list[str] = []

        async def settled() -> bool:
            settled_problems[:] = await store_problems(env.e2e, expectations(env, empty))
            settled_problems.extend((await cursor_problems(env.e2e))[1])
            settled_problems.extend(
                [] if subscriptions_repaired(env) else ["subscriptions not repaired"])
            return not settled_problems

        try:
            await env.daemon.wait_for(settled, within=60, message="settled")
        except AssertionError:
            fail("not settled", settled_problems, "\n" + env.daemon.output)
        fail("after settling", sim_problems(env.e2e, ledger, expectations(env, empty)))

        letters = await env.e2e.dead_letters()
        by_category = Counter(d["category"] for d in letters)
        unknown = set(by_category) - set(CATEGORIES)
        assert not unknown, f"uncategorised dead letters: {unknown}"
        assert [(d["crmRecordId"], d["category"]) for d in letters
                if d["crmRecordId"] in empty] == [(empty[0], "empty_person")], letters

        books: dict[str, Any] = {}

        async def books_agree() -> bool:
            metrics = await env.metrics()
            requests = metrics.get("crmsync_quo_requests_total", [])
            faults = faults_seen(env.quo, env.attio)["quo"]
            gauges = {labels["category"]: value for labels, value in
                      metrics.get("crmsync_dead_letters", []) if labels["tenant"] == ACME}
            books.update(
                quo_500=total(requests, status="500"), quo_error=total(requests, status="error"),
                quo_429=total(requests, status="429"),
                rate_limited=total(metrics.get("crmsync_rate_limited_responses_total", [])),
                dead_letter_gauges={k: v for k, v in gauges.items() if v},
                webhooks={
                    f"{labels['source']}:{labels['outcome']}": value
                    for labels, value in metrics.get("crmsync_webhook_events_total", [])
                    if labels["tenant"] == ACME and value
                },
            )
            # A dropped GET, PUT or DELETE is resent once by aiohttp itself: the client
            # sees a dropped POST or PATCH always, a dropped idempotent request only if
            # its resend was dropped too.
            return (
                books["quo_500"] == faults["500"]
                and faults["visible_drops"] <= books["quo_error"] <= faults["drops"]
                and books["quo_429"] == faults["429"]
                and books["rate_limited"] == faults["429"]
                and books["dead_letter_gauges"] == dict(by_category)
            )

        try:
            await env.daemon.wait_for(books_agree, within=20, message="metrics agree")
        except AssertionError:
            raise AssertionError(
                f"metrics disagree with the simulators: {books} vs "
                f"{faults_seen(env.quo, env.attio)['quo']}, dead letters {dict(by_category)}"
            ) from None
        hooks = books["webhooks"]
        acked_quo = sum(1 for s in ledger.sent if s.acked)
        assert hooks.get("quo:accepted") == acked_quo, (hooks, acked_quo)
        accepted = hooks.get("quo:accepted", 0) + hooks.get("crm:accepted", 0)
        applied = sum(v for k, v in hooks.items() if k.endswith((":processed", ":ignored")))
        assert applied == accepted, hooks
        assert not any(k.endswith(":failed") for k in hooks), hooks

        assert env.daemon.running, env.daemon.output
        watcher.cancel()
        assert set(env.healthz) == {"200"}, f"/healthz answered {dict(env.healthz)}"
        rc = await env.daemon.terminate()
        assert rc == 0, f"exit {rc}\n{env.daemon.output}"
        assert "Traceback" not in env.daemon.output, env.daemon.output
        print(f"\n[faults] seed {seed}, {ROUNDS} round(s): both live after {live_after:.1f} s;"
              f" each half converged in {', '.join(f'{h.converged_in:.1f}' for h in halves)} s;"
              f" 429 bursts {dict(bursts)}; "
              f"faults {seen}; dead letters {dict(by_category)}; webhooks {hooks}; "
              f"/healthz {dict(env.healthz)}")
