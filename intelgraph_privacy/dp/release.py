"""Differentially private releases of aggregates: `release(aggregate, data, ...) -> Release`.

```python
from intelgraph_privacy.dp import release

ages = [23, 37, 41, 58, 62, 35, 29]
r = release("mean", ages, preset="strict", bounds=(18, 90))
r.value            # a noisy mean, within [18, 90]
r.proof.as_dict()  # what was released and how: preset, epsilon, delta, mechanism, bounds...
```

Neighbouring datasets differ by one individual (added or removed), who contributes at most
`max_contributions` values (enforced when `ids` are given: each id keeps its first values, in
input order). Values are clipped to `bounds`, which sum, mean and quantile require: bounds are
never inferred from the data (that would leak the extremes). Sensitivities follow:

| aggregate | statistic | L1 sensitivity (m = max_contributions) | mechanism |
|---|---|---|---|
| count | rows | m | Geometric |
| histogram | rows per bin (numeric bins or categories) | m (over all cells) | Geometric per cell |
| sum | exact sum of clipped values | m * max(abs(lo), abs(hi)) | Snapping |
| mean | centred sum / count, epsilon split 50/50 | m * (hi - lo) / 2 and m | Snapping + Geometric |
| quantile | a point of a public grid of the bounds | m (rank utility) | Exponential |

Why these mechanisms are safe under floating point: see `intelgraph_privacy.dp.mechanisms`.

Budget: with a `ledger`, `ledger.debit(tenant, purpose, epsilon, delta)` is called after every
argument and the data are checked and before any noise is drawn; when it raises (for instance
`BudgetExceededError`) nothing is drawn and the error propagates. A refused release (a
`DPError`) spends nothing.

Post-processing (free under DP): counts and cells are clamped at 0, a sum to its public range
(`max_rows` times the bounds), a mean to the bounds.

The proof record's `rows_used` is the exact number of values that entered the statistic: it is
kept for the audit log (`ReleaseProof.audit_dict()`) and left out of `as_dict()`, the record that
may leave the platform with the value (an exact count next to a noisy one would undo the noise).
"""

from __future__ import annotations

import itertools
import math
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from numbers import Integral, Real
from typing import Any, ClassVar, Literal, Protocol, TypeAlias

import diffprivlib
import numpy as np
import numpy.typing as npt

from intelgraph_privacy.dp.mechanisms import (
    Component,
    DiffprivlibRandom,
    RandomSource,
    check_rng,
    exponential,
    geometric,
    random_state,
    rng_kind,
    snapping,
    snapping_granularity,
)
from intelgraph_privacy.dp.presets import DEFAULT_PRESETS, DPPresets, ReleaseError, Resolved

__all__ = [
    "AGGREGATES",
    "Aggregate",
    "BudgetDebit",
    "BudgetDebiter",
    "Release",
    "ReleaseProof",
    "ReleaseValue",
    "release",
]

Aggregate = Literal["count", "sum", "mean", "histogram", "quantile"]
AGGREGATES: tuple[str, ...] = ("count", "sum", "mean", "histogram", "quantile")

#: A count or quantile/sum/mean, or a histogram's cells (in the order of its bins).
ReleaseValue: TypeAlias = int | float | tuple[int, ...]

FloatArray: TypeAlias = npt.NDArray[np.float64]
BoolArray: TypeAlias = npt.NDArray[np.bool_]

_LIBRARY = f"diffprivlib {diffprivlib.__version__}"


class BudgetDebit(Protocol):
    """What a ledger debit returns (`intelgraph_privacy.dp.ledger.Debit`)."""

    @property
    def epsilon_left(self) -> float: ...

    @property
    def delta_left(self) -> float: ...

    @property
    def window_start(self) -> datetime: ...


class BudgetDebiter(Protocol):
    """The part of `intelgraph_privacy.dp.ledger.BudgetLedger` a release uses."""

    def debit(self, tenant: str, purpose: str, epsilon: float, delta: float) -> BudgetDebit:
        """Charge (epsilon, delta); raise (BudgetExceededError) and spend nothing when over."""
        ...


@dataclass(frozen=True)
class ReleaseProof:
    """What a release disclosed and how it was protected (JSON-ready with `as_dict()`).

    `sensitivity` is that of the first component (for a mean: the centred sum); `components`
    lists every mechanism application with its own epsilon and sensitivity. `budget_left`,
    `delta_left` and `window_start` come from the ledger debit (None without a ledger).
    """

    release_id: str
    timestamp: str
    aggregate: str
    mechanism: str
    mechanism_classes: tuple[str, ...]
    epsilon: float
    delta: float
    preset: str
    bounds: tuple[float, float] | None
    sensitivity: float
    contribution_bound: int
    contributions_enforced: bool
    rows_used: int
    budget_left: float | None
    delta_left: float | None
    window_start: str | None
    tenant: str | None
    purpose: str | None
    rng: str
    components: tuple[Component, ...]
    params: dict[str, Any] = field(default_factory=dict)
    library: str = _LIBRARY

    #: Fields only the audit log keeps (exact, data-dependent numbers).
    CONFIDENTIAL: ClassVar[tuple[str, ...]] = ("rows_used",)

    def audit_dict(self) -> dict[str, Any]:
        """Every field, for the audit log / `dp_releases` (never for the data's consumer)."""
        return {
            "release_id": self.release_id,
            "timestamp": self.timestamp,
            "aggregate": self.aggregate,
            "mechanism": self.mechanism,
            "mechanism_classes": list(self.mechanism_classes),
            "epsilon": self.epsilon,
            "delta": self.delta,
            "preset": self.preset,
            "bounds": None if self.bounds is None else list(self.bounds),
            "sensitivity": self.sensitivity,
            "contribution_bound": self.contribution_bound,
            "contributions_enforced": self.contributions_enforced,
            "rows_used": self.rows_used,
            "budget_left": self.budget_left,
            "delta_left": self.delta_left,
            "window_start": self.window_start,
            "tenant": self.tenant,
            "purpose": self.purpose,
            "rng": self.rng,
            "components": [c.as_dict() for c in self.components],
            "params": dict(self.params),
            "library": self.library,
        }

    def as_dict(self) -> dict[str, Any]:
        """The proof that may accompany the value: `audit_dict()` without exact row counts."""
        record = self.audit_dict()
        for key in self.CONFIDENTIAL:
            del record[key]
        return record


@dataclass(frozen=True)
class Release:
    """A differentially private value and its proof record."""

    value: ReleaseValue
    proof: ReleaseProof

    def as_dict(self) -> dict[str, Any]:
        """`{"value": ..., "proof": proof.as_dict()}` (JSON-ready; histograms as lists)."""
        value = list(self.value) if isinstance(self.value, tuple) else self.value
        return {"value": value, "proof": self.proof.as_dict()}


# --- the plan of one release: checked, computed, then noised ---------------------------------


@dataclass(frozen=True)
class _Plan:
    """A release ready for noise: the exact statistic is computed, nothing is drawn yet.

    `build(random_state)` makes the diffprivlib mechanisms (without drawing); `draw(mechs)`
    draws the noise and post-processes. The mechanisms are built once before the debit, to
    check their parameters, and again with the real random state after it.
    """

    components: tuple[Component, ...]
    rows_used: int
    bounds: tuple[float, float] | None
    build: Callable[[DiffprivlibRandom | None], list[Any]]
    draw: Callable[[list[Any]], ReleaseValue]
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _Inputs:
    """The checked, contribution-bounded inputs shared by the planners."""

    data: Any
    keep: BoolArray | None
    m: int
    epsilon: float
    settings: DPPresets
    bounds: tuple[float, float] | None
    bins: Any
    quantile: float | None

    @property
    def n_rows(self) -> int:
        return int(np.count_nonzero(self.keep)) if self.keep is not None else _length(self.data)


def release(
    aggregate: Aggregate | str,
    data: Iterable[Any] | npt.ArrayLike,
    *,
    preset: str | None = None,
    epsilon: float | None = None,
    bounds: Sequence[float] | None = None,
    ledger: BudgetDebiter | None = None,
    tenant: str | None = None,
    purpose: str | None = None,
    rng: RandomSource = None,
    presets: DPPresets | None = None,
    bins: int | Sequence[float] | Sequence[str] | None = None,
    quantile: float | None = None,
    max_contributions: int | None = None,
    ids: Iterable[Any] | npt.ArrayLike | None = None,
    now: datetime | None = None,
) -> Release:
    """Release `aggregate` of `data` with differential privacy; returns the value and its proof.

    - `aggregate`: "count" (rows), "sum", "mean", "histogram" or "quantile".
    - `preset` / `epsilon`: a preset by name, or an epsilon (a preset's, or a custom one when
      `presets.custom_epsilon.allowed`); neither: the default preset. Delta is the preset's.
    - `bounds`: (lo, hi), public bounds every value is clipped to; required for sum, mean and
      quantile and for a histogram with a number of bins.
    - `bins`: histogram bins: a number of equal-width bins over `bounds`, increasing bin edges,
      or category labels (strings; values in no category are not counted). For a quantile: the
      number of grid cells (default `presets.quantile_grid`).
    - `quantile`: the quantile in [0, 1] for "quantile" (default 0.5, the median).
    - `ids` and `max_contributions`: one id per value; each id keeps its first
      `max_contributions` values (default `presets.max_contributions`). Without ids,
      `max_contributions` is the caller's statement of the bound, used for the sensitivity.
    - `ledger`, `tenant`, `purpose`: charge the release to the budget ledger (tenant and
      purpose required), before any noise is drawn; its errors propagate.
    - `rng`: None (the OS CSPRNG: production) or a seed / numpy Generator (tests only).
    - `presets`: the DP settings (default: the built-in ones, equal to presets/dp.yaml).
    - `now`: the proof's timestamp (default: the current UTC time).

    Raises PresetError (unknown preset, refused epsilon) or ReleaseError (bad aggregate,
    missing or invalid bounds, empty data, NaN or infinite values, ids of the wrong length...)
    before anything is spent or drawn.
    """
    settings = _settings(presets)
    if not isinstance(aggregate, str) or aggregate not in AGGREGATES:
        raise ReleaseError(f"unknown aggregate {aggregate!r}; expected one of {list(AGGREGATES)}")
    resolved = settings.resolve(preset, epsilon)
    _check_accounting(ledger, tenant, purpose)
    try:
        check_rng(rng)
    except TypeError as exc:
        raise ReleaseError(str(exc)) from None
    _check_options(aggregate, bins, quantile, bounds)
    if now is not None and (not isinstance(now, datetime) or now.utcoffset() is None):
        raise ReleaseError(f"now must be an aware datetime, got {now!r}")
    rows = _materialise(data)
    if _length(rows) == 0:
        raise ReleaseError(f"cannot release a {aggregate} of empty data")
    m = _max_contributions(max_contributions, settings)
    keep = None if ids is None else _contribution_mask(ids, _length(rows), m)
    inputs = _Inputs(
        data=rows,
        keep=keep,
        m=m,
        epsilon=resolved.epsilon,
        settings=settings,
        bounds=None if bounds is None else _check_bounds(bounds, settings),
        bins=bins,
        quantile=quantile,
    )
    plan = _PLANNERS[aggregate](inputs)
    plan.build(None)  # checks every mechanism parameter; draws nothing

    debit = None
    if ledger is not None:
        assert tenant is not None and purpose is not None  # _check_accounting
        # Before any noise: a refused debit (BudgetExceededError) propagates, nothing drawn.
        debit = ledger.debit(tenant, purpose, resolved.epsilon, resolved.delta)

    value = plan.draw(plan.build(random_state(rng)))
    return Release(
        value=value,
        proof=_proof(
            aggregate, plan, resolved, m, keep is not None, debit, tenant, purpose, rng, now
        ),
    )


# --- checks ----------------------------------------------------------------------------------


def _settings(presets: DPPresets | None) -> DPPresets:
    if presets is None:
        return DEFAULT_PRESETS
    if not isinstance(presets, DPPresets):
        raise ReleaseError(
            f"presets must be DPPresets (see load_presets), got {type(presets).__name__}"
        )
    return presets


def _check_accounting(ledger: object, tenant: object, purpose: object) -> None:
    for name, value in (("tenant", tenant), ("purpose", purpose)):
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise ReleaseError(f"{name} must be a non-empty string, got {value!r}")
    if ledger is None:
        return
    if not callable(getattr(ledger, "debit", None)):
        raise ReleaseError(f"ledger must have a debit() method, got {type(ledger).__name__}")
    missing = [name for name, value in (("tenant", tenant), ("purpose", purpose)) if not value]
    if missing:
        raise ReleaseError(f"a release charged to a ledger needs {' and '.join(missing)}")


def _check_options(aggregate: str, bins: object, quantile: object, bounds: object) -> None:
    # Refuse options that the aggregate would silently ignore: they signal a caller's mistake.
    if bounds is not None and aggregate == "count":
        raise ReleaseError("bounds do not apply to count (it counts rows, whatever their values)")
    if bins is not None and aggregate not in ("histogram", "quantile"):
        raise ReleaseError(f"bins apply to histogram and quantile releases, not to {aggregate}")
    if quantile is not None and aggregate != "quantile":
        raise ReleaseError(f"quantile applies to quantile releases, not to {aggregate}")
    if aggregate == "histogram" and bins is None:
        raise ReleaseError("a histogram needs bins: a number of bins, bin edges or category labels")


def _check_bounds(bounds: object, settings: DPPresets) -> tuple[float, float]:
    if (
        isinstance(bounds, str | bytes)
        or not isinstance(bounds, Sequence | np.ndarray)
        or len(bounds) != 2
    ):
        raise ReleaseError(f"bounds must be a pair (lo, hi), got {bounds!r}")
    lo, hi = bounds[0], bounds[1]
    for b in (lo, hi):
        if isinstance(b, bool) or not isinstance(b, Real) or not math.isfinite(float(b)):
            raise ReleaseError(f"bounds must be finite numbers, got {bounds!r}")
    lo_f, hi_f = float(lo), float(hi)
    if not lo_f < hi_f:
        raise ReleaseError(f"bounds must satisfy lo < hi, got ({lo_f:g}, {hi_f:g})")
    # The public sum range (max_rows * bound) must stay a finite double with room to spare.
    if settings.max_rows * max(abs(lo_f), abs(hi_f)) > 1e300:
        raise ReleaseError(f"bounds ({lo_f:g}, {hi_f:g}) are too large to release safely")
    return lo_f, hi_f


def _max_contributions(max_contributions: object, settings: DPPresets) -> int:
    if max_contributions is None:
        return settings.max_contributions
    if (
        isinstance(max_contributions, bool)
        or not isinstance(max_contributions, Integral)
        or int(max_contributions) < 1
    ):
        raise ReleaseError(
            f"max_contributions must be a positive integer, got {max_contributions!r}"
        )
    return int(max_contributions)


def _materialise(data: object) -> Any:
    """A sized view of `data` (numpy arrays and sequences as they are; iterables as a list)."""
    if isinstance(data, np.ndarray):
        if data.ndim != 1:
            raise ReleaseError(f"data must be one-dimensional, got shape {data.shape}")
        return data
    if isinstance(data, str | bytes | dict):
        raise ReleaseError(f"data must be a sequence of values, got {type(data).__name__}")
    if isinstance(data, Sequence):
        return data
    if isinstance(data, Iterable):
        return list(data)
    raise ReleaseError(f"data must be a sequence of values, got {type(data).__name__}")


def _length(data: Any) -> int:
    return len(data)


def _contribution_mask(ids: object, n: int, m: int) -> BoolArray:
    """True for the values kept: each id's first `m` values, in input order.

    The choice depends only on each individual's own rows, so adding or removing one
    individual changes at most `m` kept values: the sensitivities scale by `m`.
    """
    if isinstance(ids, str | bytes) or not isinstance(ids, Iterable):
        raise ReleaseError(f"ids must be a sequence with one id per value, got {ids!r}")
    arr = ids if isinstance(ids, np.ndarray) else None
    if arr is not None and arr.ndim == 1 and arr.dtype.kind in "biuf":
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise ReleaseError("ids must not be NaN or infinite")
        _, codes = np.unique(arr, return_inverse=True)
        codes = codes.reshape(-1)
    else:
        # Strings, objects, tuples...: one pass with a dict (hashable ids).
        index: dict[Any, int] = {}
        try:
            codes = np.fromiter(
                (index.setdefault(i, len(index)) for i in (ids if arr is None else arr.tolist())),
                dtype=np.int64,
            )
        except TypeError as exc:
            raise ReleaseError(f"ids must be hashable: {exc}") from None
    if len(codes) != n:
        raise ReleaseError(f"ids has {len(codes)} entries for {n} values (one id per value)")
    counts = np.bincount(codes)
    if counts.size == 0 or int(counts.max()) <= m:
        return np.ones(n, dtype=np.bool_)
    # Rank of each value within its id (0 = first, in input order), by a stable sort.
    order = np.argsort(codes, kind="stable")
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rank_sorted = np.arange(n) - np.repeat(starts, counts)
    keep = np.empty(n, dtype=np.bool_)
    keep[order] = rank_sorted < m
    return keep


def _numeric(inputs: _Inputs, aggregate: str) -> FloatArray:
    """The kept values as float64, refused when not numeric or not finite."""
    try:
        values = np.asarray(inputs.data, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ReleaseError(f"{aggregate} needs numeric values: {exc}") from None
    if values.ndim != 1:
        raise ReleaseError(f"data must be one-dimensional, got shape {values.shape}")
    finite = np.isfinite(values)
    if not finite.all():
        bad = int(values.size - np.count_nonzero(finite))
        raise ReleaseError(f"data holds {bad} NaN or infinite value(s); clean them first")
    return values if inputs.keep is None else values[inputs.keep]


def _require_bounds(inputs: _Inputs, aggregate: str) -> tuple[float, float]:
    if inputs.bounds is None:
        raise ReleaseError(
            f"a {aggregate} release needs bounds=(lo, hi): public limits chosen without looking "
            "at the data (bounds taken from the data would leak its extremes)"
        )
    return inputs.bounds


# --- planners --------------------------------------------------------------------------------


def _geometric_builder(
    epsilon: float, sensitivity: int
) -> Callable[[DiffprivlibRandom | None], list[Any]]:
    return lambda rs: [geometric(epsilon=epsilon, sensitivity=sensitivity, random_state=rs)]


def _plan_count(inputs: _Inputs) -> _Plan:
    n = inputs.n_rows
    component = Component("count", "geometric", inputs.epsilon, float(inputs.m))
    return _Plan(
        components=(component,),
        rows_used=n,
        bounds=None,
        build=_geometric_builder(inputs.epsilon, inputs.m),
        draw=lambda mechs: max(0, int(mechs[0].randomise(n))),
    )


def _sum_range(lo: float, hi: float, settings: DPPresets) -> tuple[float, float]:
    # Data-independent: a clamp at the data's own range would reveal the row count.
    return settings.max_rows * min(lo, 0.0), settings.max_rows * max(hi, 0.0)


def _plan_sum(inputs: _Inputs) -> _Plan:
    lo, hi = _require_bounds(inputs, "sum")
    values = np.clip(_numeric(inputs, "sum"), lo, hi)
    # math.fsum: the correctly rounded sum, so neighbours differ by the sensitivity (up to an
    # ulp of the sum, which the snapping mechanism's effective epsilon already pays for).
    total = math.fsum(values)
    sensitivity = inputs.m * max(abs(lo), abs(hi))
    lower, upper = _sum_range(lo, hi, inputs.settings)
    eps = inputs.epsilon
    component = Component(
        "sum",
        "snapping",
        eps,
        sensitivity,
        lower=lower,
        upper=upper,
        granularity=snapping_granularity(
            epsilon=eps, sensitivity=sensitivity, lower=lower, upper=upper
        ),
    )
    return _Plan(
        components=(component,),
        rows_used=int(values.size),
        bounds=(lo, hi),
        build=lambda rs: [
            snapping(
                epsilon=eps, sensitivity=sensitivity, lower=lower, upper=upper, random_state=rs
            )
        ],
        draw=lambda mechs: float(mechs[0].randomise(total)),
    )


def _plan_mean(inputs: _Inputs) -> _Plan:
    lo, hi = _require_bounds(inputs, "mean")
    values = np.clip(_numeric(inputs, "mean"), lo, hi)
    n = int(values.size)
    # Centre the values: the sum's sensitivity is then half the range, not its largest bound.
    mid, half = lo + (hi - lo) / 2.0, (hi - lo) / 2.0
    centred_total = math.fsum(np.clip(values - mid, -half, half))
    m, settings = inputs.m, inputs.settings
    eps_sum = inputs.epsilon * settings.mean_sum_share
    eps_count = inputs.epsilon - eps_sum
    sum_sensitivity = m * half
    lower, upper = -settings.max_rows * half, settings.max_rows * half
    components = (
        Component(
            "centred_sum",
            "snapping",
            eps_sum,
            sum_sensitivity,
            lower=lower,
            upper=upper,
            granularity=snapping_granularity(
                epsilon=eps_sum, sensitivity=sum_sensitivity, lower=lower, upper=upper
            ),
        ),
        Component("count", "geometric", eps_count, float(m)),
    )

    def build(rs: DiffprivlibRandom | None) -> list[Any]:
        return [
            snapping(
                epsilon=eps_sum,
                sensitivity=sum_sensitivity,
                lower=lower,
                upper=upper,
                random_state=rs,
            ),
            geometric(epsilon=eps_count, sensitivity=m, random_state=rs),
        ]

    def draw(mechs: list[Any]) -> float:
        noisy_sum = float(mechs[0].randomise(centred_total))
        noisy_count = int(mechs[1].randomise(n))
        return float(min(max(mid + noisy_sum / max(noisy_count, 1), lo), hi))

    return _Plan(
        components=components,
        rows_used=n,
        bounds=(lo, hi),
        build=build,
        draw=draw,
        params={"epsilon_split": {"centred_sum": eps_sum, "count": eps_count}},
    )


def _plan_histogram(inputs: _Inputs) -> _Plan:
    bins, settings = inputs.bins, inputs.settings
    params: dict[str, Any]
    if (
        isinstance(bins, Sequence)
        and not isinstance(bins, str)
        and bins
        and all(isinstance(b, str) for b in bins)
    ):
        labels = list(bins)
        if len(set(labels)) != len(labels):
            raise ReleaseError("histogram categories must be unique")
        _check_bin_count(len(labels), settings)
        counts = _category_counts(inputs, labels)
        bounds = None
        if inputs.bounds is not None:
            raise ReleaseError("a histogram over categories takes no bounds")
        params = {"categories": labels}
    else:
        edges = _edges(inputs, bins)
        values = np.clip(_numeric(inputs, "histogram"), edges[0], edges[-1])
        counts = [int(c) for c in np.histogram(values, bins=edges)[0]]
        bounds = (float(edges[0]), float(edges[-1]))
        params = {"edges": [float(e) for e in edges]}
    rows_used = int(sum(counts))
    component = Component("histogram", "geometric", inputs.epsilon, float(inputs.m))
    # One individual changes at most m cells by 1 in total (L1 = m): each cell gets
    # geometric noise calibrated to m, and the whole vector is epsilon-DP.
    return _Plan(
        components=(component,),
        rows_used=rows_used,
        bounds=bounds,
        build=_geometric_builder(inputs.epsilon, inputs.m),
        draw=lambda mechs: tuple(max(0, int(mechs[0].randomise(c))) for c in counts),
        params=params,
    )


def _check_bin_count(count: int, settings: DPPresets) -> None:
    if not 1 <= count <= settings.max_histogram_bins:
        raise ReleaseError(f"a histogram has 1 to {settings.max_histogram_bins} bins, got {count}")


def _edges(inputs: _Inputs, bins: Any) -> FloatArray:
    if isinstance(bins, Integral) and not isinstance(bins, bool):
        lo, hi = _require_bounds(inputs, "histogram with a number of bins")
        _check_bin_count(int(bins), inputs.settings)
        return np.linspace(lo, hi, int(bins) + 1)
    if isinstance(bins, str | bytes) or not isinstance(bins, Sequence | np.ndarray):
        raise ReleaseError(
            f"bins must be a number of bins, bin edges or category labels, got {bins!r}"
        )
    if any(isinstance(b, bool) or not isinstance(b, Real) for b in bins):
        raise ReleaseError("bin edges must be numbers (category labels must all be strings)")
    edges = np.asarray(bins, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2:
        raise ReleaseError("bin edges need at least two numbers")
    if not np.isfinite(edges).all() or not (np.diff(edges) > 0).all():
        raise ReleaseError("bin edges must be finite and strictly increasing")
    _check_bin_count(int(edges.size - 1), inputs.settings)
    if inputs.bounds is not None and inputs.bounds != (float(edges[0]), float(edges[-1])):
        raise ReleaseError(
            f"bounds {inputs.bounds} contradict the bin edges "
            f"({edges[0]:g} .. {edges[-1]:g}); give one or the other"
        )
    _check_bounds((float(edges[0]), float(edges[-1])), inputs.settings)
    return edges


def _category_counts(inputs: _Inputs, labels: list[str]) -> list[int]:
    index = {label: i for i, label in enumerate(labels)}
    values = _iterate(inputs.data)
    if inputs.keep is not None:
        values = itertools.compress(values, inputs.keep.tolist())
    # Values in no category are left out (a per-row rule: neighbours still differ by m rows).
    codes = np.fromiter(
        (index.get(v, -1) if isinstance(v, str) else -1 for v in values), dtype=np.int64
    )
    return [int(c) for c in np.bincount(codes[codes >= 0], minlength=len(labels))]


def _iterate(values: Any) -> Iterable[Any]:
    if isinstance(values, np.ndarray):
        listed: list[Any] = values.tolist()
        return listed
    iterable: Iterable[Any] = values
    return iterable


def _plan_quantile(inputs: _Inputs) -> _Plan:
    lo, hi = _require_bounds(inputs, "quantile")
    q = 0.5 if inputs.quantile is None else inputs.quantile
    if isinstance(q, bool) or not isinstance(q, Real) or not 0.0 <= float(q) <= 1.0:
        raise ReleaseError(f"quantile must be a number in [0, 1], got {q!r}")
    q = float(q)
    settings = inputs.settings
    grid_cells = settings.quantile_grid if inputs.bins is None else inputs.bins
    if (
        isinstance(grid_cells, bool)
        or not isinstance(grid_cells, Integral)
        or not 2 <= int(grid_cells) <= settings.max_quantile_grid
    ):
        raise ReleaseError(
            f"a quantile's bins (grid cells) must be an integer in "
            f"[2, {settings.max_quantile_grid}], got {grid_cells!r}"
        )
    cells = int(grid_cells)
    values = np.sort(np.clip(_numeric(inputs, "quantile"), lo, hi))
    n = int(values.size)
    # Public candidates: the output is a grid point, never a data value (see mechanisms.py).
    grid = np.linspace(lo, hi, cells + 1)
    # Utility: minus the distance from q*n to [#{x < c}, #{x <= c}], so a candidate holding
    # tied values (clipped ones pile up on the bounds) is as good as the quantile it is.
    below = np.searchsorted(values, grid, side="left")
    upto = np.searchsorted(values, grid, side="right")
    target = q * n
    utility = (-np.maximum(np.maximum(below - target, target - upto), 0.0)).tolist()
    eps, m = inputs.epsilon, inputs.m
    component = Component("quantile", "exponential", eps, float(m), granularity=(hi - lo) / cells)
    return _Plan(
        components=(component,),
        rows_used=n,
        bounds=(lo, hi),
        build=lambda rs: [
            exponential(epsilon=eps, sensitivity=float(m), utility=utility, random_state=rs)
        ],
        draw=lambda mechs: float(grid[int(mechs[0].randomise())]),
        params={"quantile": q, "grid_cells": cells},
    )


_PLANNERS: dict[str, Callable[[_Inputs], _Plan]] = {
    "count": _plan_count,
    "sum": _plan_sum,
    "mean": _plan_mean,
    "histogram": _plan_histogram,
    "quantile": _plan_quantile,
}


def _proof(
    aggregate: str,
    plan: _Plan,
    resolved: Resolved,
    m: int,
    enforced: bool,
    debit: BudgetDebit | None,
    tenant: str | None,
    purpose: str | None,
    rng: RandomSource,
    now: datetime | None,
) -> ReleaseProof:
    moment = datetime.now(UTC) if now is None else now
    names = dict.fromkeys(c.mechanism for c in plan.components)
    return ReleaseProof(
        release_id=str(uuid.uuid4()),
        timestamp=moment.isoformat(),
        aggregate=aggregate,
        mechanism="+".join(names),
        mechanism_classes=tuple(dict.fromkeys(c.mechanism_class for c in plan.components)),
        epsilon=resolved.epsilon,
        delta=resolved.delta,
        preset=resolved.name,
        bounds=plan.bounds,
        sensitivity=plan.components[0].sensitivity,
        contribution_bound=m,
        contributions_enforced=enforced,
        rows_used=plan.rows_used,
        budget_left=None if debit is None else float(debit.epsilon_left),
        delta_left=None if debit is None else float(debit.delta_left),
        window_start=None if debit is None else debit.window_start.isoformat(),
        tenant=tenant,
        purpose=purpose,
        rng=rng_kind(rng),
        components=plan.components,
        params=plan.params,
    )
