"""`QuoMetrics`: each request counted in its tenant's series, through cached children.

1. one tenant's transport reports two 201s, a 429 and a transport error on one route,
   and waits on both lanes
Result: `crmsync_quo_requests_total` holds 2, 1 and 1 under the right statuses, the
duration histogram 4 observations, the wait counter the seconds of each lane; another
tenant's series are untouched.
"""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from crmsync.net.ratelimit import Lane
from crmsync.quo.client import QuoMetrics

TENANT = "metrics-cache-tenant"


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, {"tenant": TENANT, **labels}) or 0.0


def test_each_answer_lands_in_its_own_series() -> None:
    observer = QuoMetrics(TENANT)
    for status, seconds in ((201, 0.01), (201, 0.02), (429, 0.01), (None, 0.5)):
        observer.answered("POST", "/contacts", status, seconds)
    observer.waited(Lane.BACKFILL, 0.25)
    observer.waited(Lane.BACKFILL, 0.5)
    observer.waited(Lane.LIVE, 0.125)
    requests = "crmsync_quo_requests_total"
    route = {"method": "POST", "route": "/contacts"}
    assert sample(requests, **route, status="201") == 2
    assert sample(requests, **route, status="429") == 1
    assert sample(requests, **route, status="error") == 1
    assert sample("crmsync_quo_request_duration_seconds_count", route="/contacts") == 4
    assert sample("crmsync_quo_request_duration_seconds_sum", route="/contacts") == \
        pytest.approx(0.54)
    wait = "crmsync_rate_limit_wait_seconds_total"
    assert (sample(wait, lane="backfill"), sample(wait, lane="live")) == (0.75, 0.125)
    assert REGISTRY.get_sample_value(
        requests, {"tenant": "another", **route, "status": "201"}) is None
