"""The privacy budget ledger on both backends (the `store` fixture: SQLite and PostgreSQL).

Debits add exactly (integer units), a release over the window's epsilon or delta budget is
refused and spends nothing, windows roll over on UTC boundaries, budgets are per purpose (with a
default) and per tenant. A property test checks random debit sequences against a plain model.
"""

from __future__ import annotations

import itertools
import math
import threading
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from intelgraph_privacy.dp.ledger import (
    MAX_EPSILON,
    Budget,
    BudgetExceededError,
    BudgetLedger,
    Debit,
    delta_units,
    epsilon_units,
    window_start,
)
from intelgraph_privacy.errors import ConfigError, PrivacyError
from intelgraph_privacy.store import Store, StoreError
from intelgraph_privacy.store.schema import privacy_budget

NOON = datetime(2026, 3, 14, 12, 0, tzinfo=UTC)
DAY = datetime(2026, 3, 14, tzinfo=UTC)


def rows(store: Store, tenant: str | None = None) -> list[dict[str, Any]]:
    """The privacy_budget rows (of one tenant), as dicts, in key order."""
    query = select(privacy_budget).order_by(
        privacy_budget.c.tenant, privacy_budget.c.purpose, privacy_budget.c.window_start
    )
    if tenant is not None:
        query = query.where(privacy_budget.c.tenant == tenant)
    with store.read() as connection:
        return [dict(row._mapping) for row in connection.execute(query)]


def ledger(store: Store, budgets: Any = None, **kwargs: Any) -> BudgetLedger:
    """A ledger whose clock is fixed at NOON (1 epsilon, 1e-6 delta per day by default)."""
    return BudgetLedger(
        store,
        budgets=Budget(1.0, 1e-6) if budgets is None else budgets,
        clock=lambda: NOON,
        **kwargs,
    )


# -- units and windows (no database) -------------------------------------------------------


def test_amounts_convert_to_units_rounding_up_and_budgets_rounding_down() -> None:
    assert epsilon_units(1.0) == 1_000_000_000
    assert epsilon_units(0.1) == 100_000_000  # what the caller wrote, not the float's tail
    assert epsilon_units(0.3) == 300_000_000
    assert epsilon_units(1e-10) == 1  # never under-charged: a sliver costs a whole unit
    assert epsilon_units(1.0000000001) == 1_000_000_001
    assert delta_units(1e-6) == 1_000_000
    assert delta_units(1e-15) == 1
    assert delta_units(0.0) == 0
    assert Budget(1.0000000009, 1e-6).epsilon_units == 1_000_000_000  # never over-granted
    assert Budget(1.0, 1.5e-12).delta_units == 1


def test_windows_are_aligned_to_utc_from_the_epoch() -> None:
    day = timedelta(days=1)
    assert window_start(NOON, day) == DAY
    assert window_start(DAY, day) == DAY  # the boundary belongs to the new window
    assert window_start(DAY - timedelta(microseconds=1), day) == DAY - day
    # An offset time is placed in its UTC window: 01:30 at +05:00 is 20:30 UTC the day before.
    plus5 = datetime(2026, 3, 14, 1, 30, tzinfo=timezone(timedelta(hours=5)))
    assert window_start(plus5, day) == DAY - day
    assert window_start(NOON + timedelta(minutes=59), timedelta(hours=1)) == NOON
    # Windows that do not divide a day are counted from the epoch, not from midnight: NOON is
    # hour 492,636 since the epoch, 1 past a multiple of 5.
    assert window_start(NOON, timedelta(hours=5)) == datetime(2026, 3, 14, 11, tzinfo=UTC)
    with pytest.raises(ValueError, match="naive"):
        window_start(datetime(2026, 3, 14), day)


@pytest.mark.parametrize(
    ("epsilon", "delta", "message"),
    [
        (0.0, 0.0, "epsilon must be in"),
        (-1.0, 0.0, "epsilon must be in"),
        (math.nan, 0.0, "epsilon must be finite"),
        (math.inf, 0.0, "epsilon must be finite"),
        (MAX_EPSILON, 0.0, "epsilon must be in"),
        (True, 0.0, "epsilon must be a real number"),
        ("1", 0.0, "epsilon must be a real number"),
        (1.0, 1.0, "delta must be in"),
        (1.0, -1e-9, "delta must be in"),
        (1.0, math.nan, "delta must be finite"),
    ],
)
def test_invalid_amounts_are_refused_with_a_clear_error(
    sqlite_store: Store, epsilon: Any, delta: Any, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        ledger(sqlite_store).debit("acme", "research", epsilon, delta)
    assert rows(sqlite_store) == []


@pytest.mark.parametrize(
    ("tenant", "purpose", "message"),
    [
        ("", "research", "tenant must be a non-empty string"),
        ("  ", "research", "tenant must be a non-empty string"),
        ("acme", "", "purpose must be a non-empty string"),
        (None, "research", "tenant must be a non-empty string"),
        ("acme", "p" * 65, "purpose is longer than 64 characters"),
        ("t" * 256, "research", "tenant is longer than 255 characters"),
    ],
)
def test_invalid_names_are_refused_with_a_clear_error(
    sqlite_store: Store, tenant: Any, purpose: Any, message: str
) -> None:
    lg = ledger(sqlite_store)
    with pytest.raises(ValueError, match=message):
        lg.debit(tenant, purpose, 0.1, 0.0)
    with pytest.raises(ValueError, match=message):
        lg.remaining(tenant, purpose)


def test_invalid_configuration_is_refused(sqlite_store: Store) -> None:
    with pytest.raises(ValueError, match="budget epsilon must be in"):
        Budget(-1.0, 0.0)
    with pytest.raises(ValueError, match="budget delta must be in"):
        Budget(1.0, 1.0)
    with pytest.raises(ConfigError, match="positive timedelta"):
        BudgetLedger(sqlite_store, budgets=Budget(1.0, 0.0), window=timedelta(0))
    with pytest.raises(ConfigError, match="must be a Budget"):
        BudgetLedger(sqlite_store, budgets={"research": 1.0})  # type: ignore[dict-item]
    with pytest.raises(ConfigError, match="invalid budget key"):
        BudgetLedger(sqlite_store, budgets={"": Budget(1.0, 0.0)})
    with pytest.raises(ConfigError, match="must be a Budget or a mapping"):
        BudgetLedger(sqlite_store, budgets=[Budget(1.0, 0.0)])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="naive"):
        ledger(sqlite_store).debit("acme", "research", 0.1, 0.0, now=datetime(2026, 3, 14))
    assert rows(sqlite_store) == []


# -- debits on both backends -----------------------------------------------------------------


def test_debits_accumulate_exactly(store: Store) -> None:
    lg = ledger(store)
    results = [lg.debit("acme", "research", 0.1, 1e-7) for _ in range(10)]
    # Ten debits of 0.1 spend exactly the budget of 1.0 (float sums give 0.9999999999999999).
    assert [r.releases for r in results] == list(range(1, 11))
    assert results[2] == Debit(0.7, 7e-7, DAY, 3)
    assert results[-1] == Debit(0.0, 0.0, DAY, 10)
    assert lg.remaining("acme", "research") == results[-1]
    [row] = rows(store)
    assert row["epsilon_spent"] == row["epsilon_budget"] == 1_000_000_000
    assert row["delta_spent"] == row["delta_budget"] == 1_000_000
    assert row["releases"] == 10
    assert row["window_start"] == DAY
    assert row["updated_at"] == NOON


def test_exactly_the_budget_is_allowed_and_one_unit_more_is_refused(store: Store) -> None:
    lg = ledger(store)
    assert lg.debit("acme", "research", 0.6, 0.0).epsilon_left == pytest.approx(0.4)
    with pytest.raises(BudgetExceededError) as refused:
        lg.debit("acme", "research", 0.400000001, 0.0)  # one unit (1e-9) over
    assert refused.value.epsilon_left == pytest.approx(0.4)
    after = lg.debit("acme", "research", 0.4, 0.0)  # exactly at the budget
    assert after == Debit(0.0, 1e-6, DAY, 2)
    with pytest.raises(BudgetExceededError):
        lg.debit("acme", "research", 1e-9, 0.0)
    with pytest.raises(BudgetExceededError):
        lg.debit("acme", "research", 1e-12, 0.0)  # rounds up to one unit: still over
    assert lg.remaining("acme", "research") == after


def test_a_refusal_spends_nothing(store: Store) -> None:
    lg = ledger(store)
    lg.debit("acme", "research", 0.5, 5e-7)
    before = rows(store)
    for epsilon, delta in [(0.6, 0.0), (0.1, 6e-7), (0.9, 9e-7)]:
        with pytest.raises(BudgetExceededError):
            lg.debit("acme", "research", epsilon, delta)
    assert rows(store) == before  # spent, releases and updated_at untouched


def test_a_single_request_larger_than_the_budget_is_refused_without_a_row(store: Store) -> None:
    lg = ledger(store)
    with pytest.raises(BudgetExceededError) as refused:
        lg.debit("acme", "research", 1.000000001, 0.0)
    with pytest.raises(BudgetExceededError):
        lg.debit("acme", "research", 0.5, 2e-6)  # delta larger than the whole delta budget
    assert rows(store) == []
    error = refused.value
    assert isinstance(error, PrivacyError)
    assert (error.tenant, error.purpose) == ("acme", "research")
    assert (error.epsilon, error.delta) == (1.000000001, 0.0)
    assert (error.epsilon_left, error.delta_left, error.window_start) == (1.0, 1e-6, DAY)
    assert "tenant 'acme', purpose 'research'" in str(error)
    assert "requested epsilon=1, delta=0; left epsilon=1, delta=1e-06" in str(error)


def test_delta_is_enforced_as_well_as_epsilon(store: Store) -> None:
    lg = ledger(store, Budget(10.0, 1e-6))
    lg.debit("acme", "research", 1.0, 6e-7)
    with pytest.raises(BudgetExceededError) as refused:
        lg.debit("acme", "research", 1.0, 5e-7)  # plenty of epsilon, not enough delta
    assert refused.value.delta_left == pytest.approx(4e-7)
    assert refused.value.epsilon_left == pytest.approx(9.0)
    assert lg.debit("acme", "research", 1.0, 4e-7).delta_left == 0.0
    # Pure-epsilon releases (delta 0) still pass with the delta budget spent ...
    assert lg.debit("acme", "research", 7.0, 0.0) == Debit(1.0, 0.0, DAY, 3)
    # ... until epsilon runs out too.
    with pytest.raises(BudgetExceededError):
        lg.debit("acme", "research", 1.5, 0.0)
    assert lg.remaining("acme", "research") == Debit(1.0, 0.0, DAY, 3)


def test_a_zero_delta_budget_allows_only_pure_releases(store: Store) -> None:
    lg = ledger(store, Budget(1.0, 0.0))
    assert lg.debit("acme", "research", 0.5, 0.0).delta_left == 0.0
    with pytest.raises(BudgetExceededError):
        lg.debit("acme", "research", 0.1, 1e-12)
    assert lg.remaining("acme", "research").releases == 1


def test_windows_roll_over(store: Store) -> None:
    lg = ledger(store)
    last_second = DAY + timedelta(days=1) - timedelta(seconds=1)
    assert lg.debit("acme", "research", 1.0, 0.0, now=NOON).epsilon_left == 0.0
    with pytest.raises(BudgetExceededError):
        lg.debit("acme", "research", 0.1, 0.0, now=last_second)
    tomorrow = DAY + timedelta(days=1)
    fresh = lg.debit("acme", "research", 0.25, 0.0, now=tomorrow)
    assert fresh == Debit(0.75, 1e-6, tomorrow, 1)
    assert lg.remaining("acme", "research", now=NOON) == Debit(0.0, 1e-6, DAY, 1)
    assert lg.remaining("acme", "research", now=tomorrow + timedelta(hours=23)) == fresh
    assert [r["window_start"] for r in rows(store)] == [DAY, tomorrow]


def test_the_clock_decides_the_window_and_custom_windows_work(store: Store) -> None:
    now = [NOON]
    lg = BudgetLedger(
        store, budgets=Budget(1.0, 0.0), window=timedelta(hours=1), clock=lambda: now[0]
    )
    lg.debit("acme", "research", 1.0, 0.0)
    with pytest.raises(BudgetExceededError):
        lg.debit("acme", "research", 0.5, 0.0)
    now[0] = NOON + timedelta(minutes=59, seconds=59)
    with pytest.raises(BudgetExceededError):
        lg.debit("acme", "research", 0.5, 0.0)
    now[0] = NOON + timedelta(hours=1)
    assert lg.debit("acme", "research", 0.5, 0.0).window_start == NOON + timedelta(hours=1)
    assert lg.window_start() == NOON + timedelta(hours=1)


def test_budgets_per_purpose_with_a_default(store: Store) -> None:
    lg = ledger(store, {"research": Budget(2.0, 1e-5), "*": Budget(0.5, 0.0)})
    assert lg.remaining("acme", "research") == Debit(2.0, 1e-5, DAY, 0)
    assert lg.remaining("acme", "marketing") == Debit(0.5, 0.0, DAY, 0)
    assert lg.debit("acme", "research", 1.5, 1e-6).epsilon_left == pytest.approx(0.5)
    with pytest.raises(BudgetExceededError):
        lg.debit("acme", "marketing", 0.6, 0.0)  # the default's 0.5
    assert lg.debit("acme", "marketing", 0.5, 0.0).epsilon_left == 0.0
    # Each purpose has its own spending.
    assert lg.debit("acme", "billing", 0.5, 0.0).releases == 1
    assert lg.remaining("acme", "research").epsilon_left == pytest.approx(0.5)


def test_a_purpose_without_a_budget_is_refused(store: Store) -> None:
    lg = ledger(store, {"research": Budget(2.0, 1e-5)})
    assert lg.budget_for("acme", "marketing") is None
    with pytest.raises(BudgetExceededError, match="no privacy budget is configured"):
        lg.debit("acme", "marketing", 0.1, 0.0)
    assert lg.remaining("acme", "marketing") == Debit(0.0, 0.0, DAY, 0)
    zero = ledger(store, Budget(0.0, 0.0))
    with pytest.raises(BudgetExceededError):
        zero.debit("acme", "research", 1e-9, 0.0)
    assert rows(store) == []


def test_tenants_are_isolated(store: Store) -> None:
    lg = ledger(store)
    lg.debit("acme", "research", 1.0, 1e-6)
    with pytest.raises(BudgetExceededError):
        lg.debit("acme", "research", 0.1, 0.0)
    assert lg.debit("globex", "research", 0.1, 0.0) == Debit(0.9, 1e-6, DAY, 1)
    assert lg.remaining("initech", "research") == Debit(1.0, 1e-6, DAY, 0)
    assert [(r["tenant"], r["epsilon_spent"]) for r in rows(store)] == [
        ("acme", 1_000_000_000),
        ("globex", 100_000_000),
    ]


def test_the_configured_budget_applies_to_a_window_already_started(store: Store) -> None:
    ledger(store, Budget(2.0, 0.0)).debit("acme", "research", 1.5, 0.0)
    lowered = ledger(store, Budget(1.0, 0.0))
    assert lowered.remaining("acme", "research").epsilon_left == 0.0
    with pytest.raises(BudgetExceededError):
        lowered.debit("acme", "research", 0.1, 0.0)
    raised = ledger(store, Budget(3.0, 0.0))
    assert raised.debit("acme", "research", 1.5, 0.0).epsilon_left == 0.0
    [row] = rows(store)
    assert (row["epsilon_budget"], row["epsilon_spent"]) == (3_000_000_000, 3_000_000_000)


def test_threads_sharing_one_ledger_never_overspend(store: Store) -> None:
    lg = ledger(store, Budget(1.0, 0.0))
    accepted: list[int] = []

    def worker() -> None:
        for _ in range(20):
            try:
                lg.debit("acme", "research", 0.03, 0.0)
            except BudgetExceededError:
                continue
            accepted.append(1)  # list.append is atomic under the GIL

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(accepted) == 33  # floor(1.0 / 0.03)
    [row] = rows(store)
    assert row["epsilon_spent"] == 33 * 30_000_000
    assert row["releases"] == 33


def test_a_debit_leaves_pooled_connections_transactional(store: Store) -> None:
    """The autocommit connection of a debit (PostgreSQL) must not leak into later transactions."""
    lg = ledger(store)
    lg.debit("acme", "research", 0.1, 0.0)

    class AbortError(Exception):
        pass

    with pytest.raises(AbortError), store.begin() as connection:
        connection.execute(privacy_budget.update().values(epsilon_spent=0))
        raise AbortError
    assert lg.remaining("acme", "research").epsilon_left == pytest.approx(0.9)  # rolled back


def test_a_database_failure_raises_store_error_and_allows_nothing(store: Store) -> None:
    lg = ledger(store)
    with store.begin() as connection:
        connection.exec_driver_sql("DROP TABLE privacy_budget")
    with pytest.raises(StoreError):
        lg.debit("acme", "research", 0.1, 0.0)
    with pytest.raises(StoreError):
        lg.remaining("acme", "research")


# -- release records -------------------------------------------------------------------------


def test_release_records_round_trip(store: Store) -> None:
    lg = ledger(store)
    proof = {"mechanism": "geometric", "epsilon": 1.0, "budget_left": {"epsilon": 0.0}, "k": [1]}
    lg.record_release("r-1", "acme", "research", "count", "geometric", 1.0, 0.0, "eps1", proof)
    later = NOON + timedelta(minutes=1)
    lg.record_release(
        "r-2", "acme", "billing", "mean", "snapping", 2.0, 1e-6, None, {"b": 1, "a": 2}, now=later
    )
    lg.record_release("r-3", "globex", "research", "sum", "snapping", 0.5, 0.0, None, {})
    newest = lg.releases("acme")
    assert [r.release_id for r in newest] == ["r-2", "r-1"]
    assert newest[1].proof == proof
    assert (newest[1].ts, newest[1].preset, newest[1].aggregate) == (NOON, "eps1", "count")
    assert (newest[0].ts, newest[0].preset, newest[0].delta) == (later, None, 1e-6)
    assert [r.release_id for r in lg.releases("acme", purpose="research")] == ["r-1"]
    assert lg.releases("acme", limit=1)[0].release_id == "r-2"
    with pytest.raises(StoreError):  # the id is the primary key
        lg.record_release("r-1", "acme", "research", "count", "geometric", 1.0, 0.0, None, {})
    with pytest.raises(ValueError, match="not JSON-encodable"):
        lg.record_release(
            "r-4", "acme", "research", "count", "geometric", 1.0, 0.0, None, {"x": {1}}
        )
    with pytest.raises(ValueError, match="aggregate is longer than 32"):
        lg.record_release("r-5", "acme", "research", "c" * 33, "geometric", 1.0, 0.0, None, {})
    assert len(lg.releases("acme")) == 2


# -- property: random debit sequences against a model -----------------------------------------

_tenants = itertools.count()

# Amounts in whole units, so the model is exact; the ledger receives them as floats.
debits = st.lists(
    st.tuples(st.integers(1, 400_000_000), st.integers(0, 400_000)), min_size=1, max_size=15
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    sequence=debits,
    budget_eps=st.integers(0, 1_000_000_000),
    budget_delta=st.integers(0, 1_000_000),
)
def test_spending_never_exceeds_the_budget_and_equals_the_accepted_debits(
    store: Store, sequence: list[tuple[int, int]], budget_eps: int, budget_delta: int
) -> None:
    tenant = f"prop-{next(_tenants)}"  # one fresh tenant per example, in the shared store
    budget = Budget(budget_eps / 1e9, budget_delta / 1e12)
    assert (budget.epsilon_units, budget.delta_units) == (budget_eps, budget_delta)
    lg = ledger(store, budget)
    spent_eps = spent_delta = accepted = 0
    for eps, delta in sequence:
        epsilon_f, delta_f = eps / 1e9, delta / 1e12
        assert (epsilon_units(epsilon_f), delta_units(delta_f)) == (eps, delta)
        fits = spent_eps + eps <= budget_eps and spent_delta + delta <= budget_delta
        try:
            result = lg.debit(tenant, "research", epsilon_f, delta_f)
        except BudgetExceededError:
            assert not fits
            continue
        assert fits
        spent_eps, spent_delta, accepted = spent_eps + eps, spent_delta + delta, accepted + 1
        assert result.releases == accepted
        assert result.epsilon_left == (budget_eps - spent_eps) / 1e9
    found = rows(store, tenant)
    if accepted == 0:
        assert found == []
        return
    [row] = found
    assert row["epsilon_spent"] == spent_eps <= budget_eps
    assert row["delta_spent"] == spent_delta <= budget_delta
    assert row["releases"] == accepted
