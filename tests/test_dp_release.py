"""Differentially private releases (intelgraph_privacy.dp): presets, refusals, clipping and
contribution bounding, determinism, proof records, and the float-safe mechanism choice.

Statistical checks run many seeded releases (and hypothesis with `derandomize=True`), so they
are deterministic and never flake. The ledger here is a tiny in-test fake that only records the
call order (debit before noise); the integration with the real `BudgetLedger` on SQLite and
PostgreSQL is tested with the ledger.
"""

from __future__ import annotations

import importlib
import math
import os
import random
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from diffprivlib.mechanisms import Exponential, Geometric, Snapping
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from intelgraph_privacy import codec
from intelgraph_privacy.dp import (
    DEFAULT_PRESETS,
    EXPONENTIAL,
    GEOMETRIC,
    SNAPPING,
    DPError,
    PresetError,
    ReleaseError,
    load_presets,
    presets_from_mapping,
    release,
)
from intelgraph_privacy.dp.ledger import BudgetExceededError
from intelgraph_privacy.errors import ConfigError, PrivacyError
from tests.conftest import PRESETS, ROOT

PRESET_EPSILONS = {"strict": 1.0, "standard": 2.0, "relaxed": 4.0}
AGGREGATE_ARGS: dict[str, dict[str, Any]] = {
    "count": {},
    "sum": {"bounds": (0, 100)},
    "mean": {"bounds": (0, 100)},
    "histogram": {"bounds": (0, 100), "bins": 4},
    "quantile": {"bounds": (0, 100), "quantile": 0.5},
}
DATA = np.random.default_rng(7).uniform(0, 100, 500)

PROPERTY = settings(
    max_examples=20,
    deadline=None,
    derandomize=True,  # the same examples every run: a statistical check that cannot flake
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def releases(aggregate: str, data: Any, runs: int, seed: int, **kwargs: Any) -> list[Any]:
    """`runs` independent releases drawn from one seeded generator."""
    gen = np.random.default_rng(seed)
    return [release(aggregate, data, rng=gen, **kwargs).value for _ in range(runs)]


def snapping_tolerance(values: list[float], sensitivity: float, granularity: float) -> float:
    """How far the mean of snapping releases may sit from the truth: 5 standard errors plus
    the rounding bias of snapping (below granularity / 8 for a Laplace scale near Lambda)."""
    standard_error = float(np.std(values)) / math.sqrt(len(values))
    return 5 * standard_error + granularity / 8 + 1e-9 * sensitivity


# --- presets -------------------------------------------------------------------------------


def test_presets_file_matches_the_built_in_defaults() -> None:
    loaded = load_presets(PRESETS / "dp.yaml")
    assert loaded == DEFAULT_PRESETS
    assert loaded.default == "standard"
    assert {n: p.epsilon for n, p in loaded.presets.items()} == PRESET_EPSILONS
    assert {p.delta for p in loaded.presets.values()} == {1e-6}
    assert loaded.custom_epsilon.allowed is False


def test_presets_resolve_by_name_by_epsilon_and_default() -> None:
    assert DEFAULT_PRESETS.resolve().name == "standard"
    assert DEFAULT_PRESETS.resolve(preset="strict").epsilon == 1.0
    by_epsilon = DEFAULT_PRESETS.resolve(epsilon=4)
    assert (by_epsilon.name, by_epsilon.epsilon, by_epsilon.delta) == ("relaxed", 4.0, 1e-6)
    assert DEFAULT_PRESETS.resolve(preset="relaxed", epsilon=4.0).name == "relaxed"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"preset": "lax"}, "unknown DP preset 'lax'"),
        ({"epsilon": 3.0}, "custom epsilons are not allowed"),
        ({"epsilon": 0.0}, "finite positive"),
        ({"epsilon": math.inf}, "finite positive"),
        ({"epsilon": "2"}, "must be a number"),
        ({"preset": "strict", "epsilon": 2.0}, "contradicts preset 'strict'"),
    ],
)
def test_preset_refusals(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(PresetError, match=message) as caught:
        release("count", [1, 2, 3], **kwargs)
    assert isinstance(caught.value, PrivacyError)
    assert isinstance(caught.value, ValueError)


def test_custom_epsilon_only_when_allowed_and_in_range() -> None:
    raw = DEFAULT_PRESETS.model_dump()
    raw["custom_epsilon"].update(allowed=True, min=0.25, max=3.0, delta=1e-7)
    custom = presets_from_mapping(raw)
    r = release("count", DATA, epsilon=0.5, presets=custom, rng=1)
    assert (r.proof.preset, r.proof.epsilon, r.proof.delta) == ("custom", 0.5, 1e-7)
    # A preset's own epsilon still resolves to the preset.
    assert release("count", DATA, epsilon=2.0, presets=custom, rng=1).proof.preset == "standard"
    with pytest.raises(PresetError, match=r"outside the allowed range \[0.25, 3\]"):
        release("count", DATA, epsilon=3.5, presets=custom)
    with pytest.raises(PresetError, match="custom epsilons are not allowed"):
        release("count", DATA, epsilon=0.5)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("default: strict\npresets: {}\n", "at least 1 item"),
        ("default: nope\npresets: {strict: {epsilon: 1, delta: 1.0e-6}}\n", "default preset"),
        ("default: s\npresets: {s: {epsilon: 1, delta: 1.0e-6}}\nextra: 1\n", "extra"),
        ("default: s\npresets: {s: {epsilon: -1, delta: 1.0e-6}}\n", "epsilon"),
        ("default: s\npresets: {s: {epsilon: 1, delta: 2}}\n", "delta"),
        ("default: custom\npresets: {custom: {epsilon: 1, delta: 0}}\n", "not a preset name"),
        ("[not, a, mapping]\n", "expected a mapping"),
        ("default: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_preset_files_are_config_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "dp.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_presets(path)


# --- every aggregate and preset ------------------------------------------------------------


@pytest.mark.parametrize("preset", list(PRESET_EPSILONS))
@pytest.mark.parametrize("aggregate", list(AGGREGATE_ARGS))
def test_every_aggregate_and_preset(aggregate: str, preset: str) -> None:
    r = release(aggregate, DATA, preset=preset, rng=11, **AGGREGATE_ARGS[aggregate])
    proof = r.proof
    assert (proof.aggregate, proof.preset) == (aggregate, preset)
    assert (proof.epsilon, proof.delta) == (PRESET_EPSILONS[preset], 1e-6)
    # The components' epsilons add up to the release's (sequential composition).
    assert math.isclose(sum(c.epsilon for c in proof.components), proof.epsilon)
    assert proof.rows_used == len(DATA)
    value = r.value
    if aggregate == "count":
        assert type(value) is int
        assert abs(value - len(DATA)) <= 40  # a Geometric(eps >= 1) draw beyond 40: p < 1e-17
    elif aggregate == "histogram":
        assert isinstance(value, tuple)
        assert len(value) == 4
        assert all(type(cell) is int and cell >= 0 for cell in value)
        truth = np.histogram(DATA, bins=np.linspace(0, 100, 5))[0]
        assert np.abs(np.array(value) - truth).max() <= 40
    else:
        assert type(value) is float
        if aggregate == "sum":
            assert abs(value - DATA.sum()) <= 100 * 45  # 45 Laplace scales at most
        else:
            assert 0.0 <= value <= 100.0
            exact = DATA.mean() if aggregate == "mean" else float(np.median(DATA))
            assert abs(value - exact) <= 10


def test_counts_and_histograms_are_non_negative_integers() -> None:
    for seed in range(40):
        count = release("count", [1], preset="strict", rng=seed).value
        assert type(count) is int and count >= 0
        cells = release("histogram", ["a"], bins=["a", "b"], preset="strict", rng=seed).value
        assert isinstance(cells, tuple) and all(type(c) is int and c >= 0 for c in cells)


def test_count_counts_rows_of_any_kind() -> None:
    rows = [{"age": i} for i in range(300)] + [None, "x"]
    values = releases("count", rows, 50, seed=3, preset="relaxed")
    assert abs(np.mean(values) - 302) < 0.5


# --- refusals ------------------------------------------------------------------------------


@dataclass(frozen=True)
class FakeDebit:
    epsilon_left: float
    delta_left: float
    window_start: datetime


class FakeLedger:
    """Records the order of events; optionally refuses like a ledger over budget."""

    def __init__(self, events: list[str], *, refuse: bool = False) -> None:
        self.events = events
        self.refuse = refuse
        self.calls: list[tuple[str, str, float, float]] = []

    def debit(self, tenant: str, purpose: str, epsilon: float, delta: float) -> FakeDebit:
        self.calls.append((tenant, purpose, epsilon, delta))
        self.events.append("debit")
        start = datetime(2026, 1, 2, tzinfo=UTC)
        if self.refuse:
            raise BudgetExceededError(
                tenant,
                purpose,
                epsilon=epsilon,
                delta=delta,
                epsilon_left=0.5,
                delta_left=0.0,
                window_start=start,
            )
        return FakeDebit(epsilon_left=6.0 - epsilon, delta_left=9e-6, window_start=start)


@pytest.mark.parametrize(
    ("aggregate", "data", "kwargs", "message"),
    [
        ("median", [1.0], {}, "unknown aggregate 'median'"),
        ("sum", [1.0, 2.0], {}, "needs bounds"),
        ("mean", [1.0, 2.0], {}, "needs bounds"),
        ("quantile", [1.0, 2.0], {}, "needs bounds"),
        ("histogram", [1.0, 2.0], {"bins": 3}, "needs bounds"),
        ("histogram", [1.0, 2.0], {"bounds": (0, 3)}, "needs bins"),
        ("count", [], {}, "empty data"),
        ("sum", np.array([]), {"bounds": (0, 1)}, "empty data"),
        ("mean", iter(()), {"bounds": (0, 1)}, "empty data"),
        ("quantile", [], {"bounds": (0, 1)}, "empty data"),
        ("histogram", [], {"bins": ["a"]}, "empty data"),
        ("sum", [1.0, math.nan], {"bounds": (0, 2)}, "1 NaN or infinite"),
        ("mean", [math.inf, 1.0, -math.inf], {"bounds": (0, 2)}, "2 NaN or infinite"),
        ("quantile", np.array([1.0, np.nan]), {"bounds": (0, 2)}, "NaN or infinite"),
        ("histogram", [1.0, math.nan], {"bounds": (0, 2), "bins": 2}, "NaN or infinite"),
        ("sum", ["a", "b"], {"bounds": (0, 2)}, "needs numeric values"),
        ("sum", [1.0, 2.0], {"bounds": (0, 2), "ids": [1]}, "1 entries for 2 values"),
        ("count", [1, 2, 3], {"ids": ["a", "b", "c", "d"]}, "4 entries for 3 values"),
        ("count", [1], {"ids": [[1]]}, "hashable"),
        ("sum", [1.0], {"bounds": (2, 2)}, "lo < hi"),
        ("sum", [1.0], {"bounds": (3, 2)}, "lo < hi"),
        ("sum", [1.0], {"bounds": (0, math.inf)}, "finite numbers"),
        ("sum", [1.0], {"bounds": (0,)}, "a pair"),
        ("sum", [1.0], {"bounds": "0,1"}, "a pair"),
        ("sum", [1.0], {"bounds": (0, 1e300)}, "too large"),
        ("sum", [1.0], {"bounds": (0, 1), "bins": 3}, "bins apply to histogram"),
        ("mean", [1.0], {"bounds": (0, 1), "quantile": 0.5}, "quantile applies"),
        ("quantile", [1.0], {"bounds": (0, 1), "quantile": 1.5}, r"in \[0, 1\]"),
        ("quantile", [1.0], {"bounds": (0, 1), "bins": 1}, "grid cells"),
        ("quantile", [1.0], {"bounds": (0, 1), "bins": 100_000}, "grid cells"),
        ("histogram", [1.0], {"bins": [0, 2, 1]}, "strictly increasing"),
        ("histogram", [1.0], {"bins": [0, 1], "bounds": (0, 2)}, "contradict the bin edges"),
        ("histogram", [1.0], {"bins": 0, "bounds": (0, 2)}, "1 to 10000 bins"),
        ("histogram", [1.0], {"bins": 20_000, "bounds": (0, 2)}, "1 to 10000 bins"),
        ("histogram", ["a"], {"bins": ["a", "a"]}, "unique"),
        ("histogram", ["a"], {"bins": ["a"], "bounds": (0, 1)}, "takes no bounds"),
        ("histogram", [1.0], {"bins": ["a", 1]}, "must all be strings"),
        ("count", [1], {"max_contributions": 0}, "positive integer"),
        ("count", [1], {"max_contributions": True}, "positive integer"),
        ("count", [1], {"rng": "seed"}, "rng must be"),
        ("count", [1], {"rng": -1}, "non-negative"),
        ("count", "abc", {}, "sequence of values"),
        ("count", np.zeros((2, 2)), {}, "one-dimensional"),
        ("count", [1], {"presets": {"default": "x"}}, "DPPresets"),
        ("count", [1], {"bounds": (0, 1)}, "bounds do not apply to count"),
        ("count", [1], {"now": datetime(2026, 1, 1)}, "aware datetime"),
    ],
)
def test_refusals(aggregate: str, data: Any, kwargs: dict[str, Any], message: str) -> None:
    events: list[str] = []
    ledger = FakeLedger(events)
    with pytest.raises(DPError, match=message):
        release(aggregate, data, ledger=ledger, tenant="acme", purpose="export", **kwargs)
    assert ledger.calls == [], "a refused release must not spend budget"


def test_ledger_needs_tenant_and_purpose() -> None:
    ledger = FakeLedger([])
    with pytest.raises(ReleaseError, match="needs tenant and purpose"):
        release("count", [1], ledger=ledger)
    with pytest.raises(ReleaseError, match="needs purpose"):
        release("count", [1], ledger=ledger, tenant="acme")
    with pytest.raises(ReleaseError, match="tenant must be a non-empty string"):
        release("count", [1], ledger=ledger, tenant=" ", purpose="export")
    with pytest.raises(ReleaseError, match="debit"):
        release("count", [1], ledger=object(), tenant="acme", purpose="export")
    assert ledger.calls == []


# --- budget: debit before noise ------------------------------------------------------------


@pytest.fixture
def noise_events(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Spy on the real diffprivlib draws: each appends "noise" and then runs unchanged."""
    events: list[str] = []
    for cls in (Geometric, Snapping, Exponential):
        original = cls.randomise

        def spy(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            events.append("noise")
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(cls, "randomise", spy)
    yield events


@pytest.mark.parametrize("aggregate", list(AGGREGATE_ARGS))
def test_the_ledger_is_debited_before_any_noise(aggregate: str, noise_events: list[str]) -> None:
    ledger = FakeLedger(noise_events)
    r = release(
        aggregate,
        DATA,
        preset="strict",
        ledger=ledger,
        tenant="acme",
        purpose="export",
        rng=5,
        **AGGREGATE_ARGS[aggregate],
    )
    assert noise_events[0] == "debit"
    assert noise_events.count("debit") == 1
    assert noise_events.count("noise") >= 1
    assert ledger.calls == [("acme", "export", 1.0, 1e-6)]
    assert r.proof.budget_left == 5.0
    assert r.proof.delta_left == 9e-6
    assert r.proof.window_start == "2026-01-02T00:00:00+00:00"
    assert (r.proof.tenant, r.proof.purpose) == ("acme", "export")


@pytest.mark.parametrize("aggregate", list(AGGREGATE_ARGS))
def test_a_refused_debit_draws_no_noise(aggregate: str, noise_events: list[str]) -> None:
    ledger = FakeLedger(noise_events, refuse=True)
    gen = np.random.default_rng(99)
    state = gen.bit_generator.state
    with pytest.raises(BudgetExceededError, match="privacy budget exceeded"):
        release(
            aggregate,
            DATA,
            ledger=ledger,
            tenant="acme",
            purpose="export",
            rng=gen,
            **AGGREGATE_ARGS[aggregate],
        )
    assert noise_events == ["debit"]
    assert gen.bit_generator.state == state, "nothing may be drawn from rng before the debit"


# --- clipping and contribution bounding (centred on the clipped truth) ---------------------


bounds_straddling_zero = st.tuples(st.integers(-200, -1), st.integers(1, 200))


@PROPERTY
@given(
    values=st.lists(st.floats(-500, 500), min_size=5, max_size=60),
    bounds=bounds_straddling_zero,
    seed=st.integers(0, 2**32),
)
def test_sum_is_centred_on_the_clipped_sum(
    values: list[float], bounds: tuple[int, int], seed: int
) -> None:
    lo, hi = bounds
    clipped = math.fsum(min(max(v, lo), hi) for v in values)
    first = release("sum", values, preset="relaxed", bounds=bounds, rng=seed)
    component = first.proof.components[0]
    assert component.sensitivity == max(-lo, hi)
    assert component.granularity is not None
    out = releases("sum", values, 150, seed, preset="relaxed", bounds=bounds)
    tolerance = snapping_tolerance(out, component.sensitivity, component.granularity)
    assert abs(np.mean(out) - clipped) <= tolerance


def test_clipping_moves_the_sum_to_the_clipped_truth() -> None:
    values = [1e6] * 50 + [5.0] * 50  # clipped to (0, 10): 50 * 10 + 50 * 5 = 750
    out = releases("sum", values, 200, seed=1, preset="relaxed", bounds=(0, 10))
    assert abs(np.mean(out) - 750) < 5
    assert max(out) < 1_000  # nowhere near the raw sum (5e7)


@PROPERTY
@given(
    values=st.lists(st.floats(-150, 150), min_size=20, max_size=80),
    bounds=st.tuples(st.integers(-100, 0), st.integers(1, 100)),
    seed=st.integers(0, 2**32),
)
def test_mean_is_centred_on_the_clipped_mean(
    values: list[float], bounds: tuple[int, int], seed: int
) -> None:
    lo, hi = bounds
    n = len(values)
    truth = float(np.mean(np.clip(values, lo, hi)))
    half = (hi - lo) / 2
    # The mean is clamped to the bounds: keep the truth well inside, where that is free.
    spread = math.sqrt(2 * (half / 2) ** 2 + 2 * half**2 / 2**2) / n
    assume(lo + 4 * spread < truth < hi - 4 * spread)
    out = releases("mean", values, 150, seed, preset="relaxed", bounds=bounds)
    standard_error = float(np.std(out)) / math.sqrt(len(out))
    assert abs(np.mean(out) - truth) <= 5 * standard_error + half / 8 / n + 1e-9


def test_mean_of_data_outside_the_bounds_is_the_clipped_mean() -> None:
    values = [-1e9] * 100 + [1e9] * 300  # clipped to (0, 1): mean 0.75
    out = releases("mean", values, 100, seed=4, preset="relaxed", bounds=(0, 1))
    assert abs(np.mean(out) - 0.75) < 0.01
    assert all(0.0 <= v <= 1.0 for v in out)


@PROPERTY
@given(
    values=st.lists(st.floats(-50, 150), min_size=30, max_size=120),
    q=st.sampled_from([0.1, 0.25, 0.5, 0.75, 0.9]),
    seed=st.integers(0, 2**32),
)
def test_quantile_has_the_rank_of_the_clipped_quantile(
    values: list[float], q: float, seed: int
) -> None:
    lo, hi, cells = 0.0, 100.0, 256
    clipped = np.sort(np.clip(values, lo, hi))
    grid = np.linspace(lo, hi, cells + 1)
    n = len(values)

    def distance(points: Any) -> Any:
        # How far q*n lies from [#{x < c}, #{x <= c}]: 0 when c is a q-quantile.
        below = np.searchsorted(clipped, points, side="left")
        upto = np.searchsorted(clipped, points, side="right")
        return np.maximum(np.maximum(below - q * n, q * n - upto), 0.0)

    best = float(np.min(distance(grid)))
    out = releases(
        "quantile", values, 20, seed, preset="relaxed", bounds=(lo, hi), quantile=q, bins=cells
    )
    for value in out:
        assert value in grid  # a public grid point, never a data value
        # Exponential mechanism at epsilon 4: a candidate whose utility is k below the best
        # weighs e**(-2k) as much, so P(k > 10) < 257 * e**-20 < 1e-6.
        assert float(distance(value)) <= best + 10


def test_quantile_of_data_above_the_bounds_is_the_upper_bound() -> None:
    out = releases("quantile", [500.0] * 200, 20, seed=2, bounds=(0, 10), quantile=0.5)
    assert out == [10.0] * 20  # every value is clipped to 10: the only candidate of utility 0


@PROPERTY
@given(
    groups=st.lists(st.integers(1, 8), min_size=3, max_size=25),
    m=st.integers(1, 3),
    seed=st.integers(0, 2**32),
)
def test_contribution_bounding_keeps_each_ids_first_values(
    groups: list[int], m: int, seed: int
) -> None:
    # Individual i contributes groups[i] values, interleaved; values grow with their position.
    ids: list[str] = []
    values: list[float] = []
    for round_ in range(max(groups)):
        for person, size in enumerate(groups):
            if round_ < size:
                ids.append(f"p{person}")
                values.append(float(len(values) % 17))
    # An independent oracle: each id's first m values, in input order.
    seen: dict[str, int] = {}
    kept: list[float] = []
    for person, value in zip(ids, values, strict=True):
        seen[person] = seen.get(person, 0) + 1
        if seen[person] <= m:
            kept.append(value)
    first = release(
        "sum", values, preset="relaxed", bounds=(-20, 20), ids=ids, max_contributions=m, rng=1
    )
    proof = first.proof
    assert (proof.contribution_bound, proof.contributions_enforced) == (m, True)
    assert proof.sensitivity == 20 * m
    assert proof.rows_used == len(kept)
    component = proof.components[0]
    assert component.granularity is not None
    out = releases(
        "sum", values, 100, seed, preset="relaxed", bounds=(-20, 20), ids=ids, max_contributions=m
    )
    assert abs(np.mean(out) - math.fsum(kept)) <= snapping_tolerance(
        out, component.sensitivity, component.granularity
    )
    counts = releases("count", values, 60, seed, preset="relaxed", ids=ids, max_contributions=m)
    assert abs(np.mean(counts) - len(kept)) <= 0.25 * m + 0.05


def test_contribution_bounding_with_numeric_ids_and_histograms() -> None:
    ids = np.array([7, 7, 7, 8, 9, 9])
    data = ["a", "a", "b", "b", "c", "a"]  # id 7 keeps "a"; 8 "b"; 9 "c"
    r = release("histogram", data, bins=["a", "b", "c"], ids=ids, preset="relaxed", rng=0)
    assert r.proof.rows_used == 3
    assert r.proof.params == {"categories": ["a", "b", "c"]}
    cells = releases("histogram", data, 100, seed=8, bins=["a", "b", "c"], ids=ids)
    assert np.abs(np.mean(cells, axis=0) - [1, 1, 1]).max() < 0.2


def test_declared_contribution_bound_without_ids_scales_the_sensitivity() -> None:
    r = release("mean", DATA, bounds=(0, 100), max_contributions=4, rng=0)
    assert r.proof.contribution_bound == 4
    assert r.proof.contributions_enforced is False
    assert [c.sensitivity for c in r.proof.components] == [200.0, 4.0]


def test_histogram_cells_are_centred_on_the_clipped_counts() -> None:
    data = [-5.0, 1.0, 2.0, 3.0, 12.0, 30.0] * 20  # clipped to (0, 10): cells [0, 5), [5, 10]
    cells = releases("histogram", data, 200, seed=6, bounds=(0, 10), bins=2, preset="strict")
    mean = np.mean(cells, axis=0)
    assert np.abs(mean - [80, 40]).max() < 0.5
    edges = release("histogram", data, bins=[0, 2.5, 10], rng=0).proof
    assert edges.bounds == (0.0, 10.0)
    assert edges.params == {"edges": [0.0, 2.5, 10.0]}
    assert edges.rows_used == 120


# --- determinism ---------------------------------------------------------------------------


@pytest.mark.parametrize("aggregate", list(AGGREGATE_ARGS))
def test_a_seed_makes_releases_reproducible(aggregate: str) -> None:
    kwargs = AGGREGATE_ARGS[aggregate]
    assert release(aggregate, DATA, rng=42, **kwargs).value == (
        release(aggregate, DATA, rng=42, **kwargs).value
    )
    first = release(aggregate, DATA, rng=np.random.default_rng(3), **kwargs).value
    assert first == release(aggregate, DATA, rng=np.random.default_rng(3), **kwargs).value
    distinct = {repr(release(aggregate, DATA, rng=s, **kwargs).value) for s in range(40)}
    assert len(distinct) > 1, "different seeds must give different noise"


def test_the_draws_of_a_release_share_one_random_state(monkeypatch: pytest.MonkeyPatch) -> None:
    # Two mechanisms each given the same int seed would draw the same stream (correlated
    # noise): a release makes one random state and hands it to all of its mechanisms.
    states: list[Any] = []
    for cls in (Geometric, Snapping):
        original = cls.randomise

        def spy(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            states.append(self._rng)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(cls, "randomise", spy)
    assert release("mean", DATA, bounds=(0, 100), rng=3).proof.rng == "seeded"
    assert len(states) == 2 and states[0] is states[1]
    assert isinstance(states[0], np.random.RandomState)
    states.clear()
    release("mean", DATA, bounds=(0, 100))
    assert len(states) == 2 and states[0] is states[1]
    assert isinstance(states[0], random.SystemRandom)


def test_without_rng_the_system_csprng_is_used() -> None:
    r = release("count", DATA)
    assert r.proof.rng == "system"


# --- proof records -------------------------------------------------------------------------

PROOF_FIELDS = {
    "release_id",
    "timestamp",
    "aggregate",
    "mechanism",
    "mechanism_classes",
    "epsilon",
    "delta",
    "preset",
    "bounds",
    "sensitivity",
    "contribution_bound",
    "contributions_enforced",
    "budget_left",
    "delta_left",
    "window_start",
    "tenant",
    "purpose",
    "rng",
    "components",
    "params",
    "library",
}


@pytest.mark.parametrize("aggregate", list(AGGREGATE_ARGS))
def test_proof_records_are_complete_and_json(aggregate: str) -> None:
    moment = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    r = release(aggregate, DATA, rng=1, now=moment, **AGGREGATE_ARGS[aggregate])
    public = r.proof.as_dict()
    assert set(public) == PROOF_FIELDS
    audit = r.proof.audit_dict()
    assert set(audit) == PROOF_FIELDS | {"rows_used"}
    assert audit["rows_used"] == len(DATA)
    assert "rows_used" not in public, "an exact row count must not leave with the value"
    assert codec.loads(codec.dumps(public)) == public
    assert codec.loads(codec.dumps(audit)) == audit
    assert codec.loads(codec.dumps(r.as_dict()))["proof"] == public
    assert uuid.UUID(public["release_id"]).version == 4
    assert public["timestamp"] == "2026-03-04T05:06:07+00:00"
    assert public["budget_left"] is None and public["window_start"] is None
    assert public["library"] == "diffprivlib 0.6.6"
    assert public["bounds"] == (None if aggregate == "count" else [0.0, 100.0])
    assert all(c["class"] in public["mechanism_classes"] for c in public["components"])
    # The store's dp_releases columns: aggregate <= 32, mechanism <= 64, preset <= 32 chars.
    assert len(public["mechanism"]) <= 64 and len(public["preset"]) <= 32
    assert release(aggregate, DATA, rng=1, **AGGREGATE_ARGS[aggregate]).proof.release_id != (
        r.proof.release_id
    )


def test_quantile_and_mean_proofs_say_how() -> None:
    q = release("quantile", DATA, bounds=(0, 100), quantile=0.9, bins=50, rng=1).proof
    assert q.params == {"quantile": 0.9, "grid_cells": 50}
    assert q.components[0].granularity == 2.0
    mean = release("mean", DATA, bounds=(0, 100), preset="relaxed", rng=1).proof
    assert mean.params == {"epsilon_split": {"centred_sum": 2.0, "count": 2.0}}
    assert [c.query for c in mean.components] == ["centred_sum", "count"]


# --- the float-safe mechanisms -------------------------------------------------------------


def test_the_mechanisms_are_the_float_safe_ones() -> None:
    classes = {
        aggregate: release(aggregate, DATA, rng=1, **kwargs).proof.mechanism_classes
        for aggregate, kwargs in AGGREGATE_ARGS.items()
    }
    assert classes == {
        "count": (GEOMETRIC,),
        "histogram": (GEOMETRIC,),
        "sum": (SNAPPING,),
        "mean": (SNAPPING, GEOMETRIC),
        "quantile": (EXPONENTIAL,),
    }
    # The recorded names are import paths of the very classes used.
    for path, cls in ((GEOMETRIC, Geometric), (SNAPPING, Snapping), (EXPONENTIAL, Exponential)):
        module, _, name = path.rpartition(".")
        assert getattr(importlib.import_module(module), name) is cls
    assert not any("Laplace" in c for cs in classes.values() for c in cs)


def test_snapped_sums_of_neighbouring_datasets_share_one_public_grid() -> None:
    # Float Laplace leaks through the low-order bits of value + noise; snapping outputs lie on
    # a grid that does not depend on the data. Check it for a dataset and a neighbour.
    base = [12.345678901, 99.0, 0.1, 73.25]
    neighbour = [*base, 41.987654321]
    outputs = [
        release("sum", data, bounds=(0, 100), rng=seed).value
        for data in (base, neighbour)
        for seed in range(30)
    ]
    step = release("sum", base, bounds=(0, 100), rng=0).proof.components[0].granularity
    assert step is not None and step == 100.0  # Lambda = 1 at epsilon 2, times sensitivity 100
    offsets = [(v - outputs[0]) / step for v in outputs]
    assert all(abs(o - round(o)) < 1e-9 for o in offsets)
    assert len(set(outputs)) > 3


def test_quantiles_are_grid_points_not_data_values() -> None:
    data = [10.123456789, 20.987654321, 33.3333333, 47.5, 51.0001]
    grid = set(np.linspace(0, 100, 1025).tolist())
    for seed in range(20):
        value = release("quantile", data, bounds=(0, 100), rng=seed).value
        assert value in grid
        assert value not in data


# --- the benchmark still runs ----------------------------------------------------------------


def test_the_benchmark_runs_quickly() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "dp_release.py"), "--quick", "--no-ledger"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "RUST_BACKTRACE": "0"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "| sum | snapping |" in result.stdout
    assert "| mean | snapping+geometric |" in result.stdout
    assert "All DP release targets met: yes." in result.stdout
