"""Failures injected into the simulated Attio API, set on `sim.faults` or `POST /_sim/faults`.

The shared faults of `_kit.faults` hit `/v2` requests (500s in Attio's error shape,
dropped connections before and after applying, latency and spikes, revoked keys), plus
Attio's own:

* a forced 429 (`rate_limit_next` / `rate_limit_for(seconds)`) carries Attio's
  HTTP-date `Retry-After` unless `retry_after` is False;
* `short_page_rate`: a full page of an unfiltered `records/query` listing comes back
  with fewer records although more follow (a client that stops on a short page
  misses the rest); `repeat_page_rate` / `repeat_page_next`: the page before the one
  asked for comes back instead (records seen twice, the asked-for ones not at all).

Counters (`dropped_connections`, `dropped_after_apply`, `latency_spikes`,
`short_pages`, `repeated_pages`, `forced_429s`; 500s and forced 429s also in
`sim.stats.injected_failures`) survive `clear()`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from crmsync.sim._kit import faults as kit
from crmsync.sim._kit.faults import Count, Rate


@dataclass(slots=True)
class Faults(kit.Faults):
    """Current fault settings of one simulated workspace, and how often they fired."""

    SHOWN = (
        "fail_next", "rate_limit_next", "rate_limit_active", "retry_after", "fail_rate",
        "drop_rate", "drop_after_rate", "latency", "spike_rate", "spike_seconds",
        "short_page_rate", "repeat_page_rate", "repeat_page_next", "revoked_keys",
        "drop_webhooks", "webhook_mode", "dropped_connections", "dropped_after_apply",
        "latency_spikes", "short_pages", "repeated_pages", "forced_429s",
    )

    retry_after: bool = True  # forced 429s carry Retry-After (Attio's always do)
    short_page_rate: float = 0.0
    repeat_page_rate: float = 0.0
    repeat_page_next: int = 0
    short_pages: int = 0
    repeated_pages: int = 0

    def clear(self) -> None:
        """Remove every fault setting (revoked keys included); keep the counters."""
        kit.Faults.clear(self)  # (no zero-argument super() in a slots dataclass)
        self.retry_after = True
        self.short_page_rate = self.repeat_page_rate = 0.0
        self.repeat_page_next = 0

    def rate_limit_for(self, seconds: float, *, retry_after: bool = True) -> None:
        """429 every request for the next `seconds`."""
        kit.Faults.rate_limit_for(self, seconds)
        self.retry_after = retry_after

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


class FaultUpdate(kit.FaultUpdate[Faults], kw_only=True):
    """Body of `POST /_sim/faults`; absent fields leave their setting unchanged."""

    COPIED = (*kit.COPIED, "short_page_rate", "repeat_page_rate", "repeat_page_next")

    retry_after: bool | None = None
    short_page_rate: Rate | None = None
    repeat_page_rate: Rate | None = None
    repeat_page_next: Count | None = None
    webhook_mode: Literal["send", "drop"] | None = None

    def apply_rate_limit(self, faults: Faults) -> None:
        if self.rate_limit_seconds is not None:
            faults.rate_limit_for(
                self.rate_limit_seconds,
                retry_after=True if self.retry_after is None else self.retry_after,
            )
        elif self.retry_after is not None:
            faults.retry_after = self.retry_after
