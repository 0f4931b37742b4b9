"""The ordered registry of schema migrations, and the code that applies the pending ones.

A migration is a numbered function of (connection, dialect) that runs inside the migration
transaction; `Store.migrate()` takes a lock, applies every migration not yet recorded in
`schema_migrations`, and records each one, all in one transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, Table, insert, inspect, select, text
from sqlalchemy.schema import CreateColumn

from intelgraph_privacy.store import schema
from intelgraph_privacy.store.urls import Dialect

log = logging.getLogger(__name__)

MigrationFn = Callable[[Connection, Dialect], None]


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema change: `apply(connection, dialect)` runs inside the migration transaction."""

    version: int
    description: str
    apply: MigrationFn


def create_tables(*tables: Table) -> MigrationFn:
    """A migration function that creates these tables (with their indexes) as declared now."""

    def apply(connection: Connection, dialect: Dialect) -> None:
        for table in tables:
            table.create(connection)

    return apply


def add_columns(table: Table, *names: str) -> MigrationFn:
    """A migration function that adds these columns of `table`, as declared now, when missing.

    Idempotent on purpose: on a fresh database the table-creating migration already made the
    table in its current shape, with these columns.
    """
    for name in names:
        if name not in table.c:
            raise ValueError(f"table {table.name} declares no column {name!r}")

    def apply(connection: Connection, dialect: Dialect) -> None:
        existing = {column["name"] for column in inspect(connection).get_columns(table.name)}
        preparer = connection.dialect.identifier_preparer
        for name in names:
            if name in existing:
                continue
            column_ddl = CreateColumn(table.c[name]).compile(dialect=connection.dialect)
            connection.execute(
                text(f"ALTER TABLE {preparer.format_table(table)} ADD COLUMN {column_ddl}")
            )

    return apply


def in_order(*functions: MigrationFn) -> MigrationFn:
    """A migration function that runs these, in order, in the same transaction."""

    def apply(connection: Connection, dialect: Dialect) -> None:
        for function in functions:
            function(connection, dialect)

    return apply


#: Every migration of the product, in order. Append new ones at the end; never edit or renumber
#: a released one (databases record which versions they have applied).
MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "audit log (hash-chained)", create_tables(schema.audit_log)),
    Migration(
        2,
        "revoked tokens, redaction rules, state versions, cost shapes, RTBF jobs, access reviews",
        create_tables(
            schema.revoked_tokens,
            schema.redaction_rules,
            schema.state_versions,
            schema.cost_shapes,
            schema.rtbf_jobs,
            schema.access_reviews,
        ),
    ),
    Migration(
        3,
        "privacy budget ledger and DP releases",
        create_tables(schema.privacy_budget, schema.dp_releases),
    ),
    Migration(
        4,
        "RTBF orchestration: job outcome columns, steps, region reports, tombstones",
        in_order(
            add_columns(
                schema.rtbf_jobs,
                "subject_hash",
                "regions",
                "policy_version",
                "completed_at",
                "error",
                "manifest",
            ),
            create_tables(schema.rtbf_steps, schema.rtbf_region_reports, schema.tombstones),
        ),
    ),
    Migration(
        5,
        "RTBF job leases (one worker runs a job at a time)",
        add_columns(schema.rtbf_jobs, "lease_owner", "lease_until"),
    ),
)


def check_registry(migrations: Sequence[Migration]) -> None:
    """Raise ValueError unless versions are positive and strictly increasing."""
    previous = 0
    for migration in migrations:
        if migration.version <= previous:
            raise ValueError(
                f"migration {migration.version} ({migration.description!r}) is out of order: "
                f"versions must be positive and strictly increasing (previous: {previous})"
            )
        previous = migration.version


def applied_versions(connection: Connection) -> set[int]:
    """The versions recorded in `schema_migrations` (empty when the table does not exist)."""
    if not inspect(connection).has_table(schema.schema_migrations.name):
        return set()
    return set(connection.scalars(select(schema.schema_migrations.c.version)))


def apply_pending(
    connection: Connection, dialect: Dialect, migrations: Sequence[Migration]
) -> list[int]:
    """Apply, in order, the migrations not yet recorded; return their versions.

    The caller holds the migration lock and the transaction.
    """
    check_registry(migrations)
    schema.schema_migrations.create(connection, checkfirst=True)
    done = applied_versions(connection)
    applied: list[int] = []
    for migration in migrations:
        if migration.version in done:
            continue
        migration.apply(connection, dialect)
        connection.execute(
            insert(schema.schema_migrations).values(
                version=migration.version,
                description=migration.description,
                applied_at=datetime.now(UTC),
            )
        )
        applied.append(migration.version)
    unknown = sorted(done - {migration.version for migration in migrations})
    if unknown:
        # A newer release migrated this database (a rolling upgrade): keep working, but say so.
        log.warning("the database has migrations this version does not know: %s", unknown)
    return applied
