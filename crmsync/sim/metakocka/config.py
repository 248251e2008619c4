"""Settings of one Metakocka simulator (plain dataclasses, set by tests and the CLI)."""

from __future__ import annotations

from dataclasses import dataclass, field

# Metakocka publishes no numbers for its call limit (research §7); generous enough for a
# client that paces itself, small enough that a burst without pacing hits `opr_code 5`.
DEFAULT_CALLS_PER_WINDOW = 50


@dataclass(slots=True)
class CompanyConfig:
    """One Metakocka company: its credentials, its seeded data and its call limit.

    `partners` partners are seeded, and `documents` documents (spread over the
    simulator's `document_types`) referencing some of them, so a client can discover
    partners through `search`. `allowed_ips`, when set, is Metakocka's IP restriction:
    callers from any other address get `opr_code 4`.
    """

    company_id: str
    secret_key: str
    partners: int = 0
    documents: int = 0
    calls_per_window: int = DEFAULT_CALLS_PER_WINDOW
    allowed_ips: list[str] | None = None


def _default_companies() -> list[CompanyConfig]:
    return [CompanyConfig("16", "mk-test-key")]


@dataclass(slots=True)
class MetakockaSimConfig:
    """The companies one simulator serves, and how strictly it behaves.

    - `rate_window_seconds`: the period of every company's `calls_per_window`.
    - `search_latency`: seconds each `search` holds its company's search lock, so
      searches a client did not serialise visibly queue behind each other.
    - `one_element_as_object`: the chance that a one-element list in an answer comes
      back as the bare object (Metakocka does this; 1.0 always, 0.0 never). Drawn from
      a generator seeded from `seed`, so a run replays.
    """

    companies: list[CompanyConfig] = field(default_factory=_default_companies)
    seed: int = 1
    rate_window_seconds: float = 1.0
    search_latency: float = 0.0
    one_element_as_object: float = 0.5
    document_types: tuple[str, ...] = ("sales_order", "sales_bill_domestic", "complaint")
