"""Multidimensional Mondrian-style partitioning, vectorised over all partitions at once.

The partitions ("segments") of one round are processed together, like a kd-tree built level by
level, with no per-row (or per-partition) Python loop. Each quasi-identifier (QI) has its own
permutation of the active rows, sorted by segment, then by that QI's code (ties by the other
QIs' codes), so within a segment:

- the smallest and largest code of QI d are the first and last entries of permutation d;
- a cut of QI d is a position in permutation d: the rows before it go left;
- the weight on each side of every possible cut comes from prefix sums of the weights along the
  permutation, and the extents of every QI on each side from running minima and maxima
  (`np.minimum.accumulate` on codes offset by segment, so they restart at each segment);
- applying the chosen cuts is a stable partition of every permutation (cumulative sums): the
  permutations stay sorted and are never sorted again.

Split rule. Classic Mondrian (LeFevre et al., ICDE 2006) cuts the QI with the widest normalised
extent at its median. Here the QI is chosen the same way (the widest extent, measured as the
segment's NCP on that QI; ties — e.g. several categories still at `"*"` — are all tried), but
the cut is the best one along that QI rather than the median: the position, among all that leave
both sides at least k (and l-diverse when asked), that minimises the certainty penalty of the two
halves, `sum over sides of weight * sum over QIs of NCP`, the most balanced one on ties. A cut may
fall inside a run of equal values (a "relaxed" cut, the rows being ordered by the other QIs
there), so two classes can share a generalised value; they are then one equivalence class of the
output. When the widest QIs have no valid cut, the others are tried; a segment with no valid cut
at all becomes a class.

Suppression. Once no segment can be split, each class with spare weight (more than k) is offered
a trim: dropping a prefix or suffix of one QI's order (its lowest or highest values), keeping at
least k (l-diverse) weight. A trim pays when the class's penalty falls by more than the trimmed
rows cost as suppressed rows (NCP 1 on every QI). The trims with the best gain per suppressed
weight are taken within the suppression budget, and the trimmed classes go back to the
partitioning (they may split again); this repeats while trims pay (at most 12 rounds).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from intelgraph_privacy.kanon.encoding import QI

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

#: Offset per segment in running extremes and search keys (codes stay below 2**32).
_SHIFT = np.int64(1 << 32)
_BIG = np.int64(1 << 62)
#: At most this many rounds of trimming (each round trims every class at most once).
_MAX_TRIM_ROUNDS = 12
#: Extents within this of the widest count as tied for "widest QI first".
_TIED = 1e-12


@dataclass(slots=True)
class Partition:
    """The result: a class per row (-1 = suppressed) and each class's code extents per QI."""

    row_class: IntArray
    lo: IntArray  # shape (classes, QIs)
    hi: IntArray


def _cumsum0(a: IntArray) -> IntArray:
    out = np.zeros(a.shape[0] + 1, dtype=np.int64)
    np.cumsum(a, out=out[1:])
    return out


@dataclass(slots=True)
class _Store:
    """Segments of rows, each held once per QI, sorted by that QI's code within the segment."""

    perms: list[IntArray]
    bounds: IntArray  # segment s holds positions bounds[s] .. bounds[s+1]-1

    @property
    def count(self) -> int:
        return int(self.bounds.shape[0]) - 1

    def select(self, keep: BoolArray) -> _Store:
        """The segments where `keep` is true, compacted (orders preserved)."""
        if keep.all():
            return self
        sizes = np.diff(self.bounds)
        pos_keep = np.repeat(keep, sizes)
        return _Store([p[pos_keep] for p in self.perms], _cumsum0(sizes[keep]))

    @staticmethod
    def concat(stores: Sequence[_Store], dims: int) -> _Store:
        stores = [s for s in stores if s.count]
        if len(stores) == 1:
            return stores[0]
        if not stores:
            empty = np.zeros(0, dtype=np.int64)
            return _Store([empty for _ in range(dims)], np.zeros(1, dtype=np.int64))
        perms = [np.concatenate([s.perms[d] for s in stores]) for d in range(dims)]
        return _Store(perms, _cumsum0(np.concatenate([np.diff(s.bounds) for s in stores])))


class _Round:
    """Per-round views of a store: layout, codes in each order, prefix weights, extents."""

    def __init__(
        self,
        store: _Store,
        qis: Sequence[QI],
        weights: IntArray,
        unit: bool,
        sensitive: IntArray | None,
        n_sens: int,
    ) -> None:
        self.store = store
        self.qis = qis
        b = store.bounds
        self.starts = b[:-1]
        self.ends = b[1:]
        self.sizes = self.ends - self.starts
        self.m = int(b[-1])
        self.seg_of_pos = np.repeat(np.arange(store.count, dtype=np.int64), self.sizes)
        self.codes = [q.codes[p] for q, p in zip(qis, store.perms, strict=True)]
        if unit:
            cw = np.arange(self.m + 1, dtype=np.int64)
            self.cw = [cw for _ in qis]
        else:
            self.cw = [_cumsum0(weights[p]) for p in store.perms]
        self.weight = self.cw[0][self.ends] - self.cw[0][self.starts]
        self.lo = [c[self.starts] for c in self.codes]
        self.hi = [c[self.ends - 1] for c in self.codes]
        #: NCP of each segment on each QI, shape (QIs, segments).
        self.ncp = np.stack(
            [q.ncp(lo, hi) for q, lo, hi in zip(qis, self.lo, self.hi, strict=True)]
        )
        self.sensitive = sensitive
        self.n_sens = n_sens
        self._distinct: dict[int, tuple[IntArray, IntArray]] = {}

    def distinct(self, d: int) -> tuple[IntArray, IntArray]:
        """Prefix counts, along order d, of first and of last occurrences of each sensitive
        value within its segment: distinct values of [a, b) = first[b] - first[a] when a is a
        segment start, = last[b] - last[a] when b is a segment end."""
        if d not in self._distinct:
            assert self.sensitive is not None
            key = self.seg_of_pos * self.n_sens + self.sensitive[self.store.perms[d]]
            m = key.shape[0]
            is_first = np.zeros(m, dtype=np.int64)
            is_first[np.unique(key, return_index=True)[1]] = 1
            is_last = np.zeros(m, dtype=np.int64)
            is_last[m - 1 - np.unique(key[::-1], return_index=True)[1]] = 1
            self._distinct[d] = (_cumsum0(is_first), _cumsum0(is_last))
        return self._distinct[d]


def _running_extremes(g: IntArray, seg: IntArray) -> tuple[IntArray, IntArray]:
    """Running min and max of `g`, restarting where `seg` changes (seg must be monotone)."""
    offset = seg * _SHIFT
    return (
        np.minimum.accumulate(g - offset) + offset,
        np.maximum.accumulate(g + offset) - offset,
    )


@dataclass(slots=True)
class _Scan:
    """Every position of some segments in one order, with the penalty of each side of a cut
    there: left = [segment start, position), right = [position, segment end)."""

    segs: IntArray  # the segments scanned
    pos: IntArray  # global positions scanned (whole segments, in order)
    local_seg: IntArray  # index into `segs` of each scanned position
    local_starts: IntArray  # where each scanned segment begins in `pos`
    left_sum: FloatArray  # sum over QIs of the NCP of [start, position)
    right_sum: FloatArray  # sum over QIs of the NCP of [position, end)
    left_weight: IntArray
    total: IntArray  # the segment's weight, per position


def _scan(rnd: _Round, d: int, segs: IntArray) -> _Scan:
    sizes = rnd.sizes[segs]
    local_starts = _cumsum0(sizes)
    n = int(local_starts[-1])
    local_seg = np.repeat(np.arange(segs.shape[0], dtype=np.int64), sizes)
    local_starts = local_starts[:-1]
    if segs.shape[0] == rnd.starts.shape[0]:
        pos = np.arange(n, dtype=np.int64)
    else:
        pos = np.repeat(rnd.starts[segs] - local_starts, sizes) + np.arange(n, dtype=np.int64)
    perm = rnd.store.perms[d][pos]
    left_sum = np.zeros(n, dtype=np.float64)
    right_sum = np.zeros(n, dtype=np.float64)
    rev_seg = local_seg[::-1] * -1
    for e, q in enumerate(rnd.qis):
        g = rnd.codes[d][pos] if e == d else q.codes[perm]
        pmin, pmax = _running_extremes(g, local_seg)
        smin, smax = _running_extremes(g[::-1], rev_seg)
        # The left side of a cut at i ends at i - 1 (garbage at a segment start: never valid).
        left_sum[1:] += q.ncp(pmin[:-1], pmax[:-1])
        right_sum += q.ncp(smin[::-1], smax[::-1])
    cw = rnd.cw[d]
    left_weight = cw[pos] - cw[rnd.starts[segs]][local_seg]
    total = rnd.weight[segs][local_seg]
    return _Scan(segs, pos, local_seg, local_starts, left_sum, right_sum, left_weight, total)


def _first_best(
    scan: _Scan, score: FloatArray, ok: BoolArray, tie: FloatArray
) -> tuple[FloatArray, IntArray]:
    """Per scanned segment: the lowest score among `ok` positions (inf if none), and the
    position reaching it with the lowest `tie` (then the first)."""
    score = np.where(ok, score, np.inf)
    best = np.minimum.reduceat(score, scan.local_starts)
    near = best[scan.local_seg]
    at_best = ok & (score <= near + 1e-12 * (np.abs(near) + 1))
    tie_score = np.where(at_best, tie, np.inf)
    best_tie = np.minimum.reduceat(tie_score, scan.local_starts)
    hit = at_best & (tie_score == best_tie[scan.local_seg])
    idx = np.where(hit, np.arange(scan.pos.shape[0], dtype=np.int64), _BIG)
    first = np.minimum.reduceat(idx, scan.local_starts)
    found = first < _BIG
    cut = np.full(scan.segs.shape[0], -1, dtype=np.int64)
    cut[found] = scan.pos[first[found]]
    return best, cut


def _best_cuts(
    rnd: _Round, d: int, segs: IntArray, k: int, l: int | None
) -> tuple[FloatArray, IntArray]:
    """The cheapest valid cut of order d in each of `segs` (cost inf, cut -1 when none)."""
    scan = _scan(rnd, d, segs)
    wl = scan.left_weight
    wr = scan.total - wl
    ok = (wl >= k) & (wr >= k)
    ok[scan.local_starts] = False
    if l is not None and rnd.sensitive is not None:
        first, last = rnd.distinct(d)
        seg_start = rnd.starts[segs][scan.local_seg]
        seg_end = rnd.ends[segs][scan.local_seg]
        ok &= (first[scan.pos] - first[seg_start] >= l) & (last[seg_end] - last[scan.pos] >= l)
    cost = wl * scan.left_sum + wr * scan.right_sum
    return _first_best(scan, cost, ok, np.abs(wl - wr).astype(np.float64))


def _stable_split(
    perm: IntArray, right: BoolArray, seg_of_pos: IntArray, starts: IntArray, nleft: IntArray
) -> IntArray:
    """Move each segment's left rows before its right rows, keeping their order."""
    rights_before = np.cumsum(right) - right
    seg_start = starts[seg_of_pos]
    r_rank = rights_before - rights_before[starts][seg_of_pos]
    l_rank = np.arange(perm.shape[0], dtype=np.int64) - seg_start - r_rank
    newpos = np.where(right, seg_start + nleft[seg_of_pos] + r_rank, seg_start + l_rank)
    out = np.empty_like(perm)
    out[newpos] = perm
    return out


def _initial_orders(qis: Sequence[QI]) -> list[IntArray]:
    """For each QI, the rows sorted by its code, ties by the next QIs' codes (so cuts inside a
    run of equal values still separate rows by the other QIs)."""
    dims = len(qis)
    orders = []
    for d in range(dims):
        keys = [qis[(d + j) % dims].codes for j in range(dims)]
        orders.append(np.lexsort(keys[::-1]).astype(np.int64))  # last key sorts first
    return orders


class _Partitioner:
    def __init__(
        self,
        qis: Sequence[QI],
        weights: IntArray,
        k: int,
        sensitive: IntArray | None,
        l: int | None,
    ) -> None:
        self.qis = qis
        self.dims = len(qis)
        self.weights = weights
        self.k = k
        self.l = l if sensitive is not None else None
        self.sensitive = sensitive
        self.n_sens = int(sensitive.max()) + 1 if sensitive is not None and sensitive.size else 1
        self.unit = bool(np.all(weights == 1))
        self.side = np.zeros(weights.shape[0], dtype=np.bool_)

    def round(self, store: _Store) -> _Round:
        return _Round(store, self.qis, self.weights, self.unit, self.sensitive, self.n_sens)

    def split_all(self, active: _Store, done: list[_Store]) -> None:
        """Split segments round by round; append those that cannot split to `done`."""
        k = self.k
        while active.count:
            rnd = self.round(active)
            widest = rnd.ncp.max(axis=0)
            can = (rnd.weight >= 2 * k) & (rnd.sizes >= 2) & (widest > 0)
            if not can.all():
                done.append(active.select(~can))
                active = active.select(can)
                if not active.count:
                    return
                rnd = self.round(active)
                widest = rnd.ncp.max(axis=0)
            best_dim, best_cut = self._choose(rnd, widest)
            splits = best_dim >= 0
            if not splits.all():
                done.append(active.select(~splits))
                old_starts = rnd.starts[splits]
                active = active.select(splits)
                best_dim = best_dim[splits]
                best_cut = best_cut[splits] - old_starts + active.bounds[:-1]
                if not active.count:
                    return
            active = self._apply(active, best_dim, best_cut)

    def _choose(self, rnd: _Round, widest: FloatArray) -> tuple[IntArray, IntArray]:
        """Per segment: the QI (widest first) and position of its cut; -1 when none."""
        count = rnd.starts.shape[0]
        best_cost = np.full(count, np.inf)
        best_dim = np.full(count, -1, dtype=np.int64)
        best_cut = np.full(count, -1, dtype=np.int64)
        tied = (rnd.ncp >= widest - _TIED) & (rnd.ncp > 0)
        for attempt in (tied, ~tied & (rnd.ncp > 0)):
            todo = best_dim < 0
            for d in range(self.dims):
                segs = np.flatnonzero(todo & attempt[d])
                if not segs.size:
                    continue
                cost, cut = _best_cuts(rnd, d, segs, self.k, self.l)
                better = (cut >= 0) & (cost < best_cost[segs])
                take = segs[better]
                best_cost[take] = cost[better]
                best_dim[take] = d
                best_cut[take] = cut[better]
            if (best_dim >= 0).all():
                break
        return best_dim, best_cut

    def _apply(self, active: _Store, best_dim: IntArray, best_cut: IntArray) -> _Store:
        """Cut every segment of `active` at its chosen position."""
        starts = active.bounds[:-1]
        sizes = np.diff(active.bounds)
        seg_of_pos = np.repeat(np.arange(active.count, dtype=np.int64), sizes)
        pos = np.arange(int(active.bounds[-1]), dtype=np.int64)
        cut_of_pos = best_cut[seg_of_pos]
        dim_of_pos = best_dim[seg_of_pos]
        side = self.side
        for d in range(self.dims):
            chose = dim_of_pos == d
            if chose.any():
                side[active.perms[d][chose]] = pos[chose] >= cut_of_pos[chose]
        nleft = best_cut - starts
        perms = [_stable_split(p, side[p], seg_of_pos, starts, nleft) for p in active.perms]
        bounds = np.empty(2 * active.count + 1, dtype=np.int64)
        bounds[0:-1:2] = starts
        bounds[1::2] = best_cut
        bounds[-1] = active.bounds[-1]
        return _Store(perms, bounds)

    def trim(self, finals: _Store, budget: int) -> tuple[_Store, _Store, int]:
        """One round of suppression: (trimmed classes, untouched classes, weight spent)."""
        k, dims = self.k, self.dims
        rnd = self.round(finals)
        segs = np.flatnonzero((rnd.weight > k) & (rnd.sizes >= 2) & (rnd.ncp.max(axis=0) > 0))
        nothing = (_Store.concat([], dims), finals, 0)
        if not segs.size:
            return nothing
        before = rnd.weight * rnd.ncp.sum(axis=0)
        best_ratio = np.zeros(finals.count, dtype=np.float64)
        best_dim = np.full(finals.count, -1, dtype=np.int64)
        best_cut = np.zeros(finals.count, dtype=np.int64)
        best_low = np.zeros(finals.count, dtype=np.bool_)
        best_t = np.zeros(finals.count, dtype=np.int64)
        for d in range(dims):
            scan = _scan(rnd, d, segs)
            for low in (True, False):
                # A low trim at i drops [start, i) and keeps the right side; a high trim drops
                # [i, end) and keeps the left side.
                t = scan.left_weight if low else scan.total - scan.left_weight
                rest = scan.total - t
                rem_sum = scan.right_sum if low else scan.left_sum
                gain = before[segs][scan.local_seg] - (rest * rem_sum + t * dims)
                ok = (t > 0) & (t <= budget) & (rest >= k) & (gain > 0)
                ok[scan.local_starts] = False
                if self.l is not None:
                    first, last = rnd.distinct(d)
                    seg_start = rnd.starts[segs][scan.local_seg]
                    seg_end = rnd.ends[segs][scan.local_seg]
                    distinct = (
                        last[seg_end] - last[scan.pos]
                        if low
                        else first[scan.pos] - first[seg_start]
                    )
                    ok &= distinct >= self.l
                if not ok.any():
                    continue
                ratio = gain / np.maximum(t, 1)
                score, cut = _first_best(scan, -ratio, ok, t.astype(np.float64))
                better = (cut >= 0) & (-score > best_ratio[segs])
                take = segs[better]
                best_ratio[take] = -score[better]
                best_dim[take] = d
                best_cut[take] = cut[better]
                best_low[take] = low
                best_t[take] = _trimmed_weight(rnd, d, cut[better], take, low)
        cand = np.flatnonzero(best_dim >= 0)
        if not cand.size:
            return nothing
        order = cand[np.argsort(-best_ratio[cand], kind="stable")]
        take = order[np.cumsum(best_t[order]) <= budget]
        if not take.size:
            return nothing
        gone = np.zeros(self.weights.shape[0], dtype=np.bool_)
        pos = np.arange(rnd.m, dtype=np.int64)
        chosen = np.zeros(finals.count, dtype=np.bool_)
        chosen[take] = True
        for d in range(dims):
            mine = chosen & (best_dim == d)
            if not mine.any():
                continue
            seg = rnd.seg_of_pos
            in_seg = mine[seg]
            cut = best_cut[seg]
            going = in_seg & np.where(best_low[seg], pos < cut, pos >= cut)
            gone[finals.perms[d][going]] = True
        trimmed = finals.select(chosen)
        keep = finals.select(~chosen)
        stay = ~gone[trimmed.perms[0]]
        seg_ids = np.repeat(np.arange(trimmed.count, dtype=np.int64), np.diff(trimmed.bounds))
        sizes = np.bincount(seg_ids[stay], minlength=trimmed.count)
        perms = [p[~gone[p]] for p in trimmed.perms]
        return _Store(perms, _cumsum0(sizes)), keep, int(self.weights[gone].sum())


def _trimmed_weight(rnd: _Round, d: int, cut: IntArray, segs: IntArray, low: bool) -> IntArray:
    """Weight dropped by a trim of order d at `cut` in each of `segs`."""
    cw = rnd.cw[d]
    return cw[cut] - cw[rnd.starts[segs]] if low else cw[rnd.ends[segs]] - cw[cut]


def partition(
    qis: Sequence[QI],
    weights: IntArray,
    k: int,
    *,
    sensitive: IntArray | None = None,
    l: int | None = None,
    budget: int = 0,
) -> Partition:
    """Partition the rows into classes of weight >= k (with >= l distinct sensitive codes when
    asked), suppressing at most `budget` weight. The caller has checked that the whole table
    qualifies (weight >= k, >= l distinct sensitive values)."""
    n = weights.shape[0]
    dims = len(qis)
    row_class = np.full(n, -1, dtype=np.int64)
    if n == 0:
        empty = np.zeros((0, dims), dtype=np.int64)
        return Partition(row_class, empty, empty)
    worker = _Partitioner(qis, weights, k, sensitive, l)
    active = _Store(_initial_orders(qis), np.asarray([0, n], dtype=np.int64))
    done: list[_Store] = []
    spent = 0
    for trim_round in range(_MAX_TRIM_ROUNDS + 1):
        worker.split_all(active, done)
        finals = _Store.concat(done, dims)
        if spent >= budget or trim_round == _MAX_TRIM_ROUNDS:
            break
        trimmed, keep, used = worker.trim(finals, budget - spent)
        if used == 0:
            break
        spent += used
        # Trimmed classes go back to the partitioning; the others stay done.
        active, done = trimmed, [keep]

    classes = np.repeat(np.arange(finals.count, dtype=np.int64), np.diff(finals.bounds))
    row_class[finals.perms[0]] = classes
    lo = np.empty((finals.count, dims), dtype=np.int64)
    hi = np.empty((finals.count, dims), dtype=np.int64)
    for d, (q, perm) in enumerate(zip(qis, finals.perms, strict=True)):
        lo[:, d] = q.codes[perm[finals.bounds[:-1]]]
        hi[:, d] = q.codes[perm[finals.bounds[1:] - 1]]
    return Partition(row_class, lo, hi)
