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
    Float,
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

# -- purpose-bound tokens and the admin API (migration 2) --------------------------------------

#: Revoked token ids. Rows past `expires_at` may be pruned: the token is refused as too old then.
revoked_tokens = Table(
    "revoked_tokens",
    metadata,
    Column("jti", String(255), primary_key=True),
    Column("revoked_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("revoked_by", Text, nullable=False),
    Column("reason", Text),
    Index(None, "expires_at"),
)

#: Sensitivity tiers set through the admin API; they override the catalog file's entries.
redaction_rules = Table(
    "redaction_rules",
    metadata,
    Column("coordinate", String(255), primary_key=True),
    Column("tier", String(16), nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("updated_by", Text, nullable=False),
)

#: One counter per kind of shared state (redaction rules, revocations). Every change bumps its
#: counter in the same transaction, so replicas learn of changes with a one-row read.
state_versions = Table(
    "state_versions",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("version", BigInteger, nullable=False),
)

#: Cost caps a human approved (the cost engine applies them).
cost_shapes = Table(
    "cost_shapes",
    metadata,
    Column("id", BigKey, primary_key=True, autoincrement=True),
    Column("op_id", String(255), nullable=False),
    Column("tenant", Text, nullable=False),
    Column("cap_usd", Float, nullable=False),
    Column("approved_by", Text, nullable=False),
    Column("approved_at", UTCDateTime, nullable=False),
    Column("status", String(16), nullable=False),
    Index(None, "op_id", "tenant"),
)

#: Right-to-be-forgotten jobs (the orchestrator works through them).
rtbf_jobs = Table(
    "rtbf_jobs",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("subject_id", Text, nullable=False),
    Column("scope", Text, nullable=False),
    Column("tenant", Text, nullable=False),
    Column("requested_by", Text, nullable=False),
    Column("requested_at", UTCDateTime, nullable=False),
    Column("status", String(16), nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # Migration 4: the subject's keyed hash (subject_id holds it too once the job is accepted:
    # the store never keeps an erased subject's id), the plan's regions, the outcome.
    Column("subject_hash", String(64)),
    Column("regions", Text),
    Column("policy_version", Text),
    Column("completed_at", UTCDateTime),
    Column("error", Text),
    Column("manifest", Text),
    # Migration 5: the worker running the job, until when (a worker that died lets go then).
    Column("lease_owner", String(128)),
    Column("lease_until", UTCDateTime),
    Index(None, "status"),
)

#: One dataset's work in an erasure job, recorded before and after it runs (resumable).
rtbf_steps = Table(
    "rtbf_steps",
    metadata,
    Column("job_id", String(36), primary_key=True),
    Column("dataset", String(128), primary_key=True),
    Column("region", String(128), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("op", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("rows_found", BigInteger),
    Column("rows_affected", BigInteger),
    Column("remaining", BigInteger),
    Column("attempts", Integer, nullable=False),
    Column("started_at", UTCDateTime),
    Column("finished_at", UTCDateTime),
    Column("error", Text),
)

#: Each region's signed sub-manifest of a job (the job completes when every region reported).
rtbf_region_reports = Table(
    "rtbf_region_reports",
    metadata,
    Column("job_id", String(36), primary_key=True),
    Column("region", String(128), primary_key=True),
    Column("reported_at", UTCDateTime, nullable=False),
    Column("report", Text, nullable=False),
)

#: Erased subjects: the keyed hash of the subject id (never the id), per tenant.
tombstones = Table(
    "tombstones",
    metadata,
    Column("tenant", String(255), primary_key=True),
    Column("subject_hash", String(64), primary_key=True),
    Column("job_id", String(36), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

#: Access reviews (the SCIM module opens and closes them).
access_reviews = Table(
    "access_reviews",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("opened_at", UTCDateTime, nullable=False),
    Column("due_at", UTCDateTime),
    Column("closed_at", UTCDateTime),
    Index(None, "tenant", "status"),
)

# -- differential privacy budget ledger (migration 3) -----------------------------------------

#: Privacy budget spent per tenant, purpose and window. Amounts are integers in units of 1e-9
#: epsilon (and 1e-12 delta), so that debits add exactly and a check-and-add is one statement.
privacy_budget = Table(
    "privacy_budget",
    metadata,
    Column("tenant", String(255), primary_key=True),
    Column("purpose", String(64), primary_key=True),
    Column("window_start", UTCDateTime, primary_key=True),
    Column("epsilon_budget", BigInteger, nullable=False),
    Column("epsilon_spent", BigInteger, nullable=False),
    Column("delta_budget", BigInteger, nullable=False),
    Column("delta_spent", BigInteger, nullable=False),
    Column("releases", BigInteger, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

#: Every DP release charged to the ledger, with its proof record (canonical JSON).
dp_releases = Table(
    "dp_releases",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("ts", UTCDateTime, nullable=False),
    Column("tenant", String(255), nullable=False),
    Column("purpose", String(64), nullable=False),
    Column("aggregate", String(32), nullable=False),
    Column("mechanism", String(64), nullable=False),
    Column("epsilon", Float, nullable=False),
    Column("delta", Float, nullable=False),
    Column("preset", String(32)),
    Column("proof", Text, nullable=False),
    Index(None, "tenant", "ts"),
)
