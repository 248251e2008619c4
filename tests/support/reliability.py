"""Shared by the proof suites in `tests/reliability/`: the knob, seeds, what the simulators
delivered, and the invariants of "nothing lost, nothing twice".

One knob sizes both suites: `CRMSYNC_CRASH_POINTS` (default 5, what CI runs; 24 in a
full run, `CRMSYNC_FULL=1`, see `support/sizes.py`) is the number of kill points of the
crash suite, and the fault suite runs one workload round per 5 of them. The full run of
every slow suite is

    CRMSYNC_FULL=1 pytest -m slow

`CRMSYNC_CRASH_SEED` (default `DEFAULT_SEED`) is the base seed every case's seed is
drawn from; `random` draws a new one, printed. A case's id carries its own seed and a
failure prints the command that replays it.

The invariants, checked against the simulators' state and the CLI's read-only views
(`crmsync status/mappings/errors/inbox`):

* every CRM person is in Quo exactly once (by externalId), as the CRM has it now;
* every mapping points at an existing Quo contact carrying its record id;
* no note twice: per Quo message or call id and person, at most one note carries
  `quo:<id>`; every acknowledged event has its note, once, with the content it added;
* the committed cursor is never ahead of the mapped (or dead-lettered) records;
* every stored webhook event is settled (processed or ignored), none failed.
"""

from __future__ import annotations

import functools
import hashlib
import os
import random
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from crmsync.sim.attio import AttioSim
from crmsync.sim.quo import QuoSim
from crmsync.sim.quo.delivery import SimEvent
from support.e2e import E2E, assert_contact_matches, expected_contact
from support.live import inbox, unique_phones, wait_until
from support.sizes import sized

POINTS_ENV = "CRMSYNC_CRASH_POINTS"
SEED_ENV = "CRMSYNC_CRASH_SEED"
DEFAULT_SEED = 20261207
#: the fault suite runs one workload round per this many kill points of the knob
POINTS_PER_FAULT_ROUND = 5

MARKER = re.compile(r"quo:([A-Za-z0-9_-]+)")
SETTLED = frozenset({"processed", "ignored"})


def crash_points() -> int:
    """How many kill points the crash suite runs (the knob; at least 1)."""
    raw = os.environ.get(POINTS_ENV, "").strip()
    if not raw:
        return sized(5, 24)  # one per phase; a full run (CRMSYNC_FULL=1) 24
    try:
        points = int(raw)
    except ValueError:
        raise ValueError(f"{POINTS_ENV} must be a whole number, got {raw!r}") from None
    if points < 1:
        raise ValueError(f"{POINTS_ENV} must be at least 1, got {points}")
    return points


def fault_rounds() -> int:
    """Workload rounds of the fault suite: one per `POINTS_PER_FAULT_ROUND` kill points."""
    return max(1, -(-crash_points() // POINTS_PER_FAULT_ROUND))


@functools.cache
def base_seed() -> int:
    """`CRMSYNC_CRASH_SEED`: an integer, `random` (a new one, printed, the same for the
    whole run), or the default."""
    raw = os.environ.get(SEED_ENV, "").strip()
    if raw == "random":
        # pytest-xdist's workers each collect the tests: they must draw the same seed,
        # so it comes from the run's id, which xdist gives every worker alike.
        run_id = os.environ.get("PYTEST_XDIST_TESTRUNUID")
        if run_id:
            seed = int(hashlib.sha256(run_id.encode()).hexdigest()[:8], 16) % 2**31 or 1
        else:
            seed = random.SystemRandom().randrange(1, 2**31)
        print(f"{SEED_ENV}={seed}")  # collected before any test: shown with -s
        return seed
    if not raw:
        return DEFAULT_SEED
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{SEED_ENV} must be an integer or 'random', got {raw!r}") from None


def case_seeds(base: int, count: int) -> list[int]:
    """`count` distinct case seeds drawn from `base` (the same base, the same cases)."""
    rng = random.Random(base)
    seeds: list[int] = []
    while len(seeds) < count:
        seed = rng.randrange(100_000, 1_000_000)
        if seed not in seeds:
            seeds.append(seed)
    return seeds


# -- what Quo sent, and what each note must end up holding ---------------------------------


@dataclass
class Activity:
    """A Quo message or call: the people its note belongs on and what it must contain."""

    quo_id: str
    people: tuple[str, ...]
    texts: list[str] = field(default_factory=list)


@dataclass
class Sent:
    """One Quo webhook event and whether a delivery of it was acknowledged (2xx)."""

    event: SimEvent
    activity: Activity
    deliveries: int = 0
    acked: bool = False


class QuoLedger:
    """Quo's side of the bargain: every event is delivered until one delivery is
    acknowledged, as Quo retries an unanswered webhook.

    `tenant` limits deliveries to that tenant's webhooks (a workspace shared by tenants
    in a test would otherwise deliver to every one of them).
    """

    def __init__(self, quo: QuoSim, *, tenant: str | None = None) -> None:
        self.quo = quo
        self.url_part = None if tenant is None else f"/webhooks/{tenant}/"
        self.sent: list[Sent] = []
        self.activities: dict[str, Activity] = {}

    def activity(self, quo_id: str, people: Iterable[str]) -> Activity:
        found = self.activities.get(quo_id)
        if found is None:
            found = self.activities[quo_id] = Activity(quo_id, tuple(people))
        return found

    def event(self, event_type: str, data_object: dict[str, Any], activity: Activity) -> Sent:
        """Serialise an event (delivered later by `deliver`)."""
        event = self.quo.build_event(event_type, data_object)
        self.quo.deliverer.history.append(event)
        sent = Sent(event, activity)
        self.sent.append(sent)
        return sent

    async def deliver(self, sent: Sent) -> bool:
        """One delivery to every subscribed webhook, freshly signed; True once acknowledged.

        The targets are looked up again each time: a webhook re-created since the event
        was built gets it (none at all is not an acknowledgement).
        """
        fresh = self.quo.build_event(
            sent.event.type, _object_of(sent.event), event_id=sent.event.id
        )
        sent.event.targets = [
            t for t in fresh.targets if self.url_part is None or self.url_part in t.url
        ]
        results = await self.quo.redeliver(sent.event, resign=True)
        sent.deliveries += 1
        if results and all(r.ok for r in results):
            sent.acked = True
        return sent.acked

    def unacknowledged(self) -> list[Sent]:
        return [s for s in self.sent if not s.acked]

    async def redeliver_unacknowledged(self) -> int:
        """Deliver every unacknowledged event once more; how many are still not acked."""
        for sent in self.unacknowledged():
            await self.deliver(sent)
        return len(self.unacknowledged())


def _object_of(event: SimEvent) -> dict[str, Any]:
    envelope: dict[str, Any] = msgspec.json.decode(event.body)
    return dict(envelope["data"]["object"])


# -- invariants ----------------------------------------------------------------------------


class InvariantError(AssertionError):
    pass


def ordered_people(attio: AttioSim) -> list[str]:
    """Record ids in the order crmsync pages them: newest first (creation time, then
    id, both descending)."""
    return [record.record_id for record in reversed(attio.people.ordered())]


def marked_notes(attio: AttioSim) -> Counter[tuple[str, str]]:
    """(Quo id, person) → how many of the person's notes carry `quo:<id>`."""
    counts: Counter[tuple[str, str]] = Counter()
    for note in attio.notes.values():
        for quo_id in set(MARKER.findall(str(note.get("content_markdown") or ""))):
            counts[(quo_id, str(note["parent_record_id"]))] += 1
    return counts


def notes_for(attio: AttioSim, quo_id: str, person: str) -> list[dict[str, Any]]:
    pattern = re.compile(re.escape(f"quo:{quo_id}") + r"(?![\w-])")
    return [
        n for n in attio.notes.values()
        if n["parent_record_id"] == person and pattern.search(str(n["content_markdown"]))
    ]


@dataclass
class Expectations:
    """What the converged state must hold besides the simulators' own data."""

    #: CRM people that must not become Quo contacts (dead-lettered for good)
    absent: frozenset[str] = frozenset()
    #: externalIds in the Quo workspace that are not this tenant's (another tenant's)
    foreign: frozenset[str] = frozenset()


def contact_problems(e2e: E2E, expect: Expectations) -> list[str]:
    """Why Quo does not (yet) hold every CRM person exactly once, as the CRM has it now."""
    problems: list[str] = []
    by_external_id = {
        k: v for k, v in e2e.contacts_by_external_id().items() if k not in expect.foreign
    }
    wanted = {r.record_id for r in e2e.attio.people} - expect.absent
    twice = {k: len(v) for k, v in by_external_id.items() if len(v) > 1}
    if twice:
        problems.append(f"contacts more than once: {twice}")
    missing = wanted - by_external_id.keys()
    if missing:
        problems.append(f"{len(missing)} people not in Quo: {sorted(missing)[:5]}")
    extra = by_external_id.keys() - wanted
    if extra:
        problems.append(f"{len(extra)} contacts of no (live) person: {sorted(extra)[:5]}")
    for record_id in sorted(wanted & by_external_id.keys()):
        try:
            assert_contact_matches(by_external_id[record_id][0],
                                   expected_contact(e2e.attio, record_id))
        except AssertionError as exc:
            problems.append(f"stale contact: {exc}")
    return problems


def note_problems(attio: AttioSim, ledger: QuoLedger | None) -> list[str]:
    """Notes twice, and acknowledged activity without its (complete) note."""
    problems = [
        f"{n} notes carry quo:{quo_id} on {person}"
        for (quo_id, person), n in sorted(marked_notes(attio).items()) if n > 1
    ]
    if ledger is None:
        return problems
    acked = {s.activity.quo_id for s in ledger.sent if s.acked}
    for quo_id in sorted(acked):
        activity = ledger.activities[quo_id]
        for person in activity.people:
            notes = notes_for(attio, quo_id, person)
            if len(notes) != 1:
                problems.append(f"{len(notes)} notes of acknowledged {quo_id} on {person}")
                continue
            content = str(notes[0]["content_markdown"])
            lacking = [t for t in activity.texts if t not in content]
            if lacking:
                problems.append(f"note of {quo_id} on {person} lacks {lacking}")
    return problems


def sim_problems(e2e: E2E, ledger: QuoLedger | None, expect: Expectations) -> list[str]:
    """Everything the simulators alone can tell (cheap: polled while converging)."""
    return contact_problems(e2e, expect) + note_problems(e2e.attio, ledger)


async def store_problems(e2e: E2E, expect: Expectations) -> list[str]:
    """What the state store says, read through the CLI: mappings and the inbox."""
    problems: list[str] = []
    contacts = e2e.quo.contacts.contacts
    people = {r.record_id for r in e2e.attio.people}
    live_mappings: dict[str, dict[str, Any]] = {}
    for row in await e2e.mappings():
        if row["action"] == "deleted":
            if row["crmRecordId"] in people:
                problems.append(f"mapping of live person marked deleted: {row}")
            continue
        live_mappings[row["crmRecordId"]] = row
        contact = contacts.get(row["quoContactId"])
        if contact is None:
            problems.append(f"mapping to a contact Quo does not have: {row}")
        elif contact["externalId"] != row["crmRecordId"]:
            problems.append(f"mapping to another person's contact: {row} -> {contact['id']}")
        if row["crmRecordId"] not in people:
            problems.append(f"live mapping of a deleted person: {row}")
    unmapped = people - expect.absent - live_mappings.keys()
    if unmapped:
        problems.append(f"{len(unmapped)} people without a mapping: {sorted(unmapped)[:5]}")
    unsettled = [
        (e["eventId"], e["state"], e.get("lastError")) for e in await inbox(e2e)
        if e["state"] not in SETTLED
    ]
    if unsettled:
        problems.append(f"{len(unsettled)} webhook events not settled: {unsettled[:5]}")
    return problems


async def cursor_problems(
    e2e: E2E, existing: Collection[str] | None = None
) -> tuple[str | None, list[str]]:
    """The committed cursor (from `crmsync status --json`) and the records before it that
    are neither mapped nor dead-lettered (must be none).

    `existing`: the people there were when the pass began. Paging is newest first, so a
    person added since sits above every listed one and moves them one place down: the
    pass's offsets count only the people it could list."""
    status = await e2e.status()
    cursor = ((status["watermark"] or {}).get("people") or {}).get("cursor")
    if not cursor:
        return None, []
    order = [rid for rid in ordered_people(e2e.attio) if existing is None or rid in existing]
    upto = len(order) if cursor == "__done__" else int(cursor)
    settled = {r["crmRecordId"] for r in await e2e.mappings()}
    settled |= {d["crmRecordId"] for d in await e2e.dead_letters()}
    ahead = [rid for rid in order[:upto] if rid not in settled]
    if ahead:
        return cursor, [f"cursor {cursor} is ahead of {len(ahead)} unsettled records: "
                        f"{ahead[:5]}"]
    return cursor, []


def fail(what: str, problems: Collection[str], context: str = "") -> None:
    if problems:
        raise InvariantError(f"{what}:\n  " + "\n  ".join(problems) + context)


class Stopwatch:
    def __init__(self) -> None:
        self.started = time.monotonic()

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started


# -- workloads: CRM changes and Quo activity in a seeded order -------------------------------

Step = Callable[[], Awaitable[None]]


class Workload:
    """A seeded mix of CRM changes and Quo activity for one tenant, run as steps.

    People are chosen so nothing interferes: SMS and calls go to people with a phone
    nobody else has (one note per activity and person), CRM updates and deletes to the
    others, and a person chosen for a delete is never chosen again. Every Quo event goes
    through the ledger (delivered until acknowledged); every Attio change is delivered
    by the simulator (retried, then `redeliver_failed`). `take()` hands over the steps
    planned so far, so one workload can plan several batches.
    """

    def __init__(self, attio: AttioSim, quo: QuoSim, ledger: QuoLedger, rng: random.Random):
        self.attio, self.quo, self.ledger, self.rng = attio, quo, ledger, rng
        phones = unique_phones(attio)
        self._with_phone = sorted(phones.items())
        self._others = sorted({r.record_id for r in attio.people} - phones.keys())
        self.steps: list[tuple[str, Step]] = []
        self._serial = 0

    def _next(self) -> int:
        self._serial += 1
        return self._serial

    def _person_with_phone(self) -> tuple[str, str]:
        if not self._with_phone:
            raise ValueError("no person with a unique phone left for activity")
        return self.rng.choice(self._with_phone)

    def _other_person(self, *, keep: bool = True) -> str:
        """A person for a CRM change; `keep=False` takes them out of the pool (a delete)."""
        if not self._others:
            raise ValueError("no person left for CRM changes")
        person = self.rng.choice(self._others)
        if not keep:
            self._others.remove(person)
        return person

    def sms(self, count: int) -> None:
        for _ in range(count):
            person, phone = self._person_with_phone()
            direction = self.rng.choice(("incoming", "outgoing"))
            text = f"sms {self._next()} {direction} seed{self.rng.randrange(10**6)}"
            self.steps.append((f"sms {person[:8]}", self._sms_step(person, phone, text,
                                                                   direction)))

    def _sms_step(self, person: str, phone: str, text: str, direction: str) -> Step:
        async def step() -> None:
            message = self.quo.add_message(phone, text, direction=direction)
            activity = self.ledger.activity(message["id"], [person])
            activity.texts.append(text)
            kind = "message.received" if direction == "incoming" else "message.delivered"
            await self.ledger.deliver(self.ledger.event(
                kind, self.quo.workspace.message_event_object(message), activity))
        return step

    def calls(self, count: int) -> None:
        """Calls whose call.completed, summary and transcript events come in any order;
        a summary or transcript exists in Quo only once its event is sent."""
        for _ in range(count):
            person, phone = self._person_with_phone()
            n = self._next()
            call = self.quo.add_call([phone], duration=30 + n)
            activity = self.ledger.activity(call["id"], [person])
            summary_line = f"summary of call {n}"
            said = f"transcript line of call {n}"
            activity.texts += [f"quo:{call['id']}", summary_line, said]
            self.steps += [
                (f"call.completed {n}", self._call_step(call, activity)),
                (f"call.summary {n}", self._summary_step(call, activity, summary_line)),
                (f"call.transcript {n}", self._transcript_step(call, activity, phone, said)),
            ]

    def _call_step(self, call: dict[str, Any], activity: Activity) -> Step:
        async def step() -> None:
            await self.ledger.deliver(self.ledger.event(
                "call.completed", self.quo.workspace.call_event_object(call), activity))
        return step

    def _summary_step(self, call: dict[str, Any], activity: Activity, line: str) -> Step:
        async def step() -> None:
            summary = self.quo.add_call_summary(call["id"], [line])
            await self.ledger.deliver(self.ledger.event(
                "call.summary.completed", self.quo.workspace.summary_event_object(summary),
                activity))
        return step

    def _transcript_step(
        self, call: dict[str, Any], activity: Activity, phone: str, said: str
    ) -> Step:
        async def step() -> None:
            transcript = self.quo.add_call_transcript(call["id"], [(said, phone), ("ok", None)])
            await self.ledger.deliver(self.ledger.event(
                "call.transcript.completed",
                self.quo.workspace.transcript_event_object(transcript), activity))
        return step

    def crm_changes(self, *, updates: int, adds: int = 0, deletes: int = 0) -> None:
        for _ in range(deletes):  # first: the people updated below are not among them
            person = self._other_person(keep=False)
            self.steps.append((f"delete {person[:8]}", self.sync_step(
                lambda p=person: self.attio.delete_person(p))))
        for _ in range(updates):
            person = self._other_person()
            title = f"Title {self._next()}"
            self.steps.append((f"update {person[:8]}", self.sync_step(
                lambda p=person, t=title: self.attio.update_person(p, job_title=t))))
        for _ in range(adds):
            n = self._next()
            self.steps.append((f"add person {n}", self.sync_step(
                lambda n=n: self.attio.add_person(
                    first_name=f"New{n}", last_name="Person", emails=[f"new{n}@example.com"],
                    job_title=f"Joined {n}"))))

    @staticmethod
    def sync_step(change: Callable[[], object]) -> Step:
        async def step() -> None:
            change()  # the simulator delivers its webhook in the background
        return step

    def shuffle(self) -> None:
        self.rng.shuffle(self.steps)

    def take(self) -> list[tuple[str, Step]]:
        """The steps planned so far (the workload starts a new batch)."""
        steps, self.steps = self.steps, []
        return steps

    async def run(self, steps: list[tuple[str, Step]] | None = None) -> None:
        """Every step (default: those planned) in order, each after the previous one's
        delivery returned."""
        for _, step in self.steps if steps is None else steps:
            await step()

    def acknowledged(self) -> int:
        """Deliveries acknowledged so far: Quo events plus Attio messages."""
        attio = {a.idempotency_key for a in self.attio.deliverer.attempts if a.ok}
        return sum(s.acked for s in self.ledger.sent) + len(attio)

    @property
    def deliveries(self) -> int:
        """Deliveries the workload makes (one per Quo event and Attio change; an update
        may change nothing and send none)."""
        return len(self.steps)


async def deliver_everything(attio: AttioSim, ledger: QuoLedger) -> None:
    """Until every Quo event and Attio message was acknowledged once (or a deadline),
    delivering the unacknowledged ones again, as their senders retry."""

    async def all_acknowledged() -> bool:
        quo_left = await ledger.redeliver_unacknowledged()
        await attio.deliver_pending()  # lets running deliveries and their retries end
        if attio.deliverer.unacknowledged():
            await attio.redeliver_failed()
        return quo_left == 0 and not attio.deliverer.unacknowledged()

    await wait_until(all_acknowledged, within=30, interval=0.1,
                     message="every webhook acknowledged")
