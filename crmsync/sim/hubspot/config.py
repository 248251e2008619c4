"""Settings of one HubSpot simulator instance (plain dataclass, set by tests and the CLI)."""

from __future__ import annotations

from dataclasses import dataclass, field

#: the contact properties the simulated app subscribes to (`contact.propertyChange`)
SUBSCRIBED_PROPERTIES = (
    "firstname", "lastname", "email", "phone", "mobilephone", "jobtitle", "company",
)
DEFAULT_APP_SECRET = "hubspot-app-secret"  # noqa: S105 (a simulator's published default)


@dataclass(slots=True)
class HubSpotSimConfig:
    """What the simulated portal looks like and how strictly it is policed.

    Limits follow HubSpot's Free/Starter private-app tier: 100 requests per rolling 10
    seconds per token, the search endpoints 4 per second on their own, and a daily cap.
    `search_lag` is the eventual consistency of search: a create, update or delete
    becomes visible to `/search` only that many seconds later (the real lag is ~10 s
    after a create and up to a minute after an update; tests keep it 0 unless they
    exercise it).

    Webhooks are the private app's: one target URL (`point_webhooks`) and the app's
    client secret, events batched for `webhook_batch_seconds` (at most 100 per POST),
    retried after each delay of `webhook_retry_schedule` (HubSpot: 10 attempts over a
    day; scaled down so tests finish quickly).
    """

    api_keys: list[str] = field(default_factory=lambda: ["hubspot-test-key"])
    people: int = 0
    seed: int = 1
    portal_id: int = 62515
    app_id: int = 98765
    app_secret: str = DEFAULT_APP_SECRET
    webhook_target_url: str | None = None
    subscribed_properties: tuple[str, ...] = SUBSCRIBED_PROPERTIES
    requests_per_ten_seconds: int = 100
    search_per_second: int = 4
    daily_limit: int = 1_000_000
    #: a 429 still occupies a slot of the window (a client ignoring 429s stays out)
    count_rejected: bool = False
    search_lag: float = 0.0
    webhook_batch_seconds: float = 0.02
    webhook_max_batch: int = 100
    webhook_retry_schedule: tuple[float, ...] = (0.05, 0.1, 0.2)
    webhook_timeout_seconds: float = 5.0
    webhook_max_concurrent: int = 10

    def __post_init__(self) -> None:
        if self.webhook_max_batch < 1 or self.webhook_max_concurrent < 1:
            raise ValueError("webhook_max_batch and webhook_max_concurrent must be >= 1")
        if min(self.webhook_retry_schedule, default=0.0) < 0 or self.search_lag < 0:
            raise ValueError("delays cannot be negative")
