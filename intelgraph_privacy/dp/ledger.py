"""The per-tenant privacy budget ledger: how much epsilon and delta each release may still spend.

Budgets are per tenant, purpose and window (a UTC day by default; windows are aligned to the
epoch, so every replica computes the same `window_start`). Amounts are stored as integers (epsilon
in units of 1e-9, delta in units of 1e-12, see `intelgraph_privacy.store.schema.privacy_budget`),
so debits add up exactly.

A debit is one atomic statement (an upsert whose update carries the budget check in its WHERE
clause, returning the new totals): a release that would exceed the window's epsilon or delta
budget is refused and spends nothing, and several processes or replicas debiting one database at
once can never overspend. Callers debit *before* drawing any noise.

    ledger = BudgetLedger(store, budgets={"research": Budget(4.0, 1e-5), "*": Budget(1.0, 1e-6)})
    left = ledger.debit("acme", "research", epsilon=1.0, delta=1e-6)  # raises BudgetExceededError
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

from sqlalchemy import Column, Connection, bindparam, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from intelgraph_privacy import codec
from intelgraph_privacy.errors import ConfigError, PrivacyError
from intelgraph_privacy.store.engine import Store
from intelgraph_privacy.store.errors import StoreError
from intelgraph_privacy.store.schema import dp_releases, privacy_budget

__all__ = [
    "DEFAULT_PURPOSE",
    "DELTA_UNIT",
    "EPSILON_UNIT",
    "MAX_EPSILON",
    "Budget",
    "BudgetExceededError",
    "BudgetLedger",
    "Debit",
    "ReleaseRecord",
    "delta_units",
    "epsilon_units",
    "window_start",
]

#: Epsilon is stored in integer units of 1e-9, delta in units of 1e-12 (exact sums).
EPSILON_UNIT = Decimal("1e-9")
DELTA_UNIT = Decimal("1e-12")
_EPSILON_SCALE = 10**9
_DELTA_SCALE = 10**12

#: The largest epsilon accepted for a debit or a budget: far beyond any meaningful privacy
#: guarantee, and small enough that sums stay well inside the 64-bit columns.
MAX_EPSILON = 1_000_000.0

#: The key of `budgets` that applies to every purpose without a budget of its own.
DEFAULT_PURPOSE = "*"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _length(column: Column[Any]) -> int:
    length = getattr(column.type, "length", None)
    assert isinstance(length, int), column
    return length


# Column limits of privacy_budget / dp_releases (checked here, with a clear message, rather
# than as a driver error on PostgreSQL or silently ignored on SQLite).
_TENANT_MAX = _length(privacy_budget.c.tenant)
_PURPOSE_MAX = _length(privacy_budget.c.purpose)
_ID_MAX = _length(dp_releases.c.id)
_AGGREGATE_MAX = _length(dp_releases.c.aggregate)
_MECHANISM_MAX = _length(dp_releases.c.mechanism)
_PRESET_MAX = _length(dp_releases.c.preset)


class BudgetExceededError(PrivacyError):
    """A release would exceed the privacy budget of its tenant, purpose and window.

    Nothing was spent. `epsilon_left` / `delta_left` are what the window still allows (as read
    just after the refusal; another process may change it at any moment).
    """

    def __init__(
        self,
        tenant: str,
        purpose: str,
        *,
        epsilon: float,
        delta: float,
        epsilon_left: float,
        delta_left: float,
        window_start: datetime,
        reason: str | None = None,
    ) -> None:
        self.tenant = tenant
        self.purpose = purpose
        #: The amounts the refused release asked for.
        self.epsilon = epsilon
        self.delta = delta
        self.epsilon_left = epsilon_left
        self.delta_left = delta_left
        self.window_start = window_start
        detail = reason or (
            f"requested epsilon={epsilon:g}, delta={delta:g}; "
            f"left epsilon={epsilon_left:g}, delta={delta_left:g}"
        )
        super().__init__(
            f"privacy budget exceeded for tenant {tenant!r}, purpose {purpose!r} "
            f"(window from {window_start.isoformat()}): {detail}"
        )


def _check_amount(name: str, value: float, *, upper: float, allow_zero: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    low_ok = value >= 0 if allow_zero else value > 0
    if not low_ok or value >= upper:
        low = "[0" if allow_zero else "(0"
        raise ValueError(f"{name} must be in {low}, {upper:g}), got {value!r}")


def _check_name(name: str, value: str, limit: int) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    if len(value) > limit:
        raise ValueError(f"{name} is longer than {limit} characters: {value[:40]!r}...")


def _units(value: float, scale: int, rounding: str) -> int:
    # The shortest decimal that round-trips the float (what the caller wrote: 0.1, not
    # 0.1000000000000000055...), scaled and rounded to whole units.
    return int((Decimal(repr(float(value))) * scale).to_integral_value(rounding=rounding))


def epsilon_units(epsilon: float) -> int:
    """Epsilon in ledger units (1e-9), rounded up: a debit is never under-charged."""
    return _units(epsilon, _EPSILON_SCALE, ROUND_CEILING)


def delta_units(delta: float) -> int:
    """Delta in ledger units (1e-12), rounded up: a debit is never under-charged."""
    return _units(delta, _DELTA_SCALE, ROUND_CEILING)


def _epsilon(units: int) -> float:
    return units / _EPSILON_SCALE


def _delta(units: int) -> float:
    return units / _DELTA_SCALE


def window_start(now: datetime, window: timedelta) -> datetime:
    """The start of the window holding `now`: floor(now, window), counted from the UTC epoch."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"naive datetime {now.isoformat()} (a time zone is required)")
    # timedelta // timedelta is exact integer arithmetic (microseconds), never a float.
    return _EPOCH + ((now - _EPOCH) // window) * window


@dataclass(frozen=True)
class Budget:
    """The privacy budget of one window: total epsilon and total delta its releases may spend.

    A budget of epsilon 0 allows no release at all.
    """

    epsilon: float
    delta: float

    def __post_init__(self) -> None:
        _check_amount("budget epsilon", self.epsilon, upper=MAX_EPSILON, allow_zero=True)
        _check_amount("budget delta", self.delta, upper=1.0, allow_zero=True)

    @property
    def epsilon_units(self) -> int:
        """Epsilon in ledger units, rounded down: a budget is never over-granted."""
        return _units(self.epsilon, _EPSILON_SCALE, ROUND_FLOOR)

    @property
    def delta_units(self) -> int:
        """Delta in ledger units, rounded down: a budget is never over-granted."""
        return _units(self.delta, _DELTA_SCALE, ROUND_FLOOR)


@dataclass(frozen=True)
class Debit:
    """What a tenant and purpose have left in a window (after a debit, or as read)."""

    epsilon_left: float
    delta_left: float
    window_start: datetime
    #: Releases charged in this window so far.
    releases: int


@dataclass(frozen=True)
class ReleaseRecord:
    """One row of `dp_releases`: a release charged to the ledger, with its proof record."""

    release_id: str
    ts: datetime
    tenant: str
    purpose: str
    aggregate: str
    mechanism: str
    epsilon: float
    delta: float
    preset: str | None
    proof: dict[str, Any]


def _utc_now() -> datetime:
    return datetime.now(UTC)


class BudgetLedger:
    """Per-tenant, per-purpose privacy budgets in the store, debited atomically.

    `budgets` is one `Budget` for every purpose, or a mapping of purpose name to `Budget` in
    which `"*"` (DEFAULT_PURPOSE) applies to the purposes not named; a purpose with neither has
    no budget and every release for it is refused. The configured budget is the one enforced,
    also for windows already started (it is written to the window's row on every debit).
    `clock` returns the current time (aware); `now=` on a call overrides it.

    Thread-safe: every call uses its own pooled connection. Raises StoreError when the
    database fails (fail closed: no release without a successful debit).
    """

    def __init__(
        self,
        store: Store,
        *,
        budgets: Mapping[str, Budget] | Budget,
        window: timedelta = timedelta(days=1),
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        if isinstance(budgets, Budget):
            table: dict[str, Budget] = {DEFAULT_PURPOSE: budgets}
        elif isinstance(budgets, Mapping):
            table = {}
            for purpose, budget in budgets.items():
                if not isinstance(budget, Budget):
                    raise ConfigError(
                        f"budget for purpose {purpose!r} must be a Budget, "
                        f"got {type(budget).__name__}"
                    )
                try:
                    _check_name("purpose", purpose, _PURPOSE_MAX)
                except ValueError as exc:
                    raise ConfigError(f"invalid budget key: {exc}") from None
                table[purpose] = budget
        else:
            raise ConfigError(
                f"budgets must be a Budget or a mapping of purpose to Budget, "
                f"got {type(budgets).__name__}"
            )
        if not isinstance(window, timedelta) or window <= timedelta(0):
            raise ConfigError(f"the ledger window must be a positive timedelta, got {window!r}")
        self.store = store
        self.window = window
        self._budgets = table
        self._clock = clock
        self._debit = self._debit_statement(store)
        self._read = select(
            privacy_budget.c.epsilon_spent,
            privacy_budget.c.delta_spent,
            privacy_budget.c.releases,
        ).where(
            privacy_budget.c.tenant == bindparam("tenant"),
            privacy_budget.c.purpose == bindparam("purpose"),
            privacy_budget.c.window_start == bindparam("window_start"),
        )

    @staticmethod
    def _debit_statement(store: Store) -> Any:
        """The one statement of a debit, built once (SQLAlchemy then caches its compiled form).

        Insert the window's row with this debit as its spending, or add the debit to the row
        already there, but only where the new totals stay within the configured budget (the
        `excluded` row carries the request and the budget). No row returned = refused.
        """
        upsert = postgresql.insert if store.dialect == "postgresql" else sqlite.insert
        statement = upsert(privacy_budget).values(
            tenant=bindparam("tenant"),
            purpose=bindparam("purpose"),
            window_start=bindparam("window_start"),
            epsilon_budget=bindparam("epsilon_budget"),
            epsilon_spent=bindparam("epsilon"),
            delta_budget=bindparam("delta_budget"),
            delta_spent=bindparam("delta"),
            releases=1,
            updated_at=bindparam("updated_at"),
        )
        row, new = privacy_budget.c, statement.excluded
        return statement.on_conflict_do_update(
            index_elements=[row.tenant, row.purpose, row.window_start],
            set_={
                "epsilon_spent": row.epsilon_spent + new.epsilon_spent,
                "delta_spent": row.delta_spent + new.delta_spent,
                "releases": row.releases + 1,
                "epsilon_budget": new.epsilon_budget,
                "delta_budget": new.delta_budget,
                "updated_at": new.updated_at,
            },
            where=(row.epsilon_spent + new.epsilon_spent <= new.epsilon_budget)
            & (row.delta_spent + new.delta_spent <= new.delta_budget),
        ).returning(row.epsilon_spent, row.delta_spent, row.releases)

    # -- configuration ---------------------------------------------------------------------

    def budget_for(self, tenant: str, purpose: str) -> Budget | None:
        """The budget that applies to `tenant` and `purpose` (None: no release is allowed)."""
        return self._budgets.get(purpose, self._budgets.get(DEFAULT_PURPOSE))

    def window_start(self, now: datetime | None = None) -> datetime:
        """The start of the window holding `now` (default: the clock's current time)."""
        return window_start(self._now(now), self.window)

    def _now(self, now: datetime | None) -> datetime:
        moment = self._clock() if now is None else now
        if not isinstance(moment, datetime):
            raise ValueError(f"now must be a datetime, got {type(moment).__name__}")
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ValueError(f"naive datetime {moment.isoformat()} (a time zone is required)")
        return moment

    # -- debits ----------------------------------------------------------------------------

    def debit(
        self,
        tenant: str,
        purpose: str,
        epsilon: float,
        delta: float,
        *,
        now: datetime | None = None,
    ) -> Debit:
        """Charge one release of (epsilon, delta) to the tenant's budget for `purpose`.

        Returns what is left in the window after the charge. Raises BudgetExceededError, having
        spent nothing, when the window's epsilon or delta budget would be exceeded (a purpose
        without a budget is refused the same way); ValueError for invalid arguments;
        StoreError when the database fails.
        """
        _check_name("tenant", tenant, _TENANT_MAX)
        _check_name("purpose", purpose, _PURPOSE_MAX)
        _check_amount("epsilon", epsilon, upper=MAX_EPSILON, allow_zero=False)
        _check_amount("delta", delta, upper=1.0, allow_zero=True)
        moment = self._now(now)
        start = window_start(moment, self.window)
        budget = self.budget_for(tenant, purpose)
        eps_units, delta_units_ = epsilon_units(epsilon), delta_units(delta)
        if budget is None:
            raise BudgetExceededError(
                tenant,
                purpose,
                epsilon=epsilon,
                delta=delta,
                epsilon_left=0.0,
                delta_left=0.0,
                window_start=start,
                reason=f"no privacy budget is configured for purpose {purpose!r}",
            )
        eps_budget, delta_budget = budget.epsilon_units, budget.delta_units
        if eps_units > eps_budget or delta_units_ > delta_budget:
            # Larger than the whole window's budget: refused whatever was spent, and without
            # writing a row (the upsert's insert branch has no WHERE of its own).
            spent = self._spent(tenant, purpose, start)
            raise self._refusal(tenant, purpose, epsilon, delta, budget, spent, start)
        params = {
            "tenant": tenant,
            "purpose": purpose,
            "window_start": start,
            "epsilon_budget": eps_budget,
            "delta_budget": delta_budget,
            "epsilon": eps_units,
            "delta": delta_units_,
            "updated_at": moment,
        }
        with self._write() as connection:
            row = connection.execute(self._debit, params).first()
            # Refused: read what is left in the same transaction, for the error's message.
            refused = (
                None if row is not None else self._spent_in(connection, tenant, purpose, start)
            )
        if row is None:
            assert refused is not None
            raise self._refusal(tenant, purpose, epsilon, delta, budget, refused, start)
        return Debit(
            epsilon_left=_epsilon(max(eps_budget - int(row.epsilon_spent), 0)),
            delta_left=_delta(max(delta_budget - int(row.delta_spent), 0)),
            window_start=start,
            releases=int(row.releases),
        )

    def remaining(self, tenant: str, purpose: str, *, now: datetime | None = None) -> Debit:
        """What `tenant` may still spend on `purpose` in the window holding `now`."""
        _check_name("tenant", tenant, _TENANT_MAX)
        _check_name("purpose", purpose, _PURPOSE_MAX)
        start = self.window_start(now)
        eps_spent, delta_spent, releases = self._spent(tenant, purpose, start)
        budget = self.budget_for(tenant, purpose)
        eps_budget = budget.epsilon_units if budget else 0
        delta_budget = budget.delta_units if budget else 0
        return Debit(
            epsilon_left=_epsilon(max(eps_budget - eps_spent, 0)),
            delta_left=_delta(max(delta_budget - delta_spent, 0)),
            window_start=start,
            releases=releases,
        )

    def _refusal(
        self,
        tenant: str,
        purpose: str,
        epsilon: float,
        delta: float,
        budget: Budget,
        spent: tuple[int, int, int],
        start: datetime,
    ) -> BudgetExceededError:
        return BudgetExceededError(
            tenant,
            purpose,
            epsilon=epsilon,
            delta=delta,
            epsilon_left=_epsilon(max(budget.epsilon_units - spent[0], 0)),
            delta_left=_delta(max(budget.delta_units - spent[1], 0)),
            window_start=start,
        )

    def _spent(self, tenant: str, purpose: str, start: datetime) -> tuple[int, int, int]:
        with self.store.read() as connection:  # raises StoreError
            return self._spent_in(connection, tenant, purpose, start)

    def _spent_in(
        self, connection: Connection, tenant: str, purpose: str, start: datetime
    ) -> tuple[int, int, int]:
        """(epsilon spent, delta spent, releases) of one window, in units (zeros: no row yet)."""
        params = {"tenant": tenant, "purpose": purpose, "window_start": start}
        row = connection.execute(self._read, params).first()
        if row is None:
            return 0, 0, 0
        return int(row.epsilon_spent), int(row.delta_spent), int(row.releases)

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A connection on which one statement is one atomic write.

        PostgreSQL: an autocommit connection (the statement is its own transaction: no BEGIN and
        COMMIT round trips; the upsert locks the window's row and re-checks its WHERE on the
        latest version, so concurrent debits serialise on the row). SQLite: the store's
        BEGIN IMMEDIATE transaction, which waits for the write lock (an autocommit statement
        could fail at once with SQLITE_BUSY when another process committed in between).
        """
        if self.store.dialect != "postgresql":
            with self.store.begin() as connection:  # raises StoreError
                yield connection
            return
        try:
            with self.store.engine.connect() as connection:
                yield connection.execution_options(isolation_level="AUTOCOMMIT")
        except SQLAlchemyError as exc:
            raise StoreError(f"{self.store.url}: privacy budget debit failed: {exc}") from exc

    # -- release records -------------------------------------------------------------------

    def record_release(
        self,
        release_id: str,
        tenant: str,
        purpose: str,
        aggregate: str,
        mechanism: str,
        epsilon: float,
        delta: float,
        preset: str | None,
        proof: Mapping[str, Any],
        *,
        now: datetime | None = None,
    ) -> None:
        """Persist the proof record of a release (one `dp_releases` row, proof as canonical JSON).

        Call it after a successful `debit`. Raises ValueError for invalid arguments (or a proof
        that is not JSON-encodable), StoreError when the database fails (a duplicate
        `release_id` included).
        """
        _check_name("release_id", release_id, _ID_MAX)
        _check_name("tenant", tenant, _TENANT_MAX)
        _check_name("purpose", purpose, _PURPOSE_MAX)
        _check_name("aggregate", aggregate, _AGGREGATE_MAX)
        _check_name("mechanism", mechanism, _MECHANISM_MAX)
        if preset is not None:
            _check_name("preset", preset, _PRESET_MAX)
        _check_amount("epsilon", epsilon, upper=MAX_EPSILON, allow_zero=False)
        _check_amount("delta", delta, upper=1.0, allow_zero=True)
        if not isinstance(proof, Mapping):
            raise ValueError(f"proof must be a mapping, got {type(proof).__name__}")
        try:
            proof_text = codec.dumps(dict(proof), sort_keys=True).decode()
        except TypeError as exc:
            raise ValueError(f"proof is not JSON-encodable: {exc}") from None
        row = {
            "id": release_id,
            "ts": self._now(now),
            "tenant": tenant,
            "purpose": purpose,
            "aggregate": aggregate,
            "mechanism": mechanism,
            "epsilon": float(epsilon),
            "delta": float(delta),
            "preset": preset,
            "proof": proof_text,
        }
        with self.store.begin() as connection:  # raises StoreError
            connection.execute(insert(dp_releases), row)

    def releases(
        self, tenant: str, *, purpose: str | None = None, limit: int = 100
    ) -> list[ReleaseRecord]:
        """The tenant's most recent release records (newest first), optionally of one purpose."""
        _check_name("tenant", tenant, _TENANT_MAX)
        query = select(dp_releases).where(dp_releases.c.tenant == tenant)
        if purpose is not None:
            query = query.where(dp_releases.c.purpose == purpose)
        query = query.order_by(dp_releases.c.ts.desc(), dp_releases.c.id).limit(max(limit, 0))
        with self.store.read() as connection:
            rows = connection.execute(query).all()
        return [
            ReleaseRecord(
                release_id=str(r.id),
                ts=r.ts,
                tenant=str(r.tenant),
                purpose=str(r.purpose),
                aggregate=str(r.aggregate),
                mechanism=str(r.mechanism),
                epsilon=float(r.epsilon),
                delta=float(r.delta),
                preset=None if r.preset is None else str(r.preset),
                proof=codec.loads(r.proof),
            )
            for r in rows
        ]
