"""A strict in-process simulator of Pipedrive's API (v2 persons, organizations and search;
v1 notes, webhooks and users/me).

Used by tests, the benchmark and `crmsync demo`. Behaves like the documented API where it
matters to a sync client: `x-api-token` auth, cursor paging bound to its parameters,
a rolling 2-second burst limit per token (search has its own), a daily token budget
whose exhaustion is a 429 without headers, phones stored as typed, deleted persons
that vanish, and v2 webhooks with Basic auth, retries and merges as delete + change.
See `seed.py` for the mix of seeded persons and `admin.py` for the `/_sim/` routes.
"""

from __future__ import annotations

from crmsync.sim.pipedrive.app import create_pipedrive_app
from crmsync.sim.pipedrive.config import PipedriveSimConfig
from crmsync.sim.pipedrive.delivery import DeliveryAttempt, basic_auth
from crmsync.sim.pipedrive.seed import SeedFacts
from crmsync.sim.pipedrive.server import (
    run_pipedrive_simulator,
    serve_pipedrive_simulator_forever,
)
from crmsync.sim.pipedrive.state import PIPEDRIVE_SIM_KEY, PipedriveSim

__all__ = [
    "PIPEDRIVE_SIM_KEY",
    "DeliveryAttempt",
    "PipedriveSim",
    "PipedriveSimConfig",
    "SeedFacts",
    "basic_auth",
    "create_pipedrive_app",
    "run_pipedrive_simulator",
    "serve_pipedrive_simulator_forever",
]
