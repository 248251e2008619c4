"""End to end: Quo contact edits flow back to Attio (`crmsync run` as a subprocess, the
2026-03-30 webhooks, both simulators in this process).

Counted on the simulators themselves: Attio record writes (POST/PATCH/PUT on
`/v2/objects/.../records...` and notes) and Quo contact writes (POST/PATCH/DELETE on
`/v1/contacts...`). The Quo simulator fires `contact.updated` for every API write, so
every Quo write the daemon makes comes back to it as an event.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from support.live import (
    TENANT,
    Daemon,
    LiveEnv,
    contact_of,
    live_env,
    notes_of,
    wait_until,
)

from crmsync.sim.attio import AttioSim

pytestmark = pytest.mark.slow

PEOPLE = 20
QUIET_SECONDS = 10.0
CRM_WRITE = re.compile(r"(POST|PATCH|PUT|DELETE) /v2/(objects/\{object\}/records(/\{record_id\})?"
                       r"|notes) ")


def crm_writes(attio: AttioSim) -> int:
    return sum(n for key, n in attio.stats.requests.items() if CRM_WRITE.match(key))


def job_title(attio: AttioSim, record_id: str) -> str | None:
    value = attio.person(record_id).first_active("job_title")
    return None if value is None else str(value["value"])


def tenant_options(env: LiveEnv, **options: str) -> None:
    """Add `[[tenants]]` keys (TOML literals) to the config before the daemon starts."""
    path = env.e2e.config_path
    lines = "".join(f"{key} = {value}\n" for key, value in options.items())
    path.write_text(path.read_text().replace("poll_interval = ", lines + "poll_interval = ", 1))


async def contact_events(daemon: Daemon) -> dict[str, float]:
    """`crmsync_quo_contact_events_total` of the tenant, by outcome."""
    status, text = await daemon.get("/metrics")
    assert status == 200
    found: dict[str, float] = {}
    for match in re.finditer(
        r'^crmsync_quo_contact_events_total\{outcome="(\w+)",tenant="' + TENANT
        + r'"\} ([0-9.e+]+)$', str(text), re.MULTILINE,
    ):
        found[match[1]] = float(match[2])
    return found


async def settled(daemon: Daemon, outcome: str, count: int) -> None:
    async def seen() -> bool:
        return (await contact_events(daemon)).get(outcome, 0) >= count

    await daemon.wait_for(seen, within=30, message=f"{count} contact events {outcome}")


async def reached(condition: Callable[[], bool], *, within: float = 5.0) -> float:
    """Seconds until `condition()` held, polled every 5 ms (fails after `within`)."""
    started = time.perf_counter()
    await wait_until(condition, within=within, interval=0.005, message="reached")
    return time.perf_counter() - started


async def test_a_quo_edit_reaches_attio_fast_and_nothing_echoes(tmp_path: Path) -> None:
    """`conflict = "crm_wins"` (the default).

    1. the daemon syncs 20 people: 20 Quo creates, each firing `contact.updated` back
       at the daemon (its own writes)
    2. Ada's role is edited in the Quo app (`contact.updated`, delivered signed)
    3. nothing else happens for 10 s: the CRM webhook of the daemon's Attio write and
       the Quo events keep arriving and are applied
    4. Bob's role is changed in Attio (its webhook not delivered yet) and in Quo to
       something else: a conflict
    Result: 1 makes no CRM write (20 events "unchanged"); Ada's new role is in Attio
    within a second of the delivery; over the 10 s exactly that one CRM write and zero
    Quo writes; Bob keeps the CRM's role in Attio and Quo gets it (one PATCH).
    """
    async with live_env(tmp_path, people=PEOPLE) as env:
        tenant_options(env, conflict='"crm_wins"')
        async with env.daemon() as daemon:
            e2e, attio = env.e2e, env.attio
            await settled(daemon, "unchanged", PEOPLE)
            assert crm_writes(attio) == 0, attio.stats.requests

            ada, bob = [r.record_id for r in attio.people.ordered()[:2]]
            ada_contact, bob_contact = contact_of(e2e, ada), contact_of(e2e, bob)
            assert ada_contact is not None and bob_contact is not None
            quo_writes = e2e.contact_writes()

            started = time.perf_counter()
            publication = await env.quo.edit_contact_in_app(ada_contact["id"], role="Countess")
            delivered = time.perf_counter()
            assert publication.ok and publication.deliveries, publication
            latency = delivered - started + await reached(
                lambda: job_title(attio, ada) == "Countess")
            print(f"\nQuo edit -> Attio: {latency * 1000:.0f} ms after the edit "
                  f"(delivery took {(delivered - started) * 1000:.0f} ms)")
            assert latency < 1.0

            await asyncio.sleep(QUIET_SECONDS)
            crm_after, quo_after = crm_writes(attio), e2e.contact_writes() - quo_writes
            print(f"over {QUIET_SECONDS:.0f} s: {crm_after} CRM write(s) (the edit),"
                  f" {quo_after} Quo writes; events: {await contact_events(daemon)}")
            assert crm_after == 1, attio.stats.requests
            assert quo_after == 0, e2e.request_counts()
            # The CRM write did come back as Attio's webhook, and was applied (to nothing).
            echoes = [a for a in attio.deliverer.attempts
                      if a.record_id == ada and a.event_type == "record.updated"]
            assert echoes and all(a.status == 200 for a in echoes), echoes

            attio.update_person(bob, job_title="CEO", notify=False)
            await env.quo.edit_contact_in_app(bob_contact["id"], role="Countess")

            def bob_in_quo() -> str | None:
                contact = contact_of(e2e, bob)
                return None if contact is None else contact["defaultFields"]["role"]

            await daemon.wait_for(lambda: bob_in_quo() == "CEO", message="CEO back in Quo")
            assert job_title(attio, bob) == "CEO"
            assert crm_writes(attio) == 1
            await asyncio.sleep(1.0)  # the PATCH's own event comes back: nothing follows
            assert e2e.contact_writes() - quo_writes == 1
            assert crm_writes(attio) == 1
            e2e.assert_rate_respected()


async def test_quo_wins_deletes_unlink_and_contacts_made_in_quo_are_created(
    tmp_path: Path
) -> None:
    """`conflict = "quo_wins"`, `quo_to_crm = "update_and_create"`.

    1. Bob's role is changed in Attio (webhook not delivered) and in Quo: a conflict
    2. Cy's contact is deleted in the Quo app
    3. a contact is made in the Quo app (no externalId)
    Result: Bob's Quo role wins in Attio with no Quo write; Cy stays in Attio with one
    note, and `crmsync mappings` shows the mapping `unlinked`; the new contact becomes an
    Attio person, mapped `linked`, and carries the person's id as its externalId.
    """
    async with live_env(tmp_path, people=PEOPLE) as env:
        tenant_options(env, conflict='"quo_wins"', quo_to_crm='"update_and_create"')
        async with env.daemon() as daemon:
            e2e, attio = env.e2e, env.attio
            await settled(daemon, "unchanged", PEOPLE)
            _, bob, cy = [r.record_id for r in attio.people.ordered()[:3]]
            bob_contact, cy_contact = contact_of(e2e, bob), contact_of(e2e, cy)
            assert bob_contact is not None and cy_contact is not None
            quo_writes = e2e.contact_writes()

            attio.update_person(bob, job_title="CEO", notify=False)
            await env.quo.edit_contact_in_app(bob_contact["id"], role="Countess")
            await daemon.wait_for(lambda: job_title(attio, bob) == "Countess",
                                  message="Quo's role in Attio")
            await settled(daemon, "crm_updated", 1)
            assert e2e.contact_writes() == quo_writes

            await env.quo.delete_contact_in_app(cy_contact["id"])
            await daemon.wait_for(lambda: len(notes_of(attio, cy)) == 1, message="note")
            assert "deleted in Quo" in notes_of(attio, cy)[0]["content_markdown"]
            assert cy in attio.people

            people = len(attio.people)
            made = await env.quo.create_contact_in_app(
                first_name="Grace", last_name="Hopper", phoneNumbers=["+12025550143"])
            made_id = made.resource["id"]
            await daemon.wait_for(lambda: len(attio.people) == people + 1, message="person")
            await daemon.wait_for(
                lambda: env.quo.contacts.contacts[made_id]["externalId"] is not None,
                message="Quo contact linked",
            )
            grace = env.quo.contacts.contacts[made_id]["externalId"]
            assert attio.person(grace).first_active("name")["full_name"] == "Grace Hopper"
            await settled(daemon, "crm_created", 1)

            rows = {m["crmRecordId"]: m for m in await e2e.mappings()}
            assert rows[cy]["action"] == "unlinked"
            assert (rows[grace]["action"], rows[grace]["quoContactId"]) == ("linked", made_id)
            await asyncio.sleep(1.0)  # the link's own events come back: nothing follows
            assert len(attio.people) == people + 1
            assert e2e.contact_writes() == quo_writes + 1  # the link
