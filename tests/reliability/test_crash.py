"""Crash suite: `crmsync run` is SIGKILLed at seeded random points, restarted, and must
converge on "nothing lost, nothing twice".

Each case is one kill point, named by its phase and seed (`calls-seed412345`):

* `initial`: the initial sync with single creates (80 people, Quo at 40 requests/s);
* `bulk`: the initial sync with `bulk_create = true` (creates accepted, not yet visible,
  being verified);
* `intake`: a burst of CRM changes and Quo SMS and call events being delivered;
* `inbox`: the inbox processor writing SMS notes (and applying CRM changes);
* `calls`: call lifecycles (call.completed, summary, transcript in any order) being
  logged, a note rewritten as each part arrives.

Right after the kill the committed cursor (`crmsync status --json`) must not be ahead of
the mapped records. Then the daemon starts again, every webhook that was not
acknowledged is delivered again (as Quo and Attio retry), and once converged: every
person in Quo exactly once and current, every mapping on its contact, every
acknowledged event noted exactly once, no note twice, the inbox settled, and the
restarted daemon stops cleanly.

The number of cases is the knob `CRMSYNC_CRASH_POINTS` (default 5: one per phase);
`CRMSYNC_CRASH_SEED` picks the seeds (see `support/reliability.py`). The full run:
`CRMSYNC_FULL=1 pytest -m slow` (24 kill points; `CRMSYNC_CRASH_POINTS` overrides).
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support.live import Daemon, LiveEnv, live_env, wait_until
from support.reliability import (
    Expectations,
    QuoLedger,
    Stopwatch,
    Workload,
    base_seed,
    case_seeds,
    crash_points,
    cursor_problems,
    deliver_everything,
    fail,
    ordered_people,
    sim_problems,
    store_problems,
)

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

PHASES = ("initial", "bulk", "intake", "inbox", "calls")
BASE_SEED = base_seed()
CASES = [
    (PHASES[i % len(PHASES)], seed)
    for i, seed in enumerate(case_seeds(BASE_SEED, crash_points()))
]
INITIAL_PEOPLE = 80
BULK_PEOPLE = 100
LIVE_PEOPLE = 24
ENVIRONMENTS: dict[str, dict[str, Any]] = {
    "initial": {"people": INITIAL_PEOPLE, "rps": 40, "page_size": 20},
    "bulk": {
        "people": BULK_PEOPLE, "rps": 20, "page_size": 20, "bulk_create": True,
        "bulk_batch_size": 20, "bulk_visibility_delay": (0.3, 1.2),
    },
    "intake": {"people": LIVE_PEOPLE, "rps": 100},
    "inbox": {"people": LIVE_PEOPLE, "rps": 100},
    "calls": {"people": LIVE_PEOPLE, "rps": 100},
}
ATTIO_LATENCY = (0.02, 0.08)  # slows note writing so the kill lands while it runs
KILL_POLL_SECONDS = 0.005
CONVERGE_WITHIN = 60.0


@dataclass
class Case:
    phase: str
    seed: int
    env: LiveEnv
    rng: random.Random
    ledger: QuoLedger
    workload: Workload

    @property
    def attio_requests(self) -> Callable[[str, str], int]:
        def count(method: str, route: str) -> int:
            return sum(n for key, n in self.env.attio.stats.requests.items()
                       if key.startswith(f"{method} {route} "))
        return count


async def kill_when(daemon: Daemon, condition: Callable[[], bool], what: str) -> None:
    """SIGKILL the daemon the moment `condition` holds (polled every few ms)."""

    def due() -> bool:
        assert daemon.running, f"daemon exited before the kill point\n{daemon.output}"
        return condition()

    try:
        await wait_until(due, within=90, interval=KILL_POLL_SECONDS, message=what)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n{daemon.output}") from None
    await daemon.kill()


async def webhooks_registered(case: Case, daemon: Daemon) -> None:
    """Until both providers have the tenant's webhooks (set up before the initial sync)."""
    await daemon.wait_for(
        lambda: bool(case.env.attio.webhooks) and len(case.env.quo.webhooks) >= 4,
        message="webhooks registered",
    )


# -- the phases: each starts the daemon, sets its workload going and kills it ---------------


async def kill_initial(case: Case) -> str:
    """1. 80 Attio people; Quo at 40 requests/s; `crmsync run` starts the initial sync
    2. half the seeds: CRM updates, new people and SMS arrive by webhook meanwhile
    3. SIGKILL once Quo holds k contacts (k seeded, 1..76)"""
    daemon = await case.env.start(wait=False)
    k = case.rng.randint(1, INITIAL_PEOPLE - 4)
    sender = await _maybe_during_sync(case, daemon)
    await kill_when(daemon, lambda: len(case.env.quo.contacts.contacts) >= k,
                    f"{k} contacts in Quo")
    await _finish(sender)
    return f"{k} of {INITIAL_PEOPLE} contacts created" + (" (webhooks meanwhile)"
                                                          if sender else "")


async def kill_bulk(case: Case) -> str:
    """1. 100 Attio people; `bulk_create = true` (batches of 20, visible 0.3-1.2 s later)
    2. half the seeds: webhooks meanwhile, as in `initial`
    3. SIGKILL at a seeded one of: k contacts accepted by bulk creates, j verifier
       lookups (`GET /v1/contacts?externalIds=`), m bulk contacts visible"""
    daemon = await case.env.start(wait=False)
    quo = case.env.quo
    sender = await _maybe_during_sync(case, daemon)
    trigger = case.rng.choice(("accepted", "lookups", "visible"))
    if trigger == "accepted":
        k = case.rng.randint(1, BULK_PEOPLE - 1)
        await kill_when(daemon, lambda: quo.bulk.counters.accepted >= k, f"{k} accepted")
        what = f"{k} bulk-accepted"
    elif trigger == "lookups":
        k = case.rng.randint(1, 6)
        await kill_when(daemon, lambda: quo.count("GET", "/v1/contacts") >= k,
                        f"{k} verifier lookups")
        what = f"{k} verifier lookups"
    else:
        k = case.rng.randint(1, BULK_PEOPLE - 10)
        await kill_when(daemon, lambda: len(quo.contacts.contacts) >= k, f"{k} visible")
        what = f"{k} bulk contacts visible"
    await _finish(sender)
    return what + (" (webhooks meanwhile)" if sender else "")


async def kill_intake(case: Case) -> str:
    """1. 24 people synced, the daemon live
    2. a seeded burst: job-title updates, new people, a delete, SMS both ways and calls
       (call.completed, summary, transcript in any order), each sent once the previous
       delivery was answered
    3. SIGKILL once k deliveries were acknowledged (k seeded): the next is in flight"""
    daemon = await case.env.start()
    rng, work = case.rng, case.workload
    work.crm_changes(updates=rng.randint(2, 5), adds=rng.randint(1, 2), deletes=rng.randint(0, 1))
    work.sms(rng.randint(3, 6))
    work.calls(rng.randint(1, 2))
    work.shuffle()
    k = rng.randint(1, work.deliveries - 1)
    sender = asyncio.create_task(work.run())
    await kill_when(daemon, lambda: work.acknowledged() >= k or sender.done(),
                    f"{k} deliveries acknowledged")
    await _finish(sender)
    return f"{k} of {work.deliveries} deliveries acknowledged"


async def kill_inbox(case: Case) -> str:
    """1. 24 people synced, the daemon live; Attio answers in 20-80 ms
    2. SMS to 6-10 people and 2-3 job-title updates, all acknowledged (the inbox fills)
    3. SIGKILL at a seeded one of: k notes POSTed, k phone lookups, k Quo PATCHes"""
    daemon = await case.env.start()
    rng, work, attio = case.rng, case.workload, case.env.attio
    attio.faults.latency = ATTIO_LATENCY
    sms = rng.randint(6, 10)
    updates = rng.randint(2, 3)
    work.sms(sms)
    work.crm_changes(updates=updates)
    work.shuffle()
    trigger = rng.choice(("notes", "lookups", "patches"))
    count = case.attio_requests
    if trigger == "notes":
        k = rng.randint(1, sms - 1)
        condition = lambda: count("POST", "/v2/notes") >= k  # noqa: E731
    elif trigger == "lookups":
        k = rng.randint(1, sms - 1)
        condition = lambda: count("POST", "/v2/objects/{object}/records/query") >= k  # noqa: E731
    else:
        k = rng.randint(1, updates)
        condition = lambda: case.env.quo.count("PATCH", "/v1/contacts/{id}") >= k  # noqa: E731
    sender = asyncio.create_task(work.run())
    await kill_when(daemon, condition, f"{k} {trigger}")
    await _finish(sender)
    return f"{k} {trigger} (of {sms} SMS, {updates} updates)"


async def kill_calls(case: Case) -> str:
    """1. 24 people synced, the daemon live; Attio answers in 20-80 ms
    2. 2-4 calls, each with call.completed, summary and transcript in a seeded order
       (a summary or transcript exists in Quo only from its event on), and 0-2 SMS
    3. SIGKILL once k note writes (POST or DELETE /v2/notes) were answered"""
    daemon = await case.env.start()
    rng, work, attio = case.rng, case.workload, case.env.attio
    attio.faults.latency = ATTIO_LATENCY
    calls = rng.randint(2, 4)
    work.calls(calls)
    work.sms(rng.randint(0, 2))
    work.shuffle()
    k = rng.randint(1, 2 * calls - 1)
    count = case.attio_requests
    sender = asyncio.create_task(work.run())
    await kill_when(
        daemon, lambda: count("POST", "/v2/notes") + count("DELETE", "/v2/notes/{note_id}") >= k,
        f"{k} note writes",
    )
    await _finish(sender)
    return f"{k} note writes (of {calls} calls)"


async def _maybe_during_sync(case: Case, daemon: Daemon) -> asyncio.Task[None] | None:
    """Half the seeds: updates, new people and SMS by webhook while the initial sync
    runs (no deletes: they would shift the offsets the cursor counts)."""
    if case.rng.random() < 0.5:
        return None
    await webhooks_registered(case, daemon)
    work = case.workload
    work.crm_changes(updates=case.rng.randint(1, 3), adds=1)
    work.sms(case.rng.randint(1, 3))
    work.shuffle()
    return asyncio.create_task(work.run())


async def _finish(sender: asyncio.Task[None] | None) -> None:
    """Let the sender run out: what it sends to the dead daemon is not acknowledged."""
    if sender is not None:
        async with asyncio.timeout(30):
            await sender


KILLERS: dict[str, Callable[[Case], Awaitable[str]]] = {
    "initial": kill_initial,
    "bulk": kill_bulk,
    "intake": kill_intake,
    "inbox": kill_inbox,
    "calls": kill_calls,
}


# -- the test ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("phase", "seed"), CASES, ids=[f"{phase}-seed{seed}" for phase, seed in CASES]
)
async def test_kill_point(phase: str, seed: int, tmp_path: Path) -> None:
    """One seeded kill point.

    1. simulators seeded with the case's seed; the phase's workload (see its killer's
       docstring) runs against `crmsync run` until the seeded kill point; SIGKILL
    2. `crmsync status --json` and `crmsync mappings`: the committed cursor is not
       ahead of the mapped (or dead-lettered) records
    3. `crmsync run` again; every Quo event and Attio message not acknowledged is
       delivered again until acknowledged
    4. wait (deadline 60 s) until Quo and Attio hold the expected state
    Result: every person in Quo exactly once and as Attio has them; every mapping on
    an existing contact carrying its record id; every acknowledged SMS or call noted
    once on its person, with everything its events added; no note twice; every inbox
    event settled; SIGTERM ends the daemon with 0 and no traceback.
    """
    case_id = f"{phase}-seed{seed}"
    rng = random.Random(seed)
    # The ledger delivers legacy webhooks (`sim.webhooks`), signed and re-sent as Quo would.
    async with live_env(tmp_path, seed=seed, quo_webhooks="legacy", **ENVIRONMENTS[phase]) as env:
        ledger = QuoLedger(env.quo)
        case = Case(phase, seed, env, rng, ledger, Workload(env.attio, env.quo, ledger, rng))
        seeded = set(ordered_people(env.attio))
        kill_point = await KILLERS[phase](case)
        first = env.daemons[-1]
        assert "Traceback" not in first.output, first.output

        # Right after the kill: the cursor is not ahead of what is mapped.
        cursor, problems = await cursor_problems(env.e2e, seeded)
        fail("cursor ahead of the mappings after the kill", problems)
        fail("contacts twice after the kill",
             [p for p in sim_problems(env.e2e, None, Expectations()) if "more than once" in p])

        env.attio.faults.clear()
        note_lookups = case.attio_requests("GET", "/v2/notes")
        contact_lookups = env.quo.count("GET", "/v1/contacts")
        clock = Stopwatch()
        second = await env.start()
        await deliver_everything(env.attio, ledger)
        expect = Expectations()
        try:
            await wait_until(lambda: not sim_problems(env.e2e, ledger, expect),
                             within=CONVERGE_WITHIN, interval=0.1, message="converged")
        except TimeoutError:
            fail(f"not converged within {CONVERGE_WITHIN} s",
                 sim_problems(env.e2e, ledger, expect), "\n" + second.output)
        converged_after = clock.seconds
        last: list[str] = []

        async def settled() -> bool:
            last[:] = await store_problems(env.e2e, expect)
            return not last

        try:
            await wait_until(settled, within=20, interval=0.2, message="store settled")
        except TimeoutError:
            fail("the state store disagrees", last, "\n" + second.output)
        fail("after convergence", sim_problems(env.e2e, ledger, expect))
        assert second.running, second.output
        rc = await second.terminate()
        assert rc == 0, f"exit {rc}\n{second.output}"
        assert "Traceback" not in second.output, second.output
        # What the restart had to recover: notes looked up by their marker (a write
        # interrupted between its marker and its id), contacts looked up by externalId
        # (an open create intent, or bulk creates being verified), and the mappings.
        actions = Counter(row["action"] for row in await env.e2e.mappings())
        print(f"\n[crash] {case_id}: killed at {kill_point}; cursor at the kill "
              f"{cursor or '-'}; {len(ledger.sent)} Quo events; converged "
              f"{converged_after:.1f} s after the restart; recovery: "
              f"{case.attio_requests('GET', '/v2/notes') - note_lookups} note lookups, "
              f"{env.quo.count('GET', '/v1/contacts') - contact_lookups} contact lookups; "
              f"mappings {dict(sorted(actions.items()))}")
