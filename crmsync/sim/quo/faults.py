"""Injected faults: 5xx answers, dropped connections, latency and forced 429 bursts.

Tests set them on `sim.faults` directly; subprocess tests POST the same settings as
JSON to `/_sim/faults` (see `FaultUpdate`). A `route` filter is a path or route
template, optionally preceded by a method: `"/v1/contacts/{id}"`, `"POST /v1/contacts"`.
Counters (`injected_failures`, `dropped_connections`, `forced_429s`) survive `clear()`.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import msgspec


def route_matches(route: str | None, method: str, path: str, template: str) -> bool:
    """Whether a fault's route filter selects this request (None selects all)."""
    if route is None:
        return True
    wanted_method, _, wanted_path = route.strip().rpartition(" ")
    if wanted_method and wanted_method.upper() != method.upper():
        return False
    return wanted_path in (path, template)


@dataclass(slots=True)
class Faults:
    """Current fault settings and how many faults have fired."""

    fail_next: int = 0
    fail_status: int = 500
    fail_route: str | None = None
    drop_next: int = 0
    drop_route: str | None = None
    latency: tuple[float, float] | None = None
    force_429_next: int = 0
    force_429_until: float = 0.0
    force_429_retry_after: float | None = None
    injected_failures: int = 0
    dropped_connections: int = 0
    forced_429s: int = 0

    def clear(self) -> None:
        """Remove every fault setting; keep the counters."""
        self.fail_next = self.drop_next = self.force_429_next = 0
        self.fail_status = 500
        self.fail_route = self.drop_route = None
        self.latency = None
        self.force_429_until = 0.0
        self.force_429_retry_after = None

    def fail(self, count: int, *, status: int = 500, route: str | None = None) -> None:
        self.fail_next, self.fail_status, self.fail_route = count, status, route

    def drop(self, count: int, *, route: str | None = None) -> None:
        self.drop_next, self.drop_route = count, route

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

    def take_drop(self, method: str, path: str, template: str) -> bool:
        if self.drop_next > 0 and route_matches(self.drop_route, method, path, template):
            self.drop_next -= 1
            self.dropped_connections += 1
            return True
        return False

    def take_failure(self, method: str, path: str, template: str) -> int | None:
        if self.fail_next > 0 and route_matches(self.fail_route, method, path, template):
            self.fail_next -= 1
            self.injected_failures += 1
            return self.fail_status
        return None

    def take_forced_429(self, now: float) -> bool:
        if self.force_429_next > 0:
            self.force_429_next -= 1
        elif now >= self.force_429_until:
            return False
        self.forced_429s += 1
        return True

    def delay(self, rng: random.Random) -> float:
        if self.latency is None:
            return 0.0
        low, high = self.latency
        return low if high <= low else rng.uniform(low, high)


class FaultUpdate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Body of `POST /_sim/faults`; absent fields leave their setting unchanged."""

    clear: bool = False
    fail_next: int | None = None
    fail_status: int = 500
    fail_route: str | None = None
    drop_next: int | None = None
    drop_route: str | None = None
    latency: float | tuple[float, float] | msgspec.UnsetType | None = msgspec.UNSET
    force_429_next: int | None = None
    force_429_seconds: float | None = None
    retry_after: float | None = None

    def apply(self, faults: Faults) -> None:
        if self.clear:
            faults.clear()
        if self.fail_next is not None:
            faults.fail(self.fail_next, status=self.fail_status, route=self.fail_route)
        if self.drop_next is not None:
            faults.drop(self.drop_next, route=self.drop_route)
        if self.latency is not msgspec.UNSET:
            faults.set_latency(self.latency)
        if self.force_429_next is not None or self.force_429_seconds is not None:
            faults.force_429(
                self.force_429_next or 0,
                seconds=self.force_429_seconds or 0.0,
                retry_after=self.retry_after,
            )


def fault_settings(faults: Faults) -> dict[str, object]:
    """The current settings and counters, for `/_sim/stats` and `/_sim/faults`."""
    return {
        "fail_next": faults.fail_next,
        "fail_status": faults.fail_status,
        "fail_route": faults.fail_route,
        "drop_next": faults.drop_next,
        "drop_route": faults.drop_route,
        "latency": list(faults.latency) if faults.latency else None,
        "force_429_next": faults.force_429_next,
        "force_429_active": faults.force_429_until > time.monotonic(),
        "retry_after": faults.force_429_retry_after,
        "injected_failures": faults.injected_failures,
        "dropped_connections": faults.dropped_connections,
        "forced_429s": faults.forced_429s,
    }
