"""Supervision: restart budgets in the OTP style (e.g. 5 restarts within 30 s).

A child that crashes is restarted while the budget allows; once more than
`max_restarts` happened within `within_seconds`, the budget is spent and the failure
goes up one level (the tenant is marked failed; other tenants are not affected).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable


class RestartBudgetSpentError(Exception):
    """Too many restarts in too short a time."""


class RestartBudget:
    def __init__(
        self,
        *,
        max_restarts: int = 5,
        within_seconds: float = 30.0,
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
            raise RestartBudgetSpentError(
                f"more than {self.max_restarts} restarts within {self.within_seconds:g}s"
            )
        self._restarts.append(now)


def root_cause(error: BaseException) -> BaseException:
    """The first real error inside (possibly nested) exception groups: task groups
    wrap a child's failure, and a nested task group wraps it again."""
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error
