"""Generalisation hierarchies for categorical quasi-identifiers, and their YAML form.

A hierarchy is a tree: the values of a column are its leaves, groups of values are its inner
nodes, and the root is `"*"` (any value). Generalising a set of values gives their lowest common
ancestor: `{"Divorced", "Separated"}` becomes `"Separated-or-divorced"` in

```yaml
hierarchies:
  marital-status:
    Never-married:            # a leaf (a key without children)
    Married: [Married-civ-spouse, Married-AF-spouse]
    Partner-absent:
      Separated-or-divorced: [Divorced, Separated]
      Alone: [Widowed, Married-spouse-absent]
```

A tree is written as a mapping (group label -> its children; a key without children is a leaf),
a list (of leaves and of one-key mappings for groups) or a mix of both. The root `"*"` is
implicit (writing it as the single top key is allowed too). Every label, leaf or group, appears
once in its tree. Labels are strings; numbers are accepted and converted with `str()`; YAML
booleans (`yes`, `no`, `on`, `off` unquoted) are refused because they are almost always a country
code or a word that YAML 1.1 turned into `true`/`false` — quote them.

The leaves are numbered in depth-first order, so every node covers a contiguous range of leaf
numbers; the partitioning works on those numbers and the lowest common ancestor of a set of
leaves is that of its smallest and largest number.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import yaml

from intelgraph_privacy.kanon.errors import KAnonError
from intelgraph_privacy.yamlfile import DuplicateKeyError, UniqueKeyLoader

ROOT = "*"

#: What a (sub)tree may be written as: a mapping of labels to subtrees, a list, or a leaf.
TreeSpec = Mapping[Any, Any] | Sequence[Any] | str | int | float | None

IntArray = npt.NDArray[np.int64]


class Hierarchy:
    """A categorical generalisation tree: values (leaves) -> groups -> `"*"`.

    `Hierarchy({"Married": ["Married-civ-spouse", "Married-AF-spouse"], "Never-married": None})`
    builds one in code; `load_hierarchies` reads them from YAML; `Hierarchy.flat(values)` is the
    one-level tree (every value directly under `"*"`) used for categorical columns without one.
    """

    __slots__ = (
        "_anc",
        "_children",
        "_depth",
        "_hi",
        "_index",
        "_labels",
        "_leaf_index",
        "_leaf_node",
        "_lo",
        "_parent",
        "column",
        "source",
    )

    def __init__(
        self, tree: TreeSpec, *, column: str | None = None, source: str | None = None
    ) -> None:
        #: The column this hierarchy belongs to, and the file it came from (for error messages).
        self.column = column
        self.source = source
        labels: list[str] = [ROOT]
        parent: list[int] = [-1]
        depth: list[int] = [0]
        children: list[list[int]] = [[]]
        index: dict[str, int] = {ROOT: 0}

        def add(label: Any, parent_id: int, where: str) -> int:
            text = self._label(label, where)
            if text in index:
                raise self._error(f"{text!r} appears twice ({where})")
            node = len(labels)
            index[text] = node
            labels.append(text)
            parent.append(parent_id)
            depth.append(depth[parent_id] + 1)
            children.append([])
            children[parent_id].append(node)
            return node

        def walk(spec: Any, parent_id: int, where: str) -> None:
            if isinstance(spec, Mapping):
                if not spec:
                    raise self._error(f"empty group ({where})")
                for key, sub in spec.items():
                    node = add(key, parent_id, where)
                    if sub is not None:
                        walk(sub, node, f"under {labels[node]!r}")
            elif isinstance(spec, list | tuple):
                if not spec:
                    raise self._error(f"empty group ({where})")
                for item in spec:
                    if isinstance(item, Mapping):
                        walk(item, parent_id, where)
                    elif isinstance(item, list | tuple):
                        raise self._error(
                            f"a list directly inside a list ({where}); name the group"
                        )
                    else:
                        add(item, parent_id, where)
            else:
                add(spec, parent_id, where)

        if isinstance(tree, Mapping) and len(tree) == 1 and next(iter(tree)) == ROOT:
            tree = next(iter(tree.values()))
        if tree is None:
            raise self._error("the tree is empty")
        walk(tree, 0, "under '*'")

        # Depth-first numbering of the leaves, so each node covers a contiguous leaf range.
        n = len(labels)
        lo = np.zeros(n, dtype=np.int64)
        hi = np.zeros(n, dtype=np.int64)
        leaf_node: list[int] = []
        stack: list[tuple[int, bool]] = [(0, False)]
        while stack:
            node, done = stack.pop()
            if done:
                hi[node] = len(leaf_node)
                continue
            lo[node] = len(leaf_node)
            if not children[node]:
                leaf_node.append(node)
                hi[node] = len(leaf_node)
                continue
            stack.append((node, True))
            stack.extend((child, False) for child in reversed(children[node]))
        if not leaf_node:
            raise self._error("the tree has no values")
        self._labels = labels
        self._parent = np.asarray(parent, dtype=np.int64)
        self._depth = np.asarray(depth, dtype=np.int64)
        self._children = children
        self._index = index
        self._lo = lo
        self._hi = hi
        self._leaf_node = np.asarray(leaf_node, dtype=np.int64)
        self._leaf_index = {labels[node]: i for i, node in enumerate(leaf_node)}
        # anc[d, leaf] = the leaf's ancestor at depth d (the leaf itself below its own depth).
        max_depth = int(self._depth.max())
        anc = np.empty((max_depth + 1, len(leaf_node)), dtype=np.int64)
        for i, node in enumerate(leaf_node):
            path = [node]
            while parent[path[-1]] >= 0:
                path.append(parent[path[-1]])
            path.reverse()
            anc[: len(path), i] = path
            anc[len(path) :, i] = node
        self._anc = anc

    # --- construction helpers ---------------------------------------------------------------

    @classmethod
    def flat(cls, values: Iterable[Any], *, column: str | None = None) -> Hierarchy:
        """The one-level hierarchy: every distinct value (sorted as text) directly under `"*"`."""
        distinct = sorted({str(v) for v in values})
        return cls(distinct, column=column, source="automatic")

    def _where(self) -> str:
        parts = [p for p in (self.source, f"column {self.column!r}" if self.column else None) if p]
        return ": ".join(parts) + ": " if parts else "hierarchy: "

    def _error(self, problem: str) -> KAnonError:
        return KAnonError(f"{self._where()}{problem}")

    def _label(self, label: Any, where: str) -> str:
        if isinstance(label, bool) or label is None:
            raise self._error(
                f"label {label!r} ({where}) is not a string; quote it in YAML "
                "(unquoted yes/no/on/off/null are read as booleans or null)"
            )
        if isinstance(label, int | float):
            label = str(label)
        if not isinstance(label, str):
            raise self._error(f"label {label!r} ({where}) is not a string")
        if not label:
            raise self._error(f"empty label ({where})")
        if label == ROOT:
            raise self._error(f"{ROOT!r} is the root; it cannot appear inside the tree ({where})")
        return label

    # --- queries ----------------------------------------------------------------------------

    @property
    def leaves(self) -> tuple[str, ...]:
        """The values of the column, in depth-first order."""
        return tuple(self._labels[n] for n in self._leaf_node)

    @property
    def labels(self) -> tuple[str, ...]:
        """Every node label (root first, depth-first order)."""
        return tuple(self._labels)

    @property
    def height(self) -> int:
        """The number of levels below the root."""
        return int(self._depth.max())

    def __len__(self) -> int:
        return len(self._leaf_node)

    def __contains__(self, value: object) -> bool:
        return str(value) in self._leaf_index

    def __repr__(self) -> str:
        name = f" {self.column!r}" if self.column else ""
        return f"<Hierarchy{name}: {len(self)} values, {len(self._labels) - len(self)} groups>"

    def _node(self, label: object) -> int:
        node = self._index.get(str(label))
        if node is None:
            raise self._error(f"{str(label)!r} is not in the hierarchy")
        return node

    def leaf_count(self, label: object) -> int:
        """How many values `label` stands for (1 for a value)."""
        node = self._node(label)
        return int(self._hi[node] - self._lo[node])

    def parent(self, label: object) -> str | None:
        """The group directly above `label` (None for the root)."""
        p = int(self._parent[self._node(label)])
        return None if p < 0 else self._labels[p]

    def children(self, label: object) -> tuple[str, ...]:
        """The nodes directly below `label` (empty for a value)."""
        return tuple(self._labels[c] for c in self._children[self._node(label)])

    def ancestors(self, value: object) -> tuple[str, ...]:
        """`value` itself, then each group above it, up to `"*"`."""
        node = self._node(value)
        out = []
        while node >= 0:
            out.append(self._labels[node])
            node = int(self._parent[node])
        return tuple(out)

    def is_generalisation(self, label: object, value: object) -> bool:
        """Whether `label` is `value` or one of its ancestors."""
        return str(label) in self.ancestors(value)

    def generalise(self, values: Iterable[object]) -> str:
        """The label of the lowest common ancestor of `values` (the value itself if only one)."""
        positions = [self._leaf_position(v) for v in values]
        if not positions:
            raise self._error("cannot generalise an empty set of values")
        lo = np.asarray([min(positions)], dtype=np.int64)
        hi = np.asarray([max(positions)], dtype=np.int64)
        return self._labels[int(self.lca_nodes(lo, hi)[0])]

    def _leaf_position(self, value: object) -> int:
        pos = self._leaf_index.get(str(value))
        if pos is None:
            raise self._error(f"value {str(value)!r} is not in the hierarchy")
        return pos

    def to_tree(self) -> dict[str, Any]:
        """The tree as nested mappings (a value maps to None), the form the YAML file uses."""

        def sub(node: int) -> Any:
            kids = self._children[node]
            return {self._labels[c]: sub(c) for c in kids} if kids else None

        return {ROOT: sub(0)}

    # --- vectorised internals (leaf numbers, node ids) -----------------------------------------

    def leaf_positions(self, texts: Sequence[str]) -> tuple[IntArray, list[int]]:
        """Leaf numbers of `texts`, and the indices of texts that are not leaves."""
        missing = [i for i, t in enumerate(texts) if t not in self._leaf_index]
        codes = np.asarray([self._leaf_index.get(t, -1) for t in texts], dtype=np.int64)
        return codes, missing

    def lca_nodes(self, lo: IntArray, hi: IntArray) -> IntArray:
        """Node ids of the lowest common ancestors of leaf numbers `lo[i]` and `hi[i]`."""
        a = self._anc[:, lo]
        same = a == self._anc[:, hi]
        # Paths agree from the root down to the LCA, then differ for good.
        depth = same.sum(axis=0) - 1
        nodes: IntArray = a[depth, np.arange(lo.shape[0])]
        return nodes

    def node_leaf_counts(self, nodes: IntArray) -> IntArray:
        """How many leaves each node covers."""
        return self._hi[nodes] - self._lo[nodes]

    def node_ranges(self, nodes: IntArray) -> tuple[IntArray, IntArray]:
        """The leaf range `[lo, hi)` each node covers."""
        return self._lo[nodes], self._hi[nodes]

    def child_towards(self, nodes: IntArray, leaves: IntArray) -> IntArray:
        """For each inner node, its child on the path to `leaves[i]` (a leaf below it)."""
        below = np.minimum(self._depth[nodes] + 1, self._anc.shape[0] - 1)
        return self._anc[below, leaves]

    def node_labels(self, nodes: Iterable[int]) -> list[str]:
        return [self._labels[int(n)] for n in nodes]

    def leaf_nodes(self, leaves: IntArray) -> IntArray:
        return self._leaf_node[leaves]


# --- YAML ----------------------------------------------------------------------------------


def hierarchies_from_mapping(raw: Any, *, source: str = "<hierarchies>") -> dict[str, Hierarchy]:
    """Build hierarchies from decoded YAML/JSON: `{"hierarchies": {column: tree, ...}}`."""
    if not isinstance(raw, Mapping) or set(raw) != {"hierarchies"}:
        raise KAnonError(
            f"{source}: the file must be a mapping with a single key 'hierarchies' "
            "(column name -> tree)"
        )
    columns = raw["hierarchies"]
    if not isinstance(columns, Mapping) or not columns:
        raise KAnonError(f"{source}: 'hierarchies' must map column names to trees")
    out: dict[str, Hierarchy] = {}
    for column, tree in columns.items():
        if not isinstance(column, str) or not column:
            raise KAnonError(f"{source}: column name {column!r} is not a string")
        if tree is None:
            raise KAnonError(f"{source}: column {column!r}: the tree is empty")
        out[column] = Hierarchy(tree, column=column, source=source)
    return out


def load_hierarchies(path: str | Path) -> dict[str, Hierarchy]:
    """Read hierarchies from a YAML file (`hierarchies: {column: tree}`); see the module doc.

    Raises `KAnonError` naming the file, the column and the problem (unreadable file, invalid
    YAML, duplicate key, a label listed twice, an empty group, a boolean label...).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise KAnonError(f"{path}: cannot read hierarchies: {exc.strerror}") from exc
    try:
        raw = yaml.load(text, Loader=UniqueKeyLoader)  # a SafeLoader subclass
    except DuplicateKeyError as exc:
        raise KAnonError(f"{path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise KAnonError(f"{path}: not valid YAML: {exc}") from exc
    return hierarchies_from_mapping(raw, source=str(path))
