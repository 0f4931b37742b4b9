"""Reading a table (records or columns) and encoding quasi-identifiers as integer codes.

Every quasi-identifier becomes an integer code per row, in an order where a class's
generalisation depends only on its smallest and largest code:

- numeric columns: the rank of the value among the distinct values (`np.unique`); a class
  generalises to the range of its smallest and largest value;
- categorical columns: the depth-first number of the value's leaf in its hierarchy; a class
  generalises to the lowest common ancestor of its smallest and largest leaf.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from intelgraph_privacy.kanon.errors import KAnonError
from intelgraph_privacy.kanon.hierarchies import Hierarchy

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
AnyArray = npt.NDArray[Any]

Rows = Sequence[Mapping[str, Any]] | Mapping[str, Any]


@dataclass(slots=True)
class Table:
    """The input rows, in either of the two accepted forms."""

    form: Literal["records", "columns"]
    n: int
    records: Sequence[Mapping[str, Any]] = ()
    columns: Mapping[str, AnyArray] = field(default_factory=dict)

    def has_column(self, name: str) -> bool:
        if self.form == "columns":
            return name in self.columns
        return self.n == 0 or name in self.records[0]

    def values(self, name: str) -> AnyArray:
        """The column as a 1-D array (object dtype for records)."""
        if self.form == "columns":
            if name not in self.columns:
                raise KAnonError(f"unknown column {name!r} (columns: {sorted(self.columns)})")
            return self.columns[name]
        try:
            out = [row[name] for row in self.records]
        except KeyError:
            missing = next(i for i, row in enumerate(self.records) if name not in row)
            raise KAnonError(f"column {name!r} is missing from row {missing}") from None
        arr = np.empty(len(out), dtype=object)
        arr[:] = out
        return arr


def read_table(rows: Rows) -> Table:
    """Accept a list of dicts or a mapping of column name -> 1-D array (or list)."""
    if isinstance(rows, Mapping):
        columns: dict[str, AnyArray] = {}
        n: int | None = None
        for name, col in rows.items():
            if not isinstance(name, str):
                raise KAnonError(f"column names must be strings, got {name!r}")
            arr = col if isinstance(col, np.ndarray) else _as_object_array(col, name)
            if arr.ndim != 1:
                raise KAnonError(f"column {name!r} must be one-dimensional, got shape {arr.shape}")
            if n is None:
                n = arr.shape[0]
            elif arr.shape[0] != n:
                raise KAnonError(
                    f"column {name!r} has {arr.shape[0]} values, the others {n}: "
                    "columns must have the same length"
                )
            columns[name] = arr
        return Table("columns", n or 0, columns=columns)
    if isinstance(rows, str | bytes) or not isinstance(rows, Sequence):
        raise KAnonError(
            "rows must be a list of dicts or a mapping of column name -> array, "
            f"got {type(rows).__name__}"
        )
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise KAnonError(f"row {i} is a {type(row).__name__}, not a mapping")
    return Table("records", len(rows), records=rows)


def _as_object_array(col: Any, name: str) -> AnyArray:
    if isinstance(col, str | bytes) or not isinstance(col, Sequence):
        raise KAnonError(f"column {name!r} must be an array or a list, got {type(col).__name__}")
    arr = np.empty(len(col), dtype=object)
    arr[:] = list(col)
    return arr


# --- value typing ----------------------------------------------------------------------------

Kind = Literal["numeric", "text", "bool"]


def value_kind(name: str, arr: AnyArray) -> Kind:
    """Classify a column; raise on missing values, NaN and mixed types."""
    kind = arr.dtype.kind
    if kind in "iu":
        return "numeric"
    if kind == "f":
        bad = np.flatnonzero(~np.isfinite(arr))
        if bad.size:
            raise KAnonError(
                f"column {name!r}: value {arr[bad[0]].item()!r} at row {bad[0]} is not finite"
            )
        return "numeric"
    if kind in "US":
        return "text"
    if kind == "b":
        return "bool"
    if kind != "O":
        raise KAnonError(f"column {name!r}: unsupported dtype {arr.dtype}")
    types = set(map(type, arr.tolist()))
    if not types:
        return "text"
    if all(issubclass(t, str) for t in types):
        return "text"
    if all(issubclass(t, bool | np.bool_) for t in types):
        return "bool"
    if all(issubclass(t, Real) and not issubclass(t, bool | np.bool_) for t in types):
        if not all(issubclass(t, Integral) for t in types):
            for i, v in enumerate(arr.tolist()):
                if not math.isfinite(float(v)):
                    raise KAnonError(f"column {name!r}: value {v!r} at row {i} is not finite")
        return "numeric"
    if type(None) in types:
        row = next(i for i, v in enumerate(arr.tolist()) if v is None)
        raise KAnonError(f"column {name!r}: missing value (None) at row {row}")
    names = sorted(t.__name__ for t in types)
    if len(names) == 1:
        raise KAnonError(
            f"column {name!r}: unsupported type {names[0]} (numbers, strings or booleans only)"
        )
    first = arr[0]
    row = next(
        (i for i, v in enumerate(arr.tolist()) if type(v) is not type(first)),
        0,
    )
    raise KAnonError(
        f"column {name!r}: mixed types ({', '.join(names)}); row 0 is "
        f"{type(first).__name__}, row {row} is {type(arr[row]).__name__}"
    )


def numeric_array(name: str, arr: AnyArray) -> AnyArray:
    """A numeric column as int64 (all integers) or float64."""
    if arr.dtype.kind == "u" and arr.size and int(arr.max()) > np.iinfo(np.int64).max:
        raise KAnonError(f"column {name!r}: a value does not fit in 64 bits")
    if arr.dtype.kind in "iuf":
        return arr.astype(np.int64) if arr.dtype.kind in "iu" else arr.astype(np.float64)
    items = arr.tolist()
    try:
        if all(isinstance(v, Integral) for v in items):
            return np.asarray(items, dtype=np.int64)
        return np.asarray(items, dtype=np.float64)
    except OverflowError as exc:
        raise KAnonError(f"column {name!r}: a value does not fit in 64 bits") from exc


def text_array(arr: AnyArray) -> AnyArray:
    """A text or bool column as a numpy unicode array (fast to sort and compare)."""
    if arr.dtype.kind == "U":
        return arr
    if arr.dtype.kind == "b":
        return np.where(arr, "True", "False")
    return arr.astype(str)


# --- encoded quasi-identifiers ---------------------------------------------------------------


@dataclass(slots=True)
class NumericQI:
    """A numeric quasi-identifier: codes are ranks among the distinct values."""

    name: str
    codes: IntArray
    values: AnyArray  # sorted distinct values (int64 or float64)
    kind: Literal["numeric"] = "numeric"

    @property
    def span(self) -> float:
        return float(self.values[-1] - self.values[0]) if self.values.size else 0.0

    def ncp(self, lo: IntArray, hi: IntArray) -> FloatArray:
        """(max - min) / (domain max - domain min); 0 when the domain is one value."""
        span = self.span
        if span == 0:
            return np.zeros(lo.shape, dtype=np.float64)
        return (self.values[hi] - self.values[lo]).astype(np.float64) / span

    def strict_cuts(self, lo: IntArray, hi: IntArray, mid: IntArray) -> tuple[IntArray, IntArray]:
        """Two thresholds around `mid`: left = codes < t (values below mid, or up to it)."""
        del lo, hi
        return mid, mid + 1

    def out_key(self, lo: IntArray, hi: IntArray) -> list[IntArray]:
        return [lo, hi]

    def labels(self, lo: IntArray, hi: IntArray) -> list[Any]:
        """`value` for a one-value class, else `"lo-hi"` (inclusive, as the values appear)."""
        vals = self.values.tolist()
        return [
            vals[a] if a == b else f"{vals[a]}-{vals[b]}"
            for a, b in zip(lo.tolist(), hi.tolist(), strict=True)
        ]


@dataclass(slots=True)
class CategoricalQI:
    """A categorical quasi-identifier: codes are leaf numbers of its hierarchy."""

    name: str
    codes: IntArray
    hierarchy: Hierarchy
    leaf_values: dict[int, Any]  # leaf number -> the value as it appears in the input
    kind: Literal["categorical"] = "categorical"

    _table: FloatArray | None = None

    def __post_init__(self) -> None:
        # NCP of every (lo, hi) pair of leaves, so the partitioning's many evaluations are one
        # gather each; hierarchies too large for a table fall back to the ancestor walk.
        n = len(self.hierarchy)
        if n * n <= _TABLE_LIMIT:
            lo = np.repeat(np.arange(n, dtype=np.int64), n)
            hi = np.tile(np.arange(n, dtype=np.int64), n)
            self._table = self._ncp_walk(lo, hi)

    def lca(self, lo: IntArray, hi: IntArray) -> IntArray:
        return self.hierarchy.lca_nodes(lo, hi)

    def _ncp_walk(self, lo: IntArray, hi: IntArray) -> FloatArray:
        total = len(self.hierarchy)
        counts = self.hierarchy.node_leaf_counts(self.lca(lo, hi))
        return np.where(lo == hi, 0.0, counts / total)

    def ncp(self, lo: IntArray, hi: IntArray) -> FloatArray:
        """leaves(LCA) / leaves(hierarchy); 0 when the class holds one value."""
        if self._table is not None:
            out: FloatArray = self._table[lo * len(self.hierarchy) + hi]
            return out
        return self._ncp_walk(lo, hi)

    def strict_cuts(self, lo: IntArray, hi: IntArray, mid: IntArray) -> tuple[IntArray, IntArray]:
        """The bounds of the LCA's child that holds `mid`: cuts along the hierarchy."""
        h = self.hierarchy
        child = h.child_towards(self.lca(lo, hi), mid)
        first, last = h.node_ranges(child)
        return first, last

    def out_key(self, lo: IntArray, hi: IntArray) -> list[IntArray]:
        return [self.lca(lo, hi)]

    def labels(self, lo: IntArray, hi: IntArray) -> list[Any]:
        """The input value for a one-value class, else the LCA's label."""
        nodes = self.lca(lo, hi).tolist()
        names = self.hierarchy.node_labels(nodes)
        return [
            self.leaf_values[a] if a == b else name
            for a, b, name in zip(lo.tolist(), hi.tolist(), names, strict=True)
        ]


QI = NumericQI | CategoricalQI

#: Largest (leaves x leaves) NCP table a categorical QI precomputes (8 MB of float64).
_TABLE_LIMIT = 1 << 20


def encode_qi(name: str, arr: AnyArray, hierarchy: Hierarchy | None) -> QI:
    """Encode one quasi-identifier column (already restricted to the rows that count)."""
    kind = value_kind(name, arr)
    if hierarchy is None and kind == "numeric":
        values, inverse = np.unique(numeric_array(name, arr), return_inverse=True)
        return NumericQI(name, inverse.astype(np.int64), values)
    if kind == "numeric":
        uniques, inverse = np.unique(numeric_array(name, arr), return_inverse=True)
        originals: list[Any] = uniques.tolist()
        texts = [str(v) for v in originals]
    else:
        uniques, inverse = np.unique(text_array(arr), return_inverse=True)
        texts = uniques.tolist()
        originals = texts if kind == "text" else [t == "True" for t in texts]
    if hierarchy is None:
        hierarchy = Hierarchy.flat(texts, column=name)
    positions, missing = hierarchy.leaf_positions(texts)
    if missing:
        bad = texts[missing[0]]
        row = int(np.flatnonzero(inverse == missing[0])[0])
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise KAnonError(
            f"column {name!r}: value {bad!r} (row {row}) is not in its hierarchy{more}"
        )
    leaf_values = dict(zip(positions.tolist(), originals, strict=True))
    return CategoricalQI(name, positions[inverse.reshape(-1)], hierarchy, leaf_values)


def encode_counts(name: str, arr: AnyArray) -> IntArray:
    """The multiplicity column: non-negative integers."""
    if arr.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    kind = value_kind(name, arr)
    if kind != "numeric":
        raise KAnonError(f"count column {name!r} must hold integers")
    nums = numeric_array(name, arr)
    if nums.dtype.kind == "f":
        bad = np.flatnonzero(nums != np.round(nums))
        if bad.size:
            raise KAnonError(
                f"count column {name!r}: value {nums[bad[0]]!r} at row {bad[0]} is not an integer"
            )
        nums = nums.astype(np.int64)
    neg = np.flatnonzero(nums < 0)
    if neg.size:
        raise KAnonError(f"count column {name!r}: value {nums[neg[0]]} at row {neg[0]} is negative")
    return nums.astype(np.int64)


def encode_sensitive(name: str, arr: AnyArray) -> IntArray:
    """Codes of the sensitive column (equal codes = equal values as text, a conservative key)."""
    if arr.dtype.kind in "iufb":
        _, inverse = np.unique(arr, return_inverse=True)
    else:
        _, inverse = np.unique(np.asarray([str(v) for v in arr.tolist()]), return_inverse=True)
    return inverse.reshape(-1).astype(np.int64)
