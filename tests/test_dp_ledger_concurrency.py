"""Several OS processes debiting one tenant and purpose at once can never overspend the budget.

Each worker is a separate Python process with its own store and `BudgetLedger` on the same
database (as sidecar replicas are). The workers connect and warm up, then start together on a
"go" line, and hammer one window's row with debits until they have made their attempts; each
reports the debits it had accepted. Afterwards the row must hold exactly the sum of the accepted
debits, never more than the budget, and with equal amounts exactly floor(budget / amount) of
them. PostgreSQL (the shared production backend) and SQLite (several processes on one file).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from intelgraph_privacy.store import open_store
from intelgraph_privacy.store.schema import privacy_budget
from tests.db_fixtures import PG_BASE_URL

ROOT = Path(__file__).resolve().parents[1]

# The worker: argv = url, tenant, budget epsilon, budget delta, attempts, then the amounts
# "epsilon:delta" it cycles through. Prints "ready", waits for "go", prints a JSON report.
WORKER = """
import json, sys, time
from intelgraph_privacy.dp.ledger import (
    Budget, BudgetExceededError, BudgetLedger, delta_units, epsilon_units,
)
from intelgraph_privacy.store import open_store

url, tenant, budget_eps, budget_delta, attempts, *amounts = sys.argv[1:]
pairs = [tuple(float(x) for x in a.split(":")) for a in amounts]
store = open_store(url, migrate=False)
ledger = BudgetLedger(store, budgets=Budget(float(budget_eps), float(budget_delta)))
ledger.remaining(tenant, "research")  # connect before the start line
print("ready", flush=True)
assert sys.stdin.readline().strip() == "go"
accepted = refused = eps_units = delta_total = 0
first_accept = last_accept = None
for i in range(int(attempts)):
    eps, delta = pairs[i % len(pairs)]
    try:
        ledger.debit(tenant, "research", eps, delta)
    except BudgetExceededError:
        refused += 1
        continue
    now = time.monotonic()
    first_accept = now if first_accept is None else first_accept
    last_accept = now
    accepted += 1
    eps_units += epsilon_units(eps)
    delta_total += delta_units(delta)
store.close()
print(json.dumps({
    "accepted": accepted, "refused": refused, "epsilon_units": eps_units,
    "delta_units": delta_total, "first": first_accept, "last": last_accept,
}), flush=True)
"""


@dataclass(frozen=True)
class Report:
    """What one worker process says it did."""

    accepted: int
    refused: int
    epsilon_units: int
    delta_units: int


def hammer(
    url: str,
    *,
    workers: int,
    attempts: int,
    budget: tuple[float, float],
    amounts: Sequence[Sequence[tuple[float, float]]],
    tenant: str = "acme",
) -> list[Report]:
    """Run `workers` processes against one tenant and purpose at once; their reports."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RUST_BACKTRACE": "0"}
    procs: list[subprocess.Popen[str]] = []
    try:
        for i in range(workers):
            mine = [f"{eps!r}:{delta!r}" for eps, delta in amounts[i % len(amounts)]]
            args = [url, tenant, repr(budget[0]), repr(budget[1]), str(attempts), *mine]
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-c", WORKER, *args],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    cwd=ROOT,
                    env=env,
                )
            )
        for proc in procs:
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            assert line == "ready", proc.communicate(timeout=30)[1]
        for proc in procs:  # the start line, to all workers back to back
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        reports = []
        for proc in procs:
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
            data: dict[str, Any] = json.loads(out)
            reports.append(
                Report(
                    data["accepted"], data["refused"], data["epsilon_units"], data["delta_units"]
                )
            )
        return reports
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def window_row(url: str, tenant: str = "acme") -> dict[str, Any]:
    """The one privacy_budget row of `tenant` (all debits fall in the same day)."""
    with open_store(url, migrate=False) as store, store.read() as connection:
        rows = connection.execute(
            select(privacy_budget).where(privacy_budget.c.tenant == tenant)
        ).all()
    assert len(rows) == 1, rows
    return dict(rows[0]._mapping)


def check_equal_amounts(url: str, workers: int) -> None:
    # Budget 1.0 epsilon; 0.007 each: floor(1 / 0.007) = 142 fit (142 * 0.007 = 0.994), and the
    # workers' 80 attempts each cross the boundary while every worker is still debiting.
    open_store(url).close()  # migrate once, before the workers
    reports = hammer(
        url, workers=workers, attempts=80, budget=(1.0, 1e-6), amounts=[[(0.007, 1e-9)]]
    )
    accepted = sum(r.accepted for r in reports)
    row = window_row(url)
    assert accepted == 142
    assert sum(r.refused for r in reports) == workers * 80 - 142
    assert row["releases"] == 142
    assert row["epsilon_spent"] == sum(r.epsilon_units for r in reports) == 142 * 7_000_000
    assert row["delta_spent"] == 142 * 1_000
    assert row["epsilon_spent"] <= row["epsilon_budget"] == 1_000_000_000
    # The boundary was contended: more than one process had debits accepted.
    assert sum(1 for r in reports if r.accepted) >= 2, reports


def check_mixed_amounts(url: str) -> None:
    # Different amounts per worker, and delta as the binding constraint for some of them.
    open_store(url).close()
    amounts = [
        [(0.013, 0.0), (0.021, 2e-8), (0.009, 3e-9)],
        [(0.005, 5e-8), (0.0311, 0.0)],
        [(0.017, 1e-8), (0.002, 9e-8), (0.04, 0.0)],
    ]
    reports = hammer(url, workers=3, attempts=80, budget=(2.0, 2e-6), amounts=amounts)
    row = window_row(url)
    assert row["releases"] == sum(r.accepted for r in reports)
    assert row["epsilon_spent"] == sum(r.epsilon_units for r in reports)
    assert row["delta_spent"] == sum(r.delta_units for r in reports)
    assert row["epsilon_spent"] <= 2_000_000_000
    assert row["delta_spent"] <= 2_000_000
    assert sum(r.refused for r in reports) > 0  # the budget did run out


@pytest.mark.postgres
def test_processes_cannot_overspend_on_postgresql(fresh_pg_url: str) -> None:
    check_equal_amounts(fresh_pg_url, workers=4)


@pytest.mark.postgres
def test_processes_with_mixed_amounts_on_postgresql(fresh_pg_url: str) -> None:
    check_mixed_amounts(fresh_pg_url)


def test_processes_cannot_overspend_on_sqlite(sqlite_url: str) -> None:
    check_equal_amounts(sqlite_url, workers=3)


# -- the benchmark's entry point (benchmarks/dp_release.py calls it) ------------------------


def load_benchmark() -> Any:
    benchmarks = str(ROOT / "benchmarks")
    if benchmarks not in sys.path:  # its sibling module `_report`, as when run as a script
        sys.path.insert(0, benchmarks)
    spec = importlib.util.spec_from_file_location(
        "ledger_debits_benchmark", ROOT / "benchmarks" / "ledger_debits.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    return module


def bench_schemas(admin: Engine) -> set[str]:
    with admin.connect() as connection:
        rows = connection.exec_driver_sql(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'igp_bench_ledger_%%'"
        )
        return {str(name) for (name,) in rows}


@pytest.mark.postgres
def test_the_benchmark_counts_real_debits_and_cleans_up(pg_server: Engine) -> None:
    benchmark = load_benchmark()
    before = bench_schemas(pg_server)
    rate = benchmark.ledger_debits_per_second(PG_BASE_URL, seconds=0.3, clients=1)
    assert isinstance(rate, float)
    assert rate > 50  # a sanity floor, not the target (the machine may be busy)
    assert bench_schemas(pg_server) <= before  # its scratch schema is gone
