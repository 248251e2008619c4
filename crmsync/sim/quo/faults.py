"""Injected faults: 5xx answers, dropped connections, latency and forced 429 bursts.

Tests set them on `sim.faults` directly; subprocess tests POST the same settings as
JSON to `/_sim/faults` (see `FaultUpdate`). A `route` filter is a path or route
template, optionally preceded by a method: `"/v1/contacts/{id}"`, `"POST /v1/contacts"`.

Two ways to ask for a fault, which combine:

- counted: `fail(n)`, `drop(n)`, `drop_after(n)`, `force_429(n)`: the next n requests
  (that match the route filter) get it;
- by rate: `set_rates(fail=0.05, drop=0.01, drop_after=0.01, spike=0.02, ...)`: every
  request (matching `rate_route`) gets each fault with that probability, drawn from
  `rng` (seeded from the simulator's seed, so a run can be replayed; `reseed(n)`).

A dropped connection is aborted either *before* the request reaches the API (nothing
happened; `drop`) or *after* the API applied it (`drop_after`: a create exists, but the
client never hears so, the case exactly-once hinges on). A latency spike adds
`spike_seconds` to a request's inbound delay. Counters (`injected_failures`,
`dropped_connections`, `dropped_after_apply`, `latency_spikes`, `forced_429s`) survive
`clear()`; `fired` counts each kind per HTTP method (`"drop POST"`, `"drop_after GET"`,
`"fail PATCH"`): a client may resend an idempotent request on its own after a dropped
connection (aiohttp does, once), and then never sees that drop.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Annotated

import msgspec

Rate = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
Count = Annotated[int, msgspec.Meta(ge=0)]
Seconds = Annotated[float, msgspec.Meta(ge=0.0, le=600.0)]


def route_matches(route: str | None, method: str, path: str, template: str) -> bool:
    """Whether a fault's route filter selects this request (None selects all)."""
    if route is None:
        return True
    wanted_method, _, wanted_path = route.strip().rpartition(" ")
    if wanted_method and wanted_method.upper() != method.upper():
        return False
    return wanted_path in (path, template)


def _check_rate(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a probability between 0 and 1, got {value}")


@dataclass(slots=True)
class Faults:
    """Current fault settings and how many faults have fired."""

    fail_next: int = 0
    fail_status: int = 500
    fail_route: str | None = None
    drop_next: int = 0
    drop_route: str | None = None
    drop_after_next: int = 0
    drop_after_route: str | None = None
    latency: tuple[float, float] | None = None
    force_429_next: int = 0
    force_429_until: float = 0.0
    force_429_retry_after: float | None = None
    fail_rate: float = 0.0
    drop_rate: float = 0.0
    drop_after_rate: float = 0.0
    spike_rate: float = 0.0
    spike_seconds: float = 0.0
    rate_route: str | None = None
    rng: random.Random = field(default_factory=random.Random)
    injected_failures: int = 0
    dropped_connections: int = 0
    dropped_after_apply: int = 0
    latency_spikes: int = 0
    forced_429s: int = 0
    fired: Counter[str] = field(default_factory=Counter)

    def clear(self) -> None:
        """Remove every fault setting; keep the counters."""
        self.fail_next = self.drop_next = self.drop_after_next = self.force_429_next = 0
        self.fail_status = 500
        self.fail_route = self.drop_route = self.drop_after_route = self.rate_route = None
        self.latency = None
        self.force_429_until = 0.0
        self.force_429_retry_after = None
        self.fail_rate = self.drop_rate = self.drop_after_rate = self.spike_rate = 0.0
        self.spike_seconds = 0.0

    def reseed(self, seed: int) -> None:
        """Replay the rate-based faults' draws from `seed`."""
        self.rng.seed(seed)

    def fail(self, count: int, *, status: int = 500, route: str | None = None) -> None:
        self.fail_next, self.fail_status, self.fail_route = count, status, route

    def drop(self, count: int, *, route: str | None = None) -> None:
        self.drop_next, self.drop_route = count, route

    def drop_after(self, count: int, *, route: str | None = None) -> None:
        """Apply the next `count` requests, then abort their connections unanswered."""
        self.drop_after_next, self.drop_after_route = count, route

    def set_rates(
        self,
        *,
        fail: float = 0.0,
        status: int = 500,
        drop: float = 0.0,
        drop_after: float = 0.0,
        spike: float = 0.0,
        spike_seconds: float = 0.0,
        route: str | None = None,
    ) -> None:
        """Per-request probabilities of each fault (0 switches one off)."""
        for name, value in (("fail", fail), ("drop", drop), ("drop_after", drop_after),
                            ("spike", spike)):
            _check_rate(name, value)
        if spike_seconds < 0:
            raise ValueError("spike_seconds must not be negative")
        self.fail_rate, self.fail_status = fail, status
        self.drop_rate, self.drop_after_rate = drop, drop_after
        self.spike_rate, self.spike_seconds = spike, spike_seconds
        self.rate_route = route

    def set_latency(self, seconds: float | tuple[float, float] | None) -> None:
        """Fixed seconds, a (min, max) range drawn per request, or None for none."""
        if seconds is None or isinstance(seconds, tuple):
            self.latency = seconds
        else:
            self.latency = (seconds, seconds)

    def force_429(
        self,
        count: int = 0,
        *,
        seconds: float = 0.0,
        retry_after: float | None = None,
        clock: float | None = None,
    ) -> None:
        """429 the next `count` requests and/or every request for `seconds`."""
        now = time.monotonic() if clock is None else clock
        self.force_429_next = count
        self.force_429_until = now + seconds if seconds > 0 else 0.0
        self.force_429_retry_after = retry_after

    # -- decisions, made by the gateway middleware ----------------------------------

    def _by_rate(self, rate: float, method: str, path: str, template: str) -> bool:
        return (
            rate > 0.0
            and route_matches(self.rate_route, method, path, template)
            and self.rng.random() < rate
        )

    def take_drop(self, method: str, path: str, template: str) -> bool:
        if self.drop_next > 0 and route_matches(self.drop_route, method, path, template):
            self.drop_next -= 1
        elif not self._by_rate(self.drop_rate, method, path, template):
            return False
        self.dropped_connections += 1
        self.fired[f"drop {method.upper()}"] += 1
        return True

    def take_drop_after(self, method: str, path: str, template: str) -> bool:
        """Whether to abort the connection of a request the API has just applied."""
        if self.drop_after_next > 0 and route_matches(
            self.drop_after_route, method, path, template
        ):
            self.drop_after_next -= 1
        elif not self._by_rate(self.drop_after_rate, method, path, template):
            return False
        self.dropped_after_apply += 1
        self.fired[f"drop_after {method.upper()}"] += 1
        return True

    def take_failure(self, method: str, path: str, template: str) -> int | None:
        if self.fail_next > 0 and route_matches(self.fail_route, method, path, template):
            self.fail_next -= 1
        elif not self._by_rate(self.fail_rate, method, path, template):
            return None
        self.injected_failures += 1
        self.fired[f"fail {method.upper()}"] += 1
        return self.fail_status

    def take_forced_429(self, now: float) -> bool:
        if self.force_429_next > 0:
            self.force_429_next -= 1
        elif now >= self.force_429_until:
            return False
        self.forced_429s += 1
        return True

    def delay(self, rng: random.Random, method: str = "", path: str = "",
              template: str = "") -> float:
        """Inbound delay: the latency setting (drawn from `rng`), plus a spike by rate."""
        seconds = 0.0
        if self.latency is not None:
            low, high = self.latency
            seconds = low if high <= low else rng.uniform(low, high)
        if self._by_rate(self.spike_rate, method, path, template):
            self.latency_spikes += 1
            seconds += self.spike_seconds
        return seconds


class FaultUpdate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Body of `POST /_sim/faults`; absent fields leave their setting unchanged.

    The rate fields (`fail_rate`, `drop_rate`, `drop_after_rate`, `spike_rate`,
    `spike_seconds`, `rate_route`) are set together when any of them is given; `seed`
    restarts their draws.
    """

    clear: bool = False
    seed: int | None = None
    fail_next: Count | None = None
    fail_status: Annotated[int, msgspec.Meta(ge=400, le=599)] = 500
    fail_route: str | None = None
    drop_next: Count | None = None
    drop_route: str | None = None
    drop_after_next: Count | None = None
    drop_after_route: str | None = None
    # Plain floats: msgspec 0.23 crashes on constrained floats inside a tuple in a union.
    latency: float | tuple[float, float] | msgspec.UnsetType | None = msgspec.UNSET
    force_429_next: Count | None = None
    force_429_seconds: Seconds | None = None
    retry_after: Seconds | None = None
    fail_rate: Rate | None = None
    drop_rate: Rate | None = None
    drop_after_rate: Rate | None = None
    spike_rate: Rate | None = None
    spike_seconds: Seconds | None = None
    rate_route: str | None = None

    def __post_init__(self) -> None:
        latency = self.latency
        low, high = latency if isinstance(latency, tuple) else (latency, latency)
        if isinstance(low, float) and isinstance(high, float) and not 0 <= low <= high <= 600:
            raise ValueError("latency must be seconds (0-600) or [min, max] with min <= max")

    def apply(self, faults: Faults) -> None:
        if self.clear:
            faults.clear()
        if self.seed is not None:
            faults.reseed(self.seed)
        if self.fail_next is not None:
            faults.fail(self.fail_next, status=self.fail_status, route=self.fail_route)
        if self.drop_next is not None:
            faults.drop(self.drop_next, route=self.drop_route)
        if self.drop_after_next is not None:
            faults.drop_after(self.drop_after_next, route=self.drop_after_route)
        if self.latency is not msgspec.UNSET:
            faults.set_latency(self.latency)
        if self.force_429_next is not None or self.force_429_seconds is not None:
            faults.force_429(
                self.force_429_next or 0,
                seconds=self.force_429_seconds or 0.0,
                retry_after=self.retry_after,
            )
        rates = (self.fail_rate, self.drop_rate, self.drop_after_rate, self.spike_rate,
                 self.spike_seconds)
        if any(value is not None for value in rates):
            faults.set_rates(
                fail=self.fail_rate or 0.0,
                status=self.fail_status,
                drop=self.drop_rate or 0.0,
                drop_after=self.drop_after_rate or 0.0,
                spike=self.spike_rate or 0.0,
                spike_seconds=self.spike_seconds or 0.0,
                route=self.rate_route,
            )


def fault_settings(faults: Faults) -> dict[str, object]:
    """The current settings and counters, for `/_sim/stats` and `/_sim/faults`."""
    return {
        "fail_next": faults.fail_next,
        "fail_status": faults.fail_status,
        "fail_route": faults.fail_route,
        "drop_next": faults.drop_next,
        "drop_route": faults.drop_route,
        "drop_after_next": faults.drop_after_next,
        "drop_after_route": faults.drop_after_route,
        "latency": list(faults.latency) if faults.latency else None,
        "force_429_next": faults.force_429_next,
        "force_429_active": faults.force_429_until > time.monotonic(),
        "retry_after": faults.force_429_retry_after,
        "fail_rate": faults.fail_rate,
        "drop_rate": faults.drop_rate,
        "drop_after_rate": faults.drop_after_rate,
        "spike_rate": faults.spike_rate,
        "spike_seconds": faults.spike_seconds,
        "rate_route": faults.rate_route,
        "injected_failures": faults.injected_failures,
        "dropped_connections": faults.dropped_connections,
        "dropped_after_apply": faults.dropped_after_apply,
        "latency_spikes": faults.latency_spikes,
        "forced_429s": faults.forced_429s,
        "fired": dict(faults.fired),
    }
