"""The noise of a DP release: diffprivlib 0.6.6 mechanisms that are safe under floating point.

Textbook Laplace noise computed in doubles (`value + scale * log(u)`) leaks: the set of doubles
it can output depends on the true value, so an observer of the low-order bits can tell
neighbouring datasets apart (Mironov, CCS 2012). No release here uses it. The mechanisms, and why
each is float-safe:

* **Counts and histogram cells: `diffprivlib.mechanisms.Geometric`** (two-sided geometric, the
  discrete Laplace). Input and output are integers, so there are no low-order bits to leak. The
  sampler inverts the CDF of a 53-bit uniform in doubles: the probability of each integer is off
  by at most a few ulps of the CDF, and the tail is cut at about 37 * sensitivity / epsilon (the
  smallest uniform is 2**-53), so the realised mechanism is within a total-variation distance
  of about 2**-50 of the ideal one: (epsilon, ~1e-15)-DP, inside the preset's delta.
* **Sums and means of clipped reals: `diffprivlib.mechanisms.Snapping`** (Mironov's snapping
  mechanism). The input is clamped to a public range [-B, B] (in units of the sensitivity), the
  Laplace sample uses a uniform drawn over *all* doubles in (0, 1) (not only multiples of
  2**-53), and the noisy value is rounded to a multiple of Lambda, the smallest power of two
  >= 1 / epsilon, then clamped again. The output therefore lies on a data-independent grid, and
  Mironov's theorem gives epsilon'-DP with epsilon' = (epsilon - 2 eta) / (1 + 12 B eta) <=
  epsilon (eta = 2**-53), which diffprivlib applies as its effective epsilon: the release gets
  *at least* the nominal privacy. B must not depend on the data (a clamp at the true range would
  reveal the row count), so the range is the public `max_rows` times the largest bound; with
  B <= 2**30 the loss of accuracy is 1.4e-6 relative. Caveat: the theorem assumes a correctly
  rounded logarithm; diffprivlib uses `crlibm.log_rn` when `crlibm` is installed and `numpy.log`
  (glibc, < 1 ulp error but not proven correctly rounded) otherwise. We do not ship `crlibm`, so
  the residual is that of an ulp-accurate log, covered by the preset's delta.
* **Quantiles: `diffprivlib.mechanisms.Exponential`** over a public grid of candidate values.
  We do *not* call `diffprivlib.tools.quantile`: after choosing an interval between two sorted
  data values with the exponential mechanism (Smith 2011) it returns
  `u * (x[i+1] - x[i]) + x[i]`, a continuous float draw whose endpoints are raw data values; the
  representable outputs (and an output equal to x[i] when u = 0) depend on the data, the same
  low-order-bit leak as float Laplace. Instead the candidates are `quantile_grid + 1` evenly
  spaced points of the public bounds, utility(c) = minus the distance from q n to the interval
  [#{x < c}, #{x <= c}] (sensitivity 1 per contributed value: one value moves each end by at
  most 1 and q n by q), and the output is a grid point: a public value. The selection itself is
  discrete; diffprivlib computes the selection probabilities with `exp`, normalises and
  cumulates them in doubles and compares a 53-bit uniform with the running sums, which puts
  each candidate's probability within about (i + 2) eta of the exact one. For G + 1 candidates
  the total-variation distance to the ideal mechanism is below G**2 eta, so the realised
  mechanism is (epsilon, (1 + e**epsilon) G**2 eta)-DP: 6.5e-9 at G = 1024 and epsilon 4, and
  about 1e-7 at the largest allowed grid (4096), always inside delta = 1e-6.

The mechanisms are pure epsilon-DP (delta 0); the preset's delta (1e-6) is charged to the ledger
as headroom for the floating-point residuals above, each far below it.

Randomness: with `rng=None` diffprivlib draws from `secrets.SystemRandom` (the operating
system's CSPRNG), which is what production releases use. A seed or a `numpy.random.Generator` is
for reproducible tests only: its stream is predictable, and the proof record says "seeded".
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from numbers import Integral
from typing import Any, Literal

import numpy as np
from diffprivlib.mechanisms import Exponential, Geometric, Snapping

__all__ = [
    "EXPONENTIAL",
    "GEOMETRIC",
    "SNAPPING",
    "Component",
    "RandomSource",
    "check_rng",
    "exponential",
    "geometric",
    "random_state",
    "rng_kind",
    "snapping",
    "snapping_granularity",
]

#: The diffprivlib classes a release may use, as recorded in its proof.
GEOMETRIC = "diffprivlib.mechanisms.Geometric"
SNAPPING = "diffprivlib.mechanisms.Snapping"
EXPONENTIAL = "diffprivlib.mechanisms.Exponential"

MechanismName = Literal["geometric", "snapping", "exponential"]
_CLASSES: dict[str, str] = {
    "geometric": GEOMETRIC,
    "snapping": SNAPPING,
    "exponential": EXPONENTIAL,
}

#: What `rng` may be: None (the OS CSPRNG), or a seed / generator for reproducible tests.
RandomSource = np.random.Generator | np.random.RandomState | random.SystemRandom | int | None

#: What diffprivlib's `random_state` takes (it rejects numpy Generators).
DiffprivlibRandom = np.random.RandomState | random.SystemRandom


def check_rng(rng: object) -> None:
    """Raise TypeError unless `rng` is a RandomSource (checked before anything is drawn)."""
    if rng is None or isinstance(
        rng, np.random.Generator | np.random.RandomState | random.SystemRandom
    ):
        return
    if isinstance(rng, bool) or not isinstance(rng, Integral):
        raise TypeError(
            "rng must be None, an int seed, a numpy.random.Generator, a numpy RandomState or "
            f"a random.SystemRandom, got {type(rng).__name__}"
        )
    if int(rng) < 0:
        raise TypeError(f"an rng seed must be non-negative, got {rng}")


def rng_kind(rng: RandomSource) -> Literal["system", "seeded"]:
    """'system' for the OS CSPRNG (production), 'seeded' for a reproducible test stream."""
    return "system" if rng is None or isinstance(rng, random.SystemRandom) else "seeded"


def random_state(rng: RandomSource) -> DiffprivlibRandom:
    """The `random_state` to give diffprivlib for `rng`; one per release, shared by its draws.

    Sharing matters: two mechanisms given the same int seed would draw the same stream (their
    noise would be correlated). A Generator is consumed once, to seed a RandomState.
    """
    check_rng(rng)
    if rng is None:
        return random.SystemRandom()
    if isinstance(rng, random.SystemRandom | np.random.RandomState):
        return rng
    seed = int(rng.integers(0, 2**63)) if isinstance(rng, np.random.Generator) else int(rng)
    # MT19937 seeds through a SeedSequence: any non-negative int, not only 32-bit ones.
    return np.random.RandomState(np.random.MT19937(seed))


def geometric(*, epsilon: float, sensitivity: int, random_state: DiffprivlibRandom | None) -> Any:
    """A two-sided geometric mechanism for integer queries of integer L1 sensitivity."""
    return Geometric(epsilon=epsilon, sensitivity=int(sensitivity), random_state=random_state)


def snapping(
    *,
    epsilon: float,
    sensitivity: float,
    lower: float,
    upper: float,
    random_state: DiffprivlibRandom | None,
) -> Any:
    """A snapping mechanism for a real query clamped to the public range [lower, upper]."""
    return Snapping(
        epsilon=epsilon,
        sensitivity=float(sensitivity),
        lower=float(lower),
        upper=float(upper),
        random_state=random_state,
    )


def exponential(
    *,
    epsilon: float,
    sensitivity: float,
    utility: list[float],
    random_state: DiffprivlibRandom | None,
) -> Any:
    """An exponential mechanism choosing an index of `utility` (higher utility, likelier)."""
    return Exponential(
        epsilon=epsilon,
        sensitivity=float(sensitivity),
        utility=utility,
        random_state=random_state,
    )


@dataclass(frozen=True)
class Component:
    """One mechanism application within a release, as its proof records it (a mean has two).

    `lower`/`upper` are the public clamp range of a snapping mechanism; `granularity` the grid
    its outputs lie on (Lambda times the sensitivity), or the spacing of a quantile's grid.
    """

    query: str
    mechanism: MechanismName
    epsilon: float
    sensitivity: float
    lower: float | None = None
    upper: float | None = None
    granularity: float | None = None

    @property
    def mechanism_class(self) -> str:
        """The diffprivlib class, by its public import path."""
        return _CLASSES[self.mechanism]

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping (None fields left out)."""
        out: dict[str, Any] = {
            "query": self.query,
            "mechanism": self.mechanism,
            "class": self.mechanism_class,
            "epsilon": self.epsilon,
            "sensitivity": self.sensitivity,
        }
        for key in ("lower", "upper", "granularity"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


def snapping_granularity(
    *, epsilon: float, sensitivity: float, lower: float, upper: float
) -> float:
    """The grid a snapping mechanism's outputs lie on (its Lambda times the sensitivity)."""
    mech = snapping(
        epsilon=epsilon, sensitivity=sensitivity, lower=lower, upper=upper, random_state=None
    )
    scale = 1.0 / float(mech.effective_epsilon())
    # Lambda: the smallest power of two >= the Laplace scale (in sensitivity units).
    mantissa, exponent = math.frexp(scale)
    lambda_ = scale if mantissa == 0.5 else math.ldexp(1.0, exponent)
    return lambda_ * float(sensitivity)
