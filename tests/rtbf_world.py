"""A small multi-region world of datasets for the erasure tests, with its own oracle.

Region `eu` has two datastores: `eu-main` (person, knows, case_file, case_subject and the derived
city_counts) and `eu-events` (events, whose rows name their tenant); region `us` has `us-main`
(accounts, anonymised on erasure, and their payments). Real foreign keys hold between the tables,
so an erasure in the wrong order fails. The data is generated in Python first (`World.model`),
written to the databases, and `expected_after(erased)` computes from the model alone what every
table must hold after erasing some people: the oracle the tests compare real tables against.

Backends: every datastore a SQLite file, or every datastore a PostgreSQL schema of its own.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Engine, create_engine, text

from intelgraph_privacy.rtbf import DatasetRegistry, load_registry
from intelgraph_privacy.store.urls import normalise
from tests.db_fixtures import pg_schema_url

TENANT = "acme"
OTHER_TENANT = "globex"
CITIES = ("Berlin", "Paris", "Lyon", "Madrid")

#: Table -> columns, in order (the snapshot and the model use the same order).
COLUMNS: dict[str, tuple[str, ...]] = {
    "person": ("id", "name", "email", "city"),
    "knows": ("person_id", "other_id"),
    "case_file": ("id", "title", "informant_id"),
    "case_subject": ("case_id", "person_id"),
    "city_counts": ("city", "n"),
    "events": ("id", "person_id", "tenant", "kind"),
    "accounts": ("account_id", "person_ref", "email", "name", "plan"),
    "payments": ("id", "account_id", "amount"),
    "reviews": ("id", "author_ref", "account_id", "body"),
}
DATASTORE_OF = {
    "person": "eu-main",
    "knows": "eu-main",
    "case_file": "eu-main",
    "case_subject": "eu-main",
    "city_counts": "eu-main",
    "events": "eu-events",
    "accounts": "us-main",
    "payments": "us-main",
    "reviews": "us-main",
}

_DDL = {
    "eu-main": [
        "CREATE TABLE person (id TEXT PRIMARY KEY, name TEXT NOT NULL, email TEXT, city TEXT)",
        "CREATE TABLE knows (person_id TEXT NOT NULL REFERENCES person(id), "
        "other_id TEXT NOT NULL REFERENCES person(id), PRIMARY KEY (person_id, other_id))",
        "CREATE TABLE case_file (id TEXT PRIMARY KEY, title TEXT NOT NULL, "
        "informant_id TEXT REFERENCES person(id))",
        "CREATE TABLE case_subject (case_id TEXT NOT NULL REFERENCES case_file(id), "
        "person_id TEXT NOT NULL REFERENCES person(id), PRIMARY KEY (case_id, person_id))",
        "CREATE TABLE city_counts (city TEXT PRIMARY KEY, n INTEGER NOT NULL)",
    ],
    "eu-events": [
        "CREATE TABLE events (id INTEGER PRIMARY KEY, person_id TEXT NOT NULL, "
        "tenant TEXT NOT NULL, kind TEXT NOT NULL)",
    ],
    "us-main": [
        "CREATE TABLE accounts (account_id INTEGER PRIMARY KEY, person_ref TEXT, email TEXT, "
        "name TEXT, plan TEXT NOT NULL)",
        "CREATE TABLE payments (id INTEGER PRIMARY KEY, "
        "account_id INTEGER NOT NULL REFERENCES accounts(account_id), amount INTEGER NOT NULL)",
        "CREATE TABLE reviews (id INTEGER PRIMARY KEY, author_ref TEXT, "
        "account_id INTEGER REFERENCES accounts(account_id), body TEXT)",
    ],
}

CITY_COUNTS_QUERY = "SELECT city, COUNT(*) FROM person GROUP BY city"

REGISTRY: dict[str, Any] = {
    "datasets": {
        "person": {
            "datastore": "eu-main",
            "table": "person",
            "subject_key": "id",
            "tenants": [TENANT],
            "fields": {"email": {"categories": ["email"]}},
        },
        "knows": {
            "datastore": "eu-main",
            "table": "knows",
            "tenants": [TENANT],
            "references": [
                {"column": "person_id", "dataset": "person"},
                {"column": "other_id", "dataset": "person"},
            ],
        },
        "case_file": {
            "datastore": "eu-main",
            "table": "case_file",
            "key": "id",
            "tenants": [TENANT],
            "references": [{"column": "informant_id", "dataset": "person", "on_erase": "null"}],
        },
        "case_subject": {
            "datastore": "eu-main",
            "table": "case_subject",
            "tenants": [TENANT],
            "references": [{"column": "person_id", "dataset": "person"}],
        },
        "city_counts": {
            "datastore": "eu-main",
            "table": "city_counts",
            "tenants": [TENANT],
            "derived": {"sources": ["person"], "query": CITY_COUNTS_QUERY},
        },
        "events": {
            "datastore": "eu-events",
            "table": "events",
            "subject_key": "person_id",
            "tenant_column": "tenant",
        },
        "accounts": {
            "datastore": "us-main",
            "table": "accounts",
            "subject_key": "person_ref",
            "key": "account_id",
            "tenants": [TENANT],
            "erase": "anonymise",
            "anonymise": ["email", "name"],
        },
        "payments": {
            "datastore": "us-main",
            "table": "payments",
            "tenants": [TENANT],
            "references": [{"column": "account_id", "dataset": "accounts"}],
        },
        # Reviews by a person, about an account: anonymised, whether the subject wrote them or
        # they are about the subject's account (then the link to the account goes too).
        "reviews": {
            "datastore": "us-main",
            "table": "reviews",
            "subject_key": "author_ref",
            "tenants": [TENANT],
            "erase": "anonymise",
            "anonymise": ["body"],
            "references": [{"column": "account_id", "dataset": "accounts"}],
        },
    }
}
REGIONS = {"eu-main": "eu", "eu-events": "eu", "us-main": "us"}

Rows = list[tuple[Any, ...]]


@dataclass
class World:
    """The datastores' URLs, the registry file, and the generated data (the model)."""

    urls: dict[str, str]
    registry_path: Path
    model: dict[str, Rows]
    people: list[str]
    engines: dict[str, Engine] = field(default_factory=dict)

    @property
    def registry(self) -> DatasetRegistry:
        return load_registry(self.registry_path)

    def engine(self, datastore: str) -> Engine:
        if datastore not in self.engines:
            url, _ = normalise(self.urls[datastore])
            self.engines[datastore] = create_engine(url, pool_pre_ping=True)
        return self.engines[datastore]

    def snapshot(self) -> dict[str, Rows]:
        """Every table's rows, sorted (None sorts first)."""
        tables = {}
        for table, columns in COLUMNS.items():
            with self.engine(DATASTORE_OF[table]).connect() as connection:
                rows = connection.execute(text(f"SELECT {', '.join(columns)} FROM {table}")).all()
            tables[table] = sorted((tuple(r) for r in rows), key=_sort_key)
        return tables

    def expected_after(self, erased: Iterable[str]) -> dict[str, Rows]:
        """The oracle: what every table holds once `erased` (people of TENANT) are erased."""
        gone = set(erased)
        m = self.model
        person = [r for r in m["person"] if r[0] not in gone]
        counts: dict[str, int] = {}
        for row in person:
            counts[row[3]] = counts.get(row[3], 0) + 1
        accounts_gone = {r[0] for r in m["accounts"] if r[1] in gone}
        expected = {
            "person": person,
            "knows": [r for r in m["knows"] if r[0] not in gone and r[1] not in gone],
            "case_file": [(i, t, None if inf in gone else inf) for i, t, inf in m["case_file"]],
            "case_subject": [r for r in m["case_subject"] if r[1] not in gone],
            "city_counts": sorted(counts.items()),
            "events": [r for r in m["events"] if not (r[1] in gone and r[2] == TENANT)],
            "accounts": [
                (a, None, None, None, plan) if ref in gone else (a, ref, e, n, plan)
                for a, ref, e, n, plan in m["accounts"]
            ],
            "payments": [r for r in m["payments"] if r[1] not in accounts_gone],
            "reviews": [
                (i, None, None if acc in accounts_gone else acc, None)
                if author in gone or acc in accounts_gone
                else (i, author, acc, body)
                for i, author, acc, body in m["reviews"]
            ],
        }
        return {t: sorted((tuple(r) for r in rows), key=_sort_key) for t, rows in expected.items()}

    def rows_of(self, subject: str) -> dict[str, int]:
        """The oracle's row counts per dataset for one subject (what a manifest must say)."""
        m = self.model
        accounts = {r[0] for r in m["accounts"] if r[1] == subject}
        return {
            "person": sum(r[0] == subject for r in m["person"]),
            "knows": sum(subject in (r[0], r[1]) for r in m["knows"]),
            "case_file": sum(r[2] == subject for r in m["case_file"]),
            "case_subject": sum(r[1] == subject for r in m["case_subject"]),
            "events": sum(r[1] == subject and r[2] == TENANT for r in m["events"]),
            "accounts": len(accounts),
            "payments": sum(r[1] in accounts for r in m["payments"]),
            "reviews": sum(r[1] == subject or r[2] in accounts for r in m["reviews"]),
        }

    def close(self) -> None:
        for engine in self.engines.values():
            engine.dispose()


def _sort_key(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple((value is not None, str(value)) for value in row)


def generate(people: int, seed: int) -> dict[str, Rows]:
    """The world's data: `people` people of TENANT with friends, cases, events and accounts."""
    rng = random.Random(seed)
    ids = [f"P-{i:05d}" for i in range(people)]
    model: dict[str, Rows] = {t: [] for t in COLUMNS}
    for i, pid in enumerate(ids):
        model["person"].append((pid, f"Person {i}", f"p{i}@example.org", rng.choice(CITIES)))
    pairs = set()
    for pid in ids:
        for other in rng.sample(ids, min(3, people)):
            if other != pid:
                pairs.add((pid, other))
    model["knows"] = sorted(pairs)
    for c in range(max(people // 2, 1)):
        informant = rng.choice(ids) if rng.random() < 0.6 else None
        model["case_file"].append((f"C-{c:05d}", f"Case {c}", informant))
        for pid in rng.sample(ids, min(2, people)):
            model["case_subject"].append((f"C-{c:05d}", pid))
    event_id = 1
    for pid in ids:
        for _ in range(rng.randint(0, 3)):
            model["events"].append((event_id, pid, TENANT, rng.choice(["login", "view"])))
            event_id += 1
        if rng.random() < 0.3:  # the same id in another tenant: not ours to erase
            model["events"].append((event_id, pid, OTHER_TENANT, "login"))
            event_id += 1
    account_id = 1
    payment_id = 1
    for i, pid in enumerate(ids):
        for _ in range(rng.randint(0, 2)):
            plan = rng.choice(["free", "pro"])
            model["accounts"].append((account_id, pid, f"p{i}@example.org", f"Person {i}", plan))
            for _ in range(rng.randint(0, 3)):
                model["payments"].append((payment_id, account_id, rng.randint(1, 500)))
                payment_id += 1
            account_id += 1
    accounts = [r[0] for r in model["accounts"]]
    for review in range(people):
        account = rng.choice(accounts) if accounts and rng.random() < 0.7 else None
        model["reviews"].append((review + 1, rng.choice(ids), account, f"review {review}"))
    counts: dict[str, int] = {}
    for row in model["person"]:
        counts[row[3]] = counts.get(row[3], 0) + 1
    model["city_counts"] = sorted(counts.items())
    return model


def build(urls: dict[str, str], directory: Path, *, people: int = 40, seed: int = 7) -> World:
    """Create the tables in the datastores at `urls`, fill them, and write the registry file."""
    model = generate(people, seed)
    world = World(urls, directory / "datasets.yaml", model, [r[0] for r in model["person"]])
    for datastore, statements in _DDL.items():
        with world.engine(datastore).begin() as connection:
            for statement in statements:
                connection.execute(text(statement))
            for table, store in DATASTORE_OF.items():
                if store != datastore or not model[table]:
                    continue
                columns = COLUMNS[table]
                marks = ", ".join(f":{c}" for c in columns)
                connection.execute(
                    text(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"),
                    [dict(zip(columns, row, strict=True)) for row in model[table]],
                )
    registry = {
        "datastores": {name: {"url": url, "region": REGIONS[name]} for name, url in urls.items()},
        **REGISTRY,
    }
    world.registry_path.write_text(yaml.safe_dump(registry, sort_keys=False), encoding="utf-8")
    return world


def sqlite_urls(directory: Path) -> dict[str, str]:
    """A SQLite file per datastore in `directory`."""
    return {name: f"sqlite:///{directory / (name + '.sqlite3')}" for name in REGIONS}


def create_pg_schemas(admin: Engine) -> tuple[dict[str, str], list[str]]:
    """A fresh PostgreSQL schema per datastore: (their URLs, the schema names to drop)."""
    urls, schemas = {}, []
    with admin.connect() as connection:
        for name in REGIONS:
            schema = f"igp_rtbf_{name.replace('-', '_')}_{secrets.token_hex(4)}"
            connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
            urls[name] = pg_schema_url(schema, application_name="igp_rtbf_world")
            schemas.append(schema)
    return urls, schemas


def drop_pg_schemas(admin: Engine, schemas: list[str]) -> None:
    with admin.connect() as connection:
        for schema in schemas:
            connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
