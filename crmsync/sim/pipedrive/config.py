"""Settings of one Pipedrive simulator instance (plain dataclass, set by tests and the CLI)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class PipedriveSimConfig:
    """What the simulated company looks like and how strictly it is policed.

    The burst limit is the Growth plan's API-token limit (40 per rolling 2 s); crmsync's
    adapter budgets the Lite plan's 20, so a sim at 40 catches a client that overshoots
    without being flaky. Search has its own 10 per 2 s on every plan. The daily token
    budget is large by default; tests that exercise it set a small one. Webhook retries
    are a scaled-down schedule (Pipedrive's real one is not documented).
    """

    api_keys: list[str] = field(default_factory=lambda: ["pipedrive-test-key"])
    people: int = 0
    seed: int = 1
    burst_limit: int = 40  # per API token per window
    search_burst_limit: int = 10  # per API token per window, search routes only
    burst_window_seconds: float = 2.0
    # A strict gateway counts rejected requests too, so a client ignoring 429s stays out.
    count_rejected: bool = True
    daily_token_budget: int = 1_000_000_000
    company_id: int = 777
    company_name: str = "Acme"
    company_domain: str = "acme"
    # National-format phones in the company mean this country.
    company_country: str = "US"
    user_id: int = 9
    user_name: str = "Ada Admin"
    user_email: str = "ada@acme.example"
    timezone_name: str = "Europe/Berlin"
    locale: str = "en_US"
    max_webhooks_per_user: int = 40
    # Unknown query parameters and body fields get a 400 (the real API may ignore them;
    # a typo'd parameter silently ignored is exactly the bug a strict sim should show).
    reject_unknown_fields: bool = True
    # Deliver webhooks from background tasks as soon as a person changes. When False,
    # deliveries queue up until `PipedriveSim.deliver_pending()` is awaited.
    auto_deliver_webhooks: bool = True
    # Pause before each retry; attempts = len(delays) + 1.
    webhook_retry_delays: tuple[float, ...] = (0.05, 0.1, 0.2)
    webhook_timeout_seconds: float = 5.0
