"""`RestartBudget`: OTP-style intensity (5 restarts within 30 s), on an injected clock;
the foreground budget (5 in all); `one_for_all` under `supervise`."""

from __future__ import annotations

import asyncio

import pytest

from crmsync.tenant.supervisor import (
    PASS,
    RestartBudget,
    RestartBudgetSpentError,
    foreground_budget,
    one_for_all,
    supervise,
)


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_defaults_are_five_restarts_within_thirty_seconds() -> None:
    budget = RestartBudget()
    assert (budget.max_restarts, budget.within_seconds) == (5, 30.0)


def test_five_restarts_are_allowed_and_the_sixth_spends_the_budget(clock: FakeClock) -> None:
    budget = RestartBudget(max_restarts=5, within_seconds=30, clock=clock)
    for _ in range(5):
        budget.spend()
        clock.advance(1)
    with pytest.raises(RestartBudgetSpentError, match="more than 5 restarts within 30s"):
        budget.spend()


def test_a_spent_budget_stays_spent_while_the_restarts_are_recent(clock: FakeClock) -> None:
    budget = RestartBudget(max_restarts=5, within_seconds=30, clock=clock)
    for _ in range(5):
        budget.spend()
    for _ in range(3):
        with pytest.raises(RestartBudgetSpentError):
            budget.spend()
        clock.advance(5)  # 15 s later: the five restarts are still within 30 s
    with pytest.raises(RestartBudgetSpentError):
        budget.spend()


def test_restarts_older_than_the_window_age_out(clock: FakeClock) -> None:
    budget = RestartBudget(max_restarts=5, within_seconds=30, clock=clock)
    for _ in range(5):
        budget.spend()  # all at t=1000
    clock.advance(30)  # exactly 30 s later they still count
    with pytest.raises(RestartBudgetSpentError):
        budget.spend()
    clock.advance(0.001)  # now they are older than the window
    for _ in range(5):
        budget.spend()
    with pytest.raises(RestartBudgetSpentError):
        budget.spend()


def test_only_the_oldest_restarts_age_out(clock: FakeClock) -> None:
    """1. restarts at t=0, 10, 20, 25, 28  2. at t=31 the first (t=0) has aged out
    3. one more restart fits, a second does not (t=10 is still within 30 s)."""
    budget = RestartBudget(max_restarts=5, within_seconds=30, clock=clock)
    start = clock.now
    for offset in (0, 10, 20, 25, 28):
        clock.now = start + offset
        budget.spend()
    clock.now = start + 31
    budget.spend()
    with pytest.raises(RestartBudgetSpentError):
        budget.spend()
    clock.now = start + 40.5  # t=10 ages out
    budget.spend()


def test_restarts_spread_out_never_spend_the_budget(clock: FakeClock) -> None:
    budget = RestartBudget(max_restarts=5, within_seconds=30, clock=clock)
    for _ in range(100):
        budget.spend()
        clock.advance(7)  # at most 5 restarts in any 30 s


def test_a_budget_of_zero_refuses_the_first_restart(clock: FakeClock) -> None:
    budget = RestartBudget(max_restarts=0, within_seconds=30, clock=clock)
    with pytest.raises(RestartBudgetSpentError):
        budget.spend()


def test_the_foreground_budget_counts_restarts_however_far_apart(clock: FakeClock) -> None:
    """The budget of `crmsync sync`: 5 restarts in all, so slow attempts (an unreachable
    CRM) still end the command; its message names no time window."""
    budget = foreground_budget()
    budget = RestartBudget(max_restarts=budget.max_restarts,
                           within_seconds=budget.within_seconds, clock=clock)
    for _ in range(5):
        budget.spend()
        clock.advance(3600)  # an hour between crashes
    with pytest.raises(RestartBudgetSpentError) as spent:
        budget.spend()
    assert str(spent.value) == "more than 5 restarts"


async def test_one_for_all_restarts_leave_the_supervising_task_uncancelled() -> None:
    """1. `supervise` runs a child that starts two tasks with `one_for_all`; the first
       two times one of them crashes while the other still runs
    2. the third time both finish
    Result: the supervising task has no cancellation pending (on Python 3.11 a crash
    seen while a TaskGroup waits in `__aexit__` leaked one per restart)."""
    attempts = 0

    async def crash_on_first_two() -> None:
        await asyncio.sleep(0)
        if attempts <= 2:
            raise RuntimeError("boom")

    async def child() -> int:
        nonlocal attempts
        attempts += 1
        await one_for_all([("crashing", crash_on_first_two()),
                           ("waiting", asyncio.sleep(0.01))])
        return attempts

    async def supervised() -> tuple[int, int]:
        done = await supervise(child, PASS, RestartBudget(), name="test")
        task = asyncio.current_task()
        assert task is not None
        return done, task.cancelling()

    assert await asyncio.create_task(supervised()) == (3, 0)
