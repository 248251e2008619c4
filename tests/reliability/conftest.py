"""The proof suites print how to replay a failed case: its seeds are in the test id, and
the base seed and the knob that drew them go in front of the command."""

from __future__ import annotations

from collections.abc import Generator

import pytest
from support.reliability import POINTS_ENV, SEED_ENV, base_seed, crash_points

BASE_SEED = base_seed()  # the one the test modules use (drawn once per run)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        command = (f"{SEED_ENV}={BASE_SEED} {POINTS_ENV}={crash_points()} "
                   f"pytest '{item.nodeid}'")
        report.sections.append(("replay this case", command))
    return report
