"""`/account-info/v3/`: the portal's details (its id builds record URLs) and daily usage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aiohttp import web

from crmsync.sim.hubspot.errors import json_response
from crmsync.sim.hubspot.state import HUBSPOT_SIM_KEY

routes = web.RouteTableDef()


@routes.get("/account-info/v3/details")
async def details(request: web.Request) -> web.Response:
    sim = request.app[HUBSPOT_SIM_KEY]
    return json_response({
        "portalId": sim.config.portal_id, "timeZone": "US/Eastern",
        "companyCurrency": "USD", "additionalCurrencies": [], "utcOffset": "-05:00",
        "utcOffsetMilliseconds": -18_000_000, "uiDomain": "app.hubspot.com",
        "dataHostingLocation": "na1",
    })


@routes.get("/account-info/v3/api-usage/daily/private-apps")
async def daily_usage(request: web.Request) -> web.Response:
    sim = request.app[HUBSPOT_SIM_KEY]
    token = request.headers.get("Authorization", "").partition(" ")[2].strip()
    now = datetime.now(UTC)
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return json_response({"results": [{
        "name": "private-apps-api-calls-daily", "usageLimit": sim.limiter.daily_limit,
        "currentUsage": sim.limiter.daily_usage(token), "collectedAt": now.isoformat(),
        "fetchStatus": "SUCCESS", "resetsAt": midnight.isoformat(),
    }]})
