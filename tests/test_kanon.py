"""k-anonymity (`intelgraph_privacy.kanon`): property tests against independent checks.

The checks here do not use the library: k-anonymity and l-diversity by grouping output rows on
their quasi-identifier tuples in plain Python, generalisation by parsing ranges and walking the
test's own copy of the hierarchy, and NCP / discernibility recomputed from the output rows with
the textbook definitions. Data are generated here (no UCI Adult).
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter, defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from intelgraph_privacy.errors import PrivacyError
from intelgraph_privacy.kanon import (
    Hierarchy,
    KAnonError,
    KAnonMetrics,
    KAnonResult,
    check_k,
    kanonize,
    load_hierarchies,
)

PROPERTY = settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# A categorical hierarchy, and the test's own view of it (parents, leaves) for the checks.
TREE: dict[str, Any] = {
    "Europe": {"West": ["Paris", "Lyon", "Berlin"], "North": ["Oslo", "Bergen"]},
    "Asia": ["Tokyo", "Osaka", "Seoul"],
    "Lagos": None,
}


def _parents(tree: Any, parent: str, out: dict[str, str]) -> dict[str, str]:
    if isinstance(tree, dict):
        for key, sub in tree.items():
            out[key] = parent
            if sub is not None:
                _parents(sub, key, out)
    else:
        for leaf in tree:
            out[leaf] = parent
    return out


PARENT = _parents(TREE, "*", {})
LEAVES = sorted(set(PARENT) - set(PARENT.values()))
KINDS = ["a", "b", "c", "d", "e"]
DIAGNOSES = ["flu", "cold", "asthma", "none", "gout"]
QI_CHOICES = ["age", "score", "city", "kind"]
NUMERIC = {"age", "score"}


def ancestors(value: str) -> list[str]:
    out = [value]
    while out[-1] != "*":
        out.append(PARENT[out[-1]])
    return out


def leaves_under(node: str) -> int:
    return sum(1 for leaf in LEAVES if node in ancestors(leaf))


_RANGE = re.compile(r"^(-?[0-9.]+(?:e-?[0-9]+)?)-(-?[0-9.]+(?:e-?[0-9]+)?)$")


def parse_range(text: str) -> tuple[float, float]:
    match = _RANGE.match(text)
    assert match, f"not a range: {text!r}"
    return float(match.group(1)), float(match.group(2))


# --- generated tables ---------------------------------------------------------------------


@st.composite
def tables(draw: st.DrawFn) -> dict[str, Any]:
    age_top = draw(st.sampled_from([0, 3, 60, 10_000]))
    row = st.fixed_dictionaries(
        {
            "age": st.integers(0, age_top),
            "score": st.integers(-400, 400).map(lambda x: x / 4),
            "city": st.sampled_from(LEAVES),
            "kind": st.sampled_from(KINDS),
            "diag": st.sampled_from(DIAGNOSES),
            "n": st.sampled_from([0, 1, 1, 2, 3, 4]),
        }
    )
    # Rows drawn from a small pool, so duplicates are common.
    pool = draw(st.lists(row, min_size=1, max_size=draw(st.integers(1, 40))))
    n = draw(st.one_of(st.integers(0, 12), st.integers(20, 160)))
    picks = draw(st.lists(st.integers(0, len(pool) - 1), min_size=n, max_size=n))
    rows = [{**pool[i], "id": j} for j, i in enumerate(picks)]
    # A few far-away rows, the kind suppression is for.
    for j in range(draw(st.integers(0, 3))):
        rows.append({**pool[0], "age": 10**6 + j, "score": -(10.0**4) - j, "id": len(rows)})
    return {
        "rows": rows,
        "qis": draw(st.lists(st.sampled_from(QI_CHOICES), min_size=1, max_size=4, unique=True)),
        "k": draw(st.integers(2, 20)),
        "limit": draw(st.sampled_from([0.0, 0.01, 0.02, 0.1, 0.3])),
        "hierarchy": draw(st.booleans()),
        "count": draw(st.booleans()),
        "l": draw(st.one_of(st.none(), st.integers(1, 4))),
        "form": draw(st.sampled_from(["records", "columns", "object-columns"])),
    }


def as_columns(rows: list[dict[str, Any]], form: str) -> dict[str, np.ndarray]:
    names = ["age", "score", "city", "kind", "diag", "n", "id"]
    if form == "object-columns":
        out = {}
        for name in names:
            col = np.empty(len(rows), dtype=object)
            col[:] = [r[name] for r in rows]
            out[name] = col
        return out
    return {
        "age": np.asarray([r["age"] for r in rows], dtype=np.int64),
        "score": np.asarray([r["score"] for r in rows], dtype=np.float64),
        "city": np.asarray([r["city"] for r in rows], dtype=str),
        "kind": np.asarray([r["kind"] for r in rows], dtype=str),
        "diag": np.asarray([r["diag"] for r in rows], dtype=str),
        "n": np.asarray([r["n"] for r in rows], dtype=np.int64),
        "id": np.asarray([r["id"] for r in rows], dtype=np.int64),
    }


def output_records(result: KAnonResult, form: str) -> list[dict[str, Any]]:
    """The result's rows as dicts, checking it kept the input's form."""
    if form == "records":
        assert isinstance(result.rows, list)
        assert all(isinstance(r, dict) for r in result.rows)
        return result.rows
    assert isinstance(result.rows, dict)
    cols = result.rows
    assert set(cols) == {"age", "score", "city", "kind", "diag", "n", "id"}
    assert all(isinstance(c, np.ndarray) for c in cols.values())
    assert len({c.shape[0] for c in cols.values()}) == 1
    names = list(cols)
    return [dict(zip(names, vals, strict=True)) for vals in zip(*cols.values(), strict=True)]


# --- independent checks --------------------------------------------------------------------


def class_sizes(
    rows: list[dict[str, Any]], qis: list[str], count: str | None
) -> Counter[tuple[Any, ...]]:
    sizes: Counter[tuple[Any, ...]] = Counter()
    for r in rows:
        weight = r[count] if count else 1
        if weight:
            sizes[tuple(r[q] for q in qis)] += weight
    return sizes


def is_k_anonymous(rows: list[dict[str, Any]], qis: list[str], k: int, count: str | None) -> bool:
    return all(size >= k for size in class_sizes(rows, qis, count).values())


def generalises(qi: str, out: Any, original: Any, explicit: bool) -> bool:
    """Whether `out` is a generalisation of `original` for this quasi-identifier."""
    if qi in NUMERIC:
        if isinstance(out, str):
            lo, hi = parse_range(out)
            return lo < hi and lo <= original <= hi
        return bool(out == original)
    if explicit:
        return out in ancestors(original)
    return out in (original, "*")


def penalty(qi: str, out: Any, original: Any, explicit: bool, spans: dict[str, float]) -> float:
    """Textbook NCP of one generalised value."""
    if qi in NUMERIC:
        if not isinstance(out, str):
            return 0.0
        lo, hi = parse_range(out)
        return (hi - lo) / spans[qi]
    if out == original:
        return 0.0
    if explicit:
        return leaves_under(out) / len(LEAVES)
    return 1.0  # "*" of a one-level hierarchy


# --- the property -----------------------------------------------------------------------------


@PROPERTY
@given(case=tables())
def test_kanonize_output_is_k_anonymous_and_generalises_the_input(case: dict[str, Any]) -> None:
    rows: list[dict[str, Any]] = case["rows"]
    qis: list[str] = case["qis"]
    k: int = case["k"]
    count = "n" if case["count"] else None
    ldiv: int | None = case["l"]
    explicit = case["hierarchy"]
    form: str = case["form"]
    hierarchies = {"city": Hierarchy(TREE)} if explicit and "city" in qis else None
    live = [r for r in rows if (r["n"] if count else 1) > 0]
    total = sum(r["n"] for r in live) if count else len(live)
    data: Any = rows if form == "records" else as_columns(rows, form)
    kwargs: dict[str, Any] = {
        "hierarchies": hierarchies,
        "suppression_limit": case["limit"],
        "count": count,
    }
    if ldiv is not None:
        kwargs.update(sensitive="diag", l=ldiv)

    if 0 < total < k:
        event("refused: fewer than k individuals")
        with pytest.raises(KAnonError, match="fewer than k"):
            kanonize(data, qis, k, **kwargs)
        return
    if ldiv is not None and total and len({r["diag"] for r in live}) < ldiv:
        event("refused: fewer than l sensitive values")
        with pytest.raises(KAnonError, match="fewer than l"):
            kanonize(data, qis, k, **kwargs)
        return
    result = kanonize(data, qis, k, **kwargs)
    out = output_records(result, form)
    event("anonymised" if out else "empty result")
    if result.metrics.suppressed:
        event("some rows suppressed")
    if result.metrics.classes > 1:
        event("several classes")

    # k-anonymous (and l-diverse), by grouping in plain Python.
    sizes = class_sizes(out, qis, count)
    assert all(size >= k for size in sizes.values()), sizes
    if ldiv is not None:
        values: dict[tuple[Any, ...], set[str]] = defaultdict(set)
        for r in out:
            values[tuple(r[q] for q in qis)].add(r["diag"])
        assert all(len(v) >= ldiv for v in values.values())
    assert check_k(result.rows, qis, k, count=count)

    # Every output row generalises its own input row (matched by id); other columns unchanged;
    # input order kept; zero-count rows gone.
    by_id = {r["id"]: r for r in rows}
    ids = [int(r["id"]) for r in out]
    assert ids == sorted(set(ids))
    for r in out:
        original = by_id[int(r["id"])]
        assert (original["n"] if count else 1) > 0
        for column in ("diag", "n"):
            assert r[column] == original[column]
        for qi in qis:
            assert generalises(qi, r[qi], original[qi], explicit and qi == "city"), (
                qi,
                r[qi],
                original[qi],
            )
        for column in set(QI_CHOICES) - set(qis):
            assert r[column] == original[column]

    # Suppression within the limit, measured in counted individuals.
    kept = sum(r["n"] for r in out) if count else len(out)
    metrics = result.metrics
    assert metrics.suppressed == total - kept
    assert metrics.suppressed <= math.floor(case["limit"] * total + 1e-9)
    assert metrics.individuals == total
    assert metrics.suppressed_rows == len(live) - len(out)

    # Metrics, recomputed from the output with the textbook definitions.
    assert metrics.classes == len(sizes)
    assert metrics.discernibility == sum(s * s for s in sizes.values()) + metrics.suppressed * total
    if sizes:
        assert metrics.average_class_size == pytest.approx(kept / len(sizes))
    assert 0.0 <= metrics.ncp <= 1.0
    spans = {q: float(max(r[q] for r in live) - min(r[q] for r in live)) for q in NUMERIC if live}
    loss = 0.0
    for r in out:
        original = by_id[int(r["id"])]
        row_loss = sum(
            penalty(q, r[q], original[q], explicit and q == "city", spans) for q in qis
        ) / len(qis)
        loss += row_loss * (r["n"] if count else 1)
    expected = (loss + metrics.suppressed) / total if total else 0.0
    assert metrics.ncp == pytest.approx(expected, abs=1e-9)
    assert metrics.runtime_seconds >= 0


@PROPERTY
@given(case=tables(), k=st.integers(1, 25))
def test_check_k_agrees_with_grouping_in_python(case: dict[str, Any], k: int) -> None:
    rows = case["rows"]
    count = "n" if case["count"] else None
    data: Any = rows if case["form"] == "records" else as_columns(rows, case["form"])
    if k < 2:
        with pytest.raises(KAnonError, match="at least 2"):
            check_k(data, case["qis"], k, count=count)
        return
    assert check_k(data, case["qis"], k, count=count) == is_k_anonymous(rows, case["qis"], k, count)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(50, 3000),
    k=st.integers(2, 20),
    limit=st.sampled_from([0.0, 0.02, 0.1]),
)
def test_larger_numpy_tables_stay_k_anonymous(seed: int, n: int, k: int, limit: float) -> None:
    """Bigger tables than the pooled ones above, in the columnar form, with many classes."""
    rng = np.random.default_rng(seed)
    data = {
        "age": rng.integers(17, 91, n),
        "income": np.round(rng.lognormal(10, 1, n), -2),
        "city": rng.choice(np.asarray(LEAVES), n),
        "sex": rng.choice(np.asarray(["F", "M"]), n),
        "n": rng.integers(1, 4, n),
    }
    qis = ["age", "income", "city", "sex"]
    result = kanonize(
        data, qis, k, hierarchies={"city": Hierarchy(TREE)}, suppression_limit=limit, count="n"
    )
    out = result.rows
    assert isinstance(out, dict)
    records = [dict(zip(out, vals, strict=True)) for vals in zip(*out.values(), strict=True)]
    assert is_k_anonymous(records, qis, k, "n")
    assert result.metrics.suppressed <= math.floor(limit * int(data["n"].sum()) + 1e-9)
    assert 0 < result.metrics.ncp < 1


# --- examples -------------------------------------------------------------------------------


def people(n: int = 40) -> list[dict[str, Any]]:
    rng = np.random.default_rng(7)
    return [
        {
            "id": i,
            "age": int(rng.integers(20, 70)),
            "city": str(rng.choice(LEAVES)),
            "diag": str(rng.choice(DIAGNOSES)),
        }
        for i in range(n)
    ]


def test_generalised_values_read_as_documented() -> None:
    rows = [{"age": a, "city": "Paris"} for a in (30, 31, 32, 33, 34)]
    rows += [{"age": 50, "city": c} for c in ("Oslo", "Bergen", "Oslo", "Bergen", "Oslo")]
    result = kanonize(rows, ["age", "city"], 5, hierarchies={"city": Hierarchy(TREE)})
    assert isinstance(result.rows, list)
    assert [r["age"] for r in result.rows] == ["30-34"] * 5 + [50] * 5
    assert [r["city"] for r in result.rows] == ["Paris"] * 5 + ["North"] * 5
    # NCP: ages 4/20 on half the rows, cities 2/9 leaves on the other half; mean over 2 QIs.
    assert result.metrics.ncp == pytest.approx((5 * (4 / 20) + 5 * (2 / 9)) / 2 / 10)
    assert result.metrics.classes == 2
    assert result.metrics.discernibility == 50
    assert result.metrics.average_class_size == 5


def test_negative_and_float_ranges_keep_the_values_as_they_appear() -> None:
    rows = [{"t": t} for t in (-5, -3, -1, -2, -4)] + [{"t": t} for t in (1.5, 2.25, 2, 3, 1.75)]
    out = kanonize(rows, ["t"], 5).rows
    assert isinstance(out, list)
    assert {r["t"] for r in out} == {"-5.0--1.0", "1.5-3.0"}


def test_suppressing_an_outlier_when_it_lowers_the_penalty() -> None:
    rows = [{"id": i, "age": 30 + i % 2, "zip": 1000 + i % 3} for i in range(20)]
    rows.append({"id": 99, "age": 95, "zip": 9999})
    without = kanonize(rows, ["age", "zip"], 5, suppression_limit=0)
    with_ = kanonize(rows, ["age", "zip"], 5, suppression_limit=0.05)
    assert without.metrics.suppressed == 0
    assert with_.metrics.suppressed == 1
    assert isinstance(with_.rows, list)
    assert 99 not in {r["id"] for r in with_.rows}
    assert with_.metrics.ncp < without.metrics.ncp
    assert len(with_.rows) == 20


def test_no_suppression_when_it_does_not_pay() -> None:
    rows = [{"age": a} for a in range(20, 43)]
    result = kanonize(rows, ["age"], 5, suppression_limit=0.5)
    assert result.metrics.suppressed == 0
    assert isinstance(result.rows, list) and len(result.rows) == 23


def test_count_column_sizes_classes_by_their_counts() -> None:
    cells = [{"city": c, "age": 40, "count": 3} for c in ("Paris", "Lyon", "Oslo", "Tokyo")]
    cells.append({"city": "Berlin", "age": 41, "count": 0})
    result = kanonize(cells, ["city", "age"], 6, count="count", suppression_limit=0)
    assert isinstance(result.rows, list)
    assert len(result.rows) == 4  # the zero-count row describes nobody: dropped
    assert check_k(result.rows, ["city", "age"], 6, count="count")
    assert not check_k(result.rows, ["city", "age"], 6)  # as rows, the classes are smaller
    assert result.metrics.individuals == 12


def test_l_diversity_forces_coarser_classes() -> None:
    rows = people(60)
    plain = kanonize(rows, ["age", "city"], 3, hierarchies={"city": Hierarchy(TREE)})
    diverse = kanonize(
        rows, ["age", "city"], 3, hierarchies={"city": Hierarchy(TREE)}, sensitive="diag", l=3
    )
    assert isinstance(diverse.rows, list)
    groups: dict[tuple[Any, Any], set[str]] = defaultdict(set)
    for r in diverse.rows:
        groups[(r["age"], r["city"])].add(r["diag"])
    assert min(len(v) for v in groups.values()) >= 3
    assert diverse.metrics.ncp >= plain.metrics.ncp


def test_columns_in_columns_out() -> None:
    data = {
        "age": np.arange(20, dtype=np.int64),
        "flag": np.asarray([True, False] * 10),
        "payload": np.linspace(0, 1, 20),
    }
    result = kanonize(data, ["age", "flag"], 4)
    assert isinstance(result.rows, dict)
    assert result.rows["age"].dtype == object
    assert result.rows["payload"].dtype == np.float64
    assert set(result.rows["flag"].tolist()) <= {True, False, "*"}
    assert check_k(result.rows, ["age", "flag"], 4)


def test_same_input_same_output() -> None:
    rows = people(200)
    a = kanonize(rows, ["age", "city"], 4)
    b = kanonize(rows, ["age", "city"], 4)
    assert a.rows == b.rows


def test_empty_table_is_returned_empty() -> None:
    result = kanonize([], ["age"], 5)
    assert result.rows == []
    assert result.metrics.classes == 0 and result.metrics.ncp == 0.0
    assert check_k([], ["age"], 5)
    cols = kanonize({"age": np.zeros(0, dtype=np.int64)}, ["age"], 5).rows
    assert isinstance(cols, dict) and cols["age"].shape == (0,)


def test_a_whole_table_of_identical_rows_is_one_class() -> None:
    rows = [{"age": 40, "city": "Oslo"}] * 12
    result = kanonize(rows, ["age", "city"], 5)
    assert result.metrics.classes == 1
    assert result.metrics.ncp == 0.0
    assert result.rows == rows


def test_metrics_type() -> None:
    result = kanonize(people(30), ["age"], 5)
    assert isinstance(result.metrics, KAnonMetrics)
    assert set(result.metrics.as_dict()) >= {
        "ncp",
        "discernibility",
        "average_class_size",
        "suppressed",
        "classes",
        "runtime_seconds",
    }


def test_a_large_table_is_partitioned_quickly() -> None:
    """Vectorised: 200,000 rows with four quasi-identifiers in seconds, not minutes."""
    rng = np.random.default_rng(3)
    n = 200_000
    data = {
        "age": rng.integers(17, 91, n),
        "income": rng.integers(0, 200_000, n),
        "sex": rng.choice(np.asarray(["F", "M"]), n),
        "city": rng.choice(np.asarray(LEAVES), n),
    }
    started = time.perf_counter()
    result = kanonize(data, list(data), 5, hierarchies={"city": Hierarchy(TREE)})
    elapsed = time.perf_counter() - started
    assert check_k(result.rows, list(data), 5)
    assert result.metrics.classes > n // 10
    assert elapsed < 20, f"{elapsed:.1f} s for {n} rows"


# --- hierarchies ----------------------------------------------------------------------------


def test_hierarchy_queries() -> None:
    h = Hierarchy(TREE, column="city")
    assert set(h.leaves) == set(LEAVES)
    assert len(h) == 9
    assert h.ancestors("Oslo") == ("Oslo", "North", "Europe", "*")
    assert h.generalise(["Oslo", "Bergen"]) == "North"
    assert h.generalise(["Oslo", "Paris"]) == "Europe"
    assert h.generalise(["Oslo", "Tokyo"]) == "*"
    assert h.generalise(["Lagos"]) == "Lagos"
    assert h.leaf_count("Europe") == 5 and h.leaf_count("Lagos") == 1
    assert h.parent("North") == "Europe" and h.parent("*") is None
    assert h.children("Asia") == ("Tokyo", "Osaka", "Seoul")
    assert h.is_generalisation("Europe", "Lyon") and not h.is_generalisation("Asia", "Lyon")
    assert Hierarchy(h.to_tree()).to_tree() == h.to_tree()
    assert "Oslo" in h and "Rome" not in h
    flat = Hierarchy.flat(["b", "a", "b"])
    assert flat.leaves == ("a", "b") and flat.height == 1


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "h.yaml"
    path.write_text(text)
    return path


def test_load_hierarchies_reads_the_documented_form(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "hierarchies:\n"
        "  marital:\n"
        "    Never-married:\n"
        "    Married: [Married-civ-spouse, Married-AF-spouse]\n"
        "    Partner-absent:\n"
        "      Separated-or-divorced: [Divorced, Separated]\n"
        "      Alone: [Widowed]\n"
        "  band: ['1', 2, {High: [3, 4]}]\n",
    )
    loaded = load_hierarchies(path)
    assert set(loaded) == {"marital", "band"}
    assert loaded["marital"].generalise(["Divorced", "Separated"]) == "Separated-or-divorced"
    assert loaded["marital"].generalise(["Divorced", "Widowed"]) == "Partner-absent"
    assert loaded["band"].leaves == ("1", "2", "3", "4")
    # A numeric column with a hierarchy generalises along it (values matched as text).
    rows = [{"b": b} for b in (3, 4, 3, 4, 3, 1, 2, 1, 2, 1)]
    out = kanonize(rows, ["b"], 5, hierarchies={"b": loaded["band"]}).rows
    assert isinstance(out, list)
    assert {r["b"] for r in out} == {"High", "*"}


def test_the_benchmark_hierarchies_load() -> None:
    loaded = load_hierarchies(Path(__file__).parents[1] / "benchmarks" / "adult_hierarchies.yaml")
    assert len(loaded["native-country"]) == 41
    assert len(loaded["education"]) == 16
    assert loaded["occupation"].generalise(["Sales", "Adm-clerical"]) == "Office-and-sales"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("hierarchies:\n  c: [a, b, a]\n", r"column 'c': 'a' appears twice"),
        ("hierarchies:\n  c: {G: [a, b], a: ~}\n", r"column 'c': 'a' appears twice"),
        ("hierarchies:\n  c: {G: []}\n", r"column 'c': empty group"),
        ("hierarchies:\n  c: [yes, no]\n", r"column 'c': label True .* quote it"),
        ("hierarchies:\n  c: {G: ['*']}\n", r"column 'c': '\*' is the root"),
        ("hierarchies:\n  c: [[a, b]]\n", r"column 'c': a list directly inside a list"),
        ("hierarchies:\n  c:\n", r"column 'c': the tree is empty"),
        ("hierarchies:\n  c: {G: [a]}\n  c: [b]\n", r"c: listed twice \(line 3\)"),
        ("c: [a, b]\n", r"a single key 'hierarchies'"),
        ("hierarchies: [a]\n", r"'hierarchies' must map column names"),
        ("hierarchies:\n  c: [a, b\n", r"not valid YAML"),
    ],
)
def test_bad_hierarchy_files_are_refused_naming_file_column_and_problem(
    tmp_path: Path, text: str, problem: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(KAnonError, match=problem) as info:
        load_hierarchies(path)
    assert str(path) in str(info.value)


def test_missing_hierarchy_file(tmp_path: Path) -> None:
    with pytest.raises(KAnonError, match="cannot read hierarchies"):
        load_hierarchies(tmp_path / "nope.yaml")


# --- errors ---------------------------------------------------------------------------------


ROWS = [{"age": 30 + i, "city": "Oslo", "sick": "flu", "n": 1} for i in range(10)]


@pytest.mark.parametrize(
    ("call", "problem"),
    [
        (lambda: kanonize(ROWS, ["age"], 1), r"k must be at least 2, got 1"),
        (lambda: kanonize(ROWS, ["age"], True), r"k must be an integer"),
        (lambda: kanonize(ROWS, ["height"], 5), r"unknown quasi-identifier 'height'"),
        (lambda: kanonize(ROWS, "age", 5), r"must be a list of column names"),
        (lambda: kanonize(ROWS, [], 5), r"quasi_identifiers is empty"),
        (lambda: kanonize(ROWS, ["age", "age"], 5), r"'age' is listed twice"),
        (
            lambda: kanonize(ROWS, ["age"], 5, hierarchies={"city": Hierarchy(TREE)}),
            r"hierarchy is given for 'city', which is not a quasi-identifier",
        ),
        (
            lambda: kanonize(ROWS, ["city"], 5, hierarchies={"city": Hierarchy(["Paris"])}),
            r"column 'city': value 'Oslo' \(row 0\) is not in its hierarchy",
        ),
        (lambda: kanonize(ROWS, ["age"], 11), r"holds 10 individuals, fewer than k=11"),
        (lambda: kanonize(ROWS, ["age"], 5, sensitive="sick"), r"needs both `sensitive`"),
        (
            lambda: kanonize(ROWS, ["age"], 5, sensitive="sick", l=2),
            r"'sick' holds 1 distinct values, fewer than l=2",
        ),
        (lambda: kanonize(ROWS, ["age"], 5, sensitive="age", l=2), r"both a quasi-identifier"),
        (lambda: kanonize(ROWS, ["age"], 5, suppression_limit=1.5), r"suppression_limit"),
        (lambda: kanonize(ROWS, ["age"], 5, count="weight"), r"unknown count column 'weight'"),
        (
            lambda: kanonize([*ROWS, {"age": "old", "city": "Oslo"}], ["age"], 5),
            r"column 'age': mixed types \(int, str\)",
        ),
        (
            lambda: kanonize([*ROWS, {"age": None, "city": "Oslo"}], ["age"], 5),
            r"column 'age': missing value \(None\) at row 10",
        ),
        (
            lambda: kanonize({"age": np.asarray([1.0, np.nan] * 5)}, ["age"], 5),
            r"column 'age': value nan at row 1 is not finite",
        ),
        (
            lambda: kanonize([*ROWS, {"age": 1, "city": "Oslo", "n": -1}], ["age"], 5, count="n"),
            r"count column 'n': value -1 at row 10 is negative",
        ),
        (
            lambda: kanonize([*ROWS, {"city": "Oslo"}], ["age"], 5),
            r"unknown quasi-identifier 'age': row 10 has no such column",
        ),
        (
            lambda: kanonize({"age": np.arange(5), "city": np.arange(6)}, ["age"], 2),
            r"column 'city' has 6 values, the others 5",
        ),
        (lambda: kanonize("age,city", ["age"], 5), r"rows must be a list of dicts"),
        (lambda: kanonize([1, 2], ["age"], 5), r"row 0 is a int, not a mapping"),
        (lambda: check_k(ROWS, ["age"], 0), r"k must be at least 2"),
        (lambda: check_k(ROWS, ["weight"], 3), r"unknown quasi-identifier 'weight'"),
    ],
)
def test_bad_input_is_refused_with_a_clear_error(call: Any, problem: str) -> None:
    with pytest.raises(KAnonError, match=problem) as info:
        call()
    assert isinstance(info.value, PrivacyError)


def test_check_k_compares_values_as_they_are() -> None:
    rows: list[Mapping[str, Any]] = [{"a": "30-35"}] * 3 + [{"a": 30}] * 3
    assert check_k(rows, ["a"], 3)
    assert not check_k(rows, ["a"], 4)
    with pytest.raises(KAnonError, match="unhashable"):
        check_k([*rows, {"a": [1]}], ["a"], 2)
