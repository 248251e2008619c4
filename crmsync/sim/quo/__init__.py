"""A strict in-process simulator of the Quo (OpenPhone) public API: v1 and the 2026-03-30
webhook system (unprefixed `/webhooks`, Standard Webhooks signatures, delivery log).

It enforces what the real API enforces — raw-key auth, 10 requests per second per key
over a sliding window, Quo's validation and 409 quirks, asynchronous bulk creation —
so tests, benchmarks and `crmsync demo` meet the same failures production would.

    async with run_quo_simulator(config=QuoSimConfig(seed=1)) as (sim, base_url):
        ...  # talk to base_url with Authorization: sim.api_key; inspect sim.snapshot()
        await sim.sms("+14155550100", "hi")  # one occurrence through both webhook systems
"""

from crmsync.sim.quo.app import create_quo_app
from crmsync.sim.quo.config import (
    QUO_RETRY_SCHEDULE,
    CustomFieldDefinition,
    PhoneLine,
    QuoSimConfig,
)
from crmsync.sim.quo.delivery import DeliveryResult, SimEvent
from crmsync.sim.quo.delivery_log_v2 import Attempt, Delivery, SignOverride
from crmsync.sim.quo.faults import Faults
from crmsync.sim.quo.publish import Publication
from crmsync.sim.quo.server import run_quo_simulator, serve_quo_simulator_forever
from crmsync.sim.quo.state import QUO_SIM_KEY, QuoSim
from crmsync.sim.quo.stats import QuoSimStats

__all__ = [
    "QUO_RETRY_SCHEDULE",
    "QUO_SIM_KEY",
    "Attempt",
    "CustomFieldDefinition",
    "Delivery",
    "DeliveryResult",
    "Faults",
    "PhoneLine",
    "Publication",
    "QuoSim",
    "QuoSimConfig",
    "QuoSimStats",
    "SignOverride",
    "SimEvent",
    "create_quo_app",
    "run_quo_simulator",
    "serve_quo_simulator_forever",
]
