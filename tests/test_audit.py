"""The hash-chained audit log and its background writer, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import itertools
import json
import multiprocessing
import random
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, event, insert, select, text, update
from sqlalchemy.engine import make_url

from intelgraph_privacy import codec
from intelgraph_privacy.audit import (
    GENESIS_HASH,
    MODES,
    OPERATION_TYPES,
    RECORD_FIELDS,
    AuditBackpressure,
    AuditError,
    AuditLog,
    AuditRecord,
    AuditWriter,
    canonical_record,
    chain_hash,
)
from intelgraph_privacy.errors import PrivacyError
from intelgraph_privacy.store import Store, StoreError, open_store
from intelgraph_privacy.store.schema import audit_log

DOC = "query GetPerson { person(id: 1) { name ssn } }"


def make_record(request_id: str = "req-1", **changes: Any) -> AuditRecord:
    """A valid record; keyword arguments override fields."""
    fields: dict[str, Any] = {
        "ts": datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC),
        "request_id": request_id,
        "sub": "u1",
        "tenant": "t1",
        "purpose": "investigation",
        "operation_name": "GetPerson",
        "operation_type": "query",
        "document_hash": hashlib.sha256(DOC.encode()).hexdigest(),
        "redacted": {"Person.ssn": {"null": 1}},
        "policy_version": "p1",
        "catalog_version": "c1",
        "status": 200,
        "mode": "enforce",
        "detail": None,
    }
    fields.update(changes)
    return AuditRecord(**fields)


def count_rows(store: Store) -> int:
    with store.read() as connection:
        return len(connection.execute(select(audit_log.c.seq)).all())


# --- records and the canonical form ------------------------------------------------------------


def test_record_is_normalised_to_utc_and_copies_redacted() -> None:
    redacted = {"Person.ssn": {"null": 2}}
    record = make_record(
        ts=datetime(2024, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2))), redacted=redacted
    )
    redacted["Person.ssn"]["null"] = 99  # the caller's mapping changes after submit...
    assert record.redacted == {"Person.ssn": {"null": 2}}  # ...the record does not
    assert record.ts == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert record.ts.tzinfo is UTC


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"ts": datetime(2024, 5, 1)}, "timezone-aware"),
        ({"request_id": ""}, "must not be empty"),
        ({"sub": 5}, "must be a string"),
        ({"tenant": "a\x00b"}, "NUL"),
        ({"purpose": "\ud800"}, "not valid Unicode"),
        ({"operation_type": "query2"}, "operation_type"),
        ({"document_hash": "ABC"}, "sha256"),
        ({"redacted": {"Person.ssn": {"null": -1}}}, "must be a count"),
        ({"redacted": {"Person.ssn": {"null": True}}}, "must be a count"),
        ({"redacted": {"Person.ssn": 3}}, "mapping of action"),
        ({"redacted": [("Person.ssn", {})]}, "must be a mapping"),
        ({"status": 42}, "not an HTTP status"),
        ({"status": True}, "HTTP status"),
        ({"mode": "shadow"}, "mode must be one of"),
    ],
)
def test_invalid_records_are_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(AuditError, match=message) as info:
        make_record(**changes)
    assert isinstance(info.value, PrivacyError)


# The canonical form and hash of make_record() at seq 1, as published in docs/store-and-audit.md.
GOLDEN_CANONICAL = (
    b'{"catalog_version":"c1","detail":null,"document_hash":'
    b'"6997f8bdb95ac9170a5057a565cf0b86705e93f14ba9bea7013909e26a6098a4",'
    b'"mode":"enforce","operation_name":"GetPerson","operation_type":"query",'
    b'"policy_version":"p1","purpose":"investigation","redacted":{"Person.ssn":{"null":1}},'
    b'"request_id":"req-1","seq":1,"status":200,"sub":"u1","tenant":"t1",'
    b'"ts":"2024-05-01T12:00:00.000000Z"}'
)
GOLDEN_HASH = "35564f31c2739fcc3d972be1c48e3773c2f4d88421dcb18f943ca9f7df99a256"


def test_canonical_form_is_the_documented_one() -> None:
    record = make_record()
    assert record.document_hash == hashlib.sha256(DOC.encode()).hexdigest()
    canonical = canonical_record(1, record.values())
    assert canonical == GOLDEN_CANONICAL
    assert chain_hash(GENESIS_HASH, canonical) == GOLDEN_HASH


# --- the auditor's re-implementation, verbatim from docs/store-and-audit.md (stdlib only) ---
FIELDS = ["ts", "request_id", "sub", "tenant", "purpose", "operation_name", "operation_type",
          "document_hash", "redacted", "policy_version", "catalog_version", "status", "mode",
          "detail"]  # fmt: skip


def canonical(row):  # type: ignore[no-untyped-def]
    """One exported audit_log row (a dict, ts as text) -> the bytes that were hashed."""
    doc = {name: row[name] for name in FIELDS}
    doc["redacted"] = json.loads(row["redacted"])
    doc["seq"] = row["seq"]
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def verify_export(rows):  # type: ignore[no-untyped-def]
    """Rows in seq order -> the hash of the last one; AssertionError names the first bad seq."""
    prev = "0" * 64
    for expected, row in enumerate(rows, start=1):
        assert row["seq"] == expected, f"seq {expected} is missing"
        assert row["prev_hash"] == prev, f"seq {expected}: prev_hash does not link"
        digest = hashlib.sha256(prev.encode("ascii") + canonical(row)).hexdigest()
        assert digest == row["hash"], f"seq {expected}: hash does not match"
        prev = digest
    return prev


_REST = """request_id, sub, tenant, purpose, operation_name, operation_type,
       document_hash, redacted, policy_version, catalog_version, status, mode, detail,
       prev_hash, hash
FROM audit_log ORDER BY seq"""
EXPORT_SQL = {
    "postgresql": """SELECT seq,
       to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS ts,
       """ + _REST,
    "sqlite": """SELECT seq,
       replace(ts, ' ', 'T') || 'Z' AS ts,
       """ + _REST,
}  # fmt: skip
# --- end of the re-implementation ---


def export_row(seq: int, record: AuditRecord) -> dict[str, Any]:
    """What the export query returns for a record stored at `seq`."""
    row = {name: getattr(record, name) for name in RECORD_FIELDS}
    row["ts"] = record.ts.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"
    row["redacted"] = json.dumps(record.redacted)
    row["seq"] = seq
    return row


_text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=10)
_optional_text = st.none() | _text
records_strategy = st.builds(
    AuditRecord,
    ts=st.datetimes(
        min_value=datetime(2000, 1, 1),
        max_value=datetime(2100, 1, 1),
        timezones=st.sampled_from(
            [UTC, timezone(timedelta(hours=-8)), timezone(timedelta(hours=5, minutes=30))]
        ),
    ),
    request_id=_text.filter(bool),
    sub=_optional_text,
    tenant=_optional_text,
    purpose=_optional_text,
    operation_name=_optional_text,
    operation_type=st.none() | st.sampled_from(OPERATION_TYPES),
    document_hash=st.none() | st.binary(min_size=32, max_size=32).map(bytes.hex),
    redacted=st.dictionaries(
        _text,
        st.dictionaries(
            st.sampled_from(["null", "mask", "hash", "generalise"]),
            st.integers(0, (1 << 63) - 1),
            max_size=3,
        ),
        max_size=3,
    ),
    policy_version=_optional_text,
    catalog_version=_optional_text,
    status=st.integers(100, 599),
    mode=st.sampled_from(MODES),
    detail=_optional_text,
)


@given(
    record=records_strategy, seq=st.integers(1, 1 << 62), prev=st.binary(min_size=32, max_size=32)
)
def test_reference_implementation_matches(record: AuditRecord, seq: int, prev: bytes) -> None:
    ours = canonical_record(seq, record.values())
    assert ours == canonical(export_row(seq, record))
    assert chain_hash(prev.hex(), ours) == hashlib.sha256(prev.hex().encode() + ours).hexdigest()


def test_an_auditor_verifies_a_raw_export(store: Store) -> None:
    """The documented export query plus the stdlib re-implementation agree with verify()."""
    log = AuditLog(store)
    log.append([make_record(f"r{i}", sub='ünï\n"x"', status=200 + i) for i in range(5)])
    log.append([make_record("last", ts=datetime(2024, 5, 1, 9, 0, 0, 7, tzinfo=UTC))])
    with store.read() as connection:
        rows = [dict(r._mapping) for r in connection.execute(text(EXPORT_SQL[store.dialect]))]
    assert rows[-1]["ts"] == "2024-05-01T09:00:00.000007Z"
    assert verify_export(rows) == log.verify().last_hash == log.tail(1)[0].hash
    rows[2]["status"] = 404
    with pytest.raises(AssertionError, match="seq 3: hash does not match"):
        verify_export(rows)


# --- append, verify, tail ----------------------------------------------------------------------


def test_append_verify_tail(store: Store) -> None:
    log = AuditLog(store)
    assert log.verify().ok
    assert log.verify().count == 0
    assert log.verify().last_hash == GENESIS_HASH
    assert log.tail() == []
    assert log.append([]) == 0
    first = [make_record(f"r{i}", status=200 + i) for i in range(3)]
    second = [make_record("r3", sub=None, tenant=None, mode="preview", detail="unauthenticated")]
    assert log.append(first) == 3
    assert log.append(second) == 4
    assert log.append([]) == 4
    entries = log.tail(10)
    assert [e.seq for e in entries] == [1, 2, 3, 4]
    assert [e.record for e in entries] == [*first, *second]
    assert entries[0].prev_hash == GENESIS_HASH
    for before, after in itertools.pairwise(entries):
        assert after.prev_hash == before.hash
    for entry in entries:
        assert entry.hash == chain_hash(
            entry.prev_hash, canonical_record(entry.seq, entry.record.values())
        )
    assert [e.seq for e in log.tail(2)] == [3, 4]
    result = log.verify()
    assert (result.ok, result.count, result.first_bad_seq) == (True, 4, None)
    assert result.last_hash == entries[-1].hash
    assert log.verify(anchor=(2, entries[1].hash)).ok
    assert result.as_dict()["lastHash"] == entries[-1].hash


def test_redacted_is_stored_as_canonical_json_text(store: Store) -> None:
    log = AuditLog(store)
    log.append([make_record(redacted={"Z.b": {"null": 1, "mask": 2}, "A.a": {"hash": 3}})])
    with store.read() as connection:
        stored = connection.scalar(select(audit_log.c.redacted))
    assert stored == '{"A.a":{"hash":3},"Z.b":{"mask":2,"null":1}}'


def test_append_with_batch_id_is_idempotent(store: Store) -> None:
    log = AuditLog(store)
    batch = [make_record(f"b{i}") for i in range(3)]
    assert log.append(batch, batch_id="batch-1") == 3
    assert log.append([make_record("other")]) == 4
    # A retry of batch-1 (say its commit was acknowledged to nobody) writes nothing.
    assert log.append(batch, batch_id="batch-1") == 3
    assert count_rows(store) == 4
    assert log.append(batch, batch_id="batch-2") == 7
    assert log.verify().ok
    with pytest.raises(AuditError, match="batch_id"):
        log.append(batch, batch_id="x" * 65)


def test_verify_streams_a_long_log(store: Store) -> None:
    log = AuditLog(store)
    base = datetime(2024, 1, 1, tzinfo=UTC)
    records = [make_record(f"r{i}", ts=base + timedelta(seconds=i)) for i in range(2500)]
    assert log.append(records) == 2500
    result = log.verify()
    assert (result.ok, result.count) == (True, 2500)
    with store.begin() as connection:
        connection.execute(update(audit_log).where(audit_log.c.seq == 2400).values(status=500))
    result = log.verify()
    assert (result.ok, result.count, result.first_bad_seq) == (False, 2399, 2400)


# --- tampering ---------------------------------------------------------------------------------

_CONTENT = (*RECORD_FIELDS, "prev_hash", "hash", "batch_id")


def _row(connection: Any, seq: int) -> dict[str, Any]:
    columns = [audit_log.c[name] for name in _CONTENT]
    return dict(connection.execute(select(*columns).where(audit_log.c.seq == seq)).one()._mapping)


def _set(connection: Any, seq: int, **values: Any) -> None:
    connection.execute(update(audit_log).where(audit_log.c.seq == seq).values(**values))


def _edited(name: str, old: Any) -> Any:
    """A value for column `name` that differs from `old` (and changes the canonical record)."""
    if name == "ts":
        return old + timedelta(microseconds=1)
    if name == "status":
        return 100 + (old - 100 + 1) % 500
    if name == "mode":
        return "preview" if old == "enforce" else "enforce"
    if name == "operation_type":
        cycle = [None, *OPERATION_TYPES]
        return cycle[(cycle.index(old) + 1) % len(cycle)]
    if name == "document_hash":
        return "a" * 64 if old is None else ("1" if old[0] == "0" else "0") + old[1:]
    if name == "redacted":
        parsed = codec.loads(old)
        parsed["~tamper"] = {"null": parsed.get("~tamper", {}).get("null", 0) + 1}
        return codec.dumps(parsed, sort_keys=True).decode()
    return "x" if old is None else old + "x"


def _edit_field(connection: Any, seq: int, name: str, rehash: bool) -> None:
    row = _row(connection, seq)
    row[name] = _edited(name, row[name])
    changes: dict[str, Any] = {name: row[name]}
    if rehash:  # an attacker who also recomputes this row's hash
        values = {**row, "redacted": codec.loads(row["redacted"])}
        changes["hash"] = chain_hash(row["prev_hash"], canonical_record(seq, values))
    _set(connection, seq, **changes)


def _swap(connection: Any, i: int, j: int) -> None:
    row_i, row_j = _row(connection, i), _row(connection, j)
    _set(connection, i, **row_j)
    _set(connection, j, **row_i)


def _insert_forged(connection: Any, seq: int, forged: AuditRecord) -> None:
    """Insert a correctly chained forged row at `seq`, renumbering the rows from there on."""
    connection.execute(update(audit_log).where(audit_log.c.seq >= seq).values(seq=-audit_log.c.seq))
    connection.execute(update(audit_log).where(audit_log.c.seq < 0).values(seq=1 - audit_log.c.seq))
    prev = GENESIS_HASH if seq == 1 else _row(connection, seq - 1)["hash"]
    values = forged.values()
    digest = chain_hash(prev, canonical_record(seq, values))
    values["redacted"] = codec.dumps(forged.redacted, sort_keys=True).decode()
    connection.execute(insert(audit_log).values(seq=seq, prev_hash=prev, hash=digest, **values))


TAMPERINGS = (
    "edit",
    "edit_and_rehash",
    "delete",
    "swap",
    "edit_hash",
    "edit_prev_hash",
    "insert_forged",
    "noncanonical_redacted",
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    records=st.lists(records_strategy, min_size=1, max_size=6),
    tampering=st.sampled_from((None, *TAMPERINGS)),
    data=st.data(),
)
def test_verify_names_the_first_tampered_seq(
    store: Store, records: list[AuditRecord], tampering: str | None, data: st.DataObject
) -> None:
    with store.begin() as connection:
        connection.execute(delete(audit_log))
    log = AuditLog(store)
    # Several appends, so that batches are chained to each other too.
    cut = data.draw(st.integers(0, len(records)), label="cut")
    log.append(records[:cut])
    log.append(records[cut:])
    n = len(records)
    head = log.tail(1)[0]
    if tampering is None:
        result = log.verify(anchor=(head.seq, head.hash))
        assert (result.ok, result.count, result.first_bad_seq) == (True, n, None)
        return
    k = data.draw(st.integers(1, n), label="seq")
    expected: int | None = k  # the seq verify() must name; None: undetectable without anchor
    with store.begin() as connection:
        if tampering in ("edit", "edit_and_rehash"):
            name = data.draw(st.sampled_from(RECORD_FIELDS), label="field")
            _edit_field(connection, k, name, rehash=tampering == "edit_and_rehash")
            if tampering == "edit_and_rehash":
                expected = k + 1 if k < n else None
        elif tampering == "delete":
            connection.execute(delete(audit_log).where(audit_log.c.seq == k))
            expected = k if k < n else None
        elif tampering == "swap":
            assume(n >= 2)
            i, j = sorted(
                data.draw(
                    st.lists(st.integers(1, n), min_size=2, max_size=2, unique=True), label="pair"
                )
            )
            _swap(connection, i, j)
            expected = i
        elif tampering == "edit_hash":
            old = _row(connection, k)["hash"]
            _set(connection, k, hash=("1" if old[0] == "0" else "0") + old[1:])
        elif tampering == "edit_prev_hash":
            old = _row(connection, k)["prev_hash"]
            _set(connection, k, prev_hash=("1" if old[0] == "0" else "0") + old[1:])
        elif tampering == "insert_forged":
            _insert_forged(connection, k, data.draw(records_strategy, label="forged"))
            expected = k + 1  # the forged row chains correctly; the row it displaced does not
        elif tampering == "noncanonical_redacted":
            old = _row(connection, k)["redacted"]
            _set(connection, k, redacted=" " + old)
    result = log.verify()
    if expected is None:
        # Tampering with the newest row alone leaves a valid shorter or rewritten chain...
        assert result.ok
        # ...which the anchor recorded before the tampering catches.
        result = log.verify(anchor=(head.seq, head.hash))
        expected = n
    assert not result.ok, tampering
    assert result.first_bad_seq == expected, (tampering, result.reason)
    assert result.count == expected - 1
    assert f"seq {expected}" in result.reason


def test_verify_reports_unreadable_sqlite_values(sqlite_store: Store) -> None:
    log = AuditLog(sqlite_store)
    log.append([make_record(f"r{i}") for i in range(3)])
    with sqlite_store.begin() as connection:
        connection.execute(text("UPDATE audit_log SET ts = 'yesterday' WHERE seq = 2"))
    result = log.verify()
    assert (result.ok, result.first_bad_seq) == (False, 2)
    assert "ts is not a timestamp" in result.reason
    with sqlite_store.begin() as connection:
        connection.execute(
            text("UPDATE audit_log SET ts = '2024-05-01 12:00:00.000000' WHERE seq = 2")
        )
        connection.execute(text("UPDATE audit_log SET redacted = '{not json' WHERE seq = 3"))
    result = log.verify()
    assert (result.ok, result.first_bad_seq) == (False, 3)
    assert "redacted is not JSON" in result.reason


# --- concurrent appenders ------------------------------------------------------------------------


def _append_in_process(url: str, worker: int, count: int, barrier: Any, results: Any) -> None:
    try:
        rng = random.Random(worker)
        barrier.wait(timeout=60)
        with open_store(url, migrate=False) as store:
            log = AuditLog(store)
            i = 0
            while i < count:
                size = min(rng.randint(1, 7), count - i)
                log.append([make_record(f"w{worker}-{j:04d}") for j in range(i, i + size)])
                i += size
        results.put(("ok", worker))
    except BaseException as exc:
        results.put(("error", repr(exc)))


def test_concurrent_appenders_keep_one_gapless_chain(store: Store) -> None:
    url = store.engine.url.render_as_string(hide_password=False)
    workers, per_worker = 4, 75
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(workers)
    results = context.Queue()
    processes = [
        context.Process(target=_append_in_process, args=(url, w, per_worker, barrier, results))
        for w in range(workers)
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=60)
    assert sorted(outcomes) == [("ok", w) for w in range(workers)]
    log = AuditLog(store)
    result = log.verify()
    assert (result.ok, result.count) == (True, workers * per_worker), result.reason
    entries = log.tail(workers * per_worker)
    assert [e.seq for e in entries] == list(range(1, workers * per_worker + 1))
    # Each process's records are all there, once, in the order it appended them.
    for w in range(workers):
        mine = [e.record.request_id for e in entries if e.record.request_id.startswith(f"w{w}-")]
        assert mine == [f"w{w}-{j:04d}" for j in range(per_worker)]
    # The appends really interleaved: no single process wrote everything in one run.
    owners = [e.record.request_id.split("-")[0] for e in entries]
    assert sum(a != b for a, b in itertools.pairwise(owners)) >= workers - 1


# --- the writer ----------------------------------------------------------------------------------


def _wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)


def _count_inserts(store: Store) -> list[str]:
    statements: list[str] = []

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO AUDIT_LOG"):
            statements.append(statement)

    event.listen(store.engine, "before_cursor_execute", before)
    return statements


def test_writer_batches(store: Store) -> None:
    inserts = _count_inserts(store)
    log = AuditLog(store)
    with AuditWriter(log, batch_size=10, flush_interval=60) as writer:
        for i in range(95):
            writer.submit(make_record(f"r{i:03d}"))
        # Full batches go out without a flush; the last 5 wait for the interval (or a flush).
        _wait_for(lambda: writer.written == 90)
        time.sleep(0.05)
        assert writer.written == 90
        assert writer.queue_depth == 5
        assert writer.flush(timeout=10)
        assert (writer.written, writer.queue_depth, writer.failed_batches) == (95, 0, 0)
        assert writer.healthy
    assert len(inserts) == 10  # one INSERT per batch of 10, then the 5
    assert [e.record.request_id for e in log.tail(95)] == [f"r{i:03d}" for i in range(95)]
    assert log.verify().count == 95


def test_writer_flushes_after_the_interval(sqlite_store: Store) -> None:
    log = AuditLog(sqlite_store)
    with AuditWriter(log, batch_size=1000, flush_interval=0.05) as writer:
        started = time.monotonic()
        for i in range(3):
            writer.submit(make_record(f"r{i}"))
        _wait_for(lambda: writer.written == 3, timeout=5)
        assert time.monotonic() - started >= 0.05
    assert log.verify().count == 3


def test_writer_backpressure(sqlite_store: Store) -> None:
    log = AuditLog(sqlite_store)
    writer = AuditWriter(log, max_queue=5, flush_interval=0.01)
    for i in range(5):
        writer.submit(make_record(f"r{i}"))
    with pytest.raises(AuditBackpressure, match="queue full") as info:
        writer.submit(make_record("r5"))
    assert isinstance(info.value, PrivacyError)
    assert writer.queue_depth == 5
    writer.start()
    assert writer.flush(timeout=5)
    assert (writer.written, writer.queue_depth) == (5, 0)
    writer.submit(make_record("r5"))  # room again
    writer.close()
    assert writer.written == 6
    with pytest.raises(AuditError, match="closed"):
        writer.submit(make_record("r6"))
    assert [e.record.request_id for e in log.tail()] == [f"r{i}" for i in range(6)]


def test_writer_rejects_bad_settings(sqlite_store: Store) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        AuditWriter(AuditLog(sqlite_store), batch_size=0)


def test_writer_retries_while_sqlite_is_locked(sqlite_url: str) -> None:
    errors: list[BaseException] = []
    with open_store(sqlite_url + "?timeout=0.02") as store, open_store(sqlite_url) as holder:
        log = AuditLog(store)
        with AuditWriter(log, batch_size=5, flush_interval=0.01, on_error=errors.append) as writer:
            for i in range(10):
                writer.submit(make_record(f"r{i:02d}"))
            assert writer.flush(timeout=5)
            with holder.begin():  # another process's long write transaction
                for i in range(10, 30):
                    writer.submit(make_record(f"r{i:02d}"))
                _wait_for(lambda: writer.failed_batches >= 2)
                assert not writer.healthy
                assert writer.written == 10
                assert writer.queue_depth == 20  # nothing lost meanwhile
            assert writer.flush(timeout=10)
            assert writer.healthy
            assert writer.written == 30
        assert errors
        assert all(isinstance(e, StoreError) for e in errors)
        assert "database is locked" in str(errors[0])
        assert [e.record.request_id for e in log.tail(30)] == [f"r{i:02d}" for i in range(30)]
        assert log.verify().count == 30


def test_writer_close_reports_records_it_could_not_write(sqlite_url: str) -> None:
    errors: list[BaseException] = []
    with open_store(sqlite_url + "?timeout=0.02") as store, open_store(sqlite_url) as holder:
        writer = AuditWriter(AuditLog(store), flush_interval=0.01, on_error=errors.append)
        writer.start()
        with holder.begin():
            writer.submit(make_record("r0"))
            _wait_for(lambda: writer.failed_batches >= 1)
            started = time.monotonic()
            writer.close(timeout=0.2)
            assert time.monotonic() - started < 3
    assert isinstance(errors[-1], AuditError)
    assert "1 records not written" in str(errors[-1])


def _backends(admin: Engine, app: str, waiting_on_lock: bool = False) -> int:
    query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = %(app)s"
    if waiting_on_lock:
        query += " AND wait_event_type = 'Lock'"
    with admin.connect() as connection:
        return int(connection.exec_driver_sql(query, {"app": app}).scalar() or 0)


def _terminate(admin: Engine, app: str) -> int:
    with admin.connect() as connection:
        return int(
            connection.exec_driver_sql(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) "
                "FROM pg_stat_activity WHERE application_name = %(app)s",
                {"app": app},
            ).scalar()
            or 0
        )


@pytest.mark.postgres
def test_writer_recovers_after_its_connections_are_killed(
    fresh_pg_url: str, pg_server: Engine
) -> None:
    app = f"igp_writer_{secrets.token_hex(4)}"
    writer_url = make_url(fresh_pg_url).update_query_dict({"application_name": app})
    errors: list[BaseException] = []
    with (
        open_store(writer_url.render_as_string(hide_password=False)) as store,
        open_store(fresh_pg_url) as holder,
    ):
        log = AuditLog(store)
        with AuditWriter(log, batch_size=20, flush_interval=0.01, on_error=errors.append) as writer:
            for i in range(50):
                writer.submit(make_record(f"r{i:03d}"))
            assert writer.flush(timeout=10)
            for kill in range(2):
                # Hold the appenders' lock so that the writer is caught mid-transaction, then
                # kill its connection from outside, as a failover or an admin would.
                with holder.begin() as connection:
                    holder.lock(connection, "audit_log")
                    for i in range(50):
                        writer.submit(make_record(f"r{50 + 50 * kill + i:03d}"))
                    _wait_for(lambda: _backends(pg_server, app, waiting_on_lock=True) == 1)
                    assert _terminate(pg_server, app) >= 1
                    _wait_for(lambda k=kill: writer.failed_batches > k)
                    assert not writer.healthy
            assert writer.flush(timeout=15)
            assert writer.healthy
            assert writer.written == 150
        assert errors
        assert all(isinstance(e, StoreError) for e in errors)
        assert "terminating connection" in str(errors[0])
        result = log.verify()
        assert (result.ok, result.count) == (True, 150), result.reason
        assert [e.record.request_id for e in log.tail(150)] == [f"r{i:03d}" for i in range(150)]


def test_records_round_trip_exactly(store: Store) -> None:
    log = AuditLog(store)
    original = make_record(
        "ünïcode-☃",
        ts=datetime(2031, 12, 31, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-3))),
        sub='user\twith\nspaces "quoted" \\',
        redacted={"Person.name": {"mask": 1, "null": (1 << 63) - 1}, "Case.title": {}},
    )
    log.append([original])
    (entry,) = log.tail(1)
    assert entry.record == original
    assert entry.record.ts == original.ts
    assert log.verify().ok
