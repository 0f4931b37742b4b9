"""The append-only, hash-chained audit log: one record per sidecar request.

Each row carries `hash = sha256(prev_hash || canonical JSON of the record and its seq)`, so editing,
deleting, inserting or reordering rows breaks the chain at the first affected seq, which
`AuditLog.verify()` reports. The exact canonical form is in docs/store-and-audit.md.

`AuditWriter` keeps the database off the request path: the sidecar submits records, a background
thread appends them in batches and retries failed batches without losing or reordering them.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final

from sqlalchemy import Connection, Row, String, insert, select, type_coerce

from intelgraph_privacy import codec
from intelgraph_privacy.errors import PrivacyError
from intelgraph_privacy.store import Store
from intelgraph_privacy.store.schema import audit_log

log = logging.getLogger(__name__)

#: The prev_hash of seq 1.
GENESIS_HASH: Final = "0" * 64
MODES: Final = ("enforce", "preview")
OPERATION_TYPES: Final = ("query", "mutation", "subscription")
#: The record's fields, in declaration order; with "seq" they are the keys of the canonical JSON.
RECORD_FIELDS: Final = (
    "ts",
    "request_id",
    "sub",
    "tenant",
    "purpose",
    "operation_name",
    "operation_type",
    "document_hash",
    "redacted",
    "policy_version",
    "catalog_version",
    "status",
    "mode",
    "detail",
)
_OPTIONAL_TEXT = (
    "sub",
    "tenant",
    "purpose",
    "operation_name",
    "policy_version",
    "catalog_version",
    "detail",
)
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_MAX_COUNT = (1 << 63) - 1
# The lock name that serialises appenders on PostgreSQL.
_LOCK = "audit_log"


class AuditError(PrivacyError):
    """An audit record is invalid, or the audit log cannot be read or written."""


class AuditBackpressure(AuditError):  # noqa: N818 - the name the sidecar uses
    """The audit writer's queue is full: the caller should refuse the request (fail closed)."""


def _check_text(name: str, value: object, *, optional: bool) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str):
        raise AuditError(f"audit record field {name} must be a string, got {type(value).__name__}")
    # PostgreSQL TEXT cannot hold NUL, and neither UTF-8 nor JSON can carry lone surrogates:
    # refuse here, at submit time, rather than poison a batch the writer would retry forever.
    if "\x00" in value:
        raise AuditError(f"audit record field {name} contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise AuditError(f"audit record field {name} is not valid Unicode text") from None


def _check_redacted(value: object) -> dict[str, dict[str, int]]:
    if not isinstance(value, Mapping):
        raise AuditError("audit record field redacted must be a mapping")
    out: dict[str, dict[str, int]] = {}
    for coordinate, actions in sorted(value.items()):
        _check_text("redacted key", coordinate, optional=False)
        if not isinstance(actions, Mapping):
            raise AuditError(f"redacted[{coordinate!r}] must be a mapping of action -> count")
        counts: dict[str, int] = {}
        for action, n in sorted(actions.items()):
            _check_text("redacted action", action, optional=False)
            if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= _MAX_COUNT:
                raise AuditError(f"redacted[{coordinate!r}][{action!r}] must be a count, got {n!r}")
            counts[action] = n
        out[coordinate] = counts
    return out


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """What the sidecar did with one request. Validated on construction; `ts` is kept in UTC."""

    ts: datetime
    request_id: str
    sub: str | None
    tenant: str | None
    purpose: str | None
    operation_name: str | None
    operation_type: str | None
    document_hash: str | None
    redacted: Mapping[str, Mapping[str, int]]
    policy_version: str | None
    catalog_version: str | None
    status: int
    mode: str
    detail: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.ts, datetime) or self.ts.utcoffset() is None:
            raise AuditError("audit record ts must be a timezone-aware datetime")
        object.__setattr__(self, "ts", self.ts.astimezone(UTC))
        _check_text("request_id", self.request_id, optional=False)
        if not self.request_id:
            raise AuditError("audit record request_id must not be empty")
        for name in _OPTIONAL_TEXT:
            _check_text(name, getattr(self, name), optional=True)
        if self.operation_type is not None and self.operation_type not in OPERATION_TYPES:
            raise AuditError(f"audit record operation_type {self.operation_type!r} is unknown")
        if self.document_hash is not None and (
            not isinstance(self.document_hash, str) or not _SHA256_HEX.fullmatch(self.document_hash)
        ):
            raise AuditError("audit record document_hash must be a lowercase sha256 hex digest")
        if isinstance(self.status, bool) or not isinstance(self.status, int):
            raise AuditError("audit record status must be an HTTP status code")
        if not 100 <= self.status <= 599:
            raise AuditError(f"audit record status {self.status} is not an HTTP status code")
        if self.mode not in MODES:
            raise AuditError(f"audit record mode must be one of {MODES}, got {self.mode!r}")
        # A private sorted copy: the caller's mapping may change after submit().
        object.__setattr__(self, "redacted", _check_redacted(self.redacted))

    def values(self) -> dict[str, Any]:
        """The record's fields by name (`redacted` as a dict), as hashed and stored."""
        return {name: getattr(self, name) for name in RECORD_FIELDS}


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """A stored record with its place in the chain."""

    seq: int
    record: AuditRecord
    prev_hash: str
    hash: str


@dataclass(frozen=True, slots=True)
class AuditVerification:
    """The outcome of `AuditLog.verify()`."""

    ok: bool
    #: Rows verified intact (on failure: those before `first_bad_seq`).
    count: int
    first_bad_seq: int | None
    reason: str
    #: The hash of the last intact row (GENESIS_HASH for an empty log): an anchor for next time.
    last_hash: str = field(default=GENESIS_HASH)

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready summary (for the CLI)."""
        return {
            "ok": self.ok,
            "count": self.count,
            "firstBadSeq": self.first_bad_seq,
            "reason": self.reason,
            "lastHash": self.last_hash,
        }


def format_ts(ts: datetime) -> str:
    """The canonical text of a timestamp: UTC, microseconds, `Z` (2024-05-01T12:00:00.000000Z)."""
    t = ts.astimezone(UTC)
    return (
        f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}"
        f".{t.microsecond:06d}Z"
    )


def canonical_record(seq: int, values: Mapping[str, Any]) -> bytes:
    """The canonical JSON of a record at `seq` (the bytes that are hashed).

    `values` maps every name of RECORD_FIELDS to its value (`AuditRecord.values()`): one object
    with those keys plus "seq", keys sorted, compact, UTF-8, `ts` as `format_ts`.
    """
    document = {name: values[name] for name in RECORD_FIELDS}
    document["ts"] = format_ts(values["ts"])
    document["seq"] = seq
    return codec.dumps(document, sort_keys=True)


def chain_hash(prev_hash: str, canonical: bytes) -> str:
    """`sha256(prev_hash as ASCII hex || canonical)` as lowercase hex."""
    return hashlib.sha256(prev_hash.encode("ascii") + canonical).hexdigest()


def _anchor_problem(seq: int, stored_hash: str, anchor_hash: str) -> str | None:
    if stored_hash == anchor_hash:
        return None
    return f"seq {seq}: hash differs from the anchor (the log was rewritten up to here)"


def _canonical_redacted(redacted: Mapping[str, Mapping[str, int]]) -> str:
    return codec.dumps(redacted, sort_keys=True).decode("utf-8")


_COLUMNS = tuple(audit_log.c[name] for name in ("seq", *RECORD_FIELDS, "prev_hash", "hash"))


class AuditLog:
    """The audit log in a store: append records, verify the chain, read the newest entries."""

    def __init__(self, store: Store) -> None:
        self._store = store

    @property
    def store(self) -> Store:
        """The store holding the log."""
        return self._store

    def append(self, records: Sequence[AuditRecord], *, batch_id: str | None = None) -> int:
        """Append records in one transaction, in order; return the seq of the last one.

        Appenders in other processes and replicas are serialised (an advisory lock on PostgreSQL,
        the write lock on SQLite), so the chain stays gapless and linear. With `batch_id`
        (at most 64 characters), an append whose batch is already in the log writes nothing and
        returns that batch's last seq: retrying after an unknown commit outcome is safe.
        Database errors are raised as StoreError.
        """
        if batch_id is not None and not 0 < len(batch_id) <= 64:
            raise AuditError("batch_id must be 1 to 64 characters")
        with self._store.begin() as connection:
            return self.append_in(connection, records, batch_id=batch_id)

    def append_in(
        self,
        connection: Connection,
        records: Sequence[AuditRecord],
        *,
        batch_id: str | None = None,
    ) -> int:
        """`append` inside the caller's write transaction (from `Store.begin()`).

        A change and its audit record then commit together or not at all.
        """
        if batch_id is not None and not 0 < len(batch_id) <= 64:
            raise AuditError("batch_id must be 1 to 64 characters")
        self._store.lock(connection, _LOCK)
        if batch_id is not None:
            done = connection.scalar(
                select(audit_log.c.seq).where(audit_log.c.batch_id == batch_id).limit(1)
            )
            if done is not None:
                return int(done)
        last = connection.execute(
            select(audit_log.c.seq, audit_log.c.hash).order_by(audit_log.c.seq.desc()).limit(1)
        ).first()
        seq, prev_hash = (int(last.seq), str(last.hash)) if last else (0, GENESIS_HASH)
        if not records:
            return seq
        rows: list[dict[str, Any]] = []
        for record in records:
            seq += 1
            values = record.values()
            digest = chain_hash(prev_hash, canonical_record(seq, values))
            values["redacted"] = _canonical_redacted(record.redacted)
            rows.append(
                {**values, "seq": seq, "prev_hash": prev_hash, "hash": digest, "batch_id": None}
            )
            prev_hash = digest
        rows[-1]["batch_id"] = batch_id
        connection.execute(insert(audit_log), rows)
        return seq

    def verify(self, *, anchor: tuple[int, str] | None = None) -> AuditVerification:
        """Check the whole chain, streaming rows in seq order; stop at the first bad row.

        Detects edited fields or hashes, deleted rows (gaps), and inserted or reordered rows.
        Deleting the newest rows leaves a shorter valid chain: pass `anchor=(seq, hash)`, an
        entry recorded earlier (e.g. from `tail(1)`), to detect that too.
        """
        expected = 1
        prev_hash = GENESIS_HASH
        # SQLite keeps timestamps as text: read it raw, so that a garbled value is a bad row
        # rather than a parse error half-way through the stream.
        ts_raw = self._store.dialect == "sqlite"
        columns = [
            type_coerce(c, String).label("ts") if c.name == "ts" and ts_raw else c for c in _COLUMNS
        ]
        query = select(*columns).order_by(audit_log.c.seq).execution_options(yield_per=1000)
        with self._store.read() as connection:
            for row in connection.execute(query):
                problem = self._check_row(row, expected, prev_hash, ts_raw)
                if problem is None and anchor is not None and row.seq == anchor[0]:
                    problem = _anchor_problem(row.seq, row.hash, anchor[1])
                if problem is not None:
                    return AuditVerification(False, expected - 1, expected, problem, prev_hash)
                prev_hash = row.hash
                expected += 1
        count = expected - 1
        if anchor is not None and count < anchor[0]:
            return AuditVerification(
                False,
                count,
                count + 1,
                f"the log ends at seq {count} but the anchor is at seq {anchor[0]} "
                "(newest rows deleted)",
                prev_hash,
            )
        return AuditVerification(True, count, None, f"ok: {count} records, chain intact", prev_hash)

    @staticmethod
    def _check_row(row: Row[Any], expected: int, prev_hash: str, ts_raw: bool) -> str | None:
        """What is wrong with the row expected at seq `expected`, or None."""
        if row.seq != expected:
            if row.seq > expected:
                return f"seq {expected} is missing: the next row is seq {row.seq} (rows deleted)"
            return f"seq {expected}: unexpected seq {row.seq}"
        if row.prev_hash != prev_hash:
            linked = "the genesis hash" if expected == 1 else f"the hash of seq {expected - 1}"
            return f"seq {expected}: prev_hash is not {linked} (rows edited, inserted or reordered)"
        values = dict(row._mapping)
        if ts_raw:
            try:
                values["ts"] = datetime.fromisoformat(str(row.ts)).replace(tzinfo=UTC)
            except ValueError:
                return f"seq {expected}: ts is not a timestamp"
        try:
            redacted = codec.loads(row.redacted)
        except (codec.JSONDecodeError, TypeError):
            return f"seq {expected}: redacted is not JSON"
        if codec.dumps(redacted, sort_keys=True) != str(row.redacted).encode("utf-8"):
            return f"seq {expected}: redacted is not in canonical form (edited)"
        values["redacted"] = redacted
        try:
            digest = chain_hash(prev_hash, canonical_record(expected, values))
        except (TypeError, ValueError):  # e.g. a value of a type JSON cannot hold
            return f"seq {expected}: a field holds a value that cannot be hashed (edited)"
        if digest != row.hash:
            return f"seq {expected}: hash does not match the row (a field or the hash was edited)"
        return None

    def tail(self, n: int = 20) -> list[AuditEntry]:
        """The newest `n` entries, oldest first."""
        query = select(*_COLUMNS).order_by(audit_log.c.seq.desc()).limit(max(n, 0))
        with self._store.read() as connection:
            rows = connection.execute(query).all()
        entries = []
        for row in reversed(rows):
            values = dict(row._mapping)
            try:
                values["redacted"] = codec.loads(row.redacted)
                record = AuditRecord(**{name: values[name] for name in RECORD_FIELDS})
            except (AuditError, codec.JSONDecodeError) as exc:
                raise AuditError(f"audit row {row.seq} is not a valid record ({exc})") from exc
            entries.append(AuditEntry(int(row.seq), record, str(row.prev_hash), str(row.hash)))
        return entries


#: First and longest wait between retries of a failed batch, in seconds (doubling in between).
RETRY_INITIAL = 0.05
RETRY_MAX = 2.0


class AuditWriter:
    """Batches records on a background thread and appends them; the sidecar submits one per request.

    A batch is written when `batch_size` records are waiting, when the oldest has waited
    `flush_interval` seconds, or on `flush()`. A failed batch is retried, with backoff, as the
    same batch (same records, order and batch id, so a retry never duplicates it); meanwhile new
    records queue up to `max_queue`, after which `submit()` raises AuditBackpressure.
    `on_error` is called (on the writer thread) with each failure; by default it is logged.
    """

    def __init__(
        self,
        log: AuditLog,
        *,
        batch_size: int = 256,
        flush_interval: float = 0.2,
        max_queue: int = 10_000,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        if batch_size < 1 or max_queue < 1 or not flush_interval > 0:
            raise ValueError("batch_size and max_queue must be >= 1 and flush_interval > 0")
        self._log = log
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._max_queue = max_queue
        self._on_error = on_error
        self._cond = threading.Condition()
        # (monotonic arrival time, record); a batch leaves the queue only once it is written.
        self._pending: deque[tuple[float, AuditRecord]] = deque()
        self._submitted = 0
        self._done = 0
        self._flush_target = 0
        self._closed = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: False after a failed write until the next successful one.
        self.healthy = True
        #: Records written so far.
        self.written = 0
        #: Failed attempts to write a batch (each retry that fails counts).
        self.failed_batches = 0

    def __enter__(self) -> AuditWriter:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def queue_depth(self) -> int:
        """Records submitted and not yet written (including the batch being written)."""
        with self._cond:
            return len(self._pending)

    def start(self) -> None:
        """Start the background thread (once; later calls do nothing)."""
        with self._cond:
            if self._closed:
                raise AuditError("the audit writer is closed")
            if self._thread is not None:
                return
            self._thread = threading.Thread(
                target=self._run, name="intelgraph-audit-writer", daemon=True
            )
            self._thread.start()

    def submit(self, record: AuditRecord) -> None:
        """Queue a record; never blocks. Raises AuditBackpressure when the queue is full."""
        with self._cond:
            if self._closed:
                raise AuditError("the audit writer is closed")
            if len(self._pending) >= self._max_queue:
                raise AuditBackpressure(
                    f"audit queue full ({self._max_queue} records waiting; healthy={self.healthy})"
                )
            self._pending.append((time.monotonic(), record))
            self._submitted += 1
            if len(self._pending) == 1 or len(self._pending) == self._batch_size:
                self._cond.notify_all()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every record submitted so far is written; False on timeout."""
        with self._cond:
            target = self._submitted
            self._flush_target = max(self._flush_target, target)
            self._cond.notify_all()
            return self._cond.wait_for(lambda: self._done >= target, timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Flush (up to `timeout`), then stop the thread. Unwritten records are reported lost."""
        with self._cond:
            self._closed = True
            started = self._thread is not None
        deadline = time.monotonic() + timeout
        if started:
            self.flush(timeout)
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(max(0.1, deadline - time.monotonic()))
        with self._cond:
            lost = len(self._pending)
        if lost:
            self._report(AuditError(f"audit writer closed with {lost} records not written"))

    def _report(self, exc: BaseException) -> None:
        if self._on_error is None:
            log.warning("audit writer: %s", exc)
            return
        try:
            self._on_error(exc)
        except Exception:  # a broken callback must not stop the writer
            log.exception("audit writer: on_error callback failed")

    def _next_batch(self) -> list[AuditRecord] | None:
        """Wait for a batch to be due; None when the writer stops."""
        with self._cond:
            while True:
                if self._stop.is_set():
                    return None
                if self._pending:
                    due = self._pending[0][0] + self._flush_interval
                    now = time.monotonic()
                    if (
                        len(self._pending) >= self._batch_size
                        or self._flush_target > self._done
                        or now >= due
                    ):
                        n = min(len(self._pending), self._batch_size)
                        return [self._pending[i][1] for i in range(n)]
                    self._cond.wait(due - now)
                else:
                    self._cond.wait()

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            batch_id = uuid.uuid4().hex
            delay = RETRY_INITIAL
            while True:
                try:
                    self._log.append(batch, batch_id=batch_id)
                    break
                except Exception as exc:
                    with self._cond:
                        self.failed_batches += 1
                        self.healthy = False
                    self._report(exc)
                    if self._stop.wait(delay):
                        return
                    delay = min(RETRY_MAX, delay * 2)
            with self._cond:
                for _ in batch:
                    self._pending.popleft()
                self._done += len(batch)
                self.written += len(batch)
                self.healthy = True
                self._cond.notify_all()
