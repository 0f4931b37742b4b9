"""Statistical audits of differential-privacy mechanisms (StatDP style).

A mechanism ``M`` is (epsilon, delta)-DP when, for every pair of neighbouring datasets ``d1``,
``d2`` and every set of outputs ``S``::

    Pr[M(d1) in S] <= exp(epsilon) * Pr[M(d2) in S] + delta        (and with d1, d2 swapped)

An audit cannot prove that; it can *refute* it. Following StatDP (Ding, Wang, Wang, Zhang, Kifer,
"Detecting Violations of Differential Privacy", CCS 2018), :func:`audit` runs the mechanism many
times on two neighbouring datasets, searches a family of candidate events ``S`` for the one that
looks most like a violation, and then tests that single event on *fresh* runs: one-sided
Clopper-Pearson bounds give ``p1_lower <= Pr[M(d1) in S]`` and ``p2_upper >= Pr[M(d2) in S]``, each
at level ``alpha / 2``; a violation is declared when ``p1_lower > exp(epsilon) * p2_upper + delta``.
If the mechanism really is (epsilon, delta)-DP, a violation is reported with probability at most
``alpha``, whatever the mechanism and however the event was chosen.

Why a held-out split (the default, ``method="holdout"``, as in StatDP): the search looks at
hundreds or thousands of events, and the largest of many noisy ratios is biased upwards. Choosing
the event on the first half of the runs and testing it on the second half keeps the final test a
single, honest one -- the event is independent of the data it is tested on -- however many events
were searched and however they were generated. The alternative, ``method="bonferroni"``, tests
every event on all the runs at level ``alpha / (4 * events)`` (four one-sided bounds per event)
and builds the automatic event grid from separate pilot runs (a tenth as many), so that the events
are fixed before the tested runs are drawn. It uses every run for testing and pays only
logarithmically for the number of events; on the reference mechanisms of the tests it was at
least as powerful as the split (epsilon' = 1.5 epsilon at epsilon 4 and 1,000 runs: caught in 89%
of seeds against 30%), so try it when runs are expensive.

Candidate events (``auto_events=True``) are built from the selection half of the runs (or, with
``method="bonferroni"``, from the pilot runs):

* intervals ``lo <= y < hi`` over a grid of cut points -- every threshold ``y < t`` / ``y >= t``
  and every interval between grid points. Discrete outputs with few distinct values (counts) use
  the values themselves as the grid, so one-cell intervals are the exact-value events ``y == v``;
  continuous outputs use quantiles of the pooled outputs;
* the same intervals restricted to outputs whose lowest set bit is at most ``2**k`` (for the ``k``
  seen in the outputs): "y is not a multiple of 2**(k+1)". These catch the floating-point attack on
  textbook Laplace (Mironov, CCS 2012), where the set of doubles a mechanism can print depends on
  the input: with ``f(d2) = 1`` every output in ``(-0.5, 0.5)`` is ``1 + noise`` with
  ``noise`` a multiple of ``2**-53``, so it is itself a multiple of ``2**-53``; with ``f(d1) = 0``
  the outputs there are the raw noise and have finer bits about half of the time.

Using it on your own mechanism::

    import math

    import numpy as np
    from intelgraph_privacy.testing.dp_audit import audit, vectorized

    P = -math.expm1(-1.0)  # two-sided geometric noise with ratio e**-1: epsilon 1 for a count

    def noisy_count(data: list[int], rng: np.random.Generator) -> float:
        # One run of the mechanism on `data`, drawing randomness only from `rng`.
        return len(data) + float(rng.geometric(P) - rng.geometric(P))

    result = audit(noisy_count, [1, 2, 3], [1, 2, 3, 4], epsilon=1.0, runs=40_000, seed=7)
    assert result.passed, result.summary()     # or result.check()
    print(result.epsilon_lower_bound)          # the epsilon the audit could certify (< 1)

    # Much faster when the mechanism can draw many outputs at once:
    @vectorized
    def noisy_count_batch(data: list[int], rng: np.random.Generator, size: int) -> np.ndarray:
        return len(data) + rng.geometric(P, size) - rng.geometric(P, size)

    audit(noisy_count_batch, [1, 2, 3], [1, 2, 3, 4], epsilon=1.0, runs=40_000, seed=7).check()

(Replace the geometric noise by ``rng.laplace(0.0, 1.0, size)`` and the audit reports a
violation: from 3 and from 4 the float Laplace mechanism reaches different sets of doubles.)

Choose neighbours where the mechanism is most likely to leak: datasets that differ by one record
at the edge of the contribution bounds. Fix ``seed`` so that the audit is reproducible; pick
``runs`` so that a correct mechanism leaves a clear gap between ``epsilon_lower_bound`` and
``epsilon`` (the gap shrinks as runs grow for a tight mechanism, because the bound converges to the
true epsilon) while mutants you care about are still caught. The mechanism is called as
``mechanism(dataset, rng)`` (or ``sample(dataset, rng, size)`` for :class:`Vectorized`); its
outputs must be real numbers (ints are converted to floats, exactly up to 2**53).

This module has no test-framework dependency; :meth:`AuditResult.check` raises
:class:`DPViolationError` (an ``AssertionError``) for use in any test runner.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Literal, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

# scipy ships no type information; it is installed as a dependency of diffprivlib/scikit-learn.
from scipy.special import betaincinv  # type: ignore[import-untyped, unused-ignore]

__all__ = [
    "NO_LOW_BIT",
    "AuditResult",
    "BatchSampler",
    "DPViolationError",
    "Event",
    "IntervalEvent",
    "Mechanism",
    "PredicateEvent",
    "Vectorized",
    "audit",
    "clopper_pearson_lower",
    "clopper_pearson_upper",
    "lowest_set_bit_exponent",
    "sample_outputs",
    "vectorized",
]

D = TypeVar("D")
D_contra = TypeVar("D_contra", contravariant=True)

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]

#: One run of a mechanism: ``mechanism(dataset, rng) -> output``.
Mechanism = Callable[[D, np.random.Generator], float]

#: Many runs at once: ``sampler(dataset, rng, size) -> array of size outputs``.
BatchSampler = Callable[[D, np.random.Generator, int], npt.ArrayLike]

#: Lowest-set-bit exponent reported for 0, inf and nan (0 is a multiple of every power of two).
NO_LOW_BIT = 1 << 20

_MANTISSA_BITS = 52


class DPViolationError(AssertionError):
    """Raised by :meth:`AuditResult.check` when the audit refuted the privacy claim."""


class Event(Protocol):
    """A set of outputs ``S``; ``mask`` says which outputs fall in it."""

    @property
    def name(self) -> str:
        """Readable description, reported with the audit result."""
        ...

    def mask(self, outputs: FloatArray) -> BoolArray:
        """Boolean array: ``outputs[i] in S``."""
        ...


@dataclass(frozen=True)
class IntervalEvent:
    """``lo <= y < hi`` (``hi = inf`` includes inf), optionally only outputs whose lowest set bit
    is at most ``2**max_lsb_exponent`` -- i.e. outputs that are *not* multiples of
    ``2**(max_lsb_exponent + 1)``."""

    lo: float
    hi: float
    max_lsb_exponent: int | None = None

    @property
    def name(self) -> str:
        """E.g. ``-0.5 <= y < 0.5 and lsb(y) <= 2**-54``."""
        if self.lo == -math.inf and self.hi == math.inf:
            text = "any y"
        elif self.lo == -math.inf:
            text = f"y < {self.hi!r}"
        elif self.hi == math.inf:
            text = f"y >= {self.lo!r}"
        else:
            text = f"{self.lo!r} <= y < {self.hi!r}"
        if self.max_lsb_exponent is not None:
            text += f" and lsb(y) <= 2**{self.max_lsb_exponent}"
        return text

    def mask(self, outputs: FloatArray) -> BoolArray:
        """Which outputs fall in the interval (and pass the low-bit condition)."""
        inside: BoolArray = outputs >= self.lo
        inside &= (outputs < self.hi) | (self.hi == math.inf)
        if self.max_lsb_exponent is not None:
            inside &= lowest_set_bit_exponent(outputs) <= self.max_lsb_exponent
        return inside


@dataclass(frozen=True)
class PredicateEvent:
    """An event of your own: ``predicate(outputs)`` returns a boolean array."""

    name: str
    predicate: Callable[[FloatArray], npt.ArrayLike]

    def mask(self, outputs: FloatArray) -> BoolArray:
        """Apply the predicate, checking its shape."""
        result = np.asarray(self.predicate(outputs), dtype=np.bool_)
        if result.shape != outputs.shape:
            raise ValueError(f"event {self.name!r} returned shape {result.shape}")
        return result


class Vectorized(Generic[D_contra]):
    """A mechanism that can draw many outputs in one call (see :func:`vectorized`).

    It is still a :data:`Mechanism`: calling it draws one output.
    """

    def __init__(self, sample: BatchSampler[D_contra]):
        self._sample = sample
        self.__doc__ = getattr(sample, "__doc__", None)
        self.__name__ = getattr(sample, "__name__", type(self).__name__)

    def sample(self, dataset: D_contra, rng: np.random.Generator, size: int) -> FloatArray:
        """``size`` independent outputs on ``dataset`` as a float64 array."""
        out = np.asarray(self._sample(dataset, rng, size), dtype=np.float64).reshape(-1)
        if out.shape != (size,):
            raise ValueError(f"{self.__name__} returned {out.shape[0]} outputs, expected {size}")
        return out

    def __call__(self, dataset: D_contra, rng: np.random.Generator) -> float:
        return float(self.sample(dataset, rng, 1)[0])


def vectorized(sample: BatchSampler[D]) -> Vectorized[D]:
    """Decorator: mark ``sample(dataset, rng, size)`` as a batch sampler for :func:`audit`."""
    return Vectorized(sample)


def sample_outputs(
    mechanism: Mechanism[D], dataset: D, runs: int, rng: np.random.Generator
) -> FloatArray:
    """``runs`` independent outputs of ``mechanism`` on ``dataset`` (vectorised when possible)."""
    if isinstance(mechanism, Vectorized):
        out = mechanism.sample(dataset, rng, runs)
    else:
        out = np.fromiter((mechanism(dataset, rng) for _ in range(runs)), np.float64, runs)
    if np.isnan(out).any():
        raise ValueError("the mechanism returned nan")
    return out


def lowest_set_bit_exponent(values: FloatArray) -> IntArray:
    """For each double ``y != 0``, the ``e`` with ``y = odd * 2**e``; :data:`NO_LOW_BIT` for 0,
    inf and nan. ``e <= k`` means "y is not a multiple of ``2**(k+1)``"."""
    bits = np.ascontiguousarray(values, dtype=np.float64).view(np.uint64)
    exponent_field = ((bits >> np.uint64(_MANTISSA_BITS)) & np.uint64(0x7FF)).astype(np.int64)
    fraction = bits & np.uint64((1 << _MANTISSA_BITS) - 1)
    normal = exponent_field > 0
    # Integer significand and the exponent of its unit bit (subnormals have no hidden bit).
    significand = np.where(normal, fraction | np.uint64(1 << _MANTISSA_BITS), fraction)
    unit_exponent = np.where(normal, exponent_field - 1075, -1074)
    lowest = significand & (~significand + np.uint64(1))  # isolates the lowest set bit
    # lowest is a power of two <= 2**52, exactly representable, so frexp gives its log2 exactly.
    trailing = np.frexp(lowest.astype(np.float64))[1].astype(np.int64) - 1
    special = (significand == 0) | (exponent_field == 0x7FF)
    return np.where(special, NO_LOW_BIT, unit_exponent + trailing)


def clopper_pearson_lower(
    successes: npt.ArrayLike, trials: npt.ArrayLike, alpha: float
) -> FloatArray:
    """One-sided Clopper-Pearson lower bound: ``Pr[p >= bound] >= 1 - alpha``."""
    k = np.asarray(successes, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    # k = 0 gives bound 0; the clipped arguments only keep betaincinv away from invalid input.
    bound = np.asarray(betaincinv(np.maximum(k, 1.0), n - k + 1.0, alpha), dtype=np.float64)
    return np.where(k <= 0, 0.0, bound)


def clopper_pearson_upper(
    successes: npt.ArrayLike, trials: npt.ArrayLike, alpha: float
) -> FloatArray:
    """One-sided Clopper-Pearson upper bound: ``Pr[p <= bound] >= 1 - alpha``."""
    k = np.asarray(successes, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    bound = np.asarray(betaincinv(k + 1.0, np.maximum(n - k, 1.0), 1.0 - alpha), dtype=np.float64)
    return np.where(k >= n, 1.0, bound)


def _epsilon_lower_bound(
    p_first_lower: FloatArray, p_second_upper: FloatArray, delta: float
) -> FloatArray:
    """``log((p1_lower - delta) / p2_upper)``: no smaller eps' (at this delta) fits the bounds."""
    numerator = p_first_lower - delta
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.log(numerator) - np.log(p_second_upper)
    return np.where(numerator > 0, np.where(p_second_upper > 0, ratio, math.inf), -math.inf)


@dataclass(frozen=True)
class AuditResult:
    """Outcome of :func:`audit` for the most suspicious event.

    ``count_first`` of ``trials`` runs on the "first" dataset fell in ``event`` against
    ``count_second`` on the "second" (``direction`` says which of d1/d2 is first). With
    confidence ``1 - alpha`` the mechanism is not (eps', delta)-DP for any
    ``eps' < epsilon_lower_bound``.
    """

    violated: bool
    epsilon: float
    delta: float
    alpha: float
    method: str
    runs: int
    event: str
    direction: str
    trials: int
    count_first: int
    count_second: int
    p_first_lower: float
    p_second_upper: float
    epsilon_lower_bound: float
    events_considered: int
    seconds: float

    @property
    def passed(self) -> bool:
        """True when no violation was found."""
        return not self.violated

    @property
    def slack(self) -> float:
        """``exp(epsilon) * p_second_upper + delta - p_first_lower``; negative means violated."""
        return math.exp(self.epsilon) * self.p_second_upper + self.delta - self.p_first_lower

    def summary(self) -> str:
        """One line for logs and assertion messages."""
        verdict = "VIOLATION" if self.violated else "pass"
        return (
            f"{verdict}: eps={self.epsilon:g} delta={self.delta:g} alpha={self.alpha:g} "
            f"({self.method}, {self.runs} runs/dataset, {self.events_considered} events, "
            f"{self.seconds:.2f}s); event [{self.event}] {self.direction}: "
            f"{self.count_first}/{self.trials} vs {self.count_second}/{self.trials}, "
            f"p1>={self.p_first_lower:.4g} p2<={self.p_second_upper:.4g}, "
            f"eps_lower_bound={self.epsilon_lower_bound:.4g}"
        )

    def check(self) -> None:
        """Raise :class:`DPViolationError` when the audit refuted the claim."""
        if self.violated:
            raise DPViolationError(self.summary())


@dataclass(frozen=True)
class _Grid:
    """Cut points and low-bit levels that define the automatic events."""

    cuts: FloatArray  # sorted; cells are (-inf, c0), [c0, c1), ..., [c_last, inf)
    lsb_levels: IntArray  # "lsb(y) <= level" events; plus one unrestricted level

    def cell_class_counts(self, outputs: FloatArray) -> IntArray:
        """counts[cell, class]: class c < len(levels) means lsb <= levels[c] (first such)."""
        cells = np.searchsorted(self.cuts, outputs, side="right")
        classes = np.searchsorted(self.lsb_levels, lowest_set_bit_exponent(outputs), side="left")
        width = self.lsb_levels.size + 1
        flat = np.bincount(cells * width + classes, minlength=(self.cuts.size + 1) * width)
        return flat.reshape(self.cuts.size + 1, width).astype(np.int64)

    def interval_counts(self, outputs: FloatArray) -> IntArray:
        """counts[i, j, level] for the interval of cells i..j (j >= i) and each low-bit level
        (the last level is unrestricted); entries with j < i are meaningless."""
        cumulative = np.cumsum(self.cell_class_counts(outputs), axis=1)
        prefix = np.vstack([np.zeros((1, cumulative.shape[1]), np.int64), np.cumsum(cumulative, 0)])
        # prefix[t] counts cells < t, so cells i..j hold prefix[j + 1] - prefix[i].
        return prefix[None, 1:, :] - prefix[:-1, None, :]

    def event(self, i: int, j: int, level: int) -> IntervalEvent:
        """The :class:`IntervalEvent` behind ``interval_counts[i, j, level]``."""
        lo = -math.inf if i == 0 else float(self.cuts[i - 1])
        hi = math.inf if j == self.cuts.size else float(self.cuts[j])
        lsb = None if level == self.lsb_levels.size else int(self.lsb_levels[level])
        return IntervalEvent(lo, hi, lsb)

    def candidates(self) -> IntArray:
        """(i, j, level) index triples of every distinct event (i <= j)."""
        cells = self.cuts.size + 1
        i, j = np.triu_indices(cells)
        level = np.arange(self.lsb_levels.size + 1)
        grid = np.stack(
            [np.repeat(i, level.size), np.repeat(j, level.size), np.tile(level, i.size)], axis=1
        )
        return grid.astype(np.int64)


def _build_grid(pooled: FloatArray, max_cells: int, max_lsb_levels: int) -> _Grid:
    finite = pooled[np.isfinite(pooled)]
    distinct = np.unique(finite)
    if distinct.size <= max_cells:
        # Discrete outputs: one cell per observed value, so single cells are exact-value events.
        cuts = distinct[1:]
    else:
        quantiles = np.quantile(finite, np.linspace(0.0, 1.0, max_cells + 1)[1:-1])
        cuts = np.unique(quantiles)
    lsb = lowest_set_bit_exponent(finite)
    levels = np.unique(lsb[lsb != NO_LOW_BIT])
    if levels.size > max_lsb_levels:
        picks = np.unique(np.linspace(0, levels.size - 1, max_lsb_levels).round().astype(np.int64))
        levels = levels[picks]
    if levels.size < 2:
        # One low-bit level only restates the interval; drop the granularity events.
        levels = np.zeros(0, np.int64)
    return _Grid(np.asarray(cuts, np.float64), levels.astype(np.int64))


def _score(
    first: IntArray, second: IntArray, trials: int, alpha: float, delta: float
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Per candidate: (p_first_lower, p_second_upper, epsilon lower bound), bounds at alpha."""
    lower = clopper_pearson_lower(first, trials, alpha)
    upper = clopper_pearson_upper(second, trials, alpha)
    return lower, upper, _epsilon_lower_bound(lower, upper, delta)


def audit(
    mechanism: Mechanism[D],
    d1: D,
    d2: D,
    *,
    epsilon: float,
    delta: float = 0.0,
    runs: int = 20_000,
    events: Sequence[Event] = (),
    auto_events: bool = True,
    seed: int = 0,
    alpha: float = 0.01,
    method: Literal["holdout", "bonferroni"] = "holdout",
    max_cells: int = 64,
    max_lsb_levels: int = 24,
) -> AuditResult:
    """Audit the claim that ``mechanism`` is (epsilon, delta)-DP on neighbours ``d1``, ``d2``.

    Runs the mechanism ``runs`` times on each dataset (randomness from ``seed`` only, with
    independent streams per dataset), searches ``events`` plus (``auto_events``) the interval and
    low-bit events described in the module docstring, in both directions, and tests the claim with
    one-sided Clopper-Pearson bounds. The probability of a false alarm for a mechanism that really
    is (epsilon, delta)-DP is at most ``alpha``.

    ``method="holdout"`` picks the event with the largest empirical-epsilon lower bound on the
    first half of the runs and tests it on the second half; ``"bonferroni"`` tests all events on
    all runs at level ``alpha / (4 * events)``, with the automatic events built from extra pilot
    runs (``max(200, runs // 10)`` per dataset). ``max_cells`` bounds the interval grid,
    ``max_lsb_levels`` the low-bit levels.
    """
    if epsilon < 0 or not 0 <= delta < 1 or not 0 < alpha < 1:
        raise ValueError("need epsilon >= 0, 0 <= delta < 1, 0 < alpha < 1")
    if runs < 2:
        raise ValueError("need at least 2 runs per dataset")
    if not events and not auto_events:
        raise ValueError("no events to test")
    if method not in ("holdout", "bonferroni"):
        raise ValueError(f"unknown method {method!r}")
    started = time.perf_counter()
    rng1, rng2, pilot1, pilot2 = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4)
    )
    out1 = sample_outputs(mechanism, d1, runs, rng1)
    out2 = sample_outputs(mechanism, d2, runs, rng2)

    if method == "holdout":
        half = runs // 2
        select1, select2, test1, test2 = out1[:half], out2[:half], out1[half:], out2[half:]
        grid_source = np.concatenate([select1, select2])
    else:
        select1, select2, test1, test2 = out1, out2, out1, out2
        grid_source = np.zeros(0)
        if auto_events:
            # The union bound only holds for events fixed before the tested runs are seen, so
            # the grid comes from separate pilot runs (a tenth as many).
            pilot = max(200, runs // 10)
            grid_source = np.concatenate(
                [
                    sample_outputs(mechanism, d1, pilot, pilot1),
                    sample_outputs(mechanism, d2, pilot, pilot2),
                ]
            )

    # Candidate events with their counts on the selection data.
    names: list[Event] = list(events)
    counts1 = [int(e.mask(select1).sum()) for e in names]
    counts2 = [int(e.mask(select2).sum()) for e in names]
    grid: _Grid | None = None
    triples = np.zeros((0, 3), np.int64)
    if auto_events:
        grid = _build_grid(grid_source, max_cells, max_lsb_levels)
        triples = grid.candidates()
        table1 = grid.interval_counts(select1)
        table2 = grid.interval_counts(select2)
        idx = (triples[:, 0], triples[:, 1], triples[:, 2])
        counts1 += table1[idx].tolist()
        counts2 += table2[idx].tolist()
    c1 = np.asarray(counts1, np.int64)
    c2 = np.asarray(counts2, np.int64)
    n_events = c1.size
    selection_trials = select1.size
    # Both directions: candidate k < n_events tests d1 over d2, k >= n_events d2 over d1.
    first = np.concatenate([c1, c2])
    second = np.concatenate([c2, c1])
    level = alpha / 2 if method == "holdout" else alpha / (4 * n_events)
    lower, upper, bound = _score(first, second, selection_trials, level, delta)
    slack = math.exp(epsilon) * upper + delta - lower
    # Largest certified epsilon first; ties (e.g. several infinite bounds) by the smallest slack.
    best = int(np.lexsort((slack, -bound))[0])
    forward = best < n_events
    k = best % n_events
    chosen: Event
    if k < len(names):
        chosen = names[k]
    else:
        assert grid is not None
        i, j, lsb_level = (int(v) for v in triples[k - len(names)])
        chosen = grid.event(i, j, lsb_level)

    if method == "holdout":
        a, b = (test1, test2) if forward else (test2, test1)
        count_first = int(chosen.mask(a).sum())
        count_second = int(chosen.mask(b).sum())
        trials = a.size
        lo_arr, up_arr, bound_arr = _score(
            np.asarray([count_first]), np.asarray([count_second]), trials, level, delta
        )
        p_lower, p_upper, eps_bound = float(lo_arr[0]), float(up_arr[0]), float(bound_arr[0])
    else:
        count_first, count_second, trials = int(first[best]), int(second[best]), selection_trials
        p_lower, p_upper, eps_bound = float(lower[best]), float(upper[best]), float(bound[best])

    violated = p_lower > math.exp(epsilon) * p_upper + delta
    return AuditResult(
        violated=violated,
        epsilon=epsilon,
        delta=delta,
        alpha=alpha,
        method=method,
        runs=runs,
        event=chosen.name,
        direction="Pr[M(d1) in S] vs Pr[M(d2) in S]"
        if forward
        else "Pr[M(d2) in S] vs Pr[M(d1) in S]",
        trials=trials,
        count_first=count_first,
        count_second=count_second,
        p_first_lower=p_lower,
        p_second_upper=p_upper,
        epsilon_lower_bound=eps_bound,
        events_considered=n_events,
        seconds=time.perf_counter() - started,
    )
