"""Name, title and company pools for seeding; each name has an ASCII form for emails.

Every simulator seeds from these pools; `company_name` names the i-th seeded company.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Locale:
    """People of one country: names as written, plus how they appear in email addresses."""

    country: str
    first_names: tuple[tuple[str, str], ...]
    last_names: tuple[tuple[str, str], ...]
    family_name_first: bool = False
    company_suffix: str = "Ltd"
    tld: str = "com"


LOCALES: tuple[Locale, ...] = (
    Locale(
        "SI",
        (("Žiga", "ziga"), ("Ana", "ana"), ("Luka", "luka"), ("Špela", "spela"),
         ("Matej", "matej"), ("Nika", "nika"), ("Tjaša", "tjasa")),
        (("Novak", "novak"), ("Horvat", "horvat"), ("Kovačič", "kovacic"),
         ("Krajnc", "krajnc"), ("Zupančič", "zupancic"), ("Potočnik", "potocnik")),
        company_suffix="d.o.o.", tld="si",
    ),
    Locale(
        "ES",
        (("José", "jose"), ("María", "maria"), ("Lucía", "lucia"), ("Álvaro", "alvaro"),
         ("Iñigo", "inigo"), ("Carmen", "carmen")),
        (("Álvarez", "alvarez"), ("García", "garcia"), ("Fernández", "fernandez"),
         ("Muñoz", "munoz"), ("Peña", "pena"), ("López", "lopez")),
        company_suffix="S.L.", tld="es",
    ),
    Locale(
        "JP",
        (("太郎", "taro"), ("花子", "hanako"), ("健", "ken"), ("由美", "yumi"),
         ("翔太", "shota")),
        (("田中", "tanaka"), ("佐藤", "sato"), ("鈴木", "suzuki"), ("高橋", "takahashi"),
         ("渡辺", "watanabe")),
        family_name_first=True, company_suffix="K.K.", tld="jp",
    ),
    Locale(
        "US",
        (("Zoë", "zoe"), ("Liam", "liam"), ("Emma", "emma"), ("Noah", "noah"),
         ("Olivia", "olivia"), ("Mia", "mia"), ("Jamal", "jamal")),
        (("O'Brien", "obrien"), ("Smith", "smith"), ("Nguyen", "nguyen"),
         ("Johnson", "johnson"), ("Rodríguez", "rodriguez"), ("Kim", "kim")),
        company_suffix="Inc.",
    ),
    Locale(
        "GB",
        (("Siobhán", "siobhan"), ("Oliver", "oliver"), ("Amelia", "amelia"),
         ("Seán", "sean"), ("Harry", "harry")),
        (("Murphy", "murphy"), ("Taylor", "taylor"), ("Davies", "davies"),
         ("Ní Bhriain", "nibhriain"), ("Evans", "evans")),
        tld="co.uk",
    ),
    Locale(
        "DE",
        (("Jürgen", "juergen"), ("Lena", "lena"), ("Jörg", "joerg"), ("Anja", "anja"),
         ("Matthias", "matthias")),
        (("Müller", "mueller"), ("Groß", "gross"), ("Schäfer", "schaefer"),
         ("Weiß", "weiss"), ("Becker", "becker")),
        company_suffix="GmbH", tld="de",
    ),
    Locale(
        "FR",
        (("Chloé", "chloe"), ("François", "francois"), ("Léa", "lea"),
         ("Hélène", "helene"), ("Étienne", "etienne")),
        (("Lefèvre", "lefevre"), ("Dubois", "dubois"), ("Moreau", "moreau"),
         ("Girard", "girard"), ("Bonnaire-Côté", "bonnairecote")),
        company_suffix="SAS", tld="fr",
    ),
)

# People known by one name (or a display name) only: `full_name` without parts.
FULL_NAME_ONLY = (
    "Björk", "Teller", "Dr. Ana Novak-Horvat", "Reception Desk", "Señor Frog",
    "山田さん", "The Accountant", "Renée (front office)",
)

JOB_TITLES = (
    "CEO", "CTO", "Head of Sales", "Account Executive", "Office Manager",
    "Procurement Lead", "Product Manager", "Software Engineer", "Director of Operations",
    "Customer Success Manager", "Founder", "Marketing Lead", "Legal Counsel",
)

COMPANY_STEMS = (
    "Alpina", "Blue Harbor", "Kintsugi", "Fjord", "Sakura Systems", "Brightline",
    "Helios", "Tramontana", "Lipa", "Triglav Tech", "Nordlicht", "Cedar & Pine",
    "Mistral", "Quantum Leaf", "Ribbon", "Solara", "Vega Logistics", "Zephyr",
)

FREE_MAIL_DOMAINS = ("gmail.com", "outlook.com", "proton.me", "icloud.com", "siol.net")


@dataclass(frozen=True, slots=True)
class CompanyName:
    """A seeded company's name ("Alpina 2 S.L.") and web domain ("alpina2.es")."""

    name: str
    domain: str


def company_name(rng: random.Random, index: int) -> CompanyName:
    """The `index`-th company (from 0): the stems in turn, numbered from their second
    round, each in a random locale (one draw of `rng`)."""
    locale = rng.choice(LOCALES)
    stem = COMPANY_STEMS[index % len(COMPANY_STEMS)]
    round_no = index // len(COMPANY_STEMS)
    label = stem if round_no == 0 else f"{stem} {round_no + 1}"
    slug = "".join(c for c in label.lower() if c.isalnum())
    return CompanyName(f"{label} {locale.company_suffix}", f"{slug}.{locale.tld}")
