"""Run one actor in a test: set it up, feed its inbox, run it to idle, assert.

In the spirit of uvicorn's `tests/utils.py run_server()` and arq's `burst=True`:

    out: asyncio.Queue[WriteMessage] = asyncio.Queue()
    transformer = Transformer(TENANT, adapter=adapter, inbox=IdleQueue(), out=out)
    async with run_actor(transformer) as running:
        await running.feed(RecordBatch(0, records), PageEnd(0, "people", 2, None))
        await running.idle()          # optional: everything fed so far is handled
        await running.feed(EndOfStream())
    assert drain(out) == [...]

`run_actor` starts `actor.start()` (setup → run → teardown) as a task. On a normal
exit it makes sure the actor ran to idle, always against a deadline:

* an actor that ends on `EndOfStream` (`until=None`) must finish by itself;
* a long-running actor (`InboxProcessor`, `Poller`) runs until `until()` says it is
  idle, and is then cancelled, as its supervisor would stop it.

Either way anything the actor raised is raised again in the test, and an actor that
crashes while the test waits is reported at once instead of at the deadline. When the
test body itself fails, the actor is cancelled and the test's error propagates.
Mid-test, `running.idle()` (inbox actors) and `running.wait_for(condition)` (any
actor) wait for a point to look at the store, with the same deadline.

Also here: the cheap real collaborators the actor tests share (a SQLite state store,
the Quo simulator with a `QuoClient`, the Attio simulator with an `AttioAdapter`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import aiohttp

from crmsync.actors.base import Actor
from crmsync.adapters.attio import AttioAdapter
from crmsync.adapters.base import CrmRecord
from crmsync.net.ratelimit import SlidingWindowLimiter, slot_trace_config
from crmsync.net.retry import RetryPolicy
from crmsync.quo.client import QuoClient
from crmsync.sim.attio import AttioSim, AttioSimConfig, run_attio_simulator
from crmsync.sim.quo import QuoSim, QuoSimConfig, run_quo_simulator
from crmsync.store import Store, open_store

T = TypeVar("T")

#: how long an actor may take to reach idle (generous: the machine is shared)
DEADLINE = 5.0

TENANT = "acme"
QUO_KEY = "quo-test-key"
ATTIO_KEY = "attio-test-key"


# -- running one actor -------------------------------------------------------------------


class IdleQueue(asyncio.Queue[T]):
    """An inbox that knows when its consumer is waiting on it, empty.

    Every message put before that moment has been taken *and handled*: an actor that
    handles its messages one at a time only calls `get()` again when it is done with
    the previous one. (Work an actor hands to tasks of its own is not covered.)
    """

    def __init__(self, maxsize: int = 0) -> None:
        super().__init__(maxsize)
        self._consumer_waiting = asyncio.Event()

    def put_nowait(self, item: T) -> None:  # `put()` ends here too
        self._consumer_waiting.clear()
        super().put_nowait(item)

    async def get(self) -> T:
        if self.empty():
            self._consumer_waiting.set()
        item = await super().get()
        self._consumer_waiting.clear()
        return item

    async def consumer_idle(self) -> None:
        """Return once the consumer waits on this queue with nothing left in it."""
        await self._consumer_waiting.wait()


@dataclass
class RunningActor(Generic[T]):
    actor: Actor[T]
    task: asyncio.Task[None]
    within: float

    async def feed(self, *messages: T) -> None:
        """Put messages on the actor's inbox, in order."""
        assert self.actor.inbox is not None, f"{self.actor.name} has no inbox"
        for message in messages:
            await self.actor.inbox.put(message)

    async def idle(self) -> None:
        """Wait until the actor has handled everything fed so far (its inbox must be an
        `IdleQueue`); raises what the actor raised if it crashes meanwhile."""
        inbox = self.actor.inbox
        assert isinstance(inbox, IdleQueue), "idle() needs the actor's inbox to be an IdleQueue"
        await self.wait_for(inbox.consumer_idle(), "get through its inbox")

    async def wait_for(self, condition: Awaitable[object], what: str = "get there") -> None:
        """Wait until `condition` is met, within the deadline; raises what the actor
        raised if it crashes meanwhile (and fails if it ends without meeting it)."""
        if not await _wait(self.task, condition, self.within, f"{self.actor.name} did not {what}"):
            raise AssertionError(f"{self.actor.name} ended before it did {what}")


async def _wait(
    task: asyncio.Task[None], condition: Awaitable[object] | None, within: float, what: str
) -> bool:
    """Wait until `condition` is met (None: until `task` ends) or `task` ends, whichever
    comes first, within a deadline; raises what `task` raised if it ended that way.
    Returns whether the condition was met."""
    waiter = None if condition is None else asyncio.ensure_future(condition)
    try:
        async with asyncio.timeout(within):
            await asyncio.wait({task} if waiter is None else {task, waiter},
                               return_when=asyncio.FIRST_COMPLETED)
        met = waiter is not None and waiter.done()
    except TimeoutError:
        raise AssertionError(f"{what} within {within} s") from None
    finally:
        if waiter is not None and not waiter.done():
            await _cancel(waiter)
    if task.done():
        task.result()  # the actor's own exception, if it crashed
    if met:
        assert waiter is not None
        waiter.result()  # the condition's own exception, if it had one
    return met


async def _cancel(future: asyncio.Future[Any]) -> None:
    """Cancel `future` and wait until it is done (for an actor: its teardown ran, as
    when its supervisor stops it). What it raised instead of stopping is raised here."""
    future.cancel()
    try:
        await future
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise  # the test itself is being cancelled, not only the future


@contextlib.asynccontextmanager
async def run_actor(
    actor: Actor[T],
    *,
    until: Callable[[], Awaitable[object]] | None = None,
    within: float = DEADLINE,
) -> AsyncIterator[RunningActor[T]]:
    """Run `actor.start()` for the body of the `async with`; on exit, run it to idle.

    `until=None`: the actor must end by itself (it saw `EndOfStream`, or had only its
    own work to do) within `within` seconds. Otherwise `until()` returns once the
    long-running actor is idle; the actor is then cancelled.
    """
    task = asyncio.create_task(actor.start(), name=f"test:{actor.name}")
    try:
        yield RunningActor(actor, task, within)
    except BaseException as failure:
        if not task.done():
            await _cancel(task)
        elif not task.cancelled() and (crash := task.exception()) is not None:
            failure.add_note(f"meanwhile {actor.name} had crashed: {crash!r}")
        raise
    try:
        if until is None:
            await _wait(task, None, within,
                        f"{actor.name} did not finish (was it fed EndOfStream?)")
        else:
            await _wait(task, until(), within, f"{actor.name} did not become idle")
    finally:
        if not task.done():
            await _cancel(task)


def drain(queue: asyncio.Queue[T]) -> list[T]:
    """Everything on `queue` now, in order (the queue is left empty)."""
    items: list[T] = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


# -- cheap real collaborators ----------------------------------------------------------


@contextlib.asynccontextmanager
async def state_store(tmp_path: Path) -> AsyncIterator[Store]:
    """A fresh SQLite state database with the test tenant registered."""
    async with open_store(tmp_path / "state.db") as store:
        await store.tenants.upsert(TENANT, "attio")
        yield store


@dataclass
class Quo:
    sim: QuoSim
    client: QuoClient

    def writes(self) -> int:
        """Requests that could change Quo (POST, PATCH, DELETE), whatever their status."""
        return sum(n for (method, _, _), n in self.sim.stats.requests.items()
                   if method in ("POST", "PATCH", "DELETE"))

    def contacts_by_external_id(self) -> dict[str, dict[str, Any]]:
        contacts = list(self.sim.contacts.contacts.values())
        by_id = {c["externalId"]: c for c in contacts}
        assert len(by_id) == len(contacts), "two Quo contacts share an externalId"
        return by_id


@contextlib.asynccontextmanager
async def quo_env(*, client_key: str = QUO_KEY, **config: Any) -> AsyncIterator[Quo]:
    """The Quo simulator (generous rate limit) and a `QuoClient` with quick retries."""
    config.setdefault("requests_per_second", 500)
    async with (
        run_quo_simulator(config=QuoSimConfig(api_keys=[QUO_KEY], **config)) as (sim, url),
        aiohttp.ClientSession(trace_configs=[slot_trace_config()]) as session,
    ):
        client = QuoClient(
            session, base_url=url, api_key=client_key, limiter=SlidingWindowLimiter(500),
            tenant=TENANT, timeout=5,
            retry=RetryPolicy(max_retries=2, base_delay=0.01, max_delay=0.05),
        )
        yield Quo(sim, client)


@dataclass
class Attio:
    sim: AttioSim
    adapter: AttioAdapter

    async def records(self, *record_ids: str) -> list[CrmRecord]:
        """The people as the adapter fetches them, in the order asked for."""
        fetched = {r.record_id: r for r in await self.adapter.fetch_by_ids("people", record_ids)}
        return [fetched[record_id] for record_id in record_ids]

    def people_ids(self) -> list[str]:
        """Every person's id in the order paging returns them: newest first."""
        return [record.record_id for record in reversed(self.sim.people.ordered())]


@contextlib.asynccontextmanager
async def attio_env(people: int = 0) -> AsyncIterator[Attio]:
    """The Attio simulator seeded with `people` people, and an `AttioAdapter` for it."""
    async with (
        run_attio_simulator(config=AttioSimConfig(api_keys=[ATTIO_KEY], people=people))
        as (sim, url),
        aiohttp.ClientSession(trace_configs=[slot_trace_config()]) as session,
    ):
        adapter = AttioAdapter(session, api_key=ATTIO_KEY, base_url=url, timeout=5,
                               retry=RetryPolicy(max_retries=2, base_delay=0.01, max_delay=0.05))
        yield Attio(sim, adapter)
