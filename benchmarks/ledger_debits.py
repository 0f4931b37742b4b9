"""Benchmark: privacy budget ledger debits per second on PostgreSQL.

Each client is its own OS process (as sidecar replicas are), with its own `BudgetLedger` on the
same database, debiting back to back for a fixed time; the clients start together (each warms
up, reports ready, and waits for a "go" line). Every debit is the real one: one atomic upsert
with the budget check in its WHERE clause, in autocommit, through the store's connection pool
(pre-ping included), committed durably (the server's own `synchronous_commit`).

Configurations: one client on one tenant; `--clients` clients on one tenant and purpose (one hot
row: every debit waits for the previous one's row lock and commit, the worst case); and as many
clients on a tenant each (the common case: many tenants). After each run the ledger's rows are
checked against the clients' counts (releases == debits made), so the number is of debits that
happened. Throughput is the median over `--runs` runs; latency percentiles are over every debit
of every run.

The database gets a scratch schema (`igp_bench_ledger_<pid>_<random>`, via `search_path`),
dropped at the end. Target: >= 2,000 debits/s with 4 clients.

    .venv/bin/python benchmarks/ledger_debits.py            # print the table
    .venv/bin/python benchmarks/ledger_debits.py --write    # and update benchmarks/README.md
    .venv/bin/python benchmarks/ledger_debits.py --quick    # smoke test
    .venv/bin/python benchmarks/ledger_debits.py --store sqlite:////tmp/ledger.sqlite3

For other scripts: `ledger_debits_per_second(store_url, *, seconds=3.0, clients=4)`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import create_engine, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere: import the library in this repo
    sys.path.insert(0, str(REPO))

from _report import code_version, command_line, write_section  # noqa: E402

from intelgraph_privacy.dp.ledger import Budget, BudgetLedger  # noqa: E402
from intelgraph_privacy.store import open_store  # noqa: E402
from intelgraph_privacy.store.schema import privacy_budget  # noqa: E402

README_PATH = REPO / "benchmarks" / "README.md"
BEGIN_MARKER = "<!-- ledger_debits:begin -->"
END_MARKER = "<!-- ledger_debits:end -->"
DEFAULT_STORE = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TARGET_PER_SECOND = 2_000.0
TARGET_CLIENTS = 4

#: Large enough never to be exhausted in a run: every debit is accepted, and so measured.
BENCH_BUDGET = Budget(epsilon=999_999.0, delta=0.5)
DEBIT_EPSILON = 1e-6
DEBIT_DELTA = 1e-12
WARMUP_DEBITS = 20
PURPOSE = "benchmark"


@dataclass(frozen=True)
class WorkerResult:
    """What one client process did in the measured interval."""

    debits: int
    elapsed: float
    latencies_us: list[float]


@dataclass(frozen=True)
class RunResult:
    """One run of `clients` processes: aggregate throughput and every debit's latency."""

    per_second: float
    latencies_us: list[float]


# --- the client process -------------------------------------------------------------------


def worker_main(url: str, tenant: str, seconds: float) -> int:
    """One client: warm up, say ready, wait for go, debit for `seconds`, print a JSON result."""
    store = open_store(url, migrate=False)
    try:
        ledger = BudgetLedger(store, budgets=BENCH_BUDGET)
        for _ in range(WARMUP_DEBITS):
            ledger.debit(tenant, PURPOSE, DEBIT_EPSILON, DEBIT_DELTA)
        print("ready", flush=True)
        if sys.stdin.readline().strip() != "go":
            return 1
        latencies: list[float] = []
        clock = time.perf_counter
        started = clock()
        deadline = started + seconds
        now = started
        while now < deadline:
            ledger.debit(tenant, PURPOSE, DEBIT_EPSILON, DEBIT_DELTA)
            after = clock()
            latencies.append((after - now) * 1e6)
            now = after
        result = {"debits": len(latencies), "elapsed": now - started, "latencies_us": latencies}
        print(json.dumps(result), flush=True)
        return 0
    finally:
        store.close()


# --- the parent -------------------------------------------------------------------------------


@contextmanager
def scratch_store_url(store_url: str) -> Iterator[str]:
    """A migrated, empty store for the benchmark, removed afterwards.

    PostgreSQL: a fresh schema on the server `store_url` names (the URL's `search_path` points
    to it); SQLite: a file in a temporary directory (the URL's own file is left alone).
    """
    url = make_url(store_url)
    if url.get_backend_name() == "sqlite":
        with tempfile.TemporaryDirectory(prefix="igp-bench-ledger-") as tmp:
            scratch = f"sqlite:///{Path(tmp) / 'ledger.sqlite3'}"
            open_store(scratch).close()
            yield scratch
        return
    admin = create_engine(
        url.set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT", poolclass=NullPool
    )
    schema = f"igp_bench_ledger_{os.getpid()}_{secrets.token_hex(4)}"
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        try:
            scratch_url = url.update_query_dict({"options": f"-csearch_path={schema}"})
            scratch = scratch_url.render_as_string(hide_password=False)
            open_store(scratch).close()
            yield scratch
        finally:
            with admin.connect() as connection:
                connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        admin.dispose()


def releases_in(url: str) -> int:
    """Every release the ledger has recorded in the scratch store."""
    store = open_store(url, migrate=False)
    try:
        with store.read() as connection:
            total = connection.execute(select(func.sum(privacy_budget.c.releases))).scalar()
        return int(total or 0)
    finally:
        store.close()


def run_clients(url: str, *, seconds: float, clients: int, same_tenant: bool) -> RunResult:
    """Start `clients` processes on `url`, let them debit together, collect and check results."""
    if clients < 1 or seconds <= 0:
        raise ValueError("clients must be >= 1 and seconds > 0")
    before = releases_in(url)
    run_id = secrets.token_hex(4)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with ExitStack() as stack:
        procs = []
        for i in range(clients):
            tenant = f"bench-{run_id}" if same_tenant else f"bench-{run_id}-{i}"
            proc = subprocess.Popen(
                [
                    sys.executable,
                    str(Path(__file__).resolve()),
                    "--worker",
                    url,
                    tenant,
                    str(seconds),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env=env,
                cwd=REPO,
            )
            stack.callback(proc.kill)  # no-op once it has exited
            procs.append(proc)
        for proc in procs:  # everyone connected and warm before anyone starts
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError(f"a ledger client failed to start (exit {proc.wait()})")
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = []
        for proc in procs:
            out, _ = proc.communicate(timeout=seconds + 60)
            if proc.returncode != 0:
                raise RuntimeError(f"a ledger client failed (exit {proc.returncode})")
            data = json.loads(out)
            results.append(WorkerResult(data["debits"], data["elapsed"], data["latencies_us"]))
    made = sum(r.debits for r in results)
    recorded = releases_in(url) - before
    expected = made + WARMUP_DEBITS * clients
    if recorded != expected:
        raise RuntimeError(f"the ledger recorded {recorded} releases, the clients made {expected}")
    # Conservative: all debits over the longest client's interval.
    per_second = made / max(r.elapsed for r in results)
    return RunResult(per_second, [lat for r in results for lat in r.latencies_us])


def ledger_debits_per_second(
    store_url: str, *, seconds: float = 3.0, clients: int = 4, same_tenant: bool = True
) -> float:
    """Debits per second of `clients` processes on the database of `store_url`.

    One run in a scratch schema (PostgreSQL) or a temporary file (SQLite), removed afterwards.
    `same_tenant` (the default, the worst case): every client debits one tenant and purpose;
    otherwise each client has a tenant of its own.
    """
    with scratch_store_url(store_url) as url:
        return run_clients(
            url, seconds=seconds, clients=clients, same_tenant=same_tenant
        ).per_second


# --- report -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One configuration, over all runs."""

    label: str
    clients: int
    same_tenant: bool
    runs: list[float]
    latencies_us: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_us)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(url: str, *, seconds: float, runs: int, clients: int) -> list[Row]:
    configs = [
        ("1 client, one tenant", 1, True),
        (f"{clients} clients, one tenant (one hot row)", clients, True),
        (f"{clients} clients, a tenant each", clients, False),
    ]
    rows = [Row(label, n, same, [], []) for label, n, same in configs]
    for i in range(runs):  # configurations interleaved, so machine noise hits them alike
        for row in rows:
            result = run_clients(
                url, seconds=seconds, clients=row.clients, same_tenant=row.same_tenant
            )
            row.runs.append(result.per_second)
            row.latencies_us.extend(result.latencies_us)
            print(
                f"run {i + 1}/{runs}: {row.label}: {result.per_second:,.0f} debits/s",
                file=sys.stderr,
            )
    return rows


def server_note(url: str) -> str:
    """The database measured: PostgreSQL version and commit durability, or SQLite's version."""
    store = open_store(url, migrate=False)
    try:
        with store.read() as connection:
            if store.dialect == "postgresql":
                version = connection.exec_driver_sql("SHOW server_version").scalar()
                sync = connection.exec_driver_sql("SHOW synchronous_commit").scalar()
                fsync = connection.exec_driver_sql("SHOW fsync").scalar()
                return (
                    f"PostgreSQL {version} on 127.0.0.1 (synchronous_commit={sync}, fsync={fsync})"
                )
            version = connection.exec_driver_sql("SELECT sqlite_version()").scalar()
            return f"SQLite {version} (WAL, synchronous=FULL)"
    finally:
        store.close()


def render(
    rows: list[Row], *, seconds: float, runs: int, server: str, clients: int, load: float
) -> str:
    import psycopg
    import sqlalchemy

    lines = [
        "### Privacy budget ledger debits (`benchmarks/ledger_debits.py`)",
        "",
        "```sh",
        command_line(__file__),
        "```",
        "",
        f"Run on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {code_version(REPO)}. Machine: "
        f"{os.cpu_count()} CPUs, shared and noisy ({platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}, SQLAlchemy {sqlalchemy.__version__}, psycopg "
        f"{psycopg.__version__}; load average {load:.2f} before the run); {server}, on the same "
        "CPUs as the clients.",
        "",
        "Each client is an OS process with its own `BudgetLedger`; each debit is one atomic "
        "upsert with the budget check in its WHERE clause (autocommit, through the store's pool "
        "with its pre-ping), committed before the next. The ledger's rows are checked against "
        f"the clients' counts after every run. {runs} runs of {seconds:g} s per configuration, "
        "interleaved; throughput is the median run, latencies are over every debit.",
        "",
        "| configuration | debits/s (median) | runs | latency p50 µs | p99 µs |",
        "|---|---:|---|---:|---:|",
    ]
    for row in rows:
        runs_text = ", ".join(f"{r:,.0f}" for r in row.runs)
        lines.append(
            f"| {row.label} | {row.median:,.0f} | {runs_text} "
            f"| {row.percentile(0.5):,.0f} | {row.percentile(0.99):,.0f} |"
        )
    headline = next(r for r in rows if r.clients == clients and r.same_tenant)
    ok = headline.median >= TARGET_PER_SECOND and clients == TARGET_CLIENTS
    lines += [
        "",
        "| target | measured | status |",
        "|---|---:|---|",
        f"| >= {TARGET_PER_SECOND:,.0f} debits/s, {TARGET_CLIENTS} clients on one tenant "
        f"| {headline.median:,.0f} | {'met' if ok else 'NOT met'} |",
    ]
    return "\n".join(lines)


def write_readme(path: Path, section: str) -> None:
    write_section(path, BEGIN_MARKER, END_MARKER, section)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--store", default=DEFAULT_STORE, help="database URL (a scratch schema)")
    parser.add_argument("--seconds", type=float, default=2.0, help="measured seconds per run")
    parser.add_argument("--runs", type=int, default=5, help="runs per configuration")
    parser.add_argument("--clients", type=int, default=TARGET_CLIENTS, help="concurrent clients")
    parser.add_argument("--quick", action="store_true", help="one short run (smoke test)")
    parser.add_argument("--write", action="store_true", help=f"update {README_PATH.name}")
    parser.add_argument("--readme", type=Path, default=README_PATH, help="README to update")
    args = parser.parse_args(argv)
    if args.quick and args.write:
        parser.error("--quick numbers are not representative; run without --quick to --write")
    if args.quick:
        args.seconds, args.runs = 0.5, 1
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        url, tenant, seconds = argv[1:4]
        return worker_main(url, tenant, float(seconds))
    args = parse_args(argv)
    started = time.perf_counter()
    load = os.getloadavg()[0]  # other work on these CPUs skews every number: say how much
    with scratch_store_url(args.store) as url:
        server = server_note(url)
        rows = measure(url, seconds=args.seconds, runs=args.runs, clients=args.clients)
    section = render(
        rows, seconds=args.seconds, runs=args.runs, server=server, clients=args.clients, load=load
    )
    print(section)
    if args.write:
        write_readme(args.readme, section)
        print(f"\nwrote {args.readme}", file=sys.stderr)
    print(f"\n({time.perf_counter() - started:.1f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
