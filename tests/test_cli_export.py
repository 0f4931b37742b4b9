"""`intelgraph-privacy export FILE`: DP aggregates of CSV / JSON Lines files, from the command line.

Most cases run in-process through `intelgraph_privacy.cli.main([...])` (fast, seeded so never
flaky); a few run the real console script `.venv/bin/intelgraph-privacy` in a subprocess.
The data is generated here (a few thousand rows); every noisy value is checked against the
exact statistic with a band whose failure probability is computed (< 1e-9 for any seed).
"""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from intelgraph_privacy.cli import main
from intelgraph_privacy.store import open_store
from intelgraph_privacy.store.schema import dp_releases, privacy_budget

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(sys.executable).parent / "intelgraph-privacy"
ROWS = 3000
CITIES = ("Berlin", "Lagos", "Lima")
EPSILON_UNITS = 10**9
PER_VALUE_FAILURE = 1e-11  # the chance a band below is exceeded by one noisy value


@dataclass(frozen=True)
class Dataset:
    """The rows written to the test files, and the exact statistics to compare with."""

    rows: list[dict[str, Any]]

    def column(self, name: str) -> list[Any]:
        return [r[name] for r in self.rows]


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    rng = random.Random(20240605)
    rows = [
        {
            "id": f"u{i // 3}",  # three rows per individual (for --ids)
            "age": rng.randint(0, 99),
            "score": round(rng.uniform(-5.0, 5.0), 3),
            "city": rng.choice(CITIES),
        }
        for i in range(ROWS)
    ]
    return Dataset(rows)


@pytest.fixture(scope="module")
def files(dataset: Dataset, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The dataset as CSV (with a header row) and as JSON Lines."""
    folder = tmp_path_factory.mktemp("export-input")
    csv_path = folder / "people.csv"
    lines = ["id,age,score,city"] + [
        f"{r['id']},{r['age']},{r['score']},{r['city']}" for r in dataset.rows
    ]
    csv_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    jsonl_path = folder / "people.jsonl"
    jsonl_path.write_text("".join(json.dumps(r) + "\n" for r in dataset.rows), encoding="utf-8")
    return {"csv": csv_path, "jsonl": jsonl_path}


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str

    @property
    def json(self) -> Any:
        return json.loads(self.out)


def run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> Run:
    """`intelgraph-privacy export ...` in-process."""
    code = main(["export", *map(str, args)])
    captured = capsys.readouterr()
    return Run(code, captured.out, captured.err)


def run_script(*args: str | Path, stdin: bytes | None = None) -> Run:
    """The real console script, in a subprocess run from the checkout."""
    env = {**os.environ, "RUST_BACKTRACE": "0"}
    done = subprocess.run(
        [str(SCRIPT), "export", *map(str, args)],
        input=stdin,
        capture_output=True,
        cwd=ROOT,
        env=env,
        timeout=60,
        check=False,
    )
    return Run(done.returncode, done.stdout.decode(), done.stderr.decode())


# -- noise bands -------------------------------------------------------------------------------


def geometric_band(epsilon: float, sensitivity: float) -> float:
    """t with P(|noise| >= t) <= PER_VALUE_FAILURE, two-sided geometric (counts, histograms).

    P(|X| >= t) = 2 a^t / (1 + a), a = exp(-epsilon / sensitivity).
    """
    a = math.exp(-epsilon / sensitivity)
    return math.ceil(math.log(PER_VALUE_FAILURE * (1 + a) / 2) / math.log(a))


def snapping_band(epsilon: float, sensitivity: float) -> float:
    """A bound on the snapping mechanism's error with probability >= 1 - PER_VALUE_FAILURE.

    Laplace noise of scale b = sensitivity / epsilon' (epsilon' = diffprivlib's effective
    epsilon, below epsilon by far less than 0.1 %) exceeds b ln(1/p) with probability p; the
    sum is then rounded to a multiple of Lambda * sensitivity, Lambda the power of two at or
    above 1 / epsilon' (below 2 / epsilon'), which moves it by at most b more.
    """
    b = sensitivity / epsilon * 1.001
    return b * math.log(1 / PER_VALUE_FAILURE) + b


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return (ordered[middle - 1] + ordered[middle]) / 2


# -- releases ----------------------------------------------------------------------------------

FORMATS = ("csv", "jsonl")


@pytest.mark.parametrize("fmt", FORMATS)
def test_count(capsys: pytest.CaptureFixture[str], files: dict[str, Path], fmt: str) -> None:
    result = run(capsys, files[fmt], "--aggregate", "count", "--seed", "1")
    assert result.code == 0, result.err
    value, proof = result.json["value"], result.json["proof"]
    assert type(value) is int
    assert proof["aggregate"] == "count" and proof["mechanism"] == "geometric"
    assert (proof["preset"], proof["epsilon"], proof["delta"]) == ("standard", 2.0, 1e-6)
    assert "rows_used" not in proof
    assert proof["budget_left"] is None and proof["tenant"] is None  # no ledger without --tenant
    assert proof["rng"] == "seeded"
    assert abs(value - ROWS) < geometric_band(2.0, proof["sensitivity"])


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("preset", ["strict", "standard", "relaxed"])
def test_sum_with_bounds(
    capsys: pytest.CaptureFixture[str],
    files: dict[str, Path],
    dataset: Dataset,
    fmt: str,
    preset: str,
) -> None:
    args = ["--aggregate", "sum", "--column", "age", "--bounds", "0,100", "--preset", preset]
    result = run(capsys, files[fmt], *args, "--seed", "2")
    assert result.code == 0, result.err
    value, proof = result.json["value"], result.json["proof"]
    epsilon = {"strict": 1.0, "standard": 2.0, "relaxed": 4.0}[preset]
    assert (proof["preset"], proof["epsilon"], proof["mechanism"]) == (preset, epsilon, "snapping")
    assert proof["bounds"] == [0.0, 100.0]
    assert proof["sensitivity"] == 100.0
    truth = sum(dataset.column("age"))
    assert abs(value - truth) < snapping_band(epsilon, proof["sensitivity"])


def test_values_are_clipped_to_the_bounds(
    capsys: pytest.CaptureFixture[str], files: dict[str, Path], dataset: Dataset
) -> None:
    # Bounds tighter than the data: every age above 50 counts as 50.
    args = ["--aggregate", "sum", "--column", "age", "--bounds", "0,50", "--preset", "relaxed"]
    result = run(capsys, files["csv"], *args, "--seed", "3")
    assert result.code == 0, result.err
    truth = sum(min(a, 50) for a in dataset.column("age"))
    assert abs(result.json["value"] - truth) < snapping_band(4.0, 50.0)
    assert abs(result.json["value"] - sum(dataset.column("age"))) > 10 * snapping_band(4.0, 50.0)


@pytest.mark.parametrize("fmt", FORMATS)
def test_mean(
    capsys: pytest.CaptureFixture[str], files: dict[str, Path], dataset: Dataset, fmt: str
) -> None:
    # `--bounds=-5,5`: argparse would take a separate `-5,5` for an option.
    args = ["--aggregate", "mean", "--column", "score", "--bounds=-5,5"]
    result = run(capsys, files[fmt], *args, "--seed", "4")
    assert result.code == 0, result.err
    value, proof = result.json["value"], result.json["proof"]
    assert proof["aggregate"] == "mean"
    assert sum(c["epsilon"] for c in proof["components"]) == pytest.approx(2.0)
    truth = sum(dataset.column("score")) / ROWS
    # Worst case of (sum + e_s) / (n - e_c) with each error within its component's band.
    sum_error = max(
        snapping_band(c["epsilon"], c["sensitivity"])
        for c in proof["components"]
        if c["mechanism"] == "snapping"
    )
    count_error = max(
        geometric_band(c["epsilon"], c["sensitivity"])
        for c in proof["components"]
        if c["mechanism"] == "geometric"
    )
    bound = (abs(truth) * ROWS + sum_error) / (ROWS - count_error) - abs(truth) + 1e-9
    assert bound < 1.0  # the band says something: much narrower than the bounds
    assert -5.0 <= value <= 5.0
    assert abs(value - truth) < bound


@pytest.mark.parametrize("fmt", FORMATS)
def test_histogram_over_numeric_bins(
    capsys: pytest.CaptureFixture[str], files: dict[str, Path], dataset: Dataset, fmt: str
) -> None:
    args = ["--aggregate", "histogram", "--column", "age", "--bins", "10", "--bounds", "0,100"]
    result = run(capsys, files[fmt], *args, "--seed", "5")
    assert result.code == 0, result.err
    value, proof = result.json["value"], result.json["proof"]
    assert len(value) == 10 and all(type(v) is int for v in value)
    assert proof["params"]["edges"] == [float(10 * i) for i in range(11)]
    truth = [sum(1 for a in dataset.column("age") if 10 * i <= a < 10 * (i + 1)) for i in range(10)]
    band = geometric_band(proof["epsilon"], proof["sensitivity"])
    assert 10 * PER_VALUE_FAILURE < 1e-9  # union bound over the bins
    assert all(abs(v - t) < band for v, t in zip(value, truth, strict=True)), (value, truth)


@pytest.mark.parametrize("fmt", FORMATS)
def test_histogram_over_named_categories(
    capsys: pytest.CaptureFixture[str], files: dict[str, Path], dataset: Dataset, fmt: str
) -> None:
    bins = ["Lima", "Berlin", "Oslo"]  # Lagos is left out; Oslo has nobody
    args = ["--aggregate", "histogram", "--column", "city", "--bins", ",".join(bins)]
    result = run(capsys, files[fmt], *args, "--seed", "6")
    assert result.code == 0, result.err
    value, proof = result.json["value"], result.json["proof"]
    assert proof["params"]["categories"] == bins
    truth = [dataset.column("city").count(b) for b in bins]
    band = geometric_band(proof["epsilon"], proof["sensitivity"])
    assert all(abs(v - t) < band for v, t in zip(value, truth, strict=True)), (value, truth)


@pytest.mark.parametrize("fmt", FORMATS)
def test_quantile(
    capsys: pytest.CaptureFixture[str], files: dict[str, Path], dataset: Dataset, fmt: str
) -> None:
    args = ["--aggregate", "quantile", "--column", "age", "--bounds", "0,100", "--quantile", "0.5"]
    result = run(capsys, files[fmt], *args, "--seed", "7")
    assert result.code == 0, result.err
    assert result.json["proof"]["mechanism"] == "exponential"
    # The exponential mechanism (utility: minus the rank distance to the median, sensitivity 1)
    # picks a point u ranks off the best with probability at most grid * exp(-epsilon * u / 2).
    # A point more than 5 years off the median is at least as many ranks off as there are
    # people within those 5 years.
    ages = [float(a) for a in dataset.column("age")]
    truth = median(ages)
    ranks = min(
        sum(1 for a in ages if truth < a <= truth + 5),
        sum(1 for a in ages if truth - 5 <= a < truth),
    )
    assert 1025 * math.exp(-2.0 * ranks / 2) < 1e-9
    assert abs(result.json["value"] - truth) <= 5


def test_ids_bound_each_individuals_contribution(
    capsys: pytest.CaptureFixture[str], files: dict[str, Path]
) -> None:
    # Three rows per id; each id keeps its first row (max 1 contribution): a third are counted.
    result = run(capsys, files["csv"], "--aggregate", "count", "--ids", "id", "--seed", "8")
    assert result.code == 0, result.err
    proof = result.json["proof"]
    assert proof["contributions_enforced"] is True and proof["contribution_bound"] == 1
    assert abs(result.json["value"] - ROWS // 3) < geometric_band(2.0, proof["sensitivity"])


def test_a_seed_reproduces_a_release(
    capsys: pytest.CaptureFixture[str], files: dict[str, Path]
) -> None:
    args: list[str | Path] = [
        files["csv"],
        "--aggregate",
        "sum",
        "--column",
        "age",
        "--bounds",
        "0,100",
    ]
    first = run(capsys, *args, "--seed", "42").json
    again = run(capsys, *args, "--seed", "42").json
    assert first["value"] == again["value"]
    volatile = {"release_id", "timestamp"}
    assert {k: v for k, v in first["proof"].items() if k not in volatile} == {
        k: v for k, v in again["proof"].items() if k not in volatile
    }
    assert first["proof"]["release_id"] != again["proof"]["release_id"]
    others = {run(capsys, *args, "--seed", str(seed)).json["value"] for seed in range(5)}
    assert len(others) > 1  # the seed drives the noise
    unseeded = run(capsys, *args).json["proof"]
    assert unseeded["rng"] == "system"


def test_output_file(
    capsys: pytest.CaptureFixture[str], files: dict[str, Path], tmp_path: Path
) -> None:
    target = tmp_path / "release.json"
    result = run(capsys, files["jsonl"], "--aggregate", "count", "--seed", "9", "--output", target)
    assert result.code == 0, result.err
    assert result.out == ""
    assert f"released count to {target}" in result.err
    written = json.loads(target.read_text(encoding="utf-8"))
    assert set(written) == {"value", "proof"}
    printed = run(capsys, files["jsonl"], "--aggregate", "count", "--seed", "9").json
    assert written["value"] == printed["value"]  # the same release, to the file


def test_progress_bar_on_request(
    capsys: pytest.CaptureFixture[str], files: dict[str, Path]
) -> None:
    shown = run(capsys, files["csv"], "--aggregate", "count", "--progress", "always")
    assert shown.code == 0, shown.err
    assert "reading people.csv" in shown.err and "100%" in shown.err
    json.loads(shown.out)  # the bar goes to stderr only
    for mode in ("never", "auto"):  # auto: a small file and no terminal
        quiet = run(capsys, files["csv"], "--aggregate", "count", "--progress", mode)
        assert quiet.code == 0 and quiet.err == "", quiet.err


# -- errors ------------------------------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("name", "content", "args", "message"),
    [
        (
            "people.csv",
            "id,age\n1,5\n",
            ["--aggregate", "sum", "--column", "weight", "--bounds", "0,1"],
            "people.csv:2: no column 'weight'",
        ),
        (
            "people.jsonl",
            '{"age": 1}\n{"weight": 2}\n',
            ["--aggregate", "sum", "--column", "age", "--bounds", "0,1"],
            "people.jsonl:2: no column 'age'",
        ),
        ("people.csv", "id,age\n1,5\n", ["--aggregate", "sum", "--column", "age"], "bounds"),
        ("people.csv", "id,age\n1,5\n", ["--aggregate", "mean", "--column", "age"], "bounds"),
        ("people.csv", "id,age\n1,5\n", ["--aggregate", "sum"], "--column is required"),
        ("people.txt", "id,age\n1,5\n", ["--aggregate", "count"], "--format"),
        ("people", "id,age\n1,5\n", ["--aggregate", "count"], "--format"),
        ("people.csv", "id,age\n", ["--aggregate", "count"], "no rows"),
        ("people.csv", "", ["--aggregate", "count"], "no rows"),
        ("people.jsonl", "\n\n", ["--aggregate", "count"], "no rows"),
        ("people.jsonl", '{"age": 1}\n[1, 2]\n', ["--aggregate", "count"], "people.jsonl:2"),
        ("people.jsonl", '{"age": 1}\n{nope\n', ["--aggregate", "count"], "people.jsonl:2"),
        (
            "people.csv",
            "id,age\n1,5\n",
            ["--aggregate", "sum", "--column", "age", "--bounds", "7"],
            "--bounds takes LO,HI",
        ),
        (
            "people.csv",
            "id,age\n1,5\n",
            ["--aggregate", "sum", "--column", "age", "--bounds", "9,1"],
            "bounds",
        ),
        ("people.csv", "id,age\n1,5\n", ["--aggregate", "count", "--preset", "loose"], "loose"),
        ("people.csv", "id,age\n1,5\n", ["--aggregate", "count", "--epsilon", "3"], "epsilon"),
    ],
)
def test_errors_exit_1_with_a_clear_message(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    name: str,
    content: str,
    args: list[str],
    message: str,
) -> None:
    result = run(capsys, write(tmp_path / name, content), *args)
    assert result.code == 1, (result.out, result.err)
    assert result.out == ""
    assert result.err.startswith("error: ")
    assert message in result.err, result.err


def test_a_non_numeric_value_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = write(tmp_path / "people.csv", "id,age\n1,5\n2,7\n3,x\n4,9\n")
    result = run(capsys, path, "--aggregate", "sum", "--column", "age", "--bounds", "0,10")
    assert result.code == 1 and result.out == ""
    assert "'age'" in result.err and "'x'" in result.err and "not a number" in result.err


@pytest.mark.parametrize(
    ("name", "content", "where"),
    [
        ("people.csv", "id,age\n1,5\n2,7\n3,x\n4,9\n", "people.csv:4"),
        ("people.jsonl", '{"age": 1}\n\n{"age": "x"}\n', "people.jsonl:3"),
    ],
)
def test_a_non_numeric_value_is_reported_with_its_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str, content: str, where: str
) -> None:
    path = write(tmp_path / name, content)
    result = run(capsys, path, "--aggregate", "sum", "--column", "age", "--bounds", "0,10")
    assert result.code == 1
    assert where in result.err, result.err


def test_an_unknown_extension_is_read_with_format(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write(tmp_path / "people.txt", "id,age\n" + "".join(f"{i},1\n" for i in range(50)))
    result = run(capsys, path, "--aggregate", "count", "--format", "csv", "--seed", "1")
    assert result.code == 0, result.err
    assert abs(result.json["value"] - 50) < geometric_band(2.0, 1.0)


# -- the budget ledger -------------------------------------------------------------------------


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory holding a migrated SQLite store, as the demo leaves it."""
    folder = tmp_path / "demo-data"
    with open_store(None, data_dir=folder):
        pass
    yield folder


def ledger_rows(data_dir: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    with open_store(None, data_dir=data_dir, migrate=False) as store, store.read() as connection:
        budgets = [dict(r._mapping) for r in connection.execute(select(privacy_budget))]
        releases = [dict(r._mapping) for r in connection.execute(select(dp_releases))]
    return budgets, releases


def test_a_tenant_release_is_charged_and_recorded(
    capsys: pytest.CaptureFixture[str], files: dict[str, Path], data_dir: Path
) -> None:
    args: list[str | Path] = [
        "--aggregate",
        "count",
        "--tenant",
        "acme",
        "--data-dir",
        data_dir,
        "--seed",
        "3",
    ]
    result = run(capsys, files["csv"], *args)
    assert result.code == 0, result.err
    proof = result.json["proof"]
    assert (proof["tenant"], proof["purpose"], proof["budget_left"]) == ("acme", "export", 8.0)
    budgets, releases = ledger_rows(data_dir)
    (budget,) = budgets
    assert (budget["tenant"], budget["purpose"]) == ("acme", "export")
    assert budget["epsilon_spent"] == 2 * EPSILON_UNITS
    assert budget["epsilon_budget"] == 10 * EPSILON_UNITS  # the default budget
    assert budget["releases"] == 1
    (record,) = releases
    assert record["id"] == proof["release_id"]
    assert (record["tenant"], record["aggregate"], record["preset"]) == (
        "acme",
        "count",
        "standard",
    )
    stored = json.loads(record["proof"])
    assert stored["rows_used"] == ROWS  # the audit copy keeps the exact count
    assert {k: v for k, v in stored.items() if k != "rows_used"} == proof


def test_a_purpose_has_its_own_budget(
    capsys: pytest.CaptureFixture[str], files: dict[str, Path], data_dir: Path
) -> None:
    base: list[str | Path] = [
        files["csv"],
        "--aggregate",
        "count",
        "--tenant",
        "acme",
        "--data-dir",
        data_dir,
    ]
    assert run(capsys, *base, "--preset", "relaxed").code == 0
    other = run(capsys, *base, "--preset", "relaxed", "--purpose", "research")
    assert other.code == 0, other.err
    assert other.json["proof"]["budget_left"] == 6.0
    budgets, _ = ledger_rows(data_dir)
    assert {(b["purpose"], b["epsilon_spent"]) for b in budgets} == {
        ("export", 4 * EPSILON_UNITS),
        ("research", 4 * EPSILON_UNITS),
    }


def test_exceeding_the_budget_exits_1_and_releases_nothing(
    capsys: pytest.CaptureFixture[str], files: dict[str, Path], data_dir: Path, tmp_path: Path
) -> None:
    common: list[str | Path] = [
        files["csv"],
        "--aggregate",
        "count",
        "--tenant",
        "acme",
        "--data-dir",
        data_dir,
    ]
    base: list[str | Path] = [*common, "--preset", "relaxed"]
    outcomes = []
    for attempt in range(6):  # relaxed is epsilon 4: 4 + 4 fit in 10, the third does not
        target = tmp_path / f"release-{attempt}.json"
        result = run(capsys, *base, "--output", target)
        outcomes.append(result.code)
        if result.code == 0:
            assert target.is_file()
        else:
            assert result.out == "" and not target.exists(), result.out
            assert "budget" in result.err and "acme" in result.err, result.err
            assert "left epsilon=2" in result.err
    assert outcomes == [0, 0, 1, 1, 1, 1]
    budgets, releases = ledger_rows(data_dir)
    assert [b["epsilon_spent"] for b in budgets] == [8 * EPSILON_UNITS]
    assert [b["releases"] for b in budgets] == [2]
    assert len(releases) == 2
    # A release that fits what is left is still served: the refusals charged nothing.
    fits = run(capsys, *common, "--preset", "standard")
    assert fits.code == 0, fits.err
    assert fits.json["proof"]["budget_left"] == 0.0


def test_a_tenant_needs_an_existing_store(
    capsys: pytest.CaptureFixture[str], files: dict[str, Path], tmp_path: Path
) -> None:
    empty = tmp_path / "nothing-here"
    empty.mkdir()
    result = run(
        capsys, files["csv"], "--aggregate", "count", "--tenant", "acme", "--data-dir", empty
    )
    assert result.code == 1 and result.out == ""
    assert "no store" in result.err
    assert list(empty.iterdir()) == []  # nothing was created


# -- the console script ------------------------------------------------------------------------


def test_console_script_release_with_progress_and_output(
    files: dict[str, Path], dataset: Dataset, tmp_path: Path
) -> None:
    target = tmp_path / "out.json"
    args = ["--aggregate", "sum", "--column", "age", "--bounds", "0,100", "--seed", "11"]
    result = run_script(files["csv"], *args, "--output", target, "--progress", "always")
    assert result.code == 0, result.err
    assert result.out == ""
    assert "reading people.csv" in result.err and "100%" in result.err
    released = json.loads(target.read_text(encoding="utf-8"))
    assert abs(released["value"] - sum(dataset.column("age"))) < snapping_band(2.0, 100.0)
    assert released["proof"]["rng"] == "seeded"


def test_console_script_reads_standard_input(dataset: Dataset) -> None:
    text = "".join(json.dumps(r) + "\n" for r in dataset.rows[:500]).encode()
    result = run_script("-", "--format", "jsonl", "--aggregate", "count", "--seed", "1", stdin=text)
    assert result.code == 0, result.err
    assert abs(json.loads(result.out)["value"] - 500) < geometric_band(2.0, 1.0)


def test_console_script_errors_exit_1(tmp_path: Path) -> None:
    path = write(tmp_path / "people.csv", "id,age\n1,5\n")
    result = run_script(path, "--aggregate", "mean", "--column", "height", "--bounds", "0,1")
    assert result.code == 1
    assert result.out == ""
    assert "no column 'height'" in result.err
    assert "Traceback" not in result.err


def test_console_script_refuses_beyond_the_budget(
    capsys: pytest.CaptureFixture[str], files: dict[str, Path], data_dir: Path
) -> None:
    base: list[str | Path] = [
        "--aggregate",
        "count",
        "--preset",
        "relaxed",
        "--tenant",
        "acme",
        "--data-dir",
        data_dir,
    ]
    for _ in range(2):  # in-process: spend 8 of the 10
        assert run(capsys, files["csv"], *base).code == 0
    result = run_script(files["csv"], *base)
    assert result.code == 1
    assert result.out == ""
    assert "budget" in result.err
    assert ledger_rows(data_dir)[0][0]["epsilon_spent"] == 8 * EPSILON_UNITS
