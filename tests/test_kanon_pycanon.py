"""Independent cross-check of `kanonize` with pycanon (CSIC's anonymity-level library).

pycanon pins numpy/pandas versions that clash with ours, so it lives in its own environment
(`.venv-pycanon`, built by `make pycanon-venv`) and runs in a subprocess on CSV files written
here. Without that environment the module is skipped on a laptop, and fails in CI (CI=true).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from intelgraph_privacy.kanon import Hierarchy, kanonize

ROOT = Path(__file__).resolve().parents[1]
PYCANON = ROOT / ".venv-pycanon" / "bin" / "python"

if not PYCANON.exists():
    if os.environ.get("CI") == "true":
        pytest.fail(
            f"{PYCANON} is missing: run `make pycanon-venv` (the pycanon cross-check must run "
            "in CI)",
            pytrace=False,
        )
    pytest.skip(f"{PYCANON} is missing (run `make pycanon-venv`)", allow_module_level=True)

# Reads each CSV as text (values are compared as written, like our own check) and reports the
# k of k-anonymity and, when a sensitive column is named, the l of distinct l-diversity.
PYCANON_SCRIPT = """
import json, sys
import pandas as pd
from pycanon import anonymity
out = []
for job in json.loads(sys.argv[1]):
    df = pd.read_csv(job["csv"], dtype=str, keep_default_na=False)
    res = {"rows": len(df), "k": int(anonymity.k_anonymity(df, job["qis"]))}
    if job["sensitive"]:
        res["l"] = int(anonymity.l_diversity(df, job["qis"], [job["sensitive"]]))
    out.append(res)
print(json.dumps(out))
"""

CITIES = {
    "North": {"Nordic": ["Oslo", "Bergen", "Malmo"], "Baltic": ["Riga", "Tallinn"]},
    "South": ["Lisbon", "Porto", "Seville", "Naples"],
    "Lagos": None,
}
LEAVES = ["Oslo", "Bergen", "Malmo", "Riga", "Tallinn", "Lisbon", "Porto", "Seville", "Naples"]
DIAGNOSES = np.asarray(["flu", "cold", "asthma", "gout", "none", "migraine"])


def people(seed: int, n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "age": rng.integers(17, 91, n),
        "income": np.round(rng.lognormal(10, 0.8, n), -2),
        "city": rng.choice(np.asarray(LEAVES), n, p=np.linspace(3, 1, len(LEAVES)) / 18),
        "sex": rng.choice(np.asarray(["F", "M"]), n),
        "kind": rng.choice(np.asarray(["a", "b", "c", "d", "e", "f", "g"]), n),
        "diag": rng.choice(DIAGNOSES, n),
        "n": rng.integers(1, 4, n),
    }


def records(columns: dict[str, Any]) -> list[dict[str, Any]]:
    return [dict(zip(columns, vals, strict=True)) for vals in zip(*columns.values(), strict=True)]


def write_csv(
    path: Path, rows: list[dict[str, Any]], columns: list[str], count: str | None
) -> None:
    """One CSV line per individual (a row with a count is repeated count times)."""
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for r in rows:
            for _ in range(int(r[count]) if count else 1):
                writer.writerow([str(r[c]) for c in columns])


def run_pycanon(jobs: list[dict[str, Any]]) -> list[dict[str, int]]:
    done = subprocess.run(
        [str(PYCANON), "-c", PYCANON_SCRIPT, json.dumps(jobs)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: list[dict[str, int]] = json.loads(done.stdout)
    return result


def own_levels(
    rows: list[dict[str, Any]], qis: list[str], sensitive: str | None, count: str | None
) -> tuple[int, int]:
    """k and l by grouping in plain Python (individuals counted)."""
    sizes: Counter[tuple[str, ...]] = Counter()
    values: dict[tuple[str, ...], set[str]] = defaultdict(set)
    for r in rows:
        key = tuple(str(r[q]) for q in qis)
        sizes[key] += int(r[count]) if count else 1
        if sensitive:
            values[key].add(str(r[sensitive]))
    return min(sizes.values()), (min(len(v) for v in values.values()) if sensitive else 0)


CASES: list[dict[str, Any]] = [
    {"seed": 1, "qis": ["age", "income", "city", "sex"], "k": 2},
    {"seed": 2, "qis": ["age", "income", "city", "sex"], "k": 5},
    {"seed": 3, "qis": ["age", "city", "sex", "kind"], "k": 10, "form": "columns"},
    {"seed": 4, "qis": ["age", "income", "city", "sex", "kind"], "k": 25, "limit": 0.05},
    {"seed": 5, "qis": ["age", "income", "city"], "k": 5, "l": 3},
    {"seed": 6, "qis": ["age", "city", "kind"], "k": 10, "l": 4, "form": "columns"},
    {"seed": 7, "qis": ["age", "income", "city", "sex"], "k": 8, "count": True},
    {"seed": 8, "qis": ["income", "kind", "sex"], "k": 4, "l": 2, "count": True, "limit": 0.1},
]


def test_pycanon_confirms_k_anonymity_and_l_diversity(tmp_path: Path) -> None:
    jobs: list[dict[str, Any]] = []
    expected: list[dict[str, Any]] = []
    for i, case in enumerate(CASES):
        data = people(case["seed"], 1500)
        qis: list[str] = case["qis"]
        count = "n" if case.get("count") else None
        sensitive = "diag" if case.get("l") else None
        rows: Any = data if case.get("form") == "columns" else records(data)
        extra: dict[str, Any] = {"sensitive": sensitive, "l": case["l"]} if sensitive else {}
        result = kanonize(
            rows,
            qis,
            case["k"],
            hierarchies={"city": Hierarchy(CITIES)} if "city" in qis else None,
            suppression_limit=case.get("limit", 0.02),
            count=count,
            **extra,
        )
        out = result.rows if isinstance(result.rows, list) else records(result.rows)
        columns = [*qis, *([sensitive] if sensitive else [])]
        anonymised = tmp_path / f"case{i}.csv"
        write_csv(anonymised, out, columns, count)
        jobs.append({"csv": str(anonymised), "qis": qis, "sensitive": sensitive})
        k_own, l_own = own_levels(out, qis, sensitive, count)
        individuals = result.metrics.individuals - result.metrics.suppressed
        expected.append(
            {"k": case["k"], "l": case.get("l"), "own": (k_own, l_own), "n": individuals}
        )
        # The raw table, as a control: pycanon must see it is not k-anonymous.
        raw = tmp_path / f"raw{i}.csv"
        write_csv(raw, records(data), columns, count)
        jobs.append({"csv": str(raw), "qis": qis, "sensitive": None})
        expected.append({"raw": True, "k": case["k"]})

    reports = run_pycanon(jobs)
    assert len(reports) == len(jobs)
    for want, got in zip(expected, reports, strict=True):
        if want.get("raw"):
            assert got["k"] < want["k"], "control: the raw table should not be k-anonymous"
            continue
        assert got["rows"] == want["n"]
        assert got["k"] >= want["k"]
        assert got["k"] == want["own"][0]
        if want["l"]:
            assert got["l"] >= want["l"]
            assert got["l"] == want["own"][1]
