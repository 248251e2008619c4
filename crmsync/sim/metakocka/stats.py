"""`MetakockaSimStats`: every answered call by endpoint, company and outcome.

The outcome is the answer's `opr_code` (`"0"` for success, `add_partner`'s code-less
success included) or `"http NNN"` for an HTML answer (unknown endpoint, wrong method,
injected failure). The company is the `company_id` the body claimed (`"-"` when it had
none), so calls made with the wrong credentials are counted against the company they
named: `count(company_id=..., outcome="3")` is how a test catches credentials mixed up.
"""

from __future__ import annotations

from collections import Counter

NO_COMPANY = "-"


class MetakockaSimStats:
    """Call counters of one simulator; `reset()` zeroes them (data stays)."""

    def __init__(self) -> None:
        self.calls: Counter[tuple[str, str, str]] = Counter()

    def record(self, endpoint: str, company_id: str, outcome: str) -> None:
        self.calls[(endpoint, company_id, outcome)] += 1

    def count(
        self,
        endpoint: str | None = None,
        *,
        company_id: str | None = None,
        outcome: str | None = None,
    ) -> int:
        """Calls matching every given filter, e.g. `count("add_partner", company_id="16")`."""
        return sum(
            n for (e, c, o), n in self.calls.items()
            if (endpoint is None or e == endpoint)
            and (company_id is None or c == company_id)
            and (outcome is None or o == outcome)
        )

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    def by_endpoint(self) -> dict[str, dict[str, dict[str, int]]]:
        """`{"add_partner": {"16": {"0": 3, "5": 1}}, ...}`."""
        result: dict[str, dict[str, dict[str, int]]] = {}
        for (endpoint, company_id, outcome), n in sorted(self.calls.items()):
            result.setdefault(endpoint, {}).setdefault(company_id, {})[outcome] = n
        return result

    def reset(self) -> None:
        self.calls.clear()
