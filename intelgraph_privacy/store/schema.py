"""Every table of the product, on one MetaData.

Table objects here describe the *current* shape of each table; the migrations in
`intelgraph_privacy.store.migrations` create and change them on disk. Add a table here, then a
migration that creates it (see docs/store-and-audit.md).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.engine import Dialect as SADialect
from sqlalchemy.types import TypeDecorator

#: Names for constraints and indexes, so that migrations can refer to them on both backends.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on both backends.

    PostgreSQL stores TIMESTAMPTZ. SQLite has no time zones, and SQLAlchemy would silently drop
    the offset of an aware datetime, so values are converted to UTC before they are stored and
    marked UTC when read. Naive datetimes are refused: their meaning is ambiguous.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: SADialect) -> Any:
        """Convert to UTC (naive UTC on SQLite)."""
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} (a time zone is required)")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: SADialect) -> datetime | None:
        """Return an aware UTC datetime."""
        if value is None:
            return None
        if not isinstance(value, datetime):  # pragma: no cover - both drivers return datetimes
            raise TypeError(f"expected a datetime from the database, got {type(value).__name__}")
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# BIGINT on PostgreSQL; plain INTEGER on SQLite, where an INTEGER PRIMARY KEY is the row id
# (64-bit there too) and so the clustered order of the table.
BigKey = BigInteger().with_variant(Integer(), "sqlite")


schema_migrations = Table(
    "schema_migrations",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("description", Text, nullable=False),
    Column("applied_at", UTCDateTime, nullable=False),
)

audit_log = Table(
    "audit_log",
    metadata,
    # Assigned by AuditLog.append under a lock: 1..n without gaps (never a sequence/autoincrement,
    # which leaves gaps on rollback).
    Column("seq", BigKey, primary_key=True, autoincrement=False),
    Column("ts", UTCDateTime, nullable=False),
    Column("request_id", Text, nullable=False),
    Column("sub", Text),
    Column("tenant", Text),
    Column("purpose", Text),
    Column("operation_name", Text),
    Column("operation_type", Text),
    Column("document_hash", String(64)),
    # Canonical JSON text (intelgraph_privacy.codec.dumps with sorted keys).
    Column("redacted", Text, nullable=False),
    Column("policy_version", Text),
    Column("catalog_version", Text),
    Column("status", Integer, nullable=False),
    Column("mode", Text, nullable=False),
    Column("detail", Text),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    # Not part of the hashed record: set on the last row of an append that carried a batch id,
    # so that a retried append (commit outcome unknown) is not written twice.
    Column("batch_id", String(64)),
    Index(None, "ts"),
    Index(None, "batch_id"),
)
