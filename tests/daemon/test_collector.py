"""`tune_collector`: startup's survivors frozen, a deep young generation.

1. the collector runs with CPython's thresholds and nothing frozen
2. `tune_collector()`
Result: the objects alive at that moment are frozen (no collection walks them), the
young threshold is `YOUNG_THRESHOLD`, the older thresholds are unchanged.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from crmsync.daemon.collector import YOUNG_THRESHOLD, tune_collector


@pytest.fixture
def collector() -> Iterator[None]:
    thresholds = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("collector")
def test_tune_collector_freezes_startup_and_deepens_the_young_generation() -> None:
    gc.unfreeze()
    _, middle, old = gc.get_threshold()
    survivor = [object()]  # a container alive across the call
    tune_collector()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (YOUNG_THRESHOLD, middle, old)
    # Frozen: in the permanent generation, which no collection (and no listing) walks.
    assert all(tracked is not survivor for tracked in gc.get_objects())
