"""End-to-end harness: the real `crmsync` CLI in a subprocess against in-process simulators.

`e2e_env(tmp_path, ...)` starts the Quo and Attio simulators in the test's own loop
on free loopback ports, writes a `crmsync.toml` pointing at them (`write_config`, for
any CRM; state database in `tmp_path`), and yields an `E2E` with both sims, the config
path and the environment the CLI needs. The CLI always runs as `python -m crmsync`
through `support.cli` (`asyncio.create_subprocess_exec`), so the simulators keep
serving while it works.

`expected_contact(attio, record_id)` computes what should land in Quo for an Attio
person straight from the simulator's record (INTERFACE §5), independently of the
product's adapter and transform code.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import phonenumbers

from crmsync.sim.attio import AttioSim, AttioSimConfig, run_attio_simulator
from crmsync.sim.quo import QuoSim, QuoSimConfig, run_quo_simulator
from support.cli import Result, cli_env, run_cli, spawn_cli

TENANT = "acme"
QUO_KEY = "quo-e2e-SECRET-key"
ATTIO_KEY = "attio-e2e-SECRET-key"
WRITE_METHODS = frozenset({"POST", "PATCH", "DELETE"})

CONFIG_TEMPLATE = """\
[daemon]
state_path = "{state_path}"
log_level = "info"
max_error_rate = {max_error_rate}
{daemon_extra}
[quo]
base_url = "{quo_url}"
webhooks_base_url = "{quo_root}"
webhooks = "{quo_webhooks}"
requests_per_second = {rps}
{quo_extra}bulk_create = {bulk_create}
bulk_batch_size = {bulk_batch_size}
bulk_verify_deadline = {bulk_verify_deadline}

[[tenants]]
id = "{tenant}"
crm = "{crm}"
quo_api_key = "env:ACME_QUO_KEY"
crm_api_key = "env:{crm_key_env}"
crm_base_url = "{crm_url}"
page_size = {page_size}
{tenant_extra}"""


@dataclass
class E2E:
    """Both simulators, the config file and helpers to run the CLI against them."""

    quo: QuoSim
    attio: AttioSim
    quo_url: str
    attio_url: str
    config_path: Path
    state_path: Path
    env: dict[str, str]
    rps: int
    cli_timeout: float = 60.0

    async def cli(
        self, *args: str, within: float | None = None, env: Mapping[str, str] | None = None
    ) -> Result:
        """`crmsync ARGS -c crmsync.toml` (`env` adds to the environment), checked by
        `run_cli`: no traceback, nothing never awaited, neither API key shown."""
        return await run_cli(
            *args, "-c", str(self.config_path), env={**self.env, **(env or {})},
            within=within or self.cli_timeout, cwd=self.config_path.parent,
            secrets=(QUO_KEY, ATTIO_KEY),
        )

    async def sync(self, *extra: str, within: float | None = None) -> Result:
        return await self.cli("sync", "--tenant", TENANT, *extra, within=within)

    async def spawn_sync(self) -> asyncio.subprocess.Process:
        return await spawn_cli(
            "sync", "--tenant", TENANT, "-c", str(self.config_path),
            env=self.env, cwd=self.config_path.parent,
        )

    async def status(self) -> dict[str, Any]:
        result = await self.cli("status", "--json")
        assert result.code == 0, result.describe()
        tenants = json.loads(result.out)["tenants"]
        (tenant,) = [t for t in tenants if t["id"] == TENANT]
        return dict(tenant)

    async def mappings(self, fmt: str = "jsonl") -> list[dict[str, str]]:
        result = await self.cli("mappings", "--tenant", TENANT, "--format", fmt)
        assert result.code == 0, result.describe()
        if fmt == "csv":
            return list(csv.DictReader(io.StringIO(result.out)))
        return [json.loads(line) for line in result.out.splitlines() if line.strip()]

    async def dead_letters(self) -> list[dict[str, Any]]:
        result = await self.cli("errors", "--tenant", TENANT, "--json")
        assert result.code == 0, result.describe()
        return list(json.loads(result.out)["deadLetters"])

    # -- what the Quo simulator holds and saw --------------------------------------------

    def quo_contacts(self) -> list[dict[str, Any]]:
        return list(self.quo.contacts.contacts.values())

    def contacts_by_external_id(self) -> dict[str, list[dict[str, Any]]]:
        result: dict[str, list[dict[str, Any]]] = {}
        for contact in self.quo_contacts():
            result.setdefault(contact["externalId"], []).append(contact)
        return result

    def request_counts(self) -> Counter[tuple[str, str]]:
        """(method, route template) -> requests answered, any status."""
        counts: Counter[tuple[str, str]] = Counter()
        for (method, route, _status), n in self.quo.stats.requests.items():
            counts[(method, route)] += n
        return counts

    def contact_writes(self) -> int:
        """POST/PATCH/DELETE requests on /v1/contacts* so far (any status)."""
        return sum(
            n for (method, route), n in self.request_counts().items()
            if method in WRITE_METHODS and route.startswith("/v1/contacts")
        )

    def assert_rate_respected(self) -> None:
        window = self.quo.max_in_any_window
        assert all(n <= self.rps for n in window.values()), (
            f"Quo sim saw more than {self.rps} requests in one window: {window} "
            f"({self.quo.rate_limited} 429s)"
        )
        assert self.quo.rate_limited == 0, f"{self.quo.rate_limited} 429s from the Quo sim"


def write_config(
    directory: Path,
    *,
    quo_url: str,
    rps: int,
    crm: str,
    crm_url: str,
    crm_key_env: str,
    page_size: int,
    daemon_options: Mapping[str, str] | None = None,
    quo_options: Mapping[str, str] | None = None,
    tenant_options: Mapping[str, str] | None = None,
    max_error_rate: float = 0.01,
    quo_webhooks: str = "2026-03-30",
    bulk_create: bool = False,
    bulk_batch_size: int = 100,
    bulk_verify_deadline: float = 60.0,
) -> tuple[Path, Path]:
    """`directory/crmsync.toml` for tenant `acme` (the CRM's key in the environment
    variable `crm_key_env`), its database under `directory/state/`: both paths.

    `*_options` add `[daemon]`, `[quo]` and tenant keys, given as TOML literals. The
    file ends inside `[[tenants]]`, so more tenant keys can be appended to it.
    """
    state_path = directory / "state" / "crmsync.db"
    state_path.parent.mkdir()
    config_path = directory / "crmsync.toml"
    config_path.write_text(CONFIG_TEMPLATE.format(
        state_path=state_path,
        max_error_rate=max_error_rate,
        daemon_extra=_toml_keys(daemon_options),
        quo_url=quo_url,
        quo_root=quo_url.removesuffix("/v1"),
        quo_webhooks=quo_webhooks,
        rps=rps,
        quo_extra=_toml_keys(quo_options),
        bulk_create="true" if bulk_create else "false",
        bulk_batch_size=bulk_batch_size,
        bulk_verify_deadline=bulk_verify_deadline,
        tenant=TENANT,
        crm=crm,
        crm_key_env=crm_key_env,
        crm_url=crm_url,
        page_size=page_size,
        tenant_extra=_toml_keys(tenant_options),
    ))
    return config_path, state_path


def _toml_keys(options: Mapping[str, str] | None) -> str:
    return "".join(f"{k} = {v}\n" for k, v in (options or {}).items())


@contextlib.asynccontextmanager
async def e2e_env(
    tmp_path: Path,
    *,
    people: int,
    seed: int = 20261123,
    rps: int = 200,
    quo_options: Mapping[str, str] | None = None,
    daemon_options: Mapping[str, str] | None = None,
    page_size: int = 50,
    bulk_create: bool = False,
    bulk_batch_size: int = 100,
    bulk_verify_deadline: float = 60.0,
    bulk_visibility_delay: tuple[float, float] = (1.0, 3.0),
    max_error_rate: float = 0.01,
    cli_timeout: float = 60.0,
    quo_webhooks: str = "2026-03-30",
    webhook_retry_schedule: tuple[float, ...] | None = None,
) -> AsyncIterator[E2E]:
    """Both simulators on free loopback ports and a config file for tenant `acme`.

    `quo_webhooks` is the config's `quo.webhooks` (the product's default; "legacy" for
    tests of legacy specifics: `deliver_event`, `sim.webhooks`); `webhook_retry_schedule`
    shortens the Quo sim's 2026-03-30 retries.

    The Quo sim enforces the same `rps` as the config; the client's limiter keeps the
    product's defaults (`rate_limit_basis`, `rate_limit_margin`) unless `quo_options`
    adds `[quo]` keys, given as TOML literals (`{"rate_limit_basis": '"send"'}`);
    `daemon_options` adds `[daemon]` keys the same way.
    """
    quo_config = QuoSimConfig(
        api_keys=[QUO_KEY],
        requests_per_second=rps,
        bulk_visibility_delay=bulk_visibility_delay,
        seed=seed,
        **({} if webhook_retry_schedule is None
           else {"webhook_retry_schedule": webhook_retry_schedule}),
    )
    attio_config = AttioSimConfig(api_keys=[ATTIO_KEY], people=people, seed=seed)
    async with (
        run_quo_simulator(config=quo_config) as (quo, quo_url),
        run_attio_simulator(config=attio_config) as (attio, attio_url),
    ):
        config_path, state_path = write_config(
            tmp_path, quo_url=quo_url, rps=rps, crm="attio", crm_url=attio_url,
            crm_key_env="ACME_ATTIO_KEY", page_size=page_size, daemon_options=daemon_options,
            quo_options=quo_options, max_error_rate=max_error_rate, quo_webhooks=quo_webhooks,
            bulk_create=bulk_create, bulk_batch_size=bulk_batch_size,
            bulk_verify_deadline=bulk_verify_deadline,
        )
        env = cli_env({"ACME_QUO_KEY": QUO_KEY, "ACME_ATTIO_KEY": ATTIO_KEY})
        yield E2E(
            quo=quo, attio=attio, quo_url=quo_url, attio_url=attio_url,
            config_path=config_path, state_path=state_path, env=env, rps=rps,
            cli_timeout=cli_timeout,
        )


# -- what an Attio person should look like in Quo (computed independently) --------------


def active_values(values: Any) -> list[dict[str, Any]]:
    return [v for v in values or [] if v.get("active_until") is None]


def _first_active(values: Any) -> dict[str, Any]:
    active = active_values(values)
    return active[0] if active else {}


def e164(typed: str | None, region: str | None) -> str | None:
    """A typed number in E.164 (one without a leading + read in `region`), or None when
    it is not a valid number. Every CRM driver reads the numbers it holds with this."""
    if not typed:
        return None
    try:
        parsed = phonenumbers.parse(typed, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def e164_of(value: Mapping[str, Any]) -> str | None:
    """Attio's E.164 `phone_number` if it has one, else the typed number in its country."""
    normalised = value.get("phone_number")
    if isinstance(normalised, str) and normalised:
        return normalised
    return e164(value.get("original_phone_number"), value.get("country_code"))


def attio_record(attio: AttioSim, record_id: str) -> dict[str, Any]:
    """The person as the Attio API renders it (current values and history)."""
    return attio.render(attio.person(record_id))


@dataclass(frozen=True)
class ExpectedContact:
    external_id: str
    source_url: str | None
    first_name: str | None  # None: any non-empty value derived as `name_hint` says
    last_name: str | None
    full_name: str | None
    company: str | None
    role: str | None
    emails: tuple[str, ...]
    phones: tuple[str, ...]

    @property
    def email_locals(self) -> tuple[str, ...]:
        """What the emails have before the @ (a contact's name may come from them)."""
        return tuple(e.split("@", 1)[0] for e in self.emails)


def expected_contact(attio: AttioSim, record_id: str) -> ExpectedContact:
    raw = attio_record(attio, record_id)
    values = raw["values"]
    name = _first_active(values.get("name"))
    emails = tuple(dict.fromkeys(
        e["email_address"] for e in active_values(values.get("email_addresses"))
        if e.get("email_address")
    ))
    phones = tuple(dict.fromkeys(
        p for p in (e164_of(v) for v in active_values(values.get("phone_numbers"))) if p
    ))
    company = None
    target = _first_active(values.get("company")).get("target_record_id")
    if target:
        company_record = attio.companies.get(target)
        assert company_record is not None, f"dangling company {target}"
        rendered = attio.render(company_record)
        company = _first_active(rendered["values"].get("name")).get("value")
    return ExpectedContact(
        external_id=record_id,
        source_url=raw.get("web_url"),
        first_name=name.get("first_name") or None,
        last_name=name.get("last_name") or None,
        full_name=name.get("full_name") or None,
        company=company,
        role=_first_active(values.get("job_title")).get("value"),
        emails=emails,
        phones=phones,
    )


def assert_contact_matches(
    contact: Mapping[str, Any], expected: ExpectedContact, source: str = "attio"
) -> None:
    """INTERFACE §5 field by field; names follow the documented fallbacks."""
    where = f"contact for {expected.external_id}"
    fields = contact["defaultFields"]
    assert contact["externalId"] == expected.external_id, where
    assert contact["source"] == source, where
    assert contact["sourceUrl"] == expected.source_url, where
    assert fields["company"] == expected.company, where
    assert fields["role"] == expected.role, where
    assert [e["value"] for e in fields["emails"]] == list(expected.emails), where
    assert [p["value"] for p in fields["phoneNumbers"]] == list(expected.phones), where
    for phone in fields["phoneNumbers"]:
        parsed = phonenumbers.parse(phone["value"], None)
        assert phonenumbers.is_valid_number(parsed), f"{where}: {phone['value']}"
    first, last = fields["firstName"], fields["lastName"]
    assert first and first.strip(), f"{where}: empty firstName"
    if expected.first_name:
        assert (first, last) == (expected.first_name, expected.last_name), where
    elif expected.full_name:
        # Full name only: split into first/last, nothing lost.
        shown = " ".join(p for p in (first, last) if p)
        assert shown == expected.full_name, f"{where}: {shown!r} != {expected.full_name!r}"
    elif expected.email_locals:
        assert first == expected.email_locals[0], where
    elif expected.phones:
        assert first == expected.phones[0], where
