"""Connections to the registry's datastores, and the SQL pieces that differ between backends.

Each datastore gets one SQLAlchemy engine, opened on first use. Identifiers come from the
registry (checked to be plain identifiers) and are quoted by the dialect anyway; values are
always bound parameters. A set of values is one parameter on both backends, whatever its size:
`= ANY(:p)` (a PostgreSQL array) or `IN (SELECT value FROM json_each(:p))` (SQLite), so a batch of
ten thousand subjects needs no chunking and no temporary table.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event

from intelgraph_privacy.errors import ConfigError
from intelgraph_privacy.rtbf.registry import DatasetRegistry, Datastore
from intelgraph_privacy.store.urls import mask, normalise

__all__ = ["DatastorePool", "SqlDialect"]


class SqlDialect:
    """Quoting and value-set predicates for one datastore's backend."""

    def __init__(self, engine: Engine) -> None:
        self.name = engine.dialect.name
        self._quote = engine.dialect.identifier_preparer.quote

    def q(self, identifier: str) -> str:
        """`identifier`, quoted for this backend."""
        return self._quote(identifier)

    def member_of(self, column: str, parameter: str) -> str:
        """SQL true when `column` is one of the values bound to `parameter` (see `values`)."""
        if self.name == "postgresql":
            return f"{self.q(column)} = ANY(:{parameter})"
        return f"{self.q(column)} IN (SELECT value FROM json_each(:{parameter}))"

    def values(self, values: Iterable[Any]) -> Any:
        """The bound value of a value set, for `member_of`."""
        listed = list(values)
        if self.name == "postgresql":
            return listed
        try:
            return json.dumps(listed)
        except TypeError as exc:  # bytes keys, for instance
            raise ConfigError(f"key values cannot be matched as a set: {exc}") from None


class DatastorePool:
    """One engine per datastore of a registry, opened on first use; `close()` disposes them."""

    def __init__(self, registry: DatasetRegistry) -> None:
        self._stores: Mapping[str, Datastore] = registry.datastores
        self._engines: dict[str, Engine] = {}

    def engine(self, datastore: str) -> Engine:
        """The engine of the datastore called `datastore`."""
        engine = self._engines.get(datastore)
        if engine is None:
            spec = self._stores[datastore]
            url, dialect = normalise(spec.url)
            if dialect == "sqlite" and url.database and not Path(url.database).is_file():
                # Connecting would create an empty database and report "no such table".
                raise ConfigError(f"datastore {datastore}: no SQLite database at {url.database}")
            try:
                engine = create_engine(url, pool_pre_ping=True)
            except Exception as exc:  # a bad URL: say which datastore, password masked
                raise ConfigError(f"datastore {datastore} ({mask(url)}): {exc}") from None
            if dialect == "sqlite":
                event.listen(engine, "connect", _sqlite_pragmas)
            self._engines[datastore] = engine
        return engine

    def dialect(self, datastore: str) -> SqlDialect:
        """Quoting and predicates for the datastore's backend."""
        return SqlDialect(self.engine(datastore))

    def connect(self, datastore: str) -> Connection:
        """A new connection to the datastore (the caller closes it)."""
        return self.engine(datastore).connect()

    def close(self) -> None:
        """Dispose every engine."""
        for engine in self._engines.values():
            engine.dispose()
        self._engines.clear()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Wait for a writer instead of failing at once, and honour the tables' foreign keys.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout = 30000")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()
