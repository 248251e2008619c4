"""Prometheus metrics (INTERFACE §6). Prefix `crmsync_`; every metric has a `tenant` label.

Label values are bounded: tenant ids, CRM object names, route templates, status codes,
actions and categories — never record ids or phone numbers.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

records_fetched = Counter(
    "crmsync_records_fetched_total", "CRM records fetched", ["tenant", "object"]
)
records_synced = Counter(
    "crmsync_records_synced_total",
    "Records written to Quo, by outcome (created|updated|linked|unchanged|failed|deleted)",
    ["tenant", "action"],
)
quo_requests = Counter(
    "crmsync_quo_requests_total",
    "Quo API requests by method, route template and HTTP status (or 'error')",
    ["tenant", "method", "route", "status"],
)
quo_request_duration = Histogram(
    "crmsync_quo_request_duration_seconds",
    "Quo API request latency, limiter wait excluded",
    ["tenant", "route"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
rate_limit_wait = Counter(
    "crmsync_rate_limit_wait_seconds_total",
    "Seconds spent waiting for the per-key Quo rate limiter",
    ["tenant", "lane"],
)
rate_limited_responses = Counter(
    "crmsync_rate_limited_responses_total", "429 responses received from Quo", ["tenant"]
)
queue_depth = Gauge("crmsync_queue_depth", "Items in an actor queue", ["tenant", "queue"])
webhook_events = Counter(
    "crmsync_webhook_events_total",
    "Webhook deliveries by source (crm|quo) and outcome",
    ["tenant", "source", "outcome"],
)
activities_logged = Counter(
    "crmsync_activities_logged_total", "Notes written to the CRM", ["tenant", "kind"]
)
sync_lag = Gauge(
    "crmsync_sync_lag_seconds", "Age of the oldest unprocessed change", ["tenant"]
)
actor_restarts = Counter(
    "crmsync_actor_restarts_total", "Actor restarts by the tenant supervisor", ["tenant", "actor"]
)
tenant_up = Gauge("crmsync_tenant_up", "1 while the tenant's actors are running", ["tenant"])
# Tenants that share a Quo key share its limit, so the dashboard's utilisation joins
# this onto crmsync_quo_requests_total to sum by key. `key` is the fingerprint
# (net/ratelimit.key_fingerprint), never the key.
tenant_quo_key = Gauge(
    "crmsync_tenant_quo_key",
    "1 for the Quo API key a running tenant uses, by the key's fingerprint",
    ["tenant", "key"],
)
last_successful_sync = Gauge(
    "crmsync_last_successful_sync_timestamp_seconds",
    "Unix time of the tenant's last successful sync",
    ["tenant"],
)
dead_letters = Gauge(
    "crmsync_dead_letters", "Unresolved dead-lettered records", ["tenant", "category"]
)
webhook_subscription_healthy = Gauge(
    "crmsync_webhook_subscription_healthy",
    "1 while a webhook subscription exists at the provider as crmsync registered it",
    ["tenant", "source", "name"],
)
phones_dropped = Counter(
    "crmsync_phones_dropped_total",
    "CRM phone numbers that could not be normalised to E.164 and were left out",
    ["tenant"],
)
quo_deliveries_caught_up = Counter(
    "crmsync_quo_deliveries_caught_up_total",
    "Quo webhook deliveries (2026-03-30) that had failed or were still retrying, and that"
    " crmsync asked Quo to retry (catch-up at start and at every subscription check)",
    ["tenant"],
)
quo_contact_events = Counter(
    "crmsync_quo_contact_events_total",
    "Quo contact.updated / contact.deleted events, by what they did to the CRM"
    " (unchanged|stale|crm_updated|crm_created|linked|unlinked|ignored|rejected)",
    ["tenant", "outcome"],
)
contact_conflicts = Counter(
    "crmsync_contact_conflicts_total",
    "Contact fields changed in Quo and in the CRM since the last sync, by the tenant's"
    " rule that settled them (crm_wins|quo_wins)",
    ["tenant", "rule"],
)
api_requests = Counter(
    "crmsync_api_requests_total",
    "Management API requests (INTERFACE §9) by route template and HTTP status; the"
    " tenant is '_unknown' until the token is checked and the tenant found",
    ["tenant", "route", "status"],
)
metakocka_calls = Counter(
    "crmsync_metakocka_calls_total",
    "Metakocka API calls by endpoint and outcome (ok or the error category)",
    ["tenant", "endpoint", "outcome"],
)
metakocka_partners_synced = Counter(
    "crmsync_metakocka_partners_synced_total",
    "Person ⇄ partner pairs brought up to date, by direction (to_metakocka,"
    " from_metakocka) and action (created, linked, updated, unchanged, imported, failed)",
    ["tenant", "direction", "action"],
)
# Replicas on a PostgreSQL state (daemon/leases.py): leases per Quo-key group.
leases_held = Gauge(
    "crmsync_leases_held", "Quo-key groups of tenants this process holds the lease of"
)
lease_events = Counter(
    "crmsync_lease_events_total",
    "Lease changes by event: taken, released, lost (another replica took it over) or"
    " expired (given up unrenewed: the state database was out of reach)",
    ["event"],
)
