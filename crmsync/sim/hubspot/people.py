"""Contact helpers: the portal's email uniqueness index and phones in E.164.

HubSpot refuses a second contact with an email any live contact already has, as its
primary or one of its additional addresses (case-insensitively): `EmailIndex` answers
that in O(1) and is kept current contact by contact.
"""

from __future__ import annotations

import phonenumbers

from crmsync.sim.hubspot.model import CrmObject


def emails_of(contact: CrmObject) -> list[str]:
    """`email` then `hs_additional_emails` (";"-separated), as stored."""
    props = contact.properties
    extra = props.get("hs_additional_emails", "")
    found = [props["email"]] if props.get("email") else []
    return found + [e.strip() for e in extra.split(";") if e.strip()]


class EmailIndex:
    """Lower-cased address -> id of the live contact holding it."""

    def __init__(self) -> None:
        self._owner: dict[str, int] = {}
        self._held: dict[int, list[str]] = {}

    def reindex(self, contact: CrmObject) -> None:
        """Call after any change of the contact's emails or archived state."""
        for address in self._held.pop(contact.id, []):
            if self._owner.get(address) == contact.id:
                del self._owner[address]
        if contact.archived:
            return
        held = [e.lower() for e in emails_of(contact)]
        self._held[contact.id] = held
        for address in held:
            self._owner.setdefault(address, contact.id)

    def owner(self, address: str, *, besides: int | None = None) -> int | None:
        found = self._owner.get(address.lower())
        return None if found == besides else found


def e164_phones(contact: CrmObject) -> list[str]:
    """`phone` then `mobilephone` in E.164, parsed in `hs_country_region_code` (numbers
    without a leading + and without a region cannot be placed); invalid ones dropped,
    duplicates removed."""
    props = contact.properties
    region = props.get("hs_country_region_code") or None
    found: list[str] = []
    for raw in (props.get("phone"), props.get("mobilephone")):
        if not raw:
            continue
        try:
            parsed = phonenumbers.parse(raw, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(parsed):
            found.append(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))
    return list(dict.fromkeys(found))
