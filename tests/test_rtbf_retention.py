"""Retention on real SQLite and real PostgreSQL, against an oracle written in plain Python.

The world: `person` (row class 5y delete; field classes contact-1y on email and phone, names-2y
on name), `visit` (references person with a real foreign key; 90d delete, note nulled after 30d)
and `account` (anonymised after 1y). Rows sit just inside, on and just outside every cutoff, on
legal hold or not, with and without values, without a timestamp. Timestamps are stored in
several forms: on SQLite ISO text with `T` or space, `Z`, an offset or none, and Unix seconds;
on PostgreSQL `timestamptz` and naive `timestamp` (the session's time zone is Tokyo, so a naive
column compared in the session's zone would be off by nine hours).

The oracle applies the same rules to the generated rows in Python, one after the other, and
gives the counts and the tables expected; plan, apply and the tables must all agree with it.
"""

from __future__ import annotations

import argparse
import copy
import random
import secrets
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from intelgraph_privacy import codec
from intelgraph_privacy.audit import AuditLog
from intelgraph_privacy.cli import run
from intelgraph_privacy.cli_retention import add_retention_commands
from intelgraph_privacy.rtbf import load_registry, registry_from_mapping
from intelgraph_privacy.rtbf.datastores import DatastorePool
from intelgraph_privacy.rtbf.retention import (
    RetentionCount,
    RetentionError,
    apply_retention,
    compile_retention,
    plan_retention,
)
from intelgraph_privacy.store import open_store
from intelgraph_privacy.store.urls import normalise
from tests.db_fixtures import PG_BASE_URL

NOW = datetime(2024, 6, 1, 12, 0, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)
Row = dict[str, Any]

CLASSES = {
    "person-5y": {"max_age": "5y", "action": "delete"},
    "contact-1y": {"max_age": "1y", "action": "null"},
    "names-2y": {"max_age": "2y", "action": "anonymise"},  # on a field: nulls it
    "visits-90d": {"max_age": "90d", "action": "delete"},
    "notes-30d": {"max_age": "30d", "action": "null"},
    "accounts-1y": {"max_age": "1y", "action": "anonymise"},
}
DATASETS: dict[str, Any] = {
    "person": {
        "table": "person",
        "subject_key": "id",
        "tenants": ["acme"],
        "timestamp_column": "created_at",
        "legal_hold_column": "hold",
        "retention": "person-5y",
        "fields": {
            "name": {"retention": "names-2y"},
            "email": {"categories": ["email"], "retention": "contact-1y"},
            "phone": {"retention": "contact-1y"},
        },
    },
    "visit": {
        "table": "visit",
        "tenants": ["acme"],
        "references": [{"column": "person_id", "dataset": "person"}],
        "timestamp_column": "at",
        "legal_hold_column": "on_hold",
        "retention": "visits-90d",
        "fields": {"note": {"retention": "notes-30d"}},
    },
    "account": {
        "table": "account",
        "subject_key": "person_ref",
        "key": "id",
        "tenants": ["*"],
        "timestamp_column": "opened_at",
        "legal_hold_column": "frozen",
        "retention": "accounts-1y",
        "anonymise": ["email", "name"],
        # Overlaps the anonymise class: what it nulled first is not counted again.
        "fields": {"name": {"retention": "names-2y"}},
    },
}
#: The oracle's rules, written out by hand: (dataset, class, action, nulled columns, age in days).
RULES = [
    ("account", "accounts-1y", "anonymise", ("email", "name", "person_ref"), 365),
    ("account", "names-2y", "null", ("name",), 2 * 365),
    ("visit", "visits-90d", "delete", (), 90),
    ("visit", "notes-30d", "null", ("note",), 30),
    ("person", "person-5y", "delete", (), 5 * 365),
    ("person", "contact-1y", "null", ("email", "phone"), 365),
    ("person", "names-2y", "null", ("name",), 2 * 365),
]
TS = {"person": "created_at", "visit": "at", "account": "opened_at"}
HOLD = {"person": "hold", "visit": "on_hold", "account": "frozen"}
KEY = {"person": "id", "visit": "id", "account": "id"}
#: Columns compared after a run (timestamps are never changed, so they are left out).
COLUMNS = {
    "person": ("id", "name", "email", "phone", "hold"),
    "visit": ("id", "person_id", "on_hold", "note"),
    "account": ("id", "person_ref", "email", "name", "plan", "frozen"),
}
DDL = {
    "sqlite": [
        "CREATE TABLE person (id TEXT PRIMARY KEY, name TEXT, email TEXT, phone TEXT, "
        "created_at TEXT, hold BOOLEAN)",
        "CREATE TABLE visit (id INTEGER PRIMARY KEY, person_id TEXT NOT NULL "
        "REFERENCES person(id), at TEXT, on_hold BOOLEAN, note TEXT)",
        # NUMERIC affinity: Unix seconds stay numbers, ISO text stays text.
        "CREATE TABLE account (id INTEGER PRIMARY KEY, person_ref TEXT, email TEXT, name TEXT, "
        "plan TEXT NOT NULL, opened_at NUMERIC, frozen BOOLEAN)",
    ],
    "postgres": [
        "CREATE TABLE person (id TEXT PRIMARY KEY, name TEXT, email TEXT, phone TEXT, "
        "created_at TIMESTAMPTZ, hold BOOLEAN)",
        "CREATE TABLE visit (id INTEGER PRIMARY KEY, person_id TEXT NOT NULL "
        "REFERENCES person(id), at TIMESTAMP, on_hold BOOLEAN, note TEXT)",
        "CREATE TABLE account (id INTEGER PRIMARY KEY, person_ref TEXT, email TEXT, name TEXT, "
        "plan TEXT NOT NULL, opened_at TIMESTAMPTZ, frozen BOOLEAN)",
    ],
}


def _around(days: int) -> list[timedelta | None]:
    age = timedelta(days=days)
    return [age + SECOND, age, age - SECOND]


AGES: dict[str, list[timedelta | None]] = {
    "person": [*_around(5 * 365), *_around(730), *_around(365), timedelta(days=3650),
               timedelta(days=30), timedelta(0), None],
    "visit": [*_around(90), *_around(30), timedelta(days=400), timedelta(days=1), None],
    "account": [*_around(365), timedelta(days=1000), timedelta(days=10), None],
}  # fmt: skip


def generate(seed: int = 11) -> dict[str, list[Row]]:
    """Every age x legal hold x which values are present, for each table."""
    rng = random.Random(seed)
    holds = (None, False, True)
    tables: dict[str, list[Row]] = {"person": [], "visit": [], "account": []}
    for age in AGES["person"]:
        for hold in holds:
            for pattern in ("all", "some", "none"):
                n = len(tables["person"])
                tables["person"].append(
                    {
                        "id": f"P{n:03d}",
                        "name": None if pattern == "none" else f"Name {n}",
                        "email": f"p{n}@example.org" if pattern == "all" else None,
                        "phone": None if pattern == "none" else f"+4930{n:05d}",
                        "created_at": None if age is None else NOW - age,
                        "hold": hold,
                    }
                )
    for person in tables["person"]:
        for _ in range(rng.choice((0, 0, 1, 2, 3))):
            age = rng.choice(AGES["visit"])
            tables["visit"].append(
                {
                    "id": len(tables["visit"]) + 1,
                    "person_id": person["id"],
                    "at": None if age is None else NOW - age,
                    "on_hold": rng.choice(holds),
                    "note": rng.choice((None, f"note {len(tables['visit'])}")),
                }
            )
    for age in AGES["account"]:
        for frozen in holds:
            for pattern in ("all", "some", "none"):
                n = len(tables["account"]) + 1
                tables["account"].append(
                    {
                        "id": n,
                        "person_ref": None if pattern == "none" else f"P{n:03d}",
                        "email": f"a{n}@example.org" if pattern == "all" else None,
                        "name": None if pattern == "none" else f"Holder {n}",
                        "plan": rng.choice(("free", "pro")),
                        "opened_at": None if age is None else NOW - age,
                        "frozen": frozen,
                    }
                )
    return tables


# -- the oracle --------------------------------------------------------------------------------


def oracle(model: dict[str, list[Row]]) -> tuple[dict[tuple[str, str], Row], dict[str, Any]]:
    """Apply RULES to a copy of the model in Python: (counts per rule, the tables after)."""
    tables = copy.deepcopy(model)
    counts: dict[tuple[str, str], Row] = {}
    for dataset, class_name, action, columns, days in RULES:
        cutoff = NOW - timedelta(days=days)
        rows, ts, hold = tables[dataset], TS[dataset], HOLD[dataset]
        old = [r for r in rows if r[ts] is not None and r[ts] < cutoff]
        if columns:
            old = [r for r in old if any(r[c] is not None for c in columns)]
        held = [r for r in old if r[hold]]
        free = [r for r in old if not r[hold]]
        referenced_ids = {v["person_id"] for v in tables["visit"]} if action == "delete" else set()
        kept = [r for r in free if dataset == "person" and r["id"] in referenced_ids]
        target = [r for r in free if r not in kept]
        counts[(dataset, class_name)] = {
            "rows": len(target),
            "fields": {c: sum(r[c] is not None for r in target) for c in columns},
            "held": len(held),
            "referenced": len(kept),
            "undated": sum(r[ts] is None for r in rows),
        }
        if action == "delete":
            gone = {id(r) for r in target}
            tables[dataset] = [r for r in rows if id(r) not in gone]
        for r in target:
            for c in columns:
                r[c] = None
    return counts, snapshot_of(tables)


def snapshot_of(tables: dict[str, list[Row]]) -> dict[str, Any]:
    return {
        table: sorted(tuple(_normal(c, r[c]) for c in COLUMNS[table]) for r in rows)
        for table, rows in tables.items()
    }


def _normal(column: str, value: Any) -> Any:
    """Legal holds as booleans (SQLite gives 0 and 1)."""
    return bool(value) if column in HOLD.values() and value is not None else value


def counts_of(counts: list[RetentionCount]) -> dict[tuple[str, str], Row]:
    return {
        (c.rule.dataset, c.rule.class_name): {
            "rows": c.rows,
            "fields": dict(c.fields),
            "held": c.held,
            "referenced": c.referenced,
            "undated": c.undated,
        }
        for c in counts
    }


# -- the world in a database -------------------------------------------------------------------


@dataclass
class World:
    backend: str
    url: str
    registry_path: Path
    model: dict[str, list[Row]]
    engine: Engine

    def snapshot(self) -> dict[str, Any]:
        tables: dict[str, list[Row]] = {}
        with self.engine.connect() as connection:
            for table, columns in COLUMNS.items():
                result = connection.execute(text(f"SELECT {', '.join(columns)} FROM {table}"))
                tables[table] = [dict(row._mapping) for row in result]
        return snapshot_of(tables)


def _stored(backend: str, table: str, row_number: int, instant: datetime | None) -> Any:
    """A timestamp as the backend's column holds it, in a form chosen by `row_number`."""
    if backend == "postgres":
        if instant is None or table != "visit":
            return instant
        return instant.replace(tzinfo=None)  # a naive UTC `timestamp`
    if instant is None:
        return "not a date" if row_number % 2 else None
    forms = [
        instant.isoformat(),
        instant.strftime("%Y-%m-%d %H:%M:%S"),
        instant.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        instant.astimezone(timezone(timedelta(hours=2))).isoformat(),
    ]
    if table == "account":
        forms.append(int(instant.timestamp()))
    return forms[row_number % len(forms)]


def build(backend: str, url: str, directory: Path, model: dict[str, list[Row]]) -> World:
    engine = create_engine(normalise(url)[0])
    with engine.begin() as connection:
        for statement in DDL[backend]:
            connection.execute(text(statement))
        for table in ("person", "visit", "account"):
            rows = [
                {**r, TS[table]: _stored(backend, table, i, r[TS[table]])}
                for i, r in enumerate(model[table])
            ]
            columns = list(rows[0])
            connection.execute(
                text(
                    f"INSERT INTO {table} ({', '.join(columns)}) "
                    f"VALUES ({', '.join(':' + c for c in columns)})"
                ),
                rows,
            )
    path = directory / "datasets.yaml"
    registry = {
        "datastores": {"main": {"url": url, "region": "eu"}},
        "datasets": {name: {"datastore": "main", **spec} for name, spec in DATASETS.items()},
        "retention_classes": CLASSES,
    }
    path.write_text(yaml.safe_dump(registry, sort_keys=False), encoding="utf-8")
    return World(backend, url, path, model, engine)


@pytest.fixture
def pg_tokyo_url(pg_server: Engine) -> Iterator[str]:
    """A fresh PostgreSQL schema, in sessions whose time zone is not UTC."""
    schema = f"igp_retention_{secrets.token_hex(5)}"
    with pg_server.connect() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    options = f"-csearch_path={schema} -cTimeZone=Asia/Tokyo"
    yield (
        make_url(PG_BASE_URL)
        .update_query_dict({"options": options})
        .render_as_string(hide_password=False)
    )
    with pg_server.connect() as connection:
        connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'main.sqlite3'}"
    else:
        url = request.getfixturevalue("pg_tokyo_url")
    built = build(request.param, url, tmp_path, generate())
    yield built
    built.engine.dispose()


def _run(world: World, step: str) -> list[RetentionCount]:
    registry = load_registry(world.registry_path)
    pool = DatastorePool(registry)
    try:
        if step == "plan":
            return plan_retention(registry, pool, now=NOW)
        return apply_retention(registry, pool, now=NOW)
    finally:
        pool.close()


# -- tests ---------------------------------------------------------------------------------------


def test_rules_are_compiled_in_dependency_order_with_fields_grouped(tmp_path: Path) -> None:
    registry = registry_from_mapping(
        {
            "datastores": {"main": {"url": f"sqlite:///{tmp_path}/x.db", "region": "eu"}},
            "datasets": {n: {"datastore": "main", **s} for n, s in DATASETS.items()},
            "retention_classes": CLASSES,
        }
    )
    plan = compile_retention(registry, now=NOW)
    compiled = [
        (r.dataset, r.class_name, r.action, r.columns, (NOW - r.cutoff).days) for r in plan.rules
    ]
    assert compiled == RULES
    person_delete = plan.rules[4]
    assert person_delete.referenced_by == (("visit", "person_id"),)
    assert all(r.referenced_by == () for r in plan.rules if r is not person_delete)
    with pytest.raises(RetentionError, match="timezone-aware"):
        compile_retention(registry, now=NOW.replace(tzinfo=None))


def test_plan_apply_and_the_oracle_agree_and_a_second_run_changes_nothing(world: World) -> None:
    expected_counts, expected_tables = oracle(world.model)
    before = world.snapshot()

    planned = _run(world, "plan")
    assert world.snapshot() == before  # a dry run writes nothing
    assert counts_of(planned) == expected_counts
    assert not any(c.applied for c in planned)
    # The boundary, undated rows, holds and references are all exercised by this world.
    overlapped = ("account", "names-2y")  # the anonymise class nulled those names first
    assert expected_counts[overlapped]["rows"] == 0
    assert all(expected_counts[k]["rows"] > 0 for k in expected_counts if k != overlapped)
    assert all(expected_counts[k]["held"] > 0 for k in expected_counts)
    assert expected_counts[("person", "person-5y")]["referenced"] > 0

    applied = _run(world, "apply")
    assert counts_of(applied) == expected_counts
    assert world.snapshot() == expected_tables

    again = _run(world, "apply")
    assert [(c.rows, sum(c.fields.values())) for c in again] == [(0, 0)] * len(RULES)
    assert world.snapshot() == expected_tables
    assert [c.rows for c in _run(world, "plan")] == [0] * len(RULES)


def test_rows_on_legal_hold_and_rows_inside_the_cutoff_are_untouched(world: World) -> None:
    _run(world, "apply")
    after = {table: {row[0]: row for row in rows} for table, rows in world.snapshot().items()}
    shortest = {"person": 365, "visit": 30, "account": 365}  # the shortest class of each table
    untouched = 0
    for table, rows in world.model.items():
        for row in rows:
            written = row[TS[table]]
            young = written is None or written >= NOW - timedelta(days=shortest[table])
            if row[HOLD[table]] or young:
                expected = tuple(_normal(c, row[c]) for c in COLUMNS[table])
                assert after[table].get(row[KEY[table]]) == expected, (table, row)
                untouched += 1
    assert untouched > len(world.model["person"]) // 2


def test_rows_still_referenced_are_kept_and_foreign_keys_hold(world: World) -> None:
    _run(world, "apply")
    with world.engine.connect() as connection:
        dangling = connection.execute(
            text("SELECT COUNT(*) FROM visit WHERE person_id NOT IN (SELECT id FROM person)")
        ).scalar_one()
        kept_old = connection.execute(
            text("SELECT COUNT(*) FROM person WHERE id IN (SELECT person_id FROM visit)")
        ).scalar_one()
    assert dangling == 0
    assert kept_old > 0


# -- compile-time refusals ----------------------------------------------------------------------


def _registry(tmp_path: Path, **changes: Any) -> dict[str, Any]:
    datasets = copy.deepcopy({n: {"datastore": "main", **s} for n, s in DATASETS.items()})
    for name, spec in changes.items():
        datasets[name].update(spec)
    return {
        "datastores": {
            "main": {"url": f"sqlite:///{tmp_path}/main.db", "region": "eu"},
            "other": {"url": f"sqlite:///{tmp_path}/other.db", "region": "eu"},
        },
        "datasets": datasets,
        "retention_classes": {**CLASSES, "visits-10y": {"max_age": "10y", "action": "delete"}},
    }


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"visit": {"retention": None, "fields": {}}}, "visit.person_id references"),
        ({"visit": {"retention": "visits-10y"}}, "within 5y"),
        ({"visit": {"datastore": "other"}}, "from datastore 'other'"),
    ],
)
def test_removing_referenced_rows_needs_covered_referrers(
    tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    registry = registry_from_mapping(_registry(tmp_path, **changes))
    with pytest.raises(RetentionError, match=message):
        compile_retention(registry, now=NOW)


def test_a_referrer_that_nulls_its_link_in_time_covers_the_parent(tmp_path: Path) -> None:
    changes = {"visit": {"retention": None, "fields": {"person_id": {"retention": "contact-1y"}}}}
    plan = compile_retention(registry_from_mapping(_registry(tmp_path, **changes)), now=NOW)
    assert ("visit", "contact-1y", ("person_id",)) in [
        (r.dataset, r.class_name, r.columns) for r in plan.rules
    ]


# -- the CLI ---------------------------------------------------------------------------------------


def cli(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="intelgraph-privacy")
    add_retention_commands(parser.add_subparsers())
    code = run(parser, [str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    with open_store(url):
        pass
    return url


def test_cli_plan_and_apply_print_counts_and_audit_each_rule(
    capsys: pytest.CaptureFixture[str], world: World, store_url: str
) -> None:
    expected_counts, expected_tables = oracle(world.model)
    registry = ("--registry", world.registry_path, "--now", "2024-06-01T12:00:00Z")

    code, out, err = cli(capsys, "retention", "plan", *registry, "--json")
    assert code == 0, err
    report = codec.loads(out)
    assert (report["now"], report["applied"]) == ("2024-06-01T12:00:00Z", False)
    assert {(r["dataset"], r["class"]): r["rows"] for r in report["rules"]} == {
        k: v["rows"] for k, v in expected_counts.items()
    }
    code, table, err = cli(capsys, "retention", "plan", *registry)
    assert code == 0, err
    assert table.splitlines()[1].split() == [
        "DATASET", "CLASS", "ACTION", "CUTOFF", "ROWS", "HELD", "REFERENCED", "UNDATED", "FIELDS",
    ]  # fmt: skip
    assert cli(capsys, "retention", "plan", *registry)[1] == table  # stable output

    code, out, err = cli(capsys, "retention", "apply", *registry, "--json", "--store", store_url)
    assert code == 0, err
    report = codec.loads(out)
    assert report["applied"] is True
    assert {(r["dataset"], r["class"]): r["fields"] for r in report["rules"]} == {
        k: v["fields"] for k, v in expected_counts.items()
    }
    assert world.snapshot() == expected_tables

    code, out, err = cli(capsys, "retention", "apply", *registry, "--store", store_url)
    assert code == 0, err
    assert out.startswith("retention applied at 2024-06-01T12:00:00Z: 7 rules, 0 rows changed")

    with open_store(store_url, migrate=False) as store:
        log = AuditLog(store)
        assert log.verify().ok
        entries = log.tail(100)
    assert len(entries) == 2 * len(RULES)
    first = [e.record for e in entries[: len(RULES)]]
    assert [r.operation_name for r in first] == [f"retention:{d}" for d, *_ in RULES]
    assert len({r.request_id for r in first}) == 1
    person = first[4]
    rows = expected_counts[("person", "person-5y")]["rows"]
    assert person.detail is not None
    assert person.detail.startswith(f"delete {rows} rows (class person-5y, max_age 5y, cutoff ")
    values = {str(v) for rows_ in world.model.values() for r in rows_ for v in r.values() if v}
    assert not any(v in (r.detail or "") for r in first for v in values if len(v) > 4)
    assert all(e.record.detail and " 0 rows" in e.record.detail for e in entries[len(RULES) :])


def test_cli_errors_exit_1_and_change_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, store_url: str
) -> None:
    code, _, err = cli(capsys, "retention", "plan", "--registry", tmp_path / "missing.yaml")
    assert code == 1
    assert err.startswith("error:")

    unreachable = {  # name -> (url, what the error says)
        "no-dir": (f"sqlite:///{tmp_path}/no/such/dir/main.db", "does not exist"),
        "sqlite": (f"sqlite:///{tmp_path}", "no SQLite database"),
        "postgres": (
            "postgresql://postgres@127.0.0.1:1/test?connect_timeout=2",
            "retention account (main, class accounts-1y): OperationalError",
        ),
    }
    for name, (url, says) in unreachable.items():
        registry = _registry(tmp_path)
        registry["datastores"]["main"]["url"] = url
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(registry), encoding="utf-8")
        for extra in ((), ("--store", store_url)):
            step = "apply" if extra else "plan"
            code, _, err = cli(capsys, "retention", step, "--registry", path, *extra)
            assert code == 1, (name, step)
            assert err.startswith("error: ") and says in err, err

    with open_store(store_url, migrate=False) as store:
        assert AuditLog(store).tail(10) == []


# -- the property ----------------------------------------------------------------------------------

ITEM_CLASSES = {
    "rows": {"max_age": "10d", "action": "delete"},
    "anon": {"max_age": "10d", "action": "anonymise"},
    "b-3d": {"max_age": "3d", "action": "null"},
    "c-20d": {"max_age": "20d", "action": "null"},
}
CUTOFF = {name: NOW - timedelta(days=int(c["max_age"][:-1])) for name, c in ITEM_CLASSES.items()}

items = st.lists(
    st.fixed_dictionaries(
        {
            # Near a cutoff (to the second) or anywhere in the last 40 days.
            "ts": st.one_of(
                st.builds(
                    lambda c, s: c + timedelta(seconds=s),
                    st.sampled_from(sorted(CUTOFF.values())),
                    st.integers(-2, 2),
                ),
                st.builds(lambda s: NOW - timedelta(seconds=s), st.integers(0, 40 * 86400)),
            ),
            "hold": st.sampled_from([None, 0, 1]),
            "a": st.sampled_from([None, "a"]),
            "b": st.sampled_from([None, "b"]),
            "c": st.sampled_from([None, "c"]),
            "subject": st.sampled_from([None, "s"]),
        }
    ),
    max_size=25,
)


@settings(max_examples=60, deadline=None)
@given(rows=items, row_class=st.sampled_from(["rows", "anon"]))
def test_property_expired_values_are_gone_and_nothing_younger_is_touched(
    rows: list[Row], row_class: str
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        url = f"sqlite:///{directory}/items.db"
        engine = create_engine(url)
        with engine.begin() as connection:
            connection.execute(
                text(
                    "CREATE TABLE item (id INTEGER PRIMARY KEY, ts TEXT, hold INTEGER, "
                    "a TEXT, b TEXT, c TEXT, subject TEXT)"
                )
            )
            for i, row in enumerate(rows):
                connection.execute(
                    text("INSERT INTO item VALUES (:id, :ts, :hold, :a, :b, :c, :subject)"),
                    {**row, "id": i, "ts": row["ts"].isoformat()},
                )
        registry = registry_from_mapping(
            {
                "datastores": {"main": {"url": url, "region": "eu"}},
                "datasets": {
                    "item": {
                        "datastore": "main",
                        "table": "item",
                        "subject_key": "subject",
                        "tenants": ["*"],
                        "timestamp_column": "ts",
                        "legal_hold_column": "hold",
                        "retention": row_class,
                        "anonymise": ["a"],
                        "fields": {
                            "b": {"retention": "b-3d"},
                            "c": {"retention": "c-20d"},
                            # Also nulled by the anonymise class: the rules overlap.
                            "subject": {"retention": "c-20d"},
                        },
                    }
                },
                "retention_classes": ITEM_CLASSES,
            }
        )
        pool = DatastorePool(registry)
        try:
            planned = plan_retention(registry, pool, now=NOW)
            applied = apply_retention(registry, pool, now=NOW)
            again = apply_retention(registry, pool, now=NOW)
        finally:
            pool.close()
        with engine.connect() as connection:
            after = {
                r.id: r._mapping
                for r in connection.execute(text("SELECT id, a, b, c, subject FROM item"))
            }
        engine.dispose()

    assert [(c.rows, dict(c.fields)) for c in planned] == [
        (c.rows, dict(c.fields)) for c in applied
    ]
    assert all(c.rows == 0 for c in again)
    removes = {"b": ["b-3d"], "c": ["c-20d"], "subject": ["c-20d"]}
    if row_class == "anon":
        removes["a"] = ["anon"]
        removes["subject"].append("anon")
    for i, row in enumerate(rows):
        kept = after.get(i)
        if row["hold"]:
            assert kept is not None
            assert all(kept[c] == row[c] for c in "abc")
            continue
        if row_class == "rows" and row["ts"] < CUTOFF["rows"]:
            assert kept is None
            continue
        assert kept is not None
        for column in ("a", "b", "c", "subject"):
            classes = removes.get(column, [])
            expired = bool(classes) and row["ts"] < max(CUTOFF[c] for c in classes)
            assert kept[column] == (None if expired else row[column]), (column, row)


def test_apply_rebuilds_the_derived_datasets_built_from_what_changed(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, store_url: str
) -> None:
    """A derived dataset copying expired rows would keep them: apply rebuilds it, audited."""
    database = tmp_path / "events.sqlite3"
    engine = create_engine(f"sqlite:///{database}")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE events (id INTEGER PRIMARY KEY, at TEXT, kind TEXT)"))
        connection.execute(text("CREATE TABLE event_counts (kind TEXT, n INTEGER)"))
        connection.execute(
            text("INSERT INTO events (id, at, kind) VALUES (:i, :at, :k)"),
            [
                {"i": 1, "at": "2020-01-01T00:00:00Z", "k": "login"},
                {"i": 2, "at": "2024-05-30T00:00:00Z", "k": "login"},
                {"i": 3, "at": "2019-03-01T00:00:00Z", "k": "view"},
            ],
        )
        connection.execute(text("INSERT INTO event_counts VALUES ('login', 2), ('view', 1)"))
    engine.dispose()
    registry = {
        "datastores": {"main": {"url": f"sqlite:///{database}", "region": "eu"}},
        "datasets": {
            "events": {
                "datastore": "main",
                "table": "events",
                "tenants": ["*"],
                "timestamp_column": "at",
                "retention": "events-1y",
            },
            "event_counts": {
                "datastore": "main",
                "table": "event_counts",
                "tenants": ["*"],
                "derived": {
                    "sources": ["events"],
                    "query": "SELECT kind, COUNT(*) FROM events GROUP BY kind",
                },
            },
        },
        "retention_classes": {"events-1y": {"max_age": "1y", "action": "delete"}},
    }
    path = tmp_path / "datasets.yaml"
    path.write_text(yaml.safe_dump(registry), encoding="utf-8")
    args = ("--registry", path, "--now", "2024-06-01T00:00:00Z", "--store", store_url)
    code, out, err = cli(capsys, "retention", "apply", *args, "--json")
    assert code == 0, err
    report = codec.loads(out)
    assert report["rows"] == 2 and report["rebuilt"] == [{"dataset": "event_counts", "rows": 1}]
    engine = create_engine(f"sqlite:///{database}")
    with engine.connect() as connection:
        counts = connection.execute(text("SELECT kind, n FROM event_counts")).all()
    engine.dispose()
    assert [tuple(r) for r in counts] == [("login", 1)]
    with open_store(store_url, migrate=False) as store:
        details = [e.record.detail for e in AuditLog(store).tail(10)]
    assert "rebuilt derived dataset: 1 rows" in details
    # Every run rebuilds them (a run stopped before its rebuilds leaves nothing stale for long).
    code, out, err = cli(capsys, "retention", "apply", *args)
    assert code == 0 and "rebuilt derived dataset event_counts: 1 rows" in out, out
