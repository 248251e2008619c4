"""A strict in-process simulator of HubSpot's CRM API (contacts, companies, notes,
associations) and of a private app's webhooks.

Used by tests, the benchmark and `crmsync demo`. Behaves like the documented API where
it matters to a sync client: Bearer auth, 100 requests per rolling 10 seconds and 4
searches per second per token (429 bodies with `policyName`, no `Retry-After`),
`after`-cursor listings, a search capped at 10,000 results that lags behind writes,
v4 associations with a primary company, notes attached by association type 202, and
app webhooks batched into arrays, signed with v3 and retried with the same eventIds.
See `seed.py` for the awkward seeded contacts and `admin.py` for the `/_sim/` routes.
"""

from __future__ import annotations

from crmsync.sim.hubspot.app import create_hubspot_app
from crmsync.sim.hubspot.config import HubSpotSimConfig
from crmsync.sim.hubspot.hooks import HookAttempt, HookBatch, sign_v3
from crmsync.sim.hubspot.model import CrmObject
from crmsync.sim.hubspot.seed import SeedFacts
from crmsync.sim.hubspot.server import run_hubspot_simulator, serve_hubspot_simulator_forever
from crmsync.sim.hubspot.state import HUBSPOT_SIM_KEY, EmailConflictError, HubSpotSim

__all__ = [
    "HUBSPOT_SIM_KEY",
    "CrmObject",
    "EmailConflictError",
    "HookAttempt",
    "HookBatch",
    "HubSpotSim",
    "HubSpotSimConfig",
    "SeedFacts",
    "create_hubspot_app",
    "run_hubspot_simulator",
    "serve_hubspot_simulator_forever",
    "sign_v3",
]
