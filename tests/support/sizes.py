"""One knob for the size of the slow suites: `CRMSYNC_FULL=1` runs them at full size
(the crash suite's 24 kill points, 5 fault rounds, 1000-id API calls); without it they
run in their reduced form, which is what `pytest` and CI run.

    CRMSYNC_FULL=1 pytest -m slow
"""

from __future__ import annotations

import os

FULL_ENV = "CRMSYNC_FULL"
FULL_RUN = f"{FULL_ENV}=1 pytest -m slow"


def full_run() -> bool:
    return os.environ.get(FULL_ENV, "").strip() not in ("", "0")


def sized(reduced: int, full: int) -> int:
    """`full` in a full run, else `reduced`."""
    return full if full_run() else reduced
