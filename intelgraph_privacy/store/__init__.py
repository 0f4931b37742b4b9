"""Persistence for every table of the product: SQLite (embedded default) or PostgreSQL.

`open_store(url)` returns a `Store`; `Store.begin()` is a write transaction, `Store.lock()`
serialises writers across processes, `Store.migrate()` applies the migration registry.
"""

from intelgraph_privacy.store.engine import Store, open_store
from intelgraph_privacy.store.errors import StoreError
from intelgraph_privacy.store.migrations import (
    MIGRATIONS,
    Migration,
    MigrationFn,
    add_columns,
    create_tables,
)
from intelgraph_privacy.store.schema import UTCDateTime, metadata
from intelgraph_privacy.store.urls import Dialect

__all__ = [
    "MIGRATIONS",
    "Dialect",
    "Migration",
    "MigrationFn",
    "Store",
    "StoreError",
    "UTCDateTime",
    "add_columns",
    "create_tables",
    "metadata",
    "open_store",
]
