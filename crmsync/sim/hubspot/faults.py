"""Failures injected into the simulated HubSpot API, set on `sim.faults` or `POST /_sim/faults`.

Counted faults hit the next N API requests; rate faults hit each request with a
probability drawn from `rng` (seeded from the simulator's seed, so a run replays):

* `fail_next` / `fail_rate`: 500 in HubSpot's error shape, nothing applied;
* `rate_limit_next` / `rate_limit_for(seconds)`: a `TEN_SECONDLY_ROLLING` 429 even
  under the limit (a burst from another app sharing the portal's bucket);
* `drop_rate`: the connection is aborted before the request is looked at;
* `drop_after_rate`: the request is applied (a note exists), then the connection is
  aborted before the answer;
* `latency` (seconds, or a (min, max) range) and `spike_rate` / `spike_seconds`;
* `revoked_keys`: those tokens get 401, as after the private app was deleted.

Webhook faults live on the deliverer (`sim.hooks.drop_next`, `sim.hooks.mode`).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Annotated, Any

import msgspec

Rate = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
Count = Annotated[int, msgspec.Meta(ge=0)]
Seconds = Annotated[float, msgspec.Meta(ge=0.0, le=600.0)]
SETTINGS = ("fail_next", "rate_limit_next", "fail_rate", "drop_rate", "drop_after_rate",
            "spike_rate", "spike_seconds")


@dataclass(slots=True)
class Faults:
    """Current fault settings of one simulated portal, and how often they fired."""

    fail_next: int = 0
    rate_limit_next: int = 0
    rate_limit_until: float = 0.0  # monotonic: every request 429 until then
    fail_rate: float = 0.0
    drop_rate: float = 0.0
    drop_after_rate: float = 0.0
    latency: tuple[float, float] | None = None
    spike_rate: float = 0.0
    spike_seconds: float = 0.0
    revoked_keys: set[str] = field(default_factory=set)
    rng: random.Random = field(default_factory=random.Random)
    dropped_connections: int = 0
    dropped_after_apply: int = 0
    latency_spikes: int = 0
    forced_429s: int = 0

    def clear(self) -> None:
        """Remove every fault setting (revoked keys included); keep the counters."""
        self.fail_next = self.rate_limit_next = 0
        self.rate_limit_until = 0.0
        self.fail_rate = self.drop_rate = self.drop_after_rate = 0.0
        self.latency = None
        self.spike_rate = self.spike_seconds = 0.0
        self.revoked_keys = set()

    def rate_limit_for(self, seconds: float) -> None:
        self.rate_limit_until = time.monotonic() + seconds

    def chance(self, rate: float) -> bool:
        return rate > 0.0 and self.rng.random() < rate

    def take_drop(self) -> bool:
        if self.chance(self.drop_rate):
            self.dropped_connections += 1
            return True
        return False

    def take_drop_after(self) -> bool:
        if self.chance(self.drop_after_rate):
            self.dropped_after_apply += 1
            return True
        return False

    def take_failure(self) -> bool:
        if self.fail_next > 0:
            self.fail_next -= 1
            return True
        return self.chance(self.fail_rate)

    def take_forced_429(self) -> bool:
        if self.rate_limit_next > 0:
            self.rate_limit_next -= 1
        elif time.monotonic() >= self.rate_limit_until:
            return False
        self.forced_429s += 1
        return True

    def delay(self) -> float:
        seconds = 0.0
        if self.latency is not None:
            low, high = self.latency
            seconds = low if high <= low else self.rng.uniform(low, high)
        if self.chance(self.spike_rate):
            self.latency_spikes += 1
            seconds += self.spike_seconds
        return seconds

    def settings(self) -> dict[str, Any]:
        """The current settings and counters (tokens are never shown, only how many)."""
        return {
            **{name: getattr(self, name) for name in SETTINGS},
            "rate_limit_active": self.rate_limit_until > time.monotonic(),
            "latency": list(self.latency) if self.latency else None,
            "revoked_keys": len(self.revoked_keys),
            "dropped_connections": self.dropped_connections,
            "dropped_after_apply": self.dropped_after_apply,
            "latency_spikes": self.latency_spikes,
            "forced_429s": self.forced_429s,
        }


class FaultUpdate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Body of `POST /_sim/faults`; absent fields leave their setting unchanged."""

    clear: bool = False
    seed: int | None = None
    fail_next: Count | None = None
    rate_limit_next: Count | None = None
    rate_limit_seconds: Seconds | None = None
    fail_rate: Rate | None = None
    drop_rate: Rate | None = None
    drop_after_rate: Rate | None = None
    # Plain floats: msgspec crashes on constrained floats inside a tuple in a union.
    latency: float | tuple[float, float] | msgspec.UnsetType | None = msgspec.UNSET
    spike_rate: Rate | None = None
    spike_seconds: Seconds | None = None
    revoke_keys: list[str] | None = None
    restore_keys: list[str] | None = None
    # the webhook deliverer's (`HookDeliverer.drop_next` and `.mode`)
    drop_webhooks: Count | None = None
    webhook_mode: str | None = None

    def __post_init__(self) -> None:
        latency = self.latency
        low, high = latency if isinstance(latency, tuple) else (latency, latency)
        if isinstance(low, float) and isinstance(high, float) and not 0 <= low <= high <= 600:
            raise ValueError("latency must be seconds (0-600) or [min, max] with min <= max")
        if self.webhook_mode not in (None, "send", "drop"):
            raise ValueError('webhook_mode is "send" or "drop"')

    def apply(self, faults: Faults) -> None:
        if self.clear:
            faults.clear()
        if self.seed is not None:
            faults.rng.seed(self.seed)
        for name in SETTINGS:
            value = getattr(self, name)
            if value is not None:
                setattr(faults, name, value)
        if self.rate_limit_seconds is not None:
            faults.rate_limit_for(self.rate_limit_seconds)
        if self.latency is not msgspec.UNSET:
            latency = self.latency
            faults.latency = (latency, latency) if isinstance(latency, float) else latency
        faults.revoked_keys |= set(self.revoke_keys or ())
        faults.revoked_keys -= set(self.restore_keys or ())
