"""Phone-number values: realistic valid numbers for seeding, and parsing test input.

Attio stores `original_phone_number` (as typed), `country_code` and the E.164
`phone_number`. The simulator can also hold values Attio's own validation would have
normalised or rejected (national format without E.164, garbage), because real
workspaces contain imported data like that and the client must cope.

Seeding builds numbers from per-country number plans instead of asking libphonenumber
(~0.5 ms per number, too slow for 10k people); a test checks that libphonenumber
agrees every generated number is valid and that its national form parses back.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass

import phonenumbers

from crmsync.sim.attio.model import JSONObject


@dataclass(frozen=True, slots=True)
class NumberPlan:
    """Mobile numbers of one country: `N` in `rest` is 2-9, `#` any digit."""

    calling_code: str
    leads: tuple[str, ...]
    rest: str
    groups: tuple[int, ...]      # digit groups of the national significant number
    trunk: str = "0"             # prefix dialled inside the country
    separator: str = " "


PLANS: dict[str, NumberPlan] = {
    "US": NumberPlan("1", ("212", "415", "646", "303", "512", "617", "312", "206"),
                     "N######", (3, 3, 4), trunk="", separator="-"),
    "SI": NumberPlan("386", ("40", "41", "31", "51", "70"), "######", (2, 3, 3)),
    "ES": NumberPlan("34", ("6",), "########", (3, 2, 2, 2), trunk=""),
    "JP": NumberPlan("81", ("90", "80", "70"), "N#######", (2, 4, 4), separator="-"),
    "DE": NumberPlan("49", ("151", "160", "171", "176"), "########", (3, 8)),
    "FR": NumberPlan("33", ("61", "62", "66", "75", "76", "77", "78"), "#######",
                     (1, 2, 2, 2, 2)),
    "GB": NumberPlan("44", ("7400", "7480", "7507", "7800", "7950"), "######", (4, 6)),
}
COUNTRIES = tuple(PLANS)

INVALID_ORIGINALS = ("12", "not a phone", "+1 555", "ext. 42", "000", "call me")


@dataclass(frozen=True, slots=True)
class GeneratedNumber:
    country: str
    national_digits: str

    @property
    def e164(self) -> str:
        return f"+{PLANS[self.country].calling_code}{self.national_digits}"

    def _grouped(self) -> list[str]:
        parts, start = [], 0
        for size in PLANS[self.country].groups:
            parts.append(self.national_digits[start:start + size])
            start += size
        return parts

    def national(self) -> str:
        """As typed at home: `040 123 456`, `(415) 555-0134`, `090-1234-5678`."""
        plan = PLANS[self.country]
        parts = self._grouped()
        if self.country == "US":
            return f"({parts[0]}) {parts[1]}-{parts[2]}"
        return plan.separator.join([plan.trunk + parts[0], *parts[1:]])

    def international(self) -> str:
        """`+386 40 123 456`, `+1 415-555-0134`."""
        plan = PLANS[self.country]
        parts = self._grouped()
        return f"+{plan.calling_code} " + plan.separator.join(parts)


def random_number(rng: random.Random, country: str) -> GeneratedNumber:
    plan = PLANS[country]
    digits = rng.choice(plan.leads) + "".join(
        str(rng.randint(2, 9)) if c == "N" else str(rng.randrange(10)) for c in plan.rest
    )
    return GeneratedNumber(country, digits)


def valid_value(number: GeneratedNumber, original: str | None = None) -> JSONObject:
    """A fully normalised value, as Attio stores a number it could parse."""
    return {
        "original_phone_number": original if original is not None else number.e164,
        "country_code": number.country,
        "phone_number": number.e164,
    }


def national_only_value(number: GeneratedNumber) -> JSONObject:
    """Imported data: national digits and a country, but no E.164 `phone_number`."""
    return {"original_phone_number": number.national(), "country_code": number.country}


def invalid_value(original: str) -> JSONObject:
    """Garbage that never parsed: only `original_phone_number` is meaningful."""
    return {"original_phone_number": original, "country_code": None}


def value_from_input(phone: str | Mapping[str, object]) -> JSONObject:
    """Test input -> stored value.

    A string is normalised like Attio does (`+` prefix required); one that does not
    parse is kept as an invalid value. A mapping is stored as given, so tests can
    create national-only or otherwise odd values on purpose.
    """
    if not isinstance(phone, str):
        return {str(k): v for k, v in phone.items()}
    try:
        parsed = phonenumbers.parse(phone, None)
    except phonenumbers.NumberParseException:
        return invalid_value(phone)
    if not phonenumbers.is_valid_number(parsed):
        return invalid_value(phone)
    return {
        "original_phone_number": phone,
        "country_code": phonenumbers.region_code_for_number(parsed),
        "phone_number": phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164),
    }
