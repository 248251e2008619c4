"""The faults every simulated CRM injects, and the `POST /_sim/faults` body that sets them.

Counted faults hit the next N API requests; rate faults hit each request with a
probability drawn from `rng` (seeded from the simulator's seed, so a run replays):

* `fail_next` / `fail_rate`: a 500 in the provider's error shape, nothing applied;
* `rate_limit_next` / `rate_limit_for(seconds)`: a 429 even under the limit;
* `drop_rate`: the connection is aborted before the request is looked at;
* `drop_after_rate`: the request is applied (a note exists), then the connection is
  aborted before the answer: the case exactly-once hinges on;
* `latency` (seconds, or a (min, max) range) and `spike_rate` / `spike_seconds`:
  inbound delay, occasionally long;
* `revoked_keys`: those API keys get 401, as after the token was deleted.

Counters (`dropped_connections`, `dropped_after_apply`, `latency_spikes`,
`forced_429s`, `forced_500s`) survive `clear()`. A provider subclasses `Faults` and
`FaultUpdate` for its own quirks (Attio's short and repeated pages, Pipedrive's 429s
without headers) and names, in `SHOWN`, what its `/_sim/faults` shows in which order.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Generic, TypeVar

import msgspec

from crmsync.sim._kit.delivery import DeliveryFaults

Rate = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
Count = Annotated[int, msgspec.Meta(ge=0)]
Seconds = Annotated[float, msgspec.Meta(ge=0.0, le=600.0)]

#: the settings a `FaultUpdate` copies onto the `Faults` as they are
COPIED = (
    "fail_next", "rate_limit_next", "fail_rate", "drop_rate", "drop_after_rate",
    "spike_rate", "spike_seconds",
)
COUNTERS = ("dropped_connections", "dropped_after_apply", "latency_spikes", "forced_429s")
#: the webhook deliverer's settings (`DeliveryFaults`)
WEBHOOKS = ("drop_webhooks", "webhook_mode")
#: what `Faults.settings()` shows, in order
SHOWN = (*COPIED, "rate_limit_active", "latency", "revoked_keys", *COUNTERS, *WEBHOOKS)


@dataclass(slots=True)
class Faults:
    """Current fault settings of one simulated account, and how often they fired."""

    SHOWN: ClassVar[tuple[str, ...]] = SHOWN

    fail_next: int = 0  # answer 500
    rate_limit_next: int = 0  # answer 429 even under the limit
    rate_limit_until: float = 0.0  # monotonic time: every request 429 until then
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
    forced_500s: int = 0

    def clear(self) -> None:
        """Remove every fault setting (revoked keys included); keep the counters."""
        self.fail_next = self.rate_limit_next = 0
        self.rate_limit_until = 0.0
        self.fail_rate = self.drop_rate = self.drop_after_rate = 0.0
        self.latency = None
        self.spike_rate = self.spike_seconds = 0.0
        self.revoked_keys = set()

    def rate_limit_for(self, seconds: float) -> None:
        """429 every request for the next `seconds`."""
        self.rate_limit_until = time.monotonic() + seconds

    def chance(self, rate: float) -> bool:
        """True with probability `rate` (no draw at all when the rate is 0)."""
        return rate > 0.0 and self.rng.random() < rate

    # -- decisions, made by the gateway middleware ----------------------------------

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
        elif not self.chance(self.fail_rate):
            return False
        self.forced_500s += 1
        return True

    def take_forced_429(self) -> bool:
        if self.rate_limit_next > 0:
            self.rate_limit_next -= 1
        elif time.monotonic() >= self.rate_limit_until:
            return False
        self.forced_429s += 1
        return True

    def delay(self) -> float:
        """Inbound delay: the latency setting, plus a spike by rate."""
        seconds = 0.0
        if self.latency is not None:
            low, high = self.latency
            seconds = low if high <= low else self.rng.uniform(low, high)
        if self.chance(self.spike_rate):
            self.latency_spikes += 1
            seconds += self.spike_seconds
        return seconds

    def settings(self, hooks: DeliveryFaults) -> dict[str, Any]:
        """`SHOWN` with its values, the deliverer's (`hooks`) included; API keys are
        never shown, only how many."""
        webhooks = hooks.fault_settings()
        return {name: self._shown(name, webhooks) for name in self.SHOWN}

    def _shown(self, name: str, webhooks: Mapping[str, object]) -> object:
        if name == "rate_limit_active":
            return self.rate_limit_until > time.monotonic()
        if name == "latency":
            return list(self.latency) if self.latency else None
        if name == "revoked_keys":
            return len(self.revoked_keys)
        if name in webhooks:
            return webhooks[name]
        return getattr(self, name)


F = TypeVar("F", bound=Faults)


class FaultUpdate(msgspec.Struct, Generic[F], forbid_unknown_fields=True, kw_only=True):
    """Body of `POST /_sim/faults`; absent fields leave their setting unchanged."""

    #: fields copied as they are onto the `Faults` when given
    COPIED: ClassVar[tuple[str, ...]] = COPIED
    WEBHOOK_MODE_ERROR: ClassVar[str] = 'webhook_mode is "send" or "drop"'

    clear: bool = False
    seed: int | None = None
    fail_next: Count | None = None
    rate_limit_next: Count | None = None
    rate_limit_seconds: Seconds | None = None
    fail_rate: Rate | None = None
    drop_rate: Rate | None = None
    drop_after_rate: Rate | None = None
    # Plain floats: msgspec 0.23 crashes on constrained floats inside a tuple in a union.
    latency: float | tuple[float, float] | msgspec.UnsetType | None = msgspec.UNSET
    spike_rate: Rate | None = None
    spike_seconds: Seconds | None = None
    revoke_keys: list[str] | None = None
    restore_keys: list[str] | None = None
    # the webhook deliverer's (`DeliveryFaults.drop_next` and `.mode`)
    drop_webhooks: Count | None = None
    webhook_mode: str | None = None

    def __post_init__(self) -> None:
        latency = self.latency
        low, high = latency if isinstance(latency, tuple) else (latency, latency)
        if isinstance(low, float) and isinstance(high, float) and not 0 <= low <= high <= 600:
            raise ValueError("latency must be seconds (0-600) or [min, max] with min <= max")
        if self.webhook_mode not in (None, "send", "drop"):
            raise ValueError(self.WEBHOOK_MODE_ERROR)

    def apply(self, faults: F, hooks: DeliveryFaults | None = None) -> None:
        """Change `faults` (and the deliverer's webhook faults, `hooks`) as the body says."""
        if self.clear:
            faults.clear()
        if self.seed is not None:
            faults.rng.seed(self.seed)
        for name in self.COPIED:
            value = getattr(self, name)
            if value is not None:
                setattr(faults, name, value)
        self.apply_rate_limit(faults)
        if self.latency is not msgspec.UNSET:
            latency = self.latency
            faults.latency = (latency, latency) if isinstance(latency, float) else latency
        faults.revoked_keys |= set(self.revoke_keys or ())
        faults.revoked_keys -= set(self.restore_keys or ())
        if hooks is not None:
            self._apply_to_webhooks(hooks)

    def apply_rate_limit(self, faults: F) -> None:
        """Start a forced 429 burst of `rate_limit_seconds` (a provider adds its flags)."""
        if self.rate_limit_seconds is not None:
            faults.rate_limit_for(self.rate_limit_seconds)

    def _apply_to_webhooks(self, hooks: DeliveryFaults) -> None:
        if self.drop_webhooks is not None:
            hooks.drop_next = self.drop_webhooks
        if self.webhook_mode is not None:
            hooks.mode = "drop" if self.webhook_mode == "drop" else "send"
