"""Database fixtures for the whole suite (tests/conftest.py imports them for every module).

- `pg_server` (session): an AUTOCOMMIT engine on the PostgreSQL test database, for admin work.
  When the server is unreachable it skips, or fails loudly when CI=true.
- `pg_url` (session): the URL of a fresh schema for this test session, dropped at the end.
- `fresh_pg_url` / `pg_store` (function): a fresh schema for one test (no test sees another's rows).
- `sqlite_url` / `sqlite_store` (function): a SQLite file in the test's tmp_path.
- `store_url` / `store` (function): parametrised over both backends; the postgres case is marked
  `postgres`. `store` is open and migrated.

Schema names are `igp_test_<pid>_<random>`, so concurrent test runs never collide. Point the
fixtures at another server with IGP_TEST_PG_URL (default: postgres@127.0.0.1:5432/test).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from intelgraph_privacy.store import Store, open_store

PG_BASE_URL = os.environ.get("IGP_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")

__all__ = [
    "PG_BASE_URL",
    "fresh_pg_url",
    "pg_schema_url",
    "pg_server",
    "pg_store",
    "pg_url",
    "sqlite_store",
    "sqlite_url",
    "store",
    "store_url",
]


def pg_schema_url(schema_name: str, **query: str) -> str:
    """The test server's URL with `search_path` set to `schema_name` (plus extra query items)."""
    url = make_url(PG_BASE_URL).update_query_dict(
        {"options": f"-csearch_path={schema_name}", **query}
    )
    return url.render_as_string(hide_password=False)


def _create_schema(admin: Engine) -> str:
    name = f"igp_test_{os.getpid()}_{secrets.token_hex(6)}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE SCHEMA "{name}"')
    return name


def _drop_schema(admin: Engine, name: str) -> None:
    with admin.connect() as connection:
        connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Engine]:
    """An AUTOCOMMIT engine on the test database; skip (fail when CI=true) if it is unreachable."""
    engine = create_engine(
        make_url(PG_BASE_URL).set(drivername="postgresql+psycopg"),
        isolation_level="AUTOCOMMIT",
        poolclass=NullPool,
        connect_args={"connect_timeout": 3},
    )
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
    except SQLAlchemyError as exc:
        engine.dispose()
        where = make_url(PG_BASE_URL).render_as_string(hide_password=True)
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        message = f"PostgreSQL is unreachable at {where}: {reason}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message} (CI=true: PostgreSQL tests must run, not skip)", pytrace=False)
        pytest.skip(message)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def pg_url(pg_server: Engine) -> Iterator[str]:
    """A fresh PostgreSQL schema for the whole test session (dropped at the end)."""
    name = _create_schema(pg_server)
    yield pg_schema_url(name)
    _drop_schema(pg_server, name)


@pytest.fixture
def fresh_pg_url(pg_server: Engine) -> Iterator[str]:
    """A fresh, empty PostgreSQL schema for one test (dropped after it)."""
    name = _create_schema(pg_server)
    yield pg_schema_url(name)
    _drop_schema(pg_server, name)


@pytest.fixture
def pg_store(fresh_pg_url: str) -> Iterator[Store]:
    """A migrated store in a fresh PostgreSQL schema of its own."""
    with open_store(fresh_pg_url) as opened:
        yield opened


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """The URL of a (not yet created) SQLite file in the test's tmp_path."""
    return f"sqlite:///{tmp_path / 'store.sqlite3'}"


@pytest.fixture
def sqlite_store(sqlite_url: str) -> Iterator[Store]:
    """A migrated store in a fresh SQLite file."""
    with open_store(sqlite_url) as opened:
        yield opened


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest) -> str:
    """A fresh, empty database URL of each backend."""
    name = "sqlite_url" if request.param == "sqlite" else "fresh_pg_url"
    url: str = request.getfixturevalue(name)
    return url


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """A migrated store on each backend (fresh per test)."""
    with open_store(store_url) as opened:
        yield opened
