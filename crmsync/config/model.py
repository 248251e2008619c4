"""The config tree (INTERFACE §3) as frozen msgspec Structs.

Ranges, patterns and choices live on the field types (`Meta`), so the
problem-collecting validator (`validate.py`) and msgspec's own decoding enforce
the same rules from one place. A `Meta.extra["error"]` template, when present,
replaces the generic "must match ..." message; `{value}` in it is the rejected
value. Every number has both bounds (a test checks it).

Each table forbids unknown keys and is frozen. The options are repeated on each
class rather than inherited from a base, because mypy only sees `frozen` where
a class states it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

import msgspec

from crmsync.config.secret import Secret
from crmsync.config.state_url import StateUrl

#: the CRMs a tenant may name; `crmsync.adapters.registry` has an adapter for each it
#: supports (config sits below the adapters, so the names live here)
KNOWN_CRMS: tuple[str, ...] = ("attio", "pipedrive", "hubspot")

HttpUrl = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^https?://[^\s/?#]+",
        extra={"error": "must be an http:// or https:// URL, got {value}"},
    ),
]
TenantId = Annotated[
    str,
    msgspec.Meta(
        # \Z, not $: "$" also matches before a trailing newline ("acme\n").
        pattern=r"^[a-z0-9][a-z0-9-]{0,62}\Z",
        extra={
            "error": "invalid tenant id {value} (expected 1-63 lowercase letters, digits "
            "or '-', starting with a letter or digit)"
        },
    ),
]
NonEmptyStr = Annotated[str, msgspec.Meta(min_length=1)]

if TYPE_CHECKING:
    CrmName = str
else:
    # Literal[("a", "b")] is Literal["a", "b"] at runtime, so the registry stays the
    # one list of CRMs; mypy cannot follow that, hence plain str for it.
    CrmName = Annotated[
        Literal[KNOWN_CRMS],
        msgspec.Meta(
            extra={"error": f"unknown CRM {{value}} (expected one of: {', '.join(KNOWN_CRMS)})"}
        ),
    ]


class DaemonConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """`[daemon]`: process-wide settings."""

    # The SQLite file of the state (the embedded default) ...
    state_path: str = "./crmsync.db"
    # ... or, instead (never both), a PostgreSQL database shared by replicas
    # (INTERFACE §10): a URL without a password, or env:NAME / file:PATH holding one
    state_url: StateUrl | None = None
    # With state_url: how long a replica's lease on a group of tenants (all that share a
    # Quo API key) lasts unrenewed. A replica that dies is replaced after at most this;
    # one that cannot reach the database stops those tenants a little before it ends.
    lease_seconds: Annotated[float, msgspec.Meta(ge=3, le=600)] = 30.0
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "text"] = "text"
    shutdown_timeout: Annotated[float, msgspec.Meta(ge=1, le=3600)] = 30.0
    max_error_rate: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.01
    # A failing webhook event is retried with backoff until it is this old (counted
    # from when it was queued), then dead-lettered for `crmsync retry`; 0: at once.
    inbox_retry_hours: Annotated[float, msgspec.Meta(ge=0, le=720)] = 24.0
    # Privacy: processed and ignored webhook events (SMS texts, phone numbers) are
    # deleted after this many days. At least 1: the stored event ids also recognise a
    # sender's redeliveries.
    inbox_retention_days: Annotated[float, msgspec.Meta(ge=1, le=3650)] = 30.0

    @property
    def state_location(self) -> str:
        """What `open_store` opens: the PostgreSQL URL (password included: never print
        it; `crmsync.store.redact` masks it) when `state_url` is set, else `state_path`."""
        return self.state_url.reveal() if self.state_url is not None else self.state_path


class HttpConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """`[http]`: the webhook/metrics listener; port 0 picks a free port."""

    host: NonEmptyStr = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 8787
    public_url: HttpUrl | None = None
    max_body_bytes: Annotated[int, msgspec.Meta(ge=1024, le=64 * 1024 * 1024)] = 1024 * 1024
    # Enables the management API (`/api/…`, INTERFACE §9): `Authorization: Bearer <it>`
    admin_token: Secret | None = None
    # Replicas (a PostgreSQL state): where the other replicas reach this one's listener,
    # to forward a management API request for a tenant this one runs. Default:
    # http://<host>:<bound port>, the machine's name when host is a wildcard address.
    advertise_url: HttpUrl | None = None


class QuoConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """`[quo]`: the Quo (OpenPhone) API client, its rate limit and retries."""

    # v1 REST (contacts, calls, messages); the old host api.openphone.com still answers /v1
    base_url: HttpUrl = "https://api.quo.com/v1"
    requests_per_second: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 10
    # Slack added to the 1-second window, so what the limiter cannot observe (jitter
    # for "send", legs faster than the fastest recent round trip for "adaptive") never
    # lets more than requests_per_second requests land in one server-side second.
    rate_limit_margin: Annotated[float, msgspec.Meta(ge=0, le=0.5)] = 0.02
    # When a request starts occupying the window: "adaptive" (its answer minus the
    # fastest recent round trip: each slot pays its own excess delay, a 429 widens it),
    # "response" (when its answer came back: never over whatever the delays, one
    # round-trip slower per slot) or "send" (when it left: safe only while the one-way
    # delay varies by less than rate_limit_margin). README "The rate limiter".
    rate_limit_basis: Literal["adaptive", "response", "send"] = "adaptive"
    request_timeout: Annotated[float, msgspec.Meta(ge=1, le=600)] = 30.0
    max_retries: Annotated[int, msgspec.Meta(ge=0, le=20)] = 6
    # The longest a 429's Retry-After may pause an API key (Quo's or a CRM's): an API
    # that asks for a day must not silence a tenant that long on one answer.
    max_retry_after: Annotated[float, msgspec.Meta(ge=1, le=3600)] = 120.0
    bulk_create: bool = False
    bulk_batch_size: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 100
    bulk_verify_deadline: Annotated[float, msgspec.Meta(ge=1, le=3600)] = 60.0
    webhook_signature_tolerance: Annotated[float, msgspec.Meta(ge=0, le=86400)] = 300.0
    # Which Quo webhook system crmsync manages (INTERFACE §7): "2026-03-30" (Standard
    # Webhooks; a tenant with legacy webhooks is moved over without a gap) or "legacy"
    # (`/v1/webhooks`, `openphone-signature`). Deliveries of both are accepted always.
    webhooks: Literal["2026-03-30", "legacy"] = "2026-03-30"
    # Where the 2026-03-30 `POST /webhooks` lives (no version in the path)
    webhooks_base_url: HttpUrl = "https://api.quo.com"


class MetakockaConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """`[tenants.metakocka]`: the tenant's link to a Metakocka company (INTERFACE §8)."""

    company_id: Annotated[
        str,
        msgspec.Meta(
            pattern=r"^[0-9]{1,20}\Z",
            extra={"error": "must be Metakocka's numeric company id, got {value}"},
        ),
    ]
    secret_key: Secret
    base_url: HttpUrl = "https://main.metakocka.si/rest/eshop/v1"
    direction: Literal["both", "to_metakocka", "from_metakocka"] = "both"
    # Seconds between re-reads of linked partners and searches for new ones
    poll_interval: Annotated[float, msgspec.Meta(ge=5, le=86400)] = 900.0
    # Document types whose partners are discovered (Metakocka has no partner list)
    discover_from: Annotated[
        tuple[NonEmptyStr, ...], msgspec.Meta(min_length=1, max_length=10)
    ] = ("sales_order",)
    # Import discovered partners as CRM people, or only list them as unsynced
    auto_import: bool = False
    # Metakocka requires an address on create: the country when the CRM has none
    default_country: Annotated[str, msgspec.Meta(min_length=1, max_length=50)] = "Slovenija"


class TenantConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """One `[[tenants]]` entry: a CRM account synced into one Quo workspace."""

    id: TenantId
    crm: CrmName
    quo_api_key: Secret
    crm_api_key: Secret
    crm_base_url: HttpUrl | None = None
    crm_webhook_secret: Secret | None = None
    object_types: Annotated[tuple[NonEmptyStr, ...], msgspec.Meta(min_length=1)] = ("people",)
    page_size: Annotated[int, msgspec.Meta(ge=1, le=500)] = 100
    poll_interval: Annotated[float, msgspec.Meta(ge=5, le=86400)] = 300.0
    enabled: bool = True
    # Edits people make to contacts in the Quo app (INTERFACE §7): "off", "update" (a
    # synced contact's edit reaches its CRM person) or "update_and_create" (a contact
    # made in Quo also becomes a CRM person)
    quo_to_crm: Literal["off", "update", "update_and_create"] = "update"
    # A field changed on both sides since the last sync keeps the CRM's or Quo's value
    conflict: Literal["crm_wins", "quo_wins"] = "crm_wins"
    metakocka: MetakockaConfig | None = None


class Config(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """The whole file; every table is optional and defaults apply."""

    daemon: DaemonConfig = msgspec.field(default_factory=DaemonConfig)
    http: HttpConfig = msgspec.field(default_factory=HttpConfig)
    quo: QuoConfig = msgspec.field(default_factory=QuoConfig)
    tenants: tuple[TenantConfig, ...] = ()

    def tenant(self, tenant_id: str) -> TenantConfig | None:
        """The tenant with this id, or None."""
        return next((t for t in self.tenants if t.id == tenant_id), None)
