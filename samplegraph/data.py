"""Deterministic synthetic intelligence graph, written to a SQLite file.

Every random choice comes from two seeded sources: a `random.Random(seed)` and a
`Faker("en_US")` seeded with the same seed, consumed in a fixed order. The same
(people, seed, generator version, Faker version) therefore always yields the same content.
Ages are computed against `REFERENCE_DATE`, never today's date, for the same reason.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import re
import sqlite3
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Final

import faker

from intelgraph_privacy import codec

#: Bump whenever the generated content changes for a given (people, seed).
GENERATOR_VERSION: Final = 1
DEFAULT_PEOPLE: Final = 5000
DEFAULT_SEED: Final = 20261126
#: Ages are relative to this date so that the data never drifts with the calendar.
REFERENCE_DATE: Final = date(2026, 11, 26)

# Organisations and cases scale with the population: 800 and 1,500 for 5,000 people.
_ORGS_PER_PERSON: Final = 0.16
_CASES_PER_PERSON: Final = 0.3
_MAX_KNOWS: Final = 8
_EMPLOYED_SHARE: Final = 0.8
_INFORMANT_SHARE: Final = 0.35
_FIRST_CASE_DATE: Final = date(2018, 1, 1)

# (city, country, ISO code, weight): a short list of real cities, so that cohorts by city
# have realistic sizes instead of one person per invented town.
_CITIES: Final[tuple[tuple[str, str, str, int], ...]] = (
    ("New York", "United States", "US", 14),
    ("Los Angeles", "United States", "US", 10),
    ("Chicago", "United States", "US", 8),
    ("Houston", "United States", "US", 7),
    ("Phoenix", "United States", "US", 5),
    ("Philadelphia", "United States", "US", 5),
    ("San Antonio", "United States", "US", 4),
    ("San Diego", "United States", "US", 4),
    ("Dallas", "United States", "US", 4),
    ("Seattle", "United States", "US", 4),
    ("Boston", "United States", "US", 4),
    ("Miami", "United States", "US", 4),
    ("Denver", "United States", "US", 3),
    ("Atlanta", "United States", "US", 3),
    ("Detroit", "United States", "US", 2),
    ("Portland", "United States", "US", 2),
    ("Toronto", "Canada", "CA", 3),
    ("Vancouver", "Canada", "CA", 2),
    ("Mexico City", "Mexico", "MX", 2),
    ("London", "United Kingdom", "GB", 3),
    ("Manchester", "United Kingdom", "GB", 1),
    ("Dublin", "Ireland", "IE", 1),
    ("Paris", "France", "FR", 2),
    ("Berlin", "Germany", "DE", 2),
    ("Frankfurt", "Germany", "DE", 1),
    ("Amsterdam", "Netherlands", "NL", 1),
    ("Madrid", "Spain", "ES", 1),
    ("Rome", "Italy", "IT", 1),
    ("Zurich", "Switzerland", "CH", 1),
    ("Sydney", "Australia", "AU", 1),
)
_CITY_WEIGHTS: Final = tuple(c[3] for c in _CITIES)

_ACTIVITIES: Final = (
    "Money laundering",
    "Wire fraud",
    "Bribery",
    "Sanctions evasion",
    "Smuggling",
    "Identity theft",
    "Insider trading",
    "Procurement fraud",
    "Tax evasion",
    "Counterfeiting",
    "Extortion",
    "Cyber intrusion",
    "Trafficking",
    "Embezzlement",
)
_STATUSES: Final = ("OPEN", "CLOSED", "ARCHIVED")
_STATUS_WEIGHTS: Final = (35, 45, 20)
_ALIAS_COUNT_WEIGHTS: Final = (45, 30, 17, 8)  # for 0, 1, 2, 3 aliases

_SCHEMA: Final = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE organization (
  id TEXT PRIMARY KEY, name TEXT NOT NULL, registration_number TEXT, country TEXT, city TEXT);
CREATE TABLE person (
  id TEXT PRIMARY KEY, name TEXT NOT NULL, ssn TEXT, email TEXT, phone TEXT, dob TEXT,
  age INTEGER, city TEXT, country TEXT, risk_score REAL, aliases TEXT NOT NULL,
  employer_id TEXT REFERENCES organization(id));
CREATE INDEX person_employer ON person (employer_id, id);
CREATE TABLE knows (
  person_id TEXT NOT NULL, other_id TEXT NOT NULL,
  PRIMARY KEY (person_id, other_id)) WITHOUT ROWID;
CREATE TABLE case_file (
  id TEXT PRIMARY KEY, reference TEXT NOT NULL UNIQUE, title TEXT NOT NULL,
  status TEXT NOT NULL, opened_on TEXT, informant TEXT);
CREATE TABLE case_subject (
  case_id TEXT NOT NULL, person_id TEXT NOT NULL, position INTEGER NOT NULL,
  PRIMARY KEY (case_id, person_id)) WITHOUT ROWID;
CREATE INDEX case_subject_person ON case_subject (person_id, case_id);
"""

#: Tables in a stable order, for `database_digest`.
_TABLES: Final = ("meta", "organization", "person", "knows", "case_file", "case_subject")


@dataclass(frozen=True)
class _Sizes:
    people: int
    organizations: int
    cases: int


def _sizes(people: int) -> _Sizes:
    return _Sizes(
        people=people,
        organizations=max(1, round(people * _ORGS_PER_PERSON)),
        cases=max(1, round(people * _CASES_PER_PERSON)),
    )


def make_id(prefix: str, number: int, width: int) -> str:
    """A type-prefixed ID such as `P-00001`; one width per table keeps string order numeric."""
    return f"{prefix}-{number:0{width}d}"


def _width(count: int, minimum: int) -> int:
    return max(minimum, len(str(count)))


def _expected_meta(people: int, seed: int) -> dict[str, str]:
    return {
        "people": str(people),
        "seed": str(seed),
        "version": str(GENERATOR_VERSION),
        # Faker's word lists change between releases; its version is part of the content.
        "faker_version": faker.VERSION,
        "reference_date": REFERENCE_DATE.isoformat(),
    }


def read_metadata(path: Path) -> dict[str, str] | None:
    """The metadata table of a generated database, or None if the file is not one."""
    if not path.is_file():
        return None
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            rows = conn.execute("SELECT key, value FROM meta").fetchall()
        finally:
            conn.close()
    except sqlite3.DatabaseError:
        return None
    return {str(k): str(v) for k, v in rows}


def generate_database(
    path: Path, *, people: int = DEFAULT_PEOPLE, seed: int = DEFAULT_SEED
) -> Path:
    """Write the sample graph to a SQLite file at `path` and return the path.

    An existing file that records the same (people, seed, version) is reused as is; any other
    file at `path` is replaced. The file is written next to `path` and renamed into place, so a
    reader never sees a half-written database.
    """
    if people < 1:
        raise ValueError("people must be >= 1")
    path = Path(path)
    expected = _expected_meta(people, seed)
    if read_metadata(path) == expected:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        conn = sqlite3.connect(tmp)
        try:
            conn.executescript(_SCHEMA)
            _populate(conn, _sizes(people), seed)
            conn.executemany("INSERT INTO meta VALUES (?, ?)", sorted(expected.items()))
            conn.commit()
        finally:
            conn.close()
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return path


def database_digest(path: Path) -> str:
    """SHA-256 over every row of every table in a fixed order: equal digests, equal content."""
    conn = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)
    try:
        digest = hashlib.sha256()
        for table in _TABLES:
            digest.update(table.encode())
            # Every table's first column(s) form its key, so ORDER BY 1, 2 is total.
            for row in conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2"):
                digest.update(codec.dumps(list(row)))
        return digest.hexdigest()
    finally:
        conn.close()


def _populate(conn: sqlite3.Connection, sizes: _Sizes, seed: int) -> None:
    # Order matters: each step consumes the seeded sources in turn.
    rng = random.Random(seed)
    fake = faker.Faker("en_US")
    fake.seed_instance(seed)
    orgs = _organizations(conn, sizes.organizations, rng, fake)
    person_ids = _people(conn, sizes.people, [org_id for org_id, _ in orgs], rng, fake)
    _knows(conn, person_ids, rng)
    _cases(conn, sizes.cases, person_ids, [name for _, name in orgs], rng, fake)


def _city(rng: random.Random) -> tuple[str, str, str, int]:
    return rng.choices(_CITIES, weights=_CITY_WEIGHTS)[0]


def _organizations(
    conn: sqlite3.Connection, count: int, rng: random.Random, fake: faker.Faker
) -> list[tuple[str, str]]:
    width = _width(count, 4)
    rows = []
    for n in range(1, count + 1):
        city, country, code, _ = _city(rng)
        registration = f"{code}-{rng.randrange(10_000_000, 100_000_000)}"
        rows.append((make_id("O", n, width), fake.company(), registration, country, city))
    conn.executemany("INSERT INTO organization VALUES (?, ?, ?, ?, ?)", rows)
    return [(row[0], row[1]) for row in rows]


_NOT_WORD = re.compile(r"[^a-z0-9]")


def _age(dob: date) -> int:
    before_birthday = (REFERENCE_DATE.month, REFERENCE_DATE.day) < (dob.month, dob.day)
    return REFERENCE_DATE.year - dob.year - int(before_birthday)


def _aliases(first: str, last: str, rng: random.Random, fake: faker.Faker) -> list[str]:
    wanted = rng.choices(range(4), weights=_ALIAS_COUNT_WEIGHTS)[0]
    aliases: list[str] = []
    for _ in range(wanted * 3):  # bounded retries: duplicates are skipped
        if len(aliases) == wanted:
            break
        kind = rng.randrange(4)
        if kind == 0:
            alias = f"{first[0]}. {last}"
        elif kind == 1:
            alias = fake.user_name()
        elif kind == 2:
            alias = f"{fake.first_name()} {last}"
        else:
            alias = f"{first} {fake.last_name()}"
        if alias not in aliases and alias != f"{first} {last}":
            aliases.append(alias)
    return aliases


def _people(
    conn: sqlite3.Connection,
    count: int,
    org_ids: list[str],
    rng: random.Random,
    fake: faker.Faker,
) -> list[str]:
    width = _width(count, 5)
    rows = []
    for n in range(1, count + 1):
        first, last = fake.first_name(), fake.last_name()
        local = f"{_NOT_WORD.sub('', first.lower())}.{_NOT_WORD.sub('', last.lower())}"
        email = f"{local}{rng.randint(1, 99)}@{fake.free_email_domain()}"
        dob = REFERENCE_DATE - timedelta(days=rng.randint(18 * 365 + 5, 85 * 365))
        city, country, _, _ = _city(rng)
        risk = round(rng.betavariate(2.0, 5.0) * 100.0, 2)
        aliases = _aliases(first, last, rng, fake)
        employer = None
        if rng.random() < _EMPLOYED_SHARE:
            # Squaring skews employment toward the first organisations: a few large employers.
            employer = org_ids[int(len(org_ids) * rng.random() ** 2)]
        rows.append(
            (
                make_id("P", n, width),
                f"{first} {last}",
                fake.ssn(),
                email,
                fake.phone_number(),
                dob.isoformat(),
                _age(dob),
                city,
                country,
                risk,
                codec.dumps(aliases).decode(),
                employer,
            )
        )
    conn.executemany("INSERT INTO person VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    return [row[0] for row in rows]


def _knows(conn: sqlite3.Connection, person_ids: list[str], rng: random.Random) -> None:
    count = len(person_ids)
    targets = [rng.randint(0, _MAX_KNOWS) for _ in range(count)]
    links: list[set[int]] = [set() for _ in range(count)]
    for i in range(count):
        for _ in range(3 * _MAX_KNOWS):  # bounded tries; some people end below their target
            if len(links[i]) >= targets[i] or count < 2:
                break
            j = rng.randrange(count)
            if j == i or j in links[i] or len(links[j]) >= _MAX_KNOWS:
                continue
            links[i].add(j)
            links[j].add(i)
    rows = [(person_ids[i], person_ids[j]) for i in range(count) for j in sorted(links[i])]
    conn.executemany("INSERT INTO knows VALUES (?, ?)", rows)


def _cases(
    conn: sqlite3.Connection,
    count: int,
    person_ids: list[str],
    org_names: list[str],
    rng: random.Random,
    fake: faker.Faker,
) -> None:
    width = _width(count, 5)
    span = (REFERENCE_DATE - _FIRST_CASE_DATE).days
    cases = []
    subjects: list[tuple[str, str, int]] = []
    for n in range(1, count + 1):
        case_id = make_id("C", n, width)
        opened = _FIRST_CASE_DATE + timedelta(days=rng.randrange(span))
        activity = rng.choice(_ACTIVITIES)
        if rng.random() < 0.5:
            title = f"{activity} in {_city(rng)[0]}"
        else:
            title = f"{activity} involving {org_names[rng.randrange(len(org_names))]}"
        status = rng.choices(_STATUSES, weights=_STATUS_WEIGHTS)[0]
        informant = fake.name() if rng.random() < _INFORMANT_SHARE else None
        cases.append(
            (
                case_id,
                f"CASE-{opened.year}-{n:06d}",
                title,
                status,
                opened.isoformat(),
                informant,
            )
        )
        picked = rng.sample(person_ids, rng.randint(1, min(5, len(person_ids))))
        subjects.extend((case_id, pid, pos) for pos, pid in enumerate(picked))
    conn.executemany("INSERT INTO case_file VALUES (?, ?, ?, ?, ?, ?)", cases)
    conn.executemany("INSERT INTO case_subject VALUES (?, ?, ?)", subjects)
