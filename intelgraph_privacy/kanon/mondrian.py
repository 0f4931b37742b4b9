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
halves, `sum over sides of weight * sum over QIs of NCP`, the most balanced one on ties. Near the
leaves (segments lighter than 4k, whose halves are final or nearly so, so this penalty is the
final one) every QI competes, not only the widest; and segments lighter than 6k prefer cuts that
lose no class (`floor(left/k) + floor(right/k) == floor(weight/k)`), so classes end up closer to
k. A cut may fall inside a run of equal values (a "relaxed" cut, the rows being ordered by the
other QIs there), so two classes can share a generalised value; they are then one equivalence
class of the output. When the chosen QIs have no valid cut, the others are tried; a segment with
no valid cut at all becomes a class. On UCI Adult this loses 15-35% less information (NCP) than
classic Mondrian on the same hierarchies (benchmarks/README.md).

Suppression. Once no segment can be split, each class with spare weight (more than k) is offered
a trim: dropping a prefix or suffix of one QI's order (its lowest or highest values), keeping at
least k (l-diverse) weight; so is each pair of adjacent classes taken together (a class of
exactly k cannot lose a row on its own). A trim pays when the penalty falls by more than the
trimmed rows cost as suppressed rows (NCP 1 on every QI). The trims with the best gain per
suppressed weight are taken within the suppression budget (one per class per round), and what
remains of the trimmed classes goes back to the partitioning (it may split again); this repeats
while trims pay (at most 12 rounds).
"""

from __future__ import annotations

import math
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
#: Segments lighter than this many k try every QI, not only the widest.
_ALL_QIS_BELOW = 4
#: Segments lighter than this many k prefer cuts that keep the number of classes they can hold.
_KEEP_CLASSES_BELOW = 6


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
    seg_first = np.repeat(local_starts, sizes)
    seg_last = np.repeat(local_starts + sizes - 1, sizes)
    for e, q in enumerate(rnd.qis):
        if e == d:
            # Sorted along its own order: the extremes are the ends of each side.
            g = rnd.codes[d][pos]
            left_sum[1:] += q.ncp(g[seg_first[1:]], g[:-1])
            right_sum += q.ncp(g, g[seg_last])
            continue
        g = q.codes[perm]
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
    rnd: _Round, d: int, segs: IntArray, k: int, ldiv: int | None, min_share: float = 0.0
) -> tuple[FloatArray, IntArray]:
    """The cheapest valid cut of order d in each of `segs` (cost inf, cut -1 when none)."""
    scan = _scan(rnd, d, segs)
    wl = scan.left_weight
    wr = scan.total - wl
    ok = (wl >= k) & (wr >= k)
    if min_share:
        ok &= (np.minimum(wl, wr) >= min_share * scan.total) | (scan.total < 4 * k)
    ok[scan.local_starts] = False
    if ldiv is not None and rnd.sensitive is not None:
        first, last = rnd.distinct(d)
        seg_start = rnd.starts[segs][scan.local_seg]
        seg_end = rnd.ends[segs][scan.local_seg]
        ok &= (first[scan.pos] - first[seg_start] >= ldiv) & (
            last[seg_end] - last[scan.pos] >= ldiv
        )
    # Near the leaves, prefer cuts that lose no class: floor(wl/k) + floor(wr/k) == floor(w/k).
    keep = ok & (((wl % k) <= (scan.total % k)) | (scan.total >= _KEEP_CLASSES_BELOW * k))
    has = np.maximum.reduceat(keep, scan.local_starts)
    ok &= keep | ~has[scan.local_seg]
    cost = wl * scan.left_sum + wr * scan.right_sum
    return _first_best(scan, cost, ok, np.abs(wl - wr).astype(np.float64))


def _stable_split(
    perm: IntArray, right: BoolArray, seg_of_pos: IntArray, starts: IntArray, nleft: IntArray
) -> IntArray:
    """Move each segment's left rows before its right rows, keeping their order."""
    rights_before: IntArray = np.cumsum(right) - right
    seg_start = starts[seg_of_pos]
    r_rank: IntArray = rights_before - rights_before[starts][seg_of_pos]
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
        # One int64 key of the QI's code and as many following QIs' codes as fit: a single
        # argsort is several times faster than np.lexsort over separate keys.
        key = qis[d].codes.copy()
        room = (1 << 62) // max(int(key.max()) + 1, 1)
        for j in range(1, dims):
            codes = qis[(d + j) % dims].codes
            span = int(codes.max()) + 1 if codes.size else 1
            if span > room:
                break
            key = key * span + codes
            room //= span
        orders.append(np.argsort(key).astype(np.int64))
    return orders


class _Partitioner:
    def __init__(
        self,
        qis: Sequence[QI],
        weights: IntArray,
        k: int,
        sensitive: IntArray | None,
        ldiv: int | None,
    ) -> None:
        self.qis = qis
        self.dims = len(qis)
        self.weights = weights
        self.k = k
        self.ldiv = ldiv if sensitive is not None else None
        self.sensitive = sensitive
        self.n_sens = int(sensitive.max()) + 1 if sensitive is not None and sensitive.size else 1
        self.unit = bool(np.all(weights == 1))
        self.side = np.zeros(weights.shape[0], dtype=np.bool_)
        self.min_share = 0.0

    def round(self, store: _Store) -> _Round:
        return _Round(store, self.qis, self.weights, self.unit, self.sensitive, self.n_sens)

    def split_all(self, active: _Store, done: list[_Store]) -> None:
        """Split segments round by round; append those that cannot split to `done`."""
        k = self.k
        # Free cuts may be lopsided; should the rounds ever pile up (a pathological table that
        # peels a few rows per round), cuts must then leave a quarter on each side, which
        # bounds what remains to log_{4/3}(n / k) rounds.
        lopsided_rounds = 2 * math.ceil(math.log2(max(self.weights.sum() / k, 2))) + 16
        rounds = 0
        while active.count:
            rounds += 1
            self.min_share = 0.25 if rounds > lopsided_rounds else 0.0
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
        # Near the leaves the halves' penalty is (nearly) final: every QI competes on it.
        tied |= (rnd.weight < _ALL_QIS_BELOW * self.k) & (rnd.ncp > 0)
        for attempt in (tied, ~tied & (rnd.ncp > 0)):
            todo = best_dim < 0
            for d in range(self.dims):
                segs = np.flatnonzero(todo & attempt[d])
                if not segs.size:
                    continue
                cost, cut = _best_cuts(rnd, d, segs, self.k, self.ldiv, self.min_share)
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
        """One round of suppression: (trimmed classes, untouched classes, weight spent).

        Candidates are trims of one class, and trims of two adjacent classes taken together (a
        class of exactly k cannot lose a row on its own, but the pair can, and is split again
        afterwards; its gain is counted as if it were not, so it is a lower bound).
        """
        k, dims = self.k, self.dims
        rnd = self.round(finals)
        before = rnd.weight * rnd.ncp.sum(axis=0)
        nothing = (_Store.concat([], dims), finals, 0)
        # A trim of weight t >= 1 gains at most the whole penalty minus t * dims.
        singles = self._trims(rnd, before, (rnd.weight > k) & (before > dims), budget)
        pairs_at = np.flatnonzero(before[:-1] + before[1:] > dims)
        pair_store = _pairs(finals, pairs_at, self.qis)
        pair_rnd = self.round(pair_store)
        pair_before = before[pairs_at] + before[pairs_at + 1]
        pairs = self._trims(pair_rnd, pair_before, pair_before > dims, budget)
        # Candidates: singles (touching one class) then pairs (touching two).
        n_single = finals.count
        ratio = np.concatenate([singles.ratio, pairs.ratio])
        weight = np.concatenate([singles.t, pairs.t])
        found = np.concatenate([singles.dim, pairs.dim]) >= 0
        cand_class = np.concatenate([np.arange(n_single), pairs_at, pairs_at + 1])
        cand_id = np.concatenate(
            [
                np.arange(n_single),
                n_single + np.arange(pairs_at.size),
                n_single + np.arange(pairs_at.size),
            ]
        )
        live = found[cand_id]
        if not live.any():
            return nothing
        cand_class, cand_id = cand_class[live], cand_id[live]
        # Conflicts: a candidate is taken only if it is the best one of every class it touches.
        order = np.lexsort((cand_id, -ratio[cand_id], cand_class))
        first = np.ones(order.size, dtype=np.bool_)
        first[1:] = cand_class[order][1:] != cand_class[order][:-1]
        best_of_class = np.full(n_single, -1, dtype=np.int64)
        best_of_class[cand_class[order][first]] = cand_id[order][first]
        winner = np.zeros(ratio.size, dtype=np.bool_)
        winner[np.unique(cand_id)] = True
        winner[cand_id[best_of_class[cand_class] != cand_id]] = False
        picks = np.flatnonzero(winner)
        picks = picks[np.argsort(-ratio[picks], kind="stable")]
        picks = picks[np.cumsum(weight[picks]) <= budget]
        if not picks.size:
            return nothing
        take_single = np.zeros(n_single, dtype=np.bool_)
        take_single[picks[picks < n_single]] = True
        take_pair = np.zeros(pairs_at.size, dtype=np.bool_)
        take_pair[picks[picks >= n_single] - n_single] = True
        used = take_single.copy()
        used[pairs_at[take_pair]] = True
        used[pairs_at[take_pair] + 1] = True
        gone = np.zeros(self.weights.shape[0], dtype=np.bool_)
        rest_single = _apply_trims(rnd, singles, take_single, gone)
        rest_pair = _apply_trims(pair_rnd, pairs, take_pair, gone)
        trimmed = _Store.concat([rest_single, rest_pair], dims)
        return trimmed, finals.select(~used), int(self.weights[gone].sum())

    def _trims(self, rnd: _Round, before: FloatArray, eligible: BoolArray, budget: int) -> _Trims:
        """The best trim (gain per suppressed weight) of each eligible segment of `rnd`."""
        k, dims = self.k, self.dims
        count = rnd.starts.shape[0]
        out = _Trims(
            np.zeros(count),
            np.zeros(count, dtype=np.int64),
            np.full(count, -1, dtype=np.int64),
            np.zeros(count, dtype=np.int64),
            np.zeros(count, dtype=np.bool_),
        )
        eligible = eligible & (rnd.sizes >= 2)
        if not eligible.any():
            return out
        # Trimming the ends of an order mostly narrows that QI: only the QIs that are at least
        # half as wide as the segment's widest are worth a scan.
        wide = rnd.ncp >= 0.5 * rnd.ncp.max(axis=0)
        for d in range(dims):
            segs = np.flatnonzero(eligible & wide[d] & (rnd.ncp[d] > 0))
            if not segs.size:
                continue
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
                if self.ldiv is not None:
                    first, last = rnd.distinct(d)
                    seg_start = rnd.starts[segs][scan.local_seg]
                    seg_end = rnd.ends[segs][scan.local_seg]
                    distinct = (
                        last[seg_end] - last[scan.pos]
                        if low
                        else first[scan.pos] - first[seg_start]
                    )
                    ok &= distinct >= self.ldiv
                if not ok.any():
                    continue
                ratio = gain / np.maximum(t, 1)
                score, cut = _first_best(scan, -ratio, ok, t.astype(np.float64))
                better = (cut >= 0) & (-score > out.ratio[segs])
                take = segs[better]
                out.ratio[take] = -score[better]
                out.dim[take] = d
                out.cut[take] = cut[better]
                out.low[take] = low
                cw = rnd.cw[d]
                out.t[take] = (
                    cw[cut[better]] - cw[rnd.starts[take]]
                    if low
                    else cw[rnd.ends[take]] - cw[cut[better]]
                )
        return out


@dataclass(slots=True)
class _Trims:
    """Per segment: the best trim's gain per suppressed weight, weight, order, cut, end."""

    ratio: FloatArray
    t: IntArray
    dim: IntArray  # -1: no trim pays
    cut: IntArray
    low: BoolArray


def _apply_trims(rnd: _Round, trims: _Trims, take: BoolArray, gone: BoolArray) -> _Store:
    """Mark the trimmed rows of the `take` segments in `gone`; return what remains of them."""
    store = rnd.store
    if not take.any():
        return _Store.concat([], len(store.perms))
    seg = rnd.seg_of_pos
    pos = np.arange(rnd.m, dtype=np.int64)
    cut = trims.cut[seg]
    dropped = take[seg] & np.where(trims.low[seg], pos < cut, pos >= cut)
    for d in range(len(store.perms)):
        mine = dropped & (trims.dim[seg] == d)
        gone[store.perms[d][mine]] = True
    kept = store.select(take)
    stay = ~gone[kept.perms[0]]
    seg_ids = np.repeat(np.arange(kept.count, dtype=np.int64), np.diff(kept.bounds))
    sizes = np.bincount(seg_ids[stay], minlength=kept.count)
    return _Store([p[~gone[p]] for p in kept.perms], _cumsum0(sizes))


def _pairs(finals: _Store, at: IntArray, qis: Sequence[QI]) -> _Store:
    """Segments made of classes `at[i]` and `at[i] + 1` together, sorted in every order."""
    starts = finals.bounds[at]
    ends = finals.bounds[at + 2]
    sizes = ends - starts
    bounds = _cumsum0(sizes)
    n = int(bounds[-1])
    local = np.repeat(np.arange(at.shape[0], dtype=np.int64), sizes)
    pos = np.repeat(starts - bounds[:-1], sizes) + np.arange(n, dtype=np.int64)
    perms = []
    for q, perm in zip(qis, finals.perms, strict=True):
        rows = perm[pos]
        perms.append(rows[np.argsort(local * _SHIFT + q.codes[rows], kind="stable")])
    return _Store(perms, bounds)


def partition(
    qis: Sequence[QI],
    weights: IntArray,
    k: int,
    *,
    sensitive: IntArray | None = None,
    ldiv: int | None = None,
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
    worker = _Partitioner(qis, weights, k, sensitive, ldiv)
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
