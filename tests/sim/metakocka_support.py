"""Helpers of the Metakocka simulator tests: one POST with the credentials in the body."""

from __future__ import annotations

from typing import Any

import aiohttp

COMPANY, KEY = "16", "mk-key-16"
OTHER_COMPANY, OTHER_KEY = "27", "mk-key-27"


async def call(
    http: aiohttp.ClientSession,
    base: str,
    endpoint: str,
    body: dict[str, Any] | None = None,
    *,
    company: str = COMPANY,
    key: str = KEY,
) -> dict[str, Any]:
    """POST `endpoint` with `company_id` + `secret_key`; the JSON answer (always 200)."""
    payload = {"secret_key": key, "company_id": company, **(body or {})}
    async with http.post(f"{base}/{endpoint}", json=payload) as response:
        assert response.status == 200, await response.text()
        assert response.content_type == "application/json"
        answer: dict[str, Any] = await response.json()
        return answer


def as_list(value: Any) -> list[Any]:
    """Metakocka may answer a one-element list as the bare object."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def new_partner(customer: str = "Test Uporabnik", **extra: Any) -> dict[str, Any]:
    """An `add_partner` body as the docs' example sends it."""
    partner = {
        "business_entity": "false", "taxpayer": "false", "buyer": "true",
        "foreign_county": "false", "customer": customer, "street": "Test, 4",
        "post_number": "54375", "place": "Test", "country": "Slovenija",
        "partner_contact": {"name": "Test Kontakt", "gsm": "054367865", "email": "test@test.com"},
        **extra,
    }
    return {"partner": partner}
