"""Shared fixtures: the demo schema, catalog and shipped policies, loaded once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# regorus appends Rust backtraces to its error messages when this is set.
os.environ["RUST_BACKTRACE"] = "0"

from intelgraph_privacy import (
    Catalog,
    PolicyEngine,
    Principal,
    Redactor,
    load_catalog,
    load_schema,
)

ROOT = Path(__file__).resolve().parents[1]
PRESETS = ROOT / "presets"
REGO = ROOT / "rego"
TEST_PSEUDONYM_KEY = b"test-pseudonym-key-0123456789"


@pytest.fixture(scope="session")
def demo_schema():  # type: ignore[no-untyped-def]
    return load_schema(PRESETS / "demo.graphql")


@pytest.fixture(scope="session")
def demo_catalog(demo_schema) -> Catalog:  # type: ignore[no-untyped-def]
    return load_catalog(PRESETS / "catalog.yaml", demo_schema)


@pytest.fixture(scope="session")
def shipped_policy() -> PolicyEngine:
    return PolicyEngine(REGO)


@pytest.fixture(scope="session")
def redactor(demo_schema, demo_catalog, shipped_policy) -> Redactor:  # type: ignore[no-untyped-def]
    return Redactor(demo_schema, demo_catalog, shipped_policy, pseudonym_key=TEST_PSEUDONYM_KEY)


def principal(*roles: str, purpose: str = "investigation") -> Principal:
    """A principal of tenant t1 with these roles."""
    return Principal(sub="u1", tenant="t1", roles=roles, purpose=purpose)


# Store fixtures (SQLite files, PostgreSQL schemas) and end-to-end fixtures (sample graph, keys,
# sidecars), for every test module.
from tests.db_fixtures import (  # noqa: E402
    fresh_pg_url,
    pg_server,
    pg_store,
    pg_url,
    sqlite_store,
    sqlite_url,
    store,
    store_url,
)
from tests.sidecar_env import demo_sidecar, sample_db, sidecar, test_keys, upstream  # noqa: E402

__all__ = [
    "demo_sidecar",
    "fresh_pg_url",
    "pg_server",
    "pg_store",
    "pg_url",
    "sample_db",
    "sidecar",
    "sqlite_store",
    "sqlite_url",
    "store",
    "store_url",
    "test_keys",
    "upstream",
]
