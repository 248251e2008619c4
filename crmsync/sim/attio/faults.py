"""Failures injected into the simulated Attio API, set on `sim.faults` or `POST /_sim/faults`.

Counted faults hit the next N `/v2` requests; rate faults hit each request with a
probability drawn from `rng` (seeded from the simulator's seed, so a run replays):

* `fail_next` / `fail_rate`: 500 in Attio's error shape, nothing applied;
* `rate_limit_next` / `rate_limit_for(seconds)`: 429 even under the limit, with
  Attio's HTTP-date `Retry-After` unless `retry_after` is False;
* `drop_rate`: the connection is aborted before the request is looked at;
* `drop_after_rate`: the request is applied (a note exists), then the connection is
  aborted before the answer: the case exactly-once hinges on;
* `latency` (seconds, or a (min, max) range) and `spike_rate` / `spike_seconds`:
  inbound delay, occasionally long;
* `short_page_rate`: a full page of an unfiltered `records/query` listing comes back
  with fewer records although more follow (a client that stops on a short page
  misses the rest); `repeat_page_rate` / `repeat_page_next`: the page before the one
  asked for comes back instead (records seen twice, the asked-for ones not at all);
* `revoked_keys`: those API keys get 401, as after the token was deleted.

Counters (`dropped_connections`, `dropped_after_apply`, `latency_spikes`,
`short_pages`, `repeated_pages`, `forced_429s`; 500s and forced 429s also in
`sim.stats.injected_failures`) survive `clear()`.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import msgspec

Rate = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
Count = Annotated[int, msgspec.Meta(ge=0)]
Seconds = Annotated[float, msgspec.Meta(ge=0.0, le=600.0)]


@dataclass(slots=True)
class Faults:
    """Current fault settings of one simulated workspace, and how often they fired."""

    fail_next: int = 0  # answer 500
    rate_limit_next: int = 0  # answer 429 even under the limit
    rate_limit_until: float = 0.0  # monotonic time: every request 429 until then
    retry_after: bool = True  # forced 429s carry Retry-After (Attio's always do)
    fail_rate: float = 0.0
    drop_rate: float = 0.0
    drop_after_rate: float = 0.0
    latency: tuple[float, float] | None = None
    spike_rate: float = 0.0
    spike_seconds: float = 0.0
    short_page_rate: float = 0.0
    repeat_page_rate: float = 0.0
    repeat_page_next: int = 0
    revoked_keys: set[str] = field(default_factory=set)
    rng: random.Random = field(default_factory=random.Random)
    dropped_connections: int = 0
    dropped_after_apply: int = 0
    latency_spikes: int = 0
    short_pages: int = 0
    repeated_pages: int = 0
    forced_429s: int = 0

    def clear(self) -> None:
        """Remove every fault setting (revoked keys included); keep the counters."""
        self.fail_next = self.rate_limit_next = 0
        self.rate_limit_until = 0.0
        self.retry_after = True
        self.fail_rate = self.drop_rate = self.drop_after_rate = 0.0
        self.latency = None
        self.spike_rate = self.spike_seconds = 0.0
        self.short_page_rate = self.repeat_page_rate = 0.0
        self.repeat_page_next = 0
        self.revoked_keys = set()

    def rate_limit_for(self, seconds: float, *, retry_after: bool = True) -> None:
        """429 every request for the next `seconds`."""
        self.rate_limit_until = time.monotonic() + seconds
        self.retry_after = retry_after

    def chance(self, rate: float) -> bool:
        """True with probability `rate` (no draw at all when the rate is 0)."""
        return rate > 0.0 and self.rng.random() < rate

    # -- decisions, made by the middleware and the records route -------------------

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

    def page_window(self, offset: int, limit: int, total: int) -> tuple[int, int]:
        """`(start, end)` of the records a listing page answers with (faults applied)."""
        end = min(offset + limit, total)
        if offset > 0 and end - offset == limit and (
            self.repeat_page_next > 0 or self.chance(self.repeat_page_rate)
        ):
            self.repeat_page_next = max(0, self.repeat_page_next - 1)
            self.repeated_pages += 1
            start = max(0, offset - limit)
            return start, start + limit
        if limit > 1 and offset + limit < total and self.chance(self.short_page_rate):
            self.short_pages += 1
            return offset, offset + self.rng.randint(1, limit - 1)
        return offset, end


class FaultUpdate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Body of `POST /_sim/faults`; absent fields leave their setting unchanged."""

    clear: bool = False
    seed: int | None = None
    fail_next: Count | None = None
    rate_limit_next: Count | None = None
    rate_limit_seconds: Seconds | None = None
    retry_after: bool | None = None
    fail_rate: Rate | None = None
    drop_rate: Rate | None = None
    drop_after_rate: Rate | None = None
    # Plain floats: msgspec 0.23 crashes on constrained floats inside a tuple in a union.
    latency: float | tuple[float, float] | msgspec.UnsetType | None = msgspec.UNSET
    spike_rate: Rate | None = None
    spike_seconds: Seconds | None = None
    short_page_rate: Rate | None = None
    repeat_page_rate: Rate | None = None
    repeat_page_next: Count | None = None
    revoke_keys: list[str] | None = None
    restore_keys: list[str] | None = None
    # the webhook deliverer's (`WebhookDeliverer.drop_next` and `.mode`)
    drop_webhooks: Count | None = None
    webhook_mode: Literal["send", "drop"] | None = None

    def __post_init__(self) -> None:
        latency = self.latency
        low, high = latency if isinstance(latency, tuple) else (latency, latency)
        if isinstance(low, float) and isinstance(high, float) and not 0 <= low <= high <= 600:
            raise ValueError("latency must be seconds (0-600) or [min, max] with min <= max")

    def apply(self, faults: Faults) -> None:
        if self.clear:
            faults.clear()
        if self.seed is not None:
            faults.rng.seed(self.seed)
        for name in ("fail_next", "rate_limit_next", "fail_rate", "drop_rate",
                     "drop_after_rate", "spike_rate", "spike_seconds", "short_page_rate",
                     "repeat_page_rate", "repeat_page_next"):
            value = getattr(self, name)
            if value is not None:
                setattr(faults, name, value)
        if self.rate_limit_seconds is not None:
            faults.rate_limit_for(
                self.rate_limit_seconds,
                retry_after=True if self.retry_after is None else self.retry_after,
            )
        elif self.retry_after is not None:
            faults.retry_after = self.retry_after
        if self.latency is not msgspec.UNSET:
            latency = self.latency
            faults.latency = (latency, latency) if isinstance(latency, float) else latency
        faults.revoked_keys |= set(self.revoke_keys or ())
        faults.revoked_keys -= set(self.restore_keys or ())


def fault_settings(faults: Faults, *, drop_webhooks: int, webhook_mode: str) -> dict[str, Any]:
    """The current settings and counters (API keys are never shown, only how many)."""
    return {
        "fail_next": faults.fail_next,
        "rate_limit_next": faults.rate_limit_next,
        "rate_limit_active": faults.rate_limit_until > time.monotonic(),
        "retry_after": faults.retry_after,
        "fail_rate": faults.fail_rate,
        "drop_rate": faults.drop_rate,
        "drop_after_rate": faults.drop_after_rate,
        "latency": list(faults.latency) if faults.latency else None,
        "spike_rate": faults.spike_rate,
        "spike_seconds": faults.spike_seconds,
        "short_page_rate": faults.short_page_rate,
        "repeat_page_rate": faults.repeat_page_rate,
        "repeat_page_next": faults.repeat_page_next,
        "revoked_keys": len(faults.revoked_keys),
        "drop_webhooks": drop_webhooks,
        "webhook_mode": webhook_mode,
        "dropped_connections": faults.dropped_connections,
        "dropped_after_apply": faults.dropped_after_apply,
        "latency_spikes": faults.latency_spikes,
        "short_pages": faults.short_pages,
        "repeated_pages": faults.repeated_pages,
        "forced_429s": faults.forced_429s,
    }
