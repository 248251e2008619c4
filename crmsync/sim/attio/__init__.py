"""A strict in-process simulator of Attio's REST API v2 (people, notes, webhooks).

Used by tests, the benchmark and `crmsync demo`. Behaves like the documented API where
it matters to a sync client: Bearer auth, 100 reads / 25 writes per second with
HTTP-date `Retry-After`, offset-only paging without totals, attribute values with
history, notes that cannot be updated, and HMAC-signed webhooks with idempotency keys.
See `seed.py` for the mix of seeded people and `admin.py` for the `/_sim/` routes.
"""

from __future__ import annotations

from crmsync.sim.attio.app import create_attio_app
from crmsync.sim.attio.config import AttioSimConfig
from crmsync.sim.attio.delivery import DeliveryAttempt, sign
from crmsync.sim.attio.seed import SeedFacts
from crmsync.sim.attio.server import run_attio_simulator, serve_attio_simulator_forever
from crmsync.sim.attio.state import ATTIO_SIM_KEY, AttioSim

__all__ = [
    "ATTIO_SIM_KEY",
    "AttioSim",
    "AttioSimConfig",
    "DeliveryAttempt",
    "SeedFacts",
    "create_attio_app",
    "run_attio_simulator",
    "serve_attio_simulator_forever",
    "sign",
]
