"""Settings of the Quo simulator: keys, rate limit, bulk delays, seed and workspace lines.

Defaults mirror the real API (10 requests per second per key, bulk contacts visible
after 1-3 s); tests shrink the delays rather than loosen the rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Quo's 2026-03-30 deliveries: 8 attempts over about 27.5 h (research §2.7).
QUO_RETRY_SCHEDULE = (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)


@dataclass(frozen=True, slots=True, kw_only=True)
class PhoneLine:
    """One of the workspace's own Quo numbers (`GET /v1/phone-numbers`)."""

    id: str
    number: str
    name: str = "Main line"


@dataclass(frozen=True, slots=True, kw_only=True)
class CustomFieldDefinition:
    """A contact custom field defined in the workspace (read-only through the API)."""

    key: str
    name: str
    type: str = "string"


@dataclass(slots=True, kw_only=True)
class QuoSimConfig:
    """Everything a simulator instance needs; every field has a strict, realistic default.

    `count_rejected`: rejected requests also occupy the sliding window, as behind a
    strict gateway, so a client that keeps hammering stays locked out.
    `bulk_visibility_delay`: (min, max) seconds before a bulk-created contact appears.
    `phone_numbers`: None means two seeded lines (`PN…`, +1 E.164) owned by one user.
    `key_activation_delay`: a key answers 401 for this long after it was added.
    `retry_after_header`: add `Retry-After: 1` to rate-limit 429s (Quo sends none).
    `bulk_max_contacts`: reject larger bulk bodies with 400 (None: no documented limit).
    `webhook_retry_schedule`: delay before each attempt of a 2026-03-30 delivery (the
    first is normally immediate); after the last failed attempt the delivery is
    `failed`. Quo's own schedule by default; tests shorten it.
    `api_writes_fire_contact_events`: contact writes through the API fire
    `contact.updated` / `contact.deleted` like edits in the app (Quo does not say).
    """

    api_keys: list[str] = field(default_factory=lambda: ["test-key"])
    requests_per_second: int = 10
    window_seconds: float = 1.0
    count_rejected: bool = True
    retry_after_header: bool = False
    bulk_visibility_delay: tuple[float, float] = (1.0, 3.0)
    bulk_max_contacts: int | None = None
    seed: int = 0
    phone_numbers: list[PhoneLine] | None = None
    custom_fields: list[CustomFieldDefinition] = field(default_factory=list)
    key_activation_delay: float = 0.0
    webhook_retry_schedule: tuple[float, ...] = QUO_RETRY_SCHEDULE
    api_writes_fire_contact_events: bool = True

    def __post_init__(self) -> None:
        if self.requests_per_second < 1:
            raise ValueError("requests_per_second must be at least 1")
        if self.window_seconds <= 0:
            raise ValueError("window_seconds must be positive")
        low, high = self.bulk_visibility_delay
        if low < 0 or high < low:
            raise ValueError("bulk_visibility_delay must be (min, max) with 0 <= min <= max")
        if not self.api_keys:
            raise ValueError("at least one API key is required")
        if not self.webhook_retry_schedule or min(self.webhook_retry_schedule) < 0:
            raise ValueError("webhook_retry_schedule needs at least one delay, none negative")
