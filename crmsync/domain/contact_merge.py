"""The three-way merge of a Quo contact edit (INTERFACE §7 `conflict`), pure.

The base is the snapshot of what was last synced between the CRM and Quo. Per name,
company and role:

| Quo vs base | CRM vs base | result |
|---|---|---|
| same | any | the CRM's (a CRM-only change; the CRM → Quo path carries it) |
| changed | same | Quo's (a Quo-only change: written to the CRM) |
| changed | changed, to the same value | that value |
| changed | changed, differently | a conflict: the CRM's with `crm_wins`, Quo's with `quo_wins` |

Emails and phones merge per address and number the same way (an item kept, added or
removed on one side is so in the result), so they never conflict: a number added in
Quo and another added in the CRM are both kept. Without a base (no valid snapshot)
every difference between Quo and the CRM counts as a conflict, for the tenant's
`conflict` to settle.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import msgspec

from crmsync.adapters.base import PersonChanges
from crmsync.domain.contact_fields import LISTS, SCALARS, ContactFields

Conflict = Literal["crm_wins", "quo_wins"]


class Merge(msgspec.Struct, frozen=True, kw_only=True):
    result: ContactFields
    conflicts: tuple[str, ...] = ()  # fields changed on both sides to different values


def _scalar(
    base: str | None, quo: str | None, crm: str | None, *, known: bool, quo_wins: bool
) -> tuple[str | None, bool]:
    """(the merged value, whether it was a conflict)."""
    if quo == crm:
        return quo, False
    if known and quo == base:
        return crm, False
    if known and crm == base:
        return quo, False
    return (quo if quo_wins else crm), True


def _items(
    base: Sequence[str], quo: Sequence[str], crm: Sequence[str], *, known: bool,
    quo_wins: bool,
) -> tuple[tuple[str, ...], bool]:
    kept: set[str] = set()
    conflict = False
    for item in {*base, *quo, *crm}:
        in_base, in_quo, in_crm = item in base, item in quo, item in crm
        if in_quo == in_crm:
            keep = in_quo
        elif known:
            # Exactly one side differs from the base here: that side's change stands.
            keep = in_quo if in_crm == in_base else in_crm
        else:
            conflict = True
            keep = in_quo if quo_wins else in_crm
        if keep:
            kept.add(item)
    return tuple(sorted(kept)), conflict


def merge(
    base: ContactFields | None, quo: ContactFields, crm: ContactFields, conflict: Conflict
) -> Merge:
    known = base is not None
    ancestor = base or ContactFields()
    quo_wins = conflict == "quo_wins"
    scalars: dict[str, str | None] = {}
    lists: dict[str, tuple[str, ...]] = {}
    conflicts: list[str] = []
    for name in SCALARS:
        scalars[name], clash = _scalar(
            getattr(ancestor, name), getattr(quo, name), getattr(crm, name),
            known=known, quo_wins=quo_wins,
        )
        if clash:
            conflicts.append(name)
    for name in LISTS:
        lists[name], clash = _items(
            getattr(ancestor, name), getattr(quo, name), getattr(crm, name),
            known=known, quo_wins=quo_wins,
        )
        if clash:
            conflicts.append(name)
    result = ContactFields(
        first_name=scalars["first_name"], last_name=scalars["last_name"],
        company=scalars["company"], role=scalars["role"],
        emails=lists["emails"], phones=lists["phones"],
    )
    return Merge(result=result, conflicts=tuple(conflicts))


def _ordered(current: Sequence[str], wanted: Sequence[str]) -> tuple[str, ...]:
    """`wanted` in the CRM's current order, new items after (the first stays primary)."""
    keep = [item for item in current if item in wanted]
    return (*keep, *(item for item in wanted if item not in keep))


def person_changes(
    crm: ContactFields,
    result: ContactFields,
    *,
    emails_order: Sequence[str] = (),
    phones_order: Sequence[str] = (),
) -> PersonChanges:
    """What to write on the CRM person to turn `crm` into `result`; the `*_order`
    arguments are the person's current items in the CRM's order."""
    unset = msgspec.UNSET
    names = (crm.first_name, crm.last_name) != (result.first_name, result.last_name)
    return PersonChanges(
        first_name=result.first_name if names else unset,
        last_name=result.last_name if names else unset,
        company=result.company if crm.company != result.company else unset,
        job_title=result.role if crm.role != result.role else unset,
        emails=_ordered(emails_order, result.emails) if crm.emails != result.emails else unset,
        phones=_ordered(phones_order, result.phones) if crm.phones != result.phones else unset,
    )


def new_person(fields: ContactFields) -> PersonChanges:
    """A person made from a Quo contact: every field it has."""
    return person_changes(ContactFields(), fields, emails_order=fields.emails,
                          phones_order=fields.phones)
