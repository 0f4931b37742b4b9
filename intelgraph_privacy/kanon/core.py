"""`kanonize` and `check_k`: argument checking, encoding, output and the final safety check."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from intelgraph_privacy.kanon.encoding import (
    QI,
    Rows,
    Table,
    encode_counts,
    encode_qi,
    encode_sensitive,
    read_table,
)
from intelgraph_privacy.kanon.errors import KAnonError
from intelgraph_privacy.kanon.hierarchies import Hierarchy, TreeSpec
from intelgraph_privacy.kanon.metrics import KAnonMetrics, compute_metrics
from intelgraph_privacy.kanon.mondrian import partition

IntArray = npt.NDArray[np.int64]
AnyArray = npt.NDArray[Any]


@dataclass(frozen=True, slots=True)
class KAnonResult:
    """The anonymised rows (same form as the input, suppressed rows removed) and the metrics."""

    rows: list[dict[str, Any]] | dict[str, AnyArray]
    metrics: KAnonMetrics


def _check_k(k: object) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer):
        raise KAnonError(f"k must be an integer, got {k!r}")
    if k < 2:
        raise KAnonError(f"k must be at least 2, got {k}")
    return int(k)


def _check_qis(quasi_identifiers: object) -> list[str]:
    if isinstance(quasi_identifiers, str) or not isinstance(quasi_identifiers, Sequence):
        raise KAnonError(
            f"quasi_identifiers must be a list of column names, got {quasi_identifiers!r}"
        )
    qis = list(quasi_identifiers)
    if not qis:
        raise KAnonError("quasi_identifiers is empty: name at least one column")
    for q in qis:
        if not isinstance(q, str) or not q:
            raise KAnonError(f"quasi-identifier {q!r} is not a column name")
    dupes = sorted({q for q in qis if qis.count(q) > 1})
    if dupes:
        raise KAnonError(f"quasi-identifier {dupes[0]!r} is listed twice")
    return qis


def _check_columns(table: Table, names: Sequence[str], what: str) -> None:
    for name in names:
        if table.form == "columns" and name not in table.columns:
            raise KAnonError(
                f"unknown {what} {name!r}: the rows have no such column "
                f"(columns: {', '.join(sorted(table.columns))})"
            )
        if table.form == "records" and table.n:
            missing = next((i for i, r in enumerate(table.records) if name not in r), None)
            if missing is not None:
                raise KAnonError(f"unknown {what} {name!r}: row {missing} has no such column")


def _weights(table: Table, count: str | None) -> IntArray:
    if count is None:
        return np.ones(table.n, dtype=np.int64)
    return encode_counts(count, table.values(count))


def _hierarchies(
    hierarchies: Mapping[str, Hierarchy | TreeSpec] | None, qis: Sequence[str]
) -> dict[str, Hierarchy]:
    if hierarchies is None:
        return {}
    if not isinstance(hierarchies, Mapping):
        raise KAnonError("hierarchies must map column names to Hierarchy objects")
    out: dict[str, Hierarchy] = {}
    for column, h in hierarchies.items():
        if column not in qis:
            raise KAnonError(
                f"a hierarchy is given for {column!r}, which is not a quasi-identifier "
                f"({', '.join(qis)})"
            )
        out[column] = h if isinstance(h, Hierarchy) else Hierarchy(h, column=column)
    return out


def kanonize(
    rows: Rows,
    quasi_identifiers: Sequence[str],
    k: int = 5,
    *,
    hierarchies: Mapping[str, Hierarchy | TreeSpec] | None = None,
    suppression_limit: float = 0.02,
    sensitive: str | None = None,
    l: int | None = None,  # noqa: E741 - the l of l-diversity
    count: str | None = None,
) -> KAnonResult:
    """Generalise (and suppress at most `suppression_limit` of) `rows` so every combination of
    quasi-identifier values in the output is shared by at least `k` individuals.

    - `rows`: a list of dicts, or a mapping of column name -> 1-D numpy array (or list). The
      result has the same form: a list of new dicts, or a mapping of column -> array (the
      quasi-identifier columns become object arrays). Other columns pass through unchanged.
    - Numeric quasi-identifiers generalise to ranges: `"lo-hi"` (inclusive bounds, formatted as
      the values appear, so a negative bound reads `"-5--1"`), or the value itself when the
      class holds one value. Categorical quasi-identifiers generalise along their hierarchy to
      the lowest common ancestor's label (the value itself when the class holds one value); a
      categorical column without a hierarchy gets a one-level one (every value under `"*"`), and
      a numeric column with a hierarchy is generalised along it (values matched by `str()`).
    - Suppressed rows are removed from the output (order of the other rows is kept). At most
      `floor(suppression_limit * individuals)` individuals are suppressed, and only when it
      lowers the information loss (NCP, with a suppressed row counted as fully generalised).
    - `sensitive` and `l`: distinct l-diversity — every class also holds at least `l` distinct
      values of the `sensitive` column (compared as text).
    - `count`: a column holding each row's multiplicity (aggregated rows); class sizes are then
      sums of counts and suppression is measured in counted individuals. Rows with count 0
      describe nobody: they are dropped from the output and not counted.

    `result.metrics` holds the NCP (normalised certainty penalty, a suppressed individual
    counting 1), discernibility, average class size, suppressed individuals, classes and
    runtime; `KAnonMetrics` gives the exact definitions.

    Every result is checked (class sizes, l-diversity) before it is returned; the function
    raises `KAnonError` rather than return anything else — on bad input (unknown column,
    k < 2, a value missing from its hierarchy, mixed types...) and when the table holds fewer
    than `k` individuals or fewer than `l` distinct sensitive values. An empty table gives an
    empty result.
    """
    started = time.perf_counter()
    k = _check_k(k)
    qis = _check_qis(quasi_identifiers)
    if (
        isinstance(suppression_limit, bool)
        or not isinstance(suppression_limit, int | float)
        or not 0 <= suppression_limit <= 1
    ):
        raise KAnonError(
            f"suppression_limit must be a fraction in [0, 1], got {suppression_limit!r}"
        )
    if (sensitive is None) != (l is None):
        raise KAnonError("l-diversity needs both `sensitive` (a column name) and `l`")
    if l is not None and (isinstance(l, bool) or not isinstance(l, int) or l < 1):
        raise KAnonError(f"l must be a positive integer, got {l!r}")
    extras = [c for c in (sensitive, count) if c is not None]
    for c in extras:
        if c in qis:
            raise KAnonError(f"column {c!r} cannot be both a quasi-identifier and sensitive/count")
    if sensitive is not None and sensitive == count:
        raise KAnonError(f"column {sensitive!r} cannot be both sensitive and the count")
    trees = _hierarchies(hierarchies, qis)
    table = read_table(rows)
    _check_columns(table, qis, "quasi-identifier")
    if sensitive is not None:
        _check_columns(table, [sensitive], "sensitive column")
    if count is not None:
        _check_columns(table, [count], "count column")

    weights_all = _weights(table, count)
    work = np.flatnonzero(weights_all > 0)
    weights = weights_all[work]
    total = int(weights.sum())
    if total == 0:
        # Nobody to protect: an empty result of the same form.
        none = np.zeros(0, dtype=np.int64)
        empty = _output(table, qis, [[] for _ in qis], none, none)
        return KAnonResult(empty, compute_metrics(none, np.zeros(0), 0, 0, 0.0))
    if total < k:
        raise KAnonError(
            f"the table holds {total} individuals, fewer than k={k}: nothing can be published"
        )
    encoded: list[QI] = [
        encode_qi(name, _values(table, name, work), trees.get(name)) for name in qis
    ]
    sens_codes = None
    if sensitive is not None and l is not None:
        sens_codes = encode_sensitive(sensitive, _values(table, sensitive, work))
        distinct = int(np.unique(sens_codes).shape[0])
        if total and distinct < l:
            raise KAnonError(
                f"column {sensitive!r} holds {distinct} distinct values, fewer than l={l}: "
                "no class can be l-diverse"
            )
    budget = math.floor(suppression_limit * total + 1e-9)
    part = partition(encoded, weights, k, sensitive=sens_codes, ldiv=l, budget=budget)

    # Equivalence classes of the output: identical generalised values (relaxed cuts may give
    # two partitions the same ones).
    keys = (
        np.column_stack(
            [
                key
                for q, d in zip(encoded, range(len(qis)), strict=True)
                for key in q.out_key(part.lo[:, d], part.hi[:, d])
            ]
        )
        if part.lo.shape[0]
        else np.zeros((0, 1), dtype=np.int64)
    )
    _, first, out_class = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    out_class = out_class.reshape(-1)
    kept = part.row_class >= 0
    row_out = np.full(part.row_class.shape[0], -1, dtype=np.int64)
    row_out[kept] = out_class[part.row_class[kept]]
    n_out = first.shape[0]
    class_weight = np.bincount(row_out[kept], weights=weights[kept], minlength=n_out).astype(
        np.int64
    )
    suppressed = total - int(class_weight.sum())
    _verify(class_weight, row_out, kept, sens_codes, l, k, suppressed, budget)

    lo = part.lo[first]
    hi = part.hi[first]
    class_ncp = np.zeros(n_out, dtype=np.float64)
    for d, q in enumerate(encoded):
        class_ncp += q.ncp(lo[:, d], hi[:, d])
    class_ncp /= len(qis)
    labels = [q.labels(lo[:, d], hi[:, d]) for d, q in enumerate(encoded)]
    out_rows_idx = work[kept]  # input row numbers kept, in input order
    out_rows_class = row_out[kept]
    result_rows = _output(table, qis, labels, out_rows_idx, out_rows_class)
    metrics = compute_metrics(
        class_weight,
        class_ncp,
        suppressed,
        int((~kept).sum()),
        time.perf_counter() - started,
    )
    return KAnonResult(result_rows, metrics)


def _values(table: Table, name: str, work: IntArray) -> AnyArray:
    arr = table.values(name)
    return arr if work.shape[0] == arr.shape[0] else arr[work]


def _verify(
    class_weight: IntArray,
    row_out: IntArray,
    kept: npt.NDArray[np.bool_],
    sens: IntArray | None,
    ldiv: int | None,
    k: int,
    suppressed: int,
    budget: int,
) -> None:
    """The last line of defence: never return a class below k, or below l distinct values."""
    if class_weight.size and int(class_weight.min()) < k:
        raise KAnonError(f"internal error: a class of {int(class_weight.min())} < k={k}")
    if suppressed > budget:
        raise KAnonError(f"internal error: {suppressed} suppressed, over the budget {budget}")
    if sens is not None and ldiv is not None and class_weight.size:
        pairs = np.unique(row_out[kept] * (int(sens.max()) + 1) + sens[kept])
        distinct = np.bincount(pairs // (int(sens.max()) + 1), minlength=class_weight.shape[0])
        if int(distinct.min()) < ldiv:
            raise KAnonError(
                f"internal error: a class with {int(distinct.min())} < l={ldiv} values"
            )


def _output(
    table: Table,
    qis: Sequence[str],
    labels: list[list[Any]],
    rows_idx: IntArray,
    rows_class: IntArray,
) -> list[dict[str, Any]] | dict[str, AnyArray]:
    if table.form == "columns":
        out: dict[str, AnyArray] = {}
        for name, arr in table.columns.items():
            if name in qis:
                col = np.empty(len(labels[qis.index(name)]), dtype=object)
                col[:] = labels[qis.index(name)]
                out[name] = col[rows_class]
            else:
                out[name] = arr[rows_idx]
        return out
    per_class = list(zip(*labels, strict=True))
    records = table.records
    result = []
    for i, c in zip(rows_idx.tolist(), rows_class.tolist(), strict=True):
        row = dict(records[i])
        row.update(zip(qis, per_class[c], strict=True))
        result.append(row)
    return result


# --- checking ------------------------------------------------------------------------------


def _factorize(arr: AnyArray) -> IntArray:
    """Integer codes of equal values (Python equality for objects)."""
    if arr.dtype.kind in "iufbUS":
        return np.unique(arr, return_inverse=True)[1].reshape(-1).astype(np.int64)
    seen: dict[Any, int] = {}
    try:
        return np.fromiter(
            (seen.setdefault(v, len(seen)) for v in arr.tolist()), dtype=np.int64, count=arr.size
        )
    except TypeError as exc:
        raise KAnonError(f"unhashable value in a quasi-identifier: {exc}") from exc


def check_k(
    rows: Rows, quasi_identifiers: Sequence[str], k: int, *, count: str | None = None
) -> bool:
    """Whether every combination of quasi-identifier values is shared by at least `k`
    individuals (rows, or sums of the `count` column; rows with count 0 are ignored).

    Values are compared as they are (`"30-35"` and `30` differ). An empty table is k-anonymous.
    """
    k = _check_k(k)
    qis = _check_qis(quasi_identifiers)
    table = read_table(rows)
    _check_columns(table, qis, "quasi-identifier")
    if count is not None:
        _check_columns(table, [count], "count column")
    weights = _weights(table, count)
    live = weights > 0
    if not live.any():
        return True
    codes = np.column_stack([_factorize(table.values(q))[live] for q in qis])
    _, groups = np.unique(codes, axis=0, return_inverse=True)
    sizes = np.bincount(groups.reshape(-1), weights=weights[live])
    return bool(sizes.min() >= k)
