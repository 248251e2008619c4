"""Settings of one Attio simulator instance (plain dataclass, set by tests and the CLI)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class AttioSimConfig:
    """What the simulated workspace looks like and how strictly it is policed.

    Rates follow Attio's published limits (100 reads and 25 writes per second per
    token). Webhook retries are a scaled-down copy of Attio's (10 attempts over ~3 days):
    a few attempts with a short exponential backoff, so tests finish quickly.
    """

    api_keys: list[str] = field(default_factory=lambda: ["attio-test-key"])
    people: int = 0
    seed: int = 1
    read_rate_per_second: int = 100
    write_rate_per_second: int = 25
    workspace_slug: str = "acme"
    workspace_name: str = "Acme Inc."
    # Attio only accepts https:// targets; tests receive webhooks on plain loopback HTTP.
    allow_http_loopback_targets: bool = True
    # Deliver webhooks from background tasks as soon as a record changes. When False,
    # deliveries queue up until `AttioSim.deliver_pending()` is awaited.
    auto_deliver_webhooks: bool = True
    webhook_max_attempts: int = 3
    webhook_retry_delay_seconds: float = 0.05
    webhook_timeout_seconds: float = 5.0
