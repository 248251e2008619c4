"""Failures injected into the simulated HubSpot API, set on `sim.faults` or `POST /_sim/faults`.

The shared faults of `_kit.faults` (500s in HubSpot's error shape, dropped connections
before and after applying, latency and spikes, revoked tokens), with HubSpot's reading
of a forced 429: a `TEN_SECONDLY_ROLLING` 429 even under the limit (a burst from
another app sharing the portal's bucket). Revoked tokens get 401, as after the private
app was deleted.

Webhook faults live on the deliverer (`sim.hooks.drop_next`, `sim.hooks.mode`).
"""

from __future__ import annotations

from dataclasses import dataclass

from crmsync.sim._kit import faults as kit


@dataclass(slots=True)
class Faults(kit.Faults):
    """Current fault settings of one simulated portal, and how often they fired."""


class FaultUpdate(kit.FaultUpdate[Faults], kw_only=True):
    """Body of `POST /_sim/faults`; absent fields leave their setting unchanged."""
