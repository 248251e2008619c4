"""What `crmsync demo` needs of a running simulator (`crms.CrmSimulator`), as a mixin.

Record ids are the API's integer ids as strings; phones in E.164 are computed the way a
client should (national numbers in the company's country); webhooks are created by
crmsync through the API, so `point_webhooks` has nothing to do; `try_lines` are curl
lines for the `--keep-running` hints.
"""

from __future__ import annotations

from crmsync.sim.crms import TryLine
from crmsync.sim.pipedrive import phones
from crmsync.sim.pipedrive.config import PipedriveSimConfig
from crmsync.sim.pipedrive.store import PersonStore, sort_key


class DemoMixin:
    persons: PersonStore
    config: PipedriveSimConfig

    def record_ids(self) -> list[str]:
        """Every live person, by id."""
        return [str(p.id) for p in sorted(self.persons.all_live(), key=lambda p: p.id)]

    def newest_first(self) -> list[str]:
        """Every live person, most recently added first (`sort_by=add_time&
        sort_direction=desc`; ties of the same second by id, highest first)."""
        live = sorted(self.persons.all_live(), key=lambda p: sort_key(p, "add_time"),
                      reverse=True)
        return [str(p.id) for p in live]

    def person_phones(self, record_id: str) -> list[str]:
        person = self.persons.live(int(record_id))
        if person is None:
            raise KeyError(record_id)
        return phones.valid_e164s(person.phone_values(), self.config.company_country)

    def web_url(self, record_id: str) -> str:
        return f"https://{self.config.company_domain}.pipedrive.com/person/{record_id}"

    def point_webhooks(self, url: str) -> None:
        """Nothing to do: crmsync creates Pipedrive webhooks through the API."""

    def try_lines(self, crm_url: str, api_key: str, record_id: str) -> dict[str, TryLine]:
        root = crm_url.rstrip("/")
        auth = f"-H 'x-api-token: {api_key}'"
        return {
            "notes": TryLine(
                "the person's notes in Pipedrive (SMS and calls logged by crmsync)",
                f"curl -s {auth} '{root}/v1/notes?person_id={record_id}'",
            ),
            "change": TryLine(
                "edit the person as if in the Pipedrive app (a change.person webhook follows)",
                f"curl -s -X PATCH -H 'Content-Type: application/json' "
                f"-d '{{\"job_title\":\"CTO\"}}' '{root}/_sim/persons/{record_id}'",
            ),
            "person": TryLine(
                "the person through Pipedrive's API",
                f"curl -s {auth} '{root}/api/v2/persons/{record_id}'",
            ),
        }
