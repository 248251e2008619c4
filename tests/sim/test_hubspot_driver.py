"""The HubSpot test driver: the `CrmDriver` shape, its independent expectations and its
forged webhook (well-formed, wrongly signed)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

from support.crm_drivers import CrmDriver
from support.crm_drivers.hubspot import APP_SECRET, start


async def test_driver_expectations_follow_the_stored_contacts() -> None:
    async with start(60, 11) as hubspot:
        driver: CrmDriver = hubspot  # the Protocol, checked by mypy
        sim = hubspot.sim
        assert driver.name == "hubspot" and driver.webhook_secret == APP_SECRET
        assert driver.base_url.startswith("http://127.0.0.1:")
        for record_id in driver.record_ids():
            expected = driver.expected_contact(record_id)
            assert list(expected.phones) == sim.person_phones(record_id)
            assert expected.source_url == sim.web_url(record_id)
        two = sim.facts.two_companies[0]
        primary = sim.contact(two).primary_company
        assert primary is not None
        assert driver.expected_contact(two).company == sim.companies.get(
            primary).properties["name"]  # type: ignore[union-attr]
        typed = sim.facts.company_text_only[0]
        assert driver.expected_contact(typed).company == sim.contact(typed).properties["company"]
        only_email = sim.facts.of("email_only")[0]
        expected = driver.expected_contact(only_email)
        assert expected.first_name is None and len(expected.email_locals) == 1
        new = driver.add_person(first_name="Ana", last_name="Novak",
                                emails=["ana@example.si", "ana@home.si"],
                                phones=["+38640123456", "+386 40 123 456", "+14155550134"],
                                job_title="CEO")
        view = driver.person(new)
        assert view.emails == ("ana@example.si", "ana@home.si")
        assert view.phones == ("+38640123456",)  # the mobile repeats it; a third is not kept
        driver.update_job_title(new, "CTO")
        assert driver.person(new).job_title == "CTO"
        assert new in driver.newest_first()[:1]
        driver.delete_person(new)
        assert new not in driver.record_ids()
        assert driver.notes_of(driver.record_ids()[0]) == []


async def test_forged_webhook_is_well_formed_but_wrongly_signed() -> None:
    async with start(5, 1) as driver:
        url = "http://127.0.0.1:8080/webhooks/acme/crm"
        headers, body = driver.forged_webhook(url)
        (event,) = json.loads(body)
        assert event["subscriptionType"] == "contact.propertyChange"
        message = b"POST" + url.encode() + body + headers["X-HubSpot-Request-Timestamp"].encode()
        right = base64.b64encode(
            hmac.new(APP_SECRET.encode(), message, hashlib.sha256).digest()).decode()
        assert headers["X-HubSpot-Signature-v3"] != right
        assert driver.requests_made() == 0 and driver.rate_limited() == 0
