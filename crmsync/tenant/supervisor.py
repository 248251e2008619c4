"""Supervision, written once: `supervise(child, strategy, budget)`.

A child is a coroutine that runs its actors in one `TaskGroup`, so a crash of any of
them stops all of them: every strategy here is OTP's one_for_all, restarting the whole
group. What differs per level is what a crash may do, and each level has one budget
(OTP-style: at most N restarts within T seconds). A crash is counted at exactly one
level: the one that restarts it.

    level     child                                   budget      on errors
    process   `crmsync run` (daemon/app.py)           systemd's   a bug in the root exits
                                                      start limit non-zero; systemd restarts
    tenant    setup, initial sync, then inbox         5 in 30 s   rejected credentials park
              processor + poller + subscription                   with backoff, uncounted
              keeper (TenantRuntime)
    pass      fetcher, transformer, writer,           5 in 30 s   rejected credentials go
              verifier of one sync pass                           up to the tenant, uncounted
              (SyncPipeline; one budget per tenant
              for all its passes)
    foreground the same actors, for `crmsync sync`     5 in all    as the pass; a spent budget
    pass      (TenantRuntime.sync_once)               (no window) ends the command: exit 1

A spent budget forfeits the tenant: `RestartBudgetSpentError` passes through every
level above uncounted, and the tenant runtime marks the tenant failed; the other
tenants are unaffected. So a pass that keeps crashing fails its tenant after exactly
one budget (6 attempts), never after budget x budget.

Why the foreground pass counts restarts without a window: a sliding window only fills
when crashes come fast. Against an unreachable CRM each attempt lasts as long as its
timeouts and retries (more than 30 s / 5), so a windowed budget never fills and a
command in a terminal would restart forever. The daemon is meant to outlast an outage
(and systemd and the alerts watch it), so its budgets keep their window.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from crmsync import metrics
from crmsync.net.errors import AuthError
from crmsync.net.retry import RetryPolicy

log = logging.getLogger(__name__)

T = TypeVar("T")

#: the tenant's and the pass's budget: more restarts than this within the window fail it
MAX_RESTARTS = 5
WITHIN_SECONDS = 30.0


class RestartBudgetSpentError(Exception):
    """Too many restarts in too short a time: the tenant is forfeited."""


class RestartBudget:
    """At most `max_restarts` restarts within any `within_seconds` (`math.inf`: in all,
    however far apart; see `foreground_budget`)."""

    def __init__(
        self,
        *,
        max_restarts: int = MAX_RESTARTS,
        within_seconds: float = WITHIN_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_restarts = max_restarts
        self.within_seconds = within_seconds
        self._clock = clock
        self._restarts: deque[float] = deque()

    def spend(self) -> None:
        """Record a restart; raise `RestartBudgetSpentError` if that exceeds the budget."""
        now = self._clock()
        while self._restarts and now - self._restarts[0] > self.within_seconds:
            self._restarts.popleft()
        if len(self._restarts) >= self.max_restarts:
            window = "" if math.isinf(self.within_seconds) else (
                f" within {self.within_seconds:g}s"
            )
            raise RestartBudgetSpentError(f"more than {self.max_restarts} restarts{window}")
        self._restarts.append(now)


def foreground_budget() -> RestartBudget:
    """The budget of a pass run in the foreground (`crmsync sync`): MAX_RESTARTS restarts
    in all, without a time window, so a command always ends (see the module docstring)."""
    return RestartBudget(within_seconds=math.inf)


@dataclass(frozen=True, slots=True)
class Strategy:
    """How `supervise` treats a crash of its (one_for_all) child."""

    name: str
    #: errors this level cannot fix: handed to the level above, not counted
    escalate: tuple[type[Exception], ...] = ()
    #: errors that park the child: wait with backoff, then start it again, not counted
    park: tuple[type[Exception], ...] = ()
    park_backoff: RetryPolicy = field(
        default_factory=lambda: RetryPolicy(base_delay=30.0, max_delay=3600.0)
    )
    #: pause before a restart, so that a crash loop never spins
    restart_delay: float = 1.0


#: a sync pass's actors: restart together from the checkpoint; a rejected key is the
#: tenant's business (it parks)
PASS = Strategy("pass: one_for_all", escalate=(AuthError,), restart_delay=0.0)
#: a tenant's live actors: restart together; a rejected key parks the tenant
TENANT = Strategy("tenant: one_for_all, park on rejected credentials", park=(AuthError,))


class Hooks(Protocol):
    """What a supervisor reports to the one writer of the supervised thing's state."""

    async def restarting(self, child: str, error: Exception) -> None: ...

    async def parked(self, child: str, error: Exception, delay: float) -> None: ...


class RestartCounter:
    """Hooks that count restarts in `crmsync_actor_restarts_total{tenant, actor}` and log
    them; a level that parks adds its own `parked`."""

    def __init__(self, tenant: str) -> None:
        self.tenant = tenant

    async def restarting(self, child: str, error: Exception) -> None:
        metrics.actor_restarts.labels(self.tenant, child).inc()
        log.warning("%s crashed (%s); restarting", child, describe(error))

    async def parked(self, child: str, error: Exception, delay: float) -> None:
        log.error("%s parked for %.0fs: %s", child, delay, describe(error))


def root_cause(error: BaseException) -> BaseException:
    """The first real error inside (possibly nested) exception groups: task groups
    wrap a child's failure, and a nested task group wraps it again."""
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


def describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


async def one_for_all(children: Iterable[tuple[str, Coroutine[Any, Any, object]]]) -> None:
    """Run named coroutines as the tasks of one TaskGroup until every one has ended; a
    crash of any cancels the others and is raised (in an exception group).

    The body waits for the tasks itself rather than leaving that to the group's
    `__aexit__`: on Python 3.11 a child that crashes while the group waits in
    `__aexit__` cancels the parent task and never takes that back (the group only
    uncancels for a crash it saw before `__aexit__`). Each crashed and restarted child
    then left one cancellation pending on the task running the supervisor: harmless
    until Ctrl-C, which `asyncio.Runner` took for a second cancellation and turned
    into a `CancelledError` traceback instead of exit 130 (`asyncio.timeout` misreads
    it too). A crash seen while the body waits is uncancelled by the group itself.
    """
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(coro, name=name) for name, coro in children]
        if tasks:
            await asyncio.wait(tasks)


async def supervise(
    child: Callable[[], Awaitable[T]],
    strategy: Strategy,
    budget: RestartBudget,
    *,
    name: str,
    hooks: Hooks | None = None,
) -> T:
    """Run `child()` until it returns; restart it on a crash as `strategy` says.

    Raises what `strategy` escalates, `RestartBudgetSpentError` (with the last error)
    when the budget is spent, and any cancellation as it is.
    """
    report = hooks or RestartCounter("")
    parked = 0
    while True:
        try:
            return await child()
        except Exception as raised:  # the supervision boundary; cancellation passes
            error = root_cause(raised)
            if not isinstance(error, Exception):  # e.g. a cancelled child inside a group
                raise
            if isinstance(error, (RestartBudgetSpentError, *strategy.escalate)):
                raise error from None
            if isinstance(error, strategy.park):
                delay = strategy.park_backoff.base_delay + strategy.park_backoff.backoff(parked)
                parked += 1
                await report.parked(name, error, delay)
                await asyncio.sleep(delay)
                continue
            try:
                budget.spend()
            except RestartBudgetSpentError as spent:
                raise RestartBudgetSpentError(
                    f"{name}: {spent}; last error: {describe(error)}"
                ) from error
            await report.restarting(name, error)
            if strategy.restart_delay:
                await asyncio.sleep(strategy.restart_delay)
