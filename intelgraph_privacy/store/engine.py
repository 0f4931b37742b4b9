"""The Store: one SQLAlchemy engine on SQLite or PostgreSQL, transactions, locks, migrations."""

from __future__ import annotations

import sqlite3
import time
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from sqlalchemy import Connection, Engine, MetaData, create_engine, event, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from intelgraph_privacy.errors import ConfigError
from intelgraph_privacy.store import schema
from intelgraph_privacy.store.errors import StoreError
from intelgraph_privacy.store.migrations import (
    MIGRATIONS,
    Migration,
    applied_versions,
    apply_pending,
)
from intelgraph_privacy.store.urls import Dialect, mask, normalise, sqlite_url_for

#: Seconds a SQLite connection waits for another writer's lock (`?timeout=` in the URL overrides).
SQLITE_BUSY_TIMEOUT = 30.0
#: Seconds to wait for a PostgreSQL connection (`?connect_timeout=` in the URL overrides).
PG_CONNECT_TIMEOUT = 10
#: How the store's PostgreSQL sessions appear in pg_stat_activity (`?application_name=` overrides).
PG_APPLICATION_NAME = "intelgraph-privacy"

# Execution option read by the SQLite "begin" hook: which BEGIN to emit.
_SQLITE_BEGIN = "intelgraph_sqlite_begin"


def _describe(exc: BaseException) -> str:
    """The first line of a database error, without SQLAlchemy's statement dump and links."""
    cause: BaseException = exc.orig if isinstance(exc, DBAPIError) and exc.orig else exc
    message = str(cause).strip().splitlines()
    return message[0] if message else type(cause).__name__


def _lock_key(name: str) -> int:
    """A stable signed 32-bit key for a lock name."""
    key = zlib.crc32(name.encode())
    return key - (1 << 32) if key >= (1 << 31) else key


def _enable_wal(cursor: Any) -> None:
    """Switch the file to WAL: readers never block the writer, the writer never blocks readers."""
    deadline: float | None = None
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            # Switching a fresh file needs an exclusive lock, and SQLite reports "locked" at once
            # (no busy wait) when another process is writing it: retry within the busy timeout.
            if "locked" not in str(exc):
                raise
            if deadline is None:
                busy_ms = cursor.execute("PRAGMA busy_timeout").fetchone()[0]
                deadline = time.monotonic() + busy_ms / 1000
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Take BEGIN away from the sqlite3 module (it skips BEGIN before SELECT and DDL), so that the
    # "begin" hook below decides: plain BEGIN for reads, BEGIN IMMEDIATE for writes.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        _enable_wal(cursor)
        cursor.execute("PRAGMA foreign_keys=ON")
        # Explicit, whatever the build's default: an acknowledged commit survives a power cut.
        cursor.execute("PRAGMA synchronous=FULL")
    finally:
        cursor.close()


def _sqlite_on_begin(connection: Connection) -> None:
    mode = connection.get_execution_options().get(_SQLITE_BEGIN, "DEFERRED")
    if connection.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
        return  # each statement is its own transaction: never hold a snapshot open
    connection.exec_driver_sql(f"BEGIN {mode}")


def _create_engine(url: URL, dialect: Dialect) -> Engine:
    connect_args: dict[str, Any] = {}
    if dialect == "sqlite":
        if "timeout" not in url.query:
            connect_args["timeout"] = SQLITE_BUSY_TIMEOUT
        engine = create_engine(url, connect_args=connect_args)
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    if "connect_timeout" not in url.query:
        connect_args["connect_timeout"] = PG_CONNECT_TIMEOUT
    if "application_name" not in url.query:
        connect_args["application_name"] = PG_APPLICATION_NAME
    # pre-ping: a pooled connection the server has dropped (restart, pg_terminate_backend, idle
    # timeout) is replaced on checkout instead of failing the next statement.
    return create_engine(url, connect_args=connect_args, pool_pre_ping=True)


class Store:
    """One database (SQLite file or PostgreSQL) holding every table of the product.

    Build it with `open_store`. `url` is printable: its password is masked.
    """

    metadata: MetaData = schema.metadata

    def __init__(self, url: URL, dialect: Dialect, engine: Engine) -> None:
        self._url = url
        self.url: str = mask(url)
        self.dialect: Dialect = dialect
        self.engine: Engine = engine

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    __str__ = __repr__

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A write transaction, committed when the block exits normally, else rolled back.

        On SQLite it starts with BEGIN IMMEDIATE: it takes the database's write lock up front
        (waiting up to the busy timeout), so a read-then-write never fails half-way on a lock
        upgrade. Database errors are raised as StoreError.
        """
        with self._connection(write=True) as connection, connection.begin():
            yield connection

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read transaction (one consistent snapshot on SQLite; never blocks a writer there)."""
        with self._connection(write=False) as connection, connection.begin():
            yield connection

    @contextmanager
    def _connection(self, *, write: bool) -> Iterator[Connection]:
        try:
            with self.engine.connect() as connection:
                if self.dialect == "sqlite":
                    connection.execution_options(
                        **{_SQLITE_BEGIN: "IMMEDIATE" if write else "DEFERRED"}
                    )
                yield connection
        except SQLAlchemyError as exc:
            raise StoreError(f"{self.url}: {_describe(exc)}") from exc

    def lock(self, connection: Connection, name: str) -> None:
        """Serialise this transaction with every other one that locks `name` on this database.

        PostgreSQL: a transaction-scoped advisory lock keyed by `name` and the current schema
        (released at commit or rollback). SQLite: the write transaction of `begin()` already
        holds the database's only write lock, so there is nothing more to take.
        """
        if self.dialect == "postgresql":
            connection.execute(
                text(
                    "SELECT pg_advisory_xact_lock(CAST(:key AS integer), "
                    "hashtext(coalesce(current_schema(), '')))"
                ),
                {"key": _lock_key(name)},
            )
        elif connection.get_execution_options().get(_SQLITE_BEGIN) != "IMMEDIATE":
            raise StoreError("Store.lock() needs a write transaction: use Store.begin()")

    def migrate(self, migrations: Sequence[Migration] | None = None) -> list[int]:
        """Apply the pending migrations in one locked transaction; return their versions.

        Idempotent, and safe when several processes migrate one database at once: the others
        wait for the lock, then find nothing left to do. `migrations` defaults to the product's
        registry (`intelgraph_privacy.store.MIGRATIONS`); tests pass their own.
        """
        with self.begin() as connection:
            self.lock(connection, "schema_migrations")
            return apply_pending(
                connection, self.dialect, MIGRATIONS if migrations is None else migrations
            )

    def schema_version(self) -> int:
        """The highest migration version applied to the database (0 when none)."""
        with self.read() as connection:
            return max(applied_versions(connection), default=0)

    def ping(self) -> None:
        """Check that the database answers; raise ConfigError (password masked) if not."""
        try:
            with self.engine.connect() as connection:
                connection.exec_driver_sql("SELECT 1")
                connection.rollback()
        except SQLAlchemyError as exc:
            raise ConfigError(f"cannot open the store {self.url}: {_describe(exc)}") from None

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


def open_store(
    url: str | None = None, *, data_dir: Path | None = None, migrate: bool = True
) -> Store:
    """Open the store at `url`, or the SQLite file `<data_dir>/intelgraph.sqlite3` when it is None.

    URLs: `sqlite:///path`, `postgresql+psycopg://user:password@host:port/db` (also accepted:
    `postgresql://` and `postgres://`). The database is contacted at once: a bad URL or an
    unreachable database raises ConfigError with the password masked. With `migrate` (the
    default) pending migrations are applied.
    """
    if url is None:
        if data_dir is None:
            raise ConfigError("open_store() needs a store URL or a data directory")
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            message = f"cannot create the data directory {str(data_dir)!r}: {exc}"
            raise ConfigError(message) from None
        url = sqlite_url_for(data_dir)
    sa_url, dialect = normalise(url)
    try:
        engine = _create_engine(sa_url, dialect)
    except (SQLAlchemyError, ValueError, TypeError) as exc:
        raise ConfigError(f"invalid store URL {mask(sa_url)!r}: {_describe(exc)}") from None
    store = Store(sa_url, dialect, engine)
    try:
        store.ping()
        if migrate:
            store.migrate()
    except BaseException:
        store.close()
        raise
    return store
