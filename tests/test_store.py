"""The store layer: URLs and errors, both backends, migrations (idempotent, concurrent, atomic)."""

from __future__ import annotations

import multiprocessing
import secrets
import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    Column,
    Engine,
    Integer,
    MetaData,
    Table,
    Text,
    create_engine,
    func,
    insert,
    inspect,
    select,
)
from sqlalchemy.engine import make_url

from intelgraph_privacy.errors import ConfigError, PrivacyError
from intelgraph_privacy.store import (
    MIGRATIONS,
    Migration,
    Store,
    StoreError,
    UTCDateTime,
    add_columns,
    create_tables,
    metadata,
    open_store,
)
from intelgraph_privacy.store.migrations import check_registry
from intelgraph_privacy.store.schema import schema_migrations
from intelgraph_privacy.store.urls import normalise
from tests.db_fixtures import PG_BASE_URL

LATEST = MIGRATIONS[-1].version


def _versions(store: Store) -> list[int]:
    with store.read() as connection:
        return list(
            connection.scalars(
                select(schema_migrations.c.version).order_by(schema_migrations.c.version)
            )
        )


# --- URLs ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("postgres://u:pw@db.example:5433/app", "postgresql+psycopg://u:***@db.example:5433/app"),
        ("postgresql://u:pw@db.example/app", "postgresql+psycopg://u:***@db.example/app"),
        ("postgresql+psycopg://u@db.example/app?sslmode=require", None),
    ],
)
def test_postgres_urls_are_rewritten_to_psycopg(raw: str, expected: str | None) -> None:
    url, dialect = normalise(raw)
    assert dialect == "postgresql"
    assert url.drivername == "postgresql+psycopg"
    assert url.render_as_string(hide_password=True) == (expected or raw)


def test_sqlite_urls_become_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    url, dialect = normalise("sqlite:///rel.sqlite3")
    assert dialect == "sqlite"
    assert url.database == str(tmp_path / "rel.sqlite3")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("mysql://u:s3cret@h/d", "unsupported store URL"),
        ("postgresql+psycopg2://u:s3cret@h/d", "unsupported PostgreSQL driver"),
        ("postgresql://u:s3cret@h", "names no database"),
        ("sqlite://", "not a SQLite file"),
        ("sqlite:///:memory:", "not a SQLite file"),
        ("sqlite:////no/such/dir/x.sqlite3", "does not exist"),
        ("not a url", "invalid store URL"),
        ("postgresql://u:s3cret@h:port/d", "invalid store URL"),
    ],
)
def test_bad_urls_raise_config_error_with_password_masked(raw: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        open_store(raw)
    assert "s3cret" not in str(info.value)


def test_unreachable_postgres_is_a_config_error_with_password_masked() -> None:
    # Port 1 on loopback: nothing listens there, the refusal is immediate.
    with pytest.raises(ConfigError, match="cannot open the store") as info:
        open_store("postgresql://igp:s3cret@127.0.0.1:1/test")
    assert "s3cret" not in str(info.value)
    assert "igp:***@127.0.0.1:1" in str(info.value)
    assert isinstance(info.value, PrivacyError)


@pytest.mark.postgres
def test_missing_postgres_database_is_a_config_error(pg_server: Engine) -> None:
    url = make_url(PG_BASE_URL).set(database=f"igp_missing_{secrets.token_hex(4)}")
    with pytest.raises(ConfigError, match="does not exist"):
        open_store(url.render_as_string(hide_password=False))


def test_a_file_that_is_not_sqlite_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.sqlite3"
    path.write_bytes(b"this is not a database, " * 100)
    with pytest.raises(ConfigError, match="not a database"):
        open_store(f"sqlite:///{path}")


def test_open_store_needs_url_or_data_dir(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="URL or a data directory"):
        open_store()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="cannot create the data directory"):
        open_store(data_dir=blocker / "sub")


def test_store_url_and_repr_mask_the_password() -> None:
    secret_url, dialect = normalise("postgres://igp:pw-hidden@db.example/app")
    store = Store(secret_url, dialect, create_engine(secret_url))  # never connects
    assert "pw-hidden" not in store.url
    assert "pw-hidden" not in repr(store)
    assert "pw-hidden" not in str(store)
    assert ":***@" in store.url


# --- SQLite ----------------------------------------------------------------------------------


def test_data_dir_store_is_a_wal_sqlite_file_with_foreign_keys(tmp_path: Path) -> None:
    data_dir = tmp_path / "a" / "b"
    with open_store(data_dir=data_dir) as store:
        assert store.dialect == "sqlite"
        assert (data_dir / "intelgraph.sqlite3").is_file()
        assert store.url == f"sqlite:///{data_dir / 'intelgraph.sqlite3'}"
        with store.read() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
            assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert store.schema_version() == LATEST


def test_sqlite_writers_exclude_each_other_but_not_readers(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.sqlite3'}"
    with open_store(url) as holder, open_store(url + "?timeout=0.05") as other:
        with holder.begin() as connection:
            holder.lock(connection, "anything")
            # BEGIN IMMEDIATE: the second writer cannot even start while the first is open...
            with pytest.raises(StoreError, match="database is locked"), other.begin():
                pass
            # ...while a reader can, in WAL mode.
            assert other.schema_version() == LATEST
        with other.begin() as connection:
            assert connection.exec_driver_sql("SELECT 1").scalar() == 1


def test_lock_needs_a_write_transaction_on_sqlite(sqlite_store: Store) -> None:
    with pytest.raises(StoreError, match="write transaction"), sqlite_store.read() as connection:
        sqlite_store.lock(connection, "x")


# --- both backends ---------------------------------------------------------------------------


def test_migrations_are_idempotent(store_url: str) -> None:
    with open_store(store_url, migrate=False) as store:
        assert store.schema_version() == 0
        assert store.migrate() == [m.version for m in MIGRATIONS]
        assert store.migrate() == []
        assert store.schema_version() == LATEST
    with open_store(store_url) as store:  # opening again migrates nothing
        assert _versions(store) == [m.version for m in MIGRATIONS]
        assert store.migrate() == []


def test_migrations_create_every_declared_table_as_declared(store: Store) -> None:
    """Every Table on the shared MetaData exists with exactly its declared columns."""
    with store.read() as connection:
        inspector = inspect(connection)
        assert set(inspector.get_table_names()) == set(metadata.tables)
        for name, table in metadata.tables.items():
            on_disk = {column["name"] for column in inspector.get_columns(name)}
            assert on_disk == {column.name for column in table.columns}, name


def test_begin_commits_or_rolls_back_and_wraps_errors(store: Store) -> None:
    def count() -> int:
        with store.read() as connection:
            return int(connection.scalar(select(func.count()).select_from(schema_migrations)))

    before = count()
    with pytest.raises(RuntimeError), store.begin() as connection:
        connection.execute(
            insert(schema_migrations).values(version=999, description="x", applied_at=_now())
        )
        raise RuntimeError("boom")
    assert count() == before
    with pytest.raises(StoreError) as info, store.begin() as connection:
        connection.exec_driver_sql("SELECT * FROM no_such_table")
    assert "no_such_table" in str(info.value)
    assert store.url in str(info.value)


def _now() -> datetime:
    return datetime.now(UTC)


def test_utc_datetime_round_trips_on_both_backends(store: Store) -> None:
    table = Table(
        "ts_probe",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("at", UTCDateTime, nullable=False),
    )
    plus_five = datetime(2024, 5, 1, 17, 30, 0, 123456, tzinfo=timezone(timedelta(hours=5)))
    with store.begin() as connection:
        table.create(connection)
        connection.execute(insert(table).values(id=1, at=plus_five))
    with store.read() as connection:
        back = connection.scalar(select(table.c.at))
    assert back == plus_five
    assert back.tzinfo is UTC
    assert back.hour == 12
    with pytest.raises(StoreError, match="naive datetime"), store.begin() as connection:
        connection.execute(insert(table).values(id=2, at=datetime(2024, 5, 1)))


def _probe_table(metadata_: MetaData, *extra: Column[Any]) -> Table:
    return Table("probe", metadata_, Column("id", Integer, primary_key=True), *extra)


def test_custom_registry_add_columns_and_atomic_failure(store_url: str) -> None:
    v1 = _probe_table(MetaData())
    v2 = _probe_table(MetaData(), Column("note", Text))
    first = [Migration(1, "probe", create_tables(v1))]
    second = [
        Migration(1, "probe", create_tables(v2)),  # the table as declared today...
        Migration(2, "probe.note", add_columns(v2, "note")),  # ...so this must be idempotent
    ]
    with open_store(store_url, migrate=False) as store:
        assert store.migrate(first) == [1]
        assert store.migrate(second) == [2]

        def broken(connection: Any, dialect: str) -> None:
            _probe_table(MetaData()).to_metadata(MetaData(), name="probe_3").create(connection)
            raise RuntimeError("migration 3 failed")

        with pytest.raises(RuntimeError, match="migration 3 failed"):
            store.migrate([*second, Migration(3, "broken", broken)])
        assert store.schema_version() == 2
        with store.read() as connection:
            inspector = inspect(connection)
            assert {c["name"] for c in inspector.get_columns("probe")} == {"id", "note"}
            # DDL is transactional on both backends: the half-done migration left nothing.
            assert not inspector.has_table("probe_3")
    with pytest.raises(ValueError, match="declares no column"):
        add_columns(v1, "note")


def test_registry_must_be_strictly_increasing() -> None:
    check_registry(MIGRATIONS)
    noop = create_tables()
    with pytest.raises(ValueError, match="out of order"):
        check_registry([Migration(1, "a", noop), Migration(1, "b", noop)])
    with pytest.raises(ValueError, match="out of order"):
        check_registry([Migration(2, "a", noop), Migration(1, "b", noop)])
    with pytest.raises(ValueError, match="out of order"):
        check_registry([Migration(0, "a", noop)])


def _migrate_in_process(url: str, barrier: Any, results: Any) -> None:
    try:
        barrier.wait(timeout=60)
        with open_store(url, migrate=False) as store:
            results.put(("ok", store.migrate()))
    except BaseException as exc:
        results.put(("error", repr(exc)))


def test_concurrent_migrate_from_several_processes(store_url: str) -> None:
    processes = 4
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes)
    results = context.Queue()
    workers = [
        context.Process(target=_migrate_in_process, args=(store_url, barrier, results))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    assert [status for status, _ in outcomes] == ["ok"] * processes, outcomes
    applied = [versions for _, versions in outcomes]
    # Exactly one process applied each migration; the others found nothing to do.
    assert sorted(v for versions in applied for v in versions) == [m.version for m in MIGRATIONS]
    with open_store(store_url, migrate=False) as store:
        assert _versions(store) == [m.version for m in MIGRATIONS]


# --- PostgreSQL ------------------------------------------------------------------------------


@pytest.mark.postgres
def test_pg_lock_serialises_per_schema(fresh_pg_url: str, pg_url: str) -> None:
    with (
        open_store(fresh_pg_url) as store,
        open_store(fresh_pg_url) as other,
        open_store(pg_url) as elsewhere,
    ):
        with store.begin() as connection:
            store.lock(connection, "audit_log")
            with pytest.raises(StoreError, match="lock timeout"), other.begin() as blocked:
                blocked.exec_driver_sql("SET LOCAL lock_timeout = '200ms'")
                other.lock(blocked, "audit_log")
            # Another lock name, or the same name in another schema, does not wait.
            with other.begin() as free:
                free.exec_driver_sql("SET LOCAL lock_timeout = '200ms'")
                other.lock(free, "other_table")
            with elsewhere.begin() as free:
                free.exec_driver_sql("SET LOCAL lock_timeout = '200ms'")
                elsewhere.lock(free, "audit_log")
        with other.begin() as connection:  # released at commit
            connection.exec_driver_sql("SET LOCAL lock_timeout = '200ms'")
            other.lock(connection, "audit_log")


@pytest.mark.postgres
def test_pg_pool_replaces_killed_connections(fresh_pg_url: str, pg_server: Engine) -> None:
    app = f"igp_kill_{secrets.token_hex(4)}"
    url = make_url(fresh_pg_url).update_query_dict({"application_name": app})
    with open_store(url.render_as_string(hide_password=False)) as store:
        assert store.schema_version() == LATEST
        with pg_server.connect() as admin:
            killed = admin.exec_driver_sql(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) "
                "FROM pg_stat_activity WHERE application_name = %(app)s",
                {"app": app},
            ).scalar()
        assert killed == 1
        _wait_until_gone(pg_server, app)
        # pool_pre_ping notices the dead pooled connection and opens a new one.
        assert store.schema_version() == LATEST


def _wait_until_gone(admin_engine: Engine, app: str) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with admin_engine.connect() as admin:
            left = admin.exec_driver_sql(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %(app)s",
                {"app": app},
            ).scalar()
        if left == 0:
            return
        time.sleep(0.02)
    raise AssertionError(f"backends of {app} still alive")


def test_store_is_usable_from_threads(store: Store) -> None:
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            for _ in range(10):
                assert store.schema_version() == LATEST
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
