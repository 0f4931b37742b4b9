"""Information-loss metrics of an anonymised table.

Definitions (the standard ones of the Mondrian evaluations, so numbers compare):

- **NCP**, the normalised certainty penalty (Xu et al., "Utility-based anonymization using local
  recoding", KDD 2006; as a fraction, the "GCP" of Ghinita et al., VLDB 2007). For one row and
  one quasi-identifier: a numeric value generalised to `lo-hi` costs
  `(hi - lo) / (max - min of the column over the input)` (0 when the input column holds one
  value); a categorical value generalised to hierarchy node `u` costs
  `leaves(u) / leaves(hierarchy)`, and 0 when `u` is the value itself. A row costs the mean over
  the quasi-identifiers; a suppressed row costs 1. NCP is the mean over all input rows, each
  weighted by its count when a count column is given (an aggregated row stands for `count`
  individuals). 0 = nothing generalised, 1 = everything suppressed or generalised to `"*"`.
- **Discernibility** (Bayardo and Agrawal, ICDE 2005): the sum over equivalence classes of the
  class size squared, plus each suppressed individual times the number of individuals.
- **Average class size**: individuals kept / number of classes (not normalised by k; divide by
  k for the "C_avg" of LeFevre et al.).

An equivalence class is a set of output rows with identical generalised quasi-identifiers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class KAnonMetrics:
    """Information loss and shape of one anonymisation.

    `ncp` = (sum over kept individuals of the mean over QIs of the value's penalty, plus the
    number of suppressed individuals) / individuals, where a numeric value generalised to
    `lo-hi` costs `(hi - lo) / (column max - column min)` and a categorical one generalised to
    node `u` costs `leaves(u) / leaves(hierarchy)` (0 when it is the value itself). The module
    doc gives the references.
    """

    #: Normalised certainty penalty in [0, 1] (suppressed rows count as fully generalised).
    ncp: float
    #: Sum of class sizes squared + suppressed individuals * individuals.
    discernibility: int
    #: Individuals kept / classes.
    average_class_size: float
    #: Individuals suppressed (rows removed from the output; with a count column, their counts).
    suppressed: int
    #: Equivalence classes in the output.
    classes: int
    #: Wall-clock time of `kanonize`.
    runtime_seconds: float
    #: Input rows removed from the output (equals `suppressed` without a count column).
    suppressed_rows: int = 0
    #: Individuals in the input (rows, or the sum of the count column).
    individuals: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def compute_metrics(
    class_weight: IntArray,
    class_ncp: FloatArray,
    suppressed: int,
    suppressed_rows: int,
    runtime_seconds: float,
) -> KAnonMetrics:
    """Metrics from the output classes' weights and per-class NCP (mean over QIs)."""
    kept = int(class_weight.sum())
    total = kept + suppressed
    ncp = (float(np.dot(class_weight, class_ncp)) + suppressed) / total if total else 0.0
    disc = int(np.dot(class_weight, class_weight)) + suppressed * total
    classes = int(class_weight.shape[0])
    return KAnonMetrics(
        ncp=min(max(ncp, 0.0), 1.0),
        discernibility=disc,
        average_class_size=kept / classes if classes else 0.0,
        suppressed=suppressed,
        classes=classes,
        runtime_seconds=runtime_seconds,
        suppressed_rows=suppressed_rows,
        individuals=total,
    )
