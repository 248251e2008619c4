"""Failures injected into the simulated API, set on `sim.faults` or `POST /_sim/faults`.

The shared faults of `_kit.faults` (500s in Pipedrive's error shape, dropped
connections before and after applying, latency and spikes, tokens revoked as after
they were regenerated), with Pipedrive's own reading of a forced 429: a burst 429
with the rate-limit headers unless `rate_limit_headers` is False (then it looks like a
spent daily budget). `forced_500s` counts the injected 500s; every counter survives
`clear()`.
"""

from __future__ import annotations

from dataclasses import dataclass

from crmsync.sim._kit import faults as kit


@dataclass(slots=True)
class Faults(kit.Faults):
    """Current fault settings of one simulated company, and how often they fired."""

    SHOWN = (
        *kit.COPIED, "rate_limit_active", "rate_limit_headers", "latency", "revoked_keys",
        *kit.COUNTERS, "forced_500s", *kit.WEBHOOKS,
    )

    rate_limit_headers: bool = True  # forced 429s carry the rate-limit headers

    def clear(self) -> None:
        """Remove every fault setting (revoked keys included); keep the counters."""
        kit.Faults.clear(self)  # (no zero-argument super() in a slots dataclass)
        self.rate_limit_headers = True

    def rate_limit_for(self, seconds: float, *, headers: bool = True) -> None:
        """429 every request for the next `seconds`."""
        kit.Faults.rate_limit_for(self, seconds)
        self.rate_limit_headers = headers


class FaultUpdate(kit.FaultUpdate[Faults], kw_only=True):
    """Body of `POST /_sim/faults`; absent fields leave their setting unchanged."""

    WEBHOOK_MODE_ERROR = "webhook_mode must be send or drop"

    rate_limit_headers: bool | None = None

    def apply_rate_limit(self, faults: Faults) -> None:
        if self.rate_limit_seconds is not None:
            faults.rate_limit_for(
                self.rate_limit_seconds,
                headers=True if self.rate_limit_headers is None else self.rate_limit_headers,
            )
        elif self.rate_limit_headers is not None:
            faults.rate_limit_headers = self.rate_limit_headers
