"""Benchmark: differentially private releases of 1,000,000 values (`intelgraph_privacy.dp`).

Each row is one `release(...)` call end to end, as an export makes it: checking the arguments,
converting and checking the values (NaN/inf), clipping to the bounds, the exact statistic
(`math.fsum` for sums), building the diffprivlib mechanisms (twice: once to check them before
the budget debit, once to draw), drawing the noise once from the OS CSPRNG (`rng=None`, as in
production) and writing the proof record. No ledger is attached to these rows: the debit is a
database round trip, measured separately (last table, through `ledger_debits_per_second`).

The floor row is `np.clip` and `math.fsum` alone on the same array: what any exact clipped sum
costs, so the release's own overhead is the difference.

Median of `--runs` runs (5) after one warm-up run, on `--values` (1,000,000) synthetic values
(a seeded log-normal "amount" clipped to (0, 1000)). Target: a sum or mean release of 1,000,000
values <= 0.5 s.

    .venv/bin/python benchmarks/dp_release.py            # print the tables
    .venv/bin/python benchmarks/dp_release.py --write    # and update benchmarks/README.md
    .venv/bin/python benchmarks/dp_release.py --quick    # smoke test (100,000 values, 1 run)
    .venv/bin/python benchmarks/dp_release.py --no-ledger   # skip the ledger debits row
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import diffprivlib
import numpy as np
from _report import code_version, command_line, write_section

from intelgraph_privacy.dp import release

REPO = Path(__file__).resolve().parents[1]
README_PATH = REPO / "benchmarks" / "README.md"
BEGIN_MARKER = "<!-- dp_release:begin -->"
END_MARKER = "<!-- dp_release:end -->"
DEFAULT_LEDGER_STORE = "postgresql+psycopg://postgres@127.0.0.1:5432/test"

TARGET_SECONDS = 0.5
BOUNDS = (0.0, 1000.0)


@dataclass(frozen=True)
class Case:
    """One measured call: a label, what it runs, and the exact value to compare against."""

    label: str
    aggregate: str
    call: Callable[[], Any]
    exact: Any
    target: bool


@dataclass(frozen=True)
class Row:
    label: str
    aggregate: str
    seconds: list[float]
    value: Any
    exact: Any
    mechanism: str
    target: bool

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


# --- the ledger hook ------------------------------------------------------------------------


def ledger_debits_per_second(store_url: str) -> float | None:
    """HOOK for the budget ledger measurement: debits per second on `store_url`.

    Supplied by the ledger: `intelgraph_privacy.dp.ledger.ledger_debits_per_second` when the
    library has one, else `benchmarks/ledger_debits.py`'s function of the same name (4 client
    processes debiting one tenant, the worst case). None when neither exists yet: the report
    then says "not measured yet".
    """
    from intelgraph_privacy.dp import ledger

    measure: Callable[[str], float] | None = getattr(ledger, "ledger_debits_per_second", None)
    if measure is None:
        script = REPO / "benchmarks" / "ledger_debits.py"
        if script.exists():
            spec = importlib.util.spec_from_file_location("_ledger_debits_bench", script)
            if spec is not None and spec.loader is not None:
                module = importlib.util.module_from_spec(spec)
                sys.modules[spec.name] = module  # dataclasses look their module up by name
                spec.loader.exec_module(module)
                measure = getattr(module, "ledger_debits_per_second", None)
    if measure is None:
        return None
    return float(measure(store_url))


# --- measurement ----------------------------------------------------------------------------


@contextmanager
def gc_paused() -> Iterator[None]:
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def make_values(n: int, seed: int) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Seeded synthetic amounts: log-normal around 50, a long right tail (clipped at 1000)."""
    return np.random.default_rng(seed).lognormal(mean=math.log(50.0), sigma=1.0, size=n)


def cases(values: np.ndarray[Any, np.dtype[np.float64]], seed: int) -> list[Case]:
    clipped = np.clip(values, *BOUNDS)
    ids = np.random.default_rng(seed + 1).integers(0, len(values) // 3, size=len(values))
    as_list = values.tolist()
    return [
        Case(
            "floor: np.clip + math.fsum",
            "-",
            lambda: math.fsum(np.clip(values, *BOUNDS)),
            math.fsum(clipped),
            False,
        ),
        Case("count", "count", lambda: release("count", values), len(values), False),
        Case(
            "sum",
            "sum",
            lambda: release("sum", values, bounds=BOUNDS),
            math.fsum(clipped),
            True,
        ),
        Case(
            "mean",
            "mean",
            lambda: release("mean", values, bounds=BOUNDS),
            float(clipped.mean()),
            True,
        ),
        Case(
            "sum, Python list input",
            "sum",
            lambda: release("sum", as_list, bounds=BOUNDS),
            math.fsum(clipped),
            True,
        ),
        Case(
            "mean, ids (max 3 values per id)",
            "mean",
            lambda: release("mean", values, bounds=BOUNDS, ids=ids, max_contributions=3),
            None,
            False,
        ),
        Case(
            "histogram, 100 bins",
            "histogram",
            lambda: release("histogram", values, bounds=BOUNDS, bins=100),
            None,
            False,
        ),
        Case(
            "quantile 0.5, 1,024-cell grid",
            "quantile",
            lambda: release("quantile", values, bounds=BOUNDS, quantile=0.5),
            float(np.median(clipped)),
            False,
        ),
    ]


def measure(case: Case, runs: int) -> Row:
    case.call()  # warm-up
    seconds: list[float] = []
    result: Any = None
    with gc_paused():
        for _ in range(runs):
            t0 = time.perf_counter()
            result = case.call()
            seconds.append(time.perf_counter() - t0)
    if hasattr(result, "proof"):
        value, mechanism = result.value, result.proof.mechanism
    else:
        value, mechanism = result, "-"
    return Row(case.label, case.aggregate, seconds, value, case.exact, mechanism, case.target)


def check(rows: list[Row]) -> None:
    """The releases are near their exact values (a broken release must not look fast)."""
    for row in rows:
        if row.exact is None or row.aggregate == "-":
            continue
        scale = {"count": 50.0, "sum": 1000.0 * 50, "mean": 1.0, "quantile": 5.0}[row.aggregate]
        assert abs(float(row.value) - float(row.exact)) <= scale, (row.label, row.value, row.exact)


# --- report ---------------------------------------------------------------------------------


def machine_note() -> str:
    return (
        f"{os.cpu_count()} CPUs, shared and noisy ({platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}, numpy {np.__version__}, "
        f"diffprivlib {diffprivlib.__version__})"
    )


def fmt_value(value: Any) -> str:
    if isinstance(value, tuple):
        return f"{len(value)} cells, total {sum(value):,}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) >= 1 else f"{value:.4f}"
    return str(value)


def render(rows: list[Row], n: int, runs: int, ledger: tuple[str, float | None] | None) -> str:
    lines = [
        f"### DP release of {n:,} values (`benchmarks/dp_release.py`)",
        "",
        "```sh",
        command_line(__file__),
        "```",
        "",
        f"Run on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {code_version(REPO)}. "
        f"Machine: {machine_note()}.",
        "",
        f"{n:,} synthetic values (seeded log-normal amounts, bounds {BOUNDS}), preset `standard` "
        "(epsilon 2, delta 1e-6), noise from the OS CSPRNG; one `release()` call per run, "
        f"median of {runs} runs after a warm-up. Floor = `np.clip` + `math.fsum` alone.",
        "",
        "| release | mechanism | median ms | min ms | max ms | released value | exact value |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row.label} | {row.mechanism} | {row.median * 1e3:,.1f} "
            f"| {min(row.seconds) * 1e3:,.1f} | {max(row.seconds) * 1e3:,.1f} "
            f"| {fmt_value(row.value)} | {'-' if row.exact is None else fmt_value(row.exact)} |"
        )
    lines += ["", "Targets:", "", "| target | measured | status |", "|---|---:|---|"]
    all_met = True
    for row in rows:
        if not row.target:
            continue
        ok = row.median <= TARGET_SECONDS
        all_met &= ok
        lines.append(
            f"| {row.label} of {n:,} values <= {TARGET_SECONDS:g} s (median) "
            f"| {row.median:.3f} s | {'met' if ok else 'NOT met'} |"
        )
    lines += ["", f"All DP release targets met: {'yes' if all_met else 'no'}."]
    if ledger is not None:
        url, per_second = ledger
        dialect = url.split(":", 1)[0].split("+", 1)[0]
        if per_second is None:
            measured, status = "not measured yet", "-"
        else:
            measured = f"{per_second:,.0f} debits/s"
            status = "met" if per_second >= 2_000 else "NOT met"
        lines += [
            "",
            "Budget ledger, through the hook `ledger_debits_per_second(store_url)` (supplied by "
            "the ledger: 4 client processes debiting one tenant and purpose, the worst case; the "
            "ledger's own section has the full table):",
            "",
            "| target | measured | status |",
            "|---|---:|---|",
            f"| ledger debits on {dialect} >= 2,000/s | {measured} | {status} |",
        ]
    return "\n".join(lines)


def write_readme(path: Path, section: str) -> None:
    write_section(path, BEGIN_MARKER, END_MARKER, section)


# --- main -----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 values, 1 run (smoke)")
    parser.add_argument("--write", action="store_true", help=f"update {README_PATH.name}")
    parser.add_argument("--readme", type=Path, default=README_PATH, help="README to update")
    parser.add_argument("--values", type=int, default=1_000_000, help="values per release")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per release")
    parser.add_argument("--seed", type=int, default=20240611, help="synthetic data seed")
    parser.add_argument(
        "--ledger-store",
        default=DEFAULT_LEDGER_STORE,
        help="store URL for the ledger debits row (default: the local PostgreSQL)",
    )
    parser.add_argument("--no-ledger", action="store_true", help="skip the ledger debits row")
    args = parser.parse_args(argv)
    if args.quick and args.write:
        parser.error("--quick numbers are not representative; run without --quick to --write")
    if args.quick:
        args.values, args.runs = 100_000, 1
    if args.values < 1 or args.runs < 1:
        parser.error("--values and --runs must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    values = make_values(args.values, args.seed)
    rows = []
    for case in cases(values, args.seed):
        row = measure(case, args.runs)
        print(f"{row.label}: {row.median * 1e3:.1f} ms", file=sys.stderr)
        rows.append(row)
    check(rows)
    ledger = None
    if not args.no_ledger:
        print("ledger debits ...", file=sys.stderr)
        ledger = (args.ledger_store, ledger_debits_per_second(args.ledger_store))
    section = render(rows, args.values, args.runs, ledger)
    print(section)
    if args.write:
        write_readme(args.readme, section)
        print(f"\nwrote {args.readme}", file=sys.stderr)
    print(f"\n({time.perf_counter() - started:.1f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
