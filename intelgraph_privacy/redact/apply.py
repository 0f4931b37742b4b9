"""Applying a plan to a decoded GraphQL response: one walk, in place.

Null, mask, hash and generalise per response path; a null in a non-null position propagates to the
nearest nullable parent as the GraphQL specification says; every nulled field gets an `errors[]`
entry with code REDACTED; upstream errors at or under a redacted path are dropped; keys the plan
does not know, and values whose JSON type does not fit the schema, are redacted (fail closed); an
upstream null in a non-null position propagates too, with a BAD_UPSTREAM error.

Error entries are built for serialisation: the REDACTED errors of one field in one response may
share their `extensions` dict (the C walk does this for speed), so treat them as read-only.

The walk below is the reference implementation. When the C extension is built, `apply` runs its
exact transcription (`_walk.c`), which tests compare against this one.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import repeat
from typing import Any

from intelgraph_privacy.actions import Action
from intelgraph_privacy.redact.native import native_walker
from intelgraph_privacy.redact.plan import FieldPlan, Plan, SelectionPlan
from intelgraph_privacy.redact.report import RedactionReport

_SCALARS = frozenset({str, int, float, bool, type(None)})
_MISSING: Any = object()
_NULL = Action.NULL
# A path is a chain of (parent, key) pairs, built in O(1) and turned into a list only when needed.
Chain = tuple[Any, str | int] | None
UNKNOWN_TYPE_MESSAGE = "object of unknown type redacted"
UPSTREAM_NULL_MESSAGE = "the upstream returned null for a non-null field"


@dataclass(frozen=True, slots=True)
class Redacted:
    """A rewritten response and what the rewrite did."""

    response: dict[str, Any]
    report: RedactionReport


@dataclass(frozen=True, slots=True)
class WalkResult:
    """What one walk over `data` did (the same from the Python and the C walker)."""

    ok: bool
    unknown: int
    #: Non-zero counters: {2 * slot: values given the field's action, 2 * slot + 1: nulled}.
    counts: dict[int, int]
    errors: list[dict[str, Any]]
    redacted: list[list[str | int]]


def apply(plan: Plan, response: Any, *, native: bool = True) -> Redacted:
    """Rewrite `response` (decoded JSON, modified in place) according to `plan`."""
    report = RedactionReport()
    if plan.denied:
        report.denied = True
        return Redacted(denied_response(plan.denied), report)
    if not isinstance(response, dict):
        return Redacted(_invalid_upstream("the upstream response is not a JSON object"), report)
    out: dict[str, Any] = {}
    walked: WalkResult | None = None
    if "data" in response:
        data = response["data"]
        if data is not None:
            if type(data) is not dict:
                return Redacted(_invalid_upstream("the upstream `data` is not an object"), report)
            walked = walk(plan, data, native=native)
            if not walked.ok:
                data = None
        out["data"] = data
    redacted = walked.redacted if walked is not None else []
    errors = _kept_upstream_errors(plan, response.get("errors"), redacted, report)
    if walked is not None:
        errors.extend(walked.errors)
        _fill(report, plan, walked)
    if errors:
        out["errors"] = errors
    return Redacted(out, report)


def walk(plan: Plan, data: dict[str, Any], *, native: bool = True) -> WalkResult:
    """Rewrite `data` in place; the C walker when available (and `native`), else Python."""
    walker = native_walker() if native else None
    if walker is not None and plan.native is not None:
        ok, unknown, counts, errors, redacted = walker.walk(data, plan.native, len(plan.fields))
        return WalkResult(bool(ok), unknown, counts, errors, redacted)
    py = _Walk(len(plan.fields), mutate=True)
    ok = py.obj(data, plan.root, None)
    return WalkResult(ok, py.unknown, py.nonzero_counts(), py.errors, py.redacted)


def preview(plan: Plan, response: Any) -> RedactionReport:
    """What the plan would change, without changing `response` (shadow mode).

    Every value the plan acts on is counted. Null propagation is not simulated, so values
    inside an object that `apply` would discard (because a non-null field of it is nulled)
    are counted too: preview reports what the policy touches, `apply` what it had to do.
    """
    report = RedactionReport(denied=bool(plan.denied))
    if not isinstance(response, dict) or type(response.get("data")) is not dict:
        return report
    py = _Walk(len(plan.fields), mutate=False)
    py.obj(response["data"], plan.root, None)
    _fill(report, plan, WalkResult(True, py.unknown, py.nonzero_counts(), [], []))
    return report


def denied_response(coordinates: tuple[str, ...]) -> dict[str, Any]:
    """The response for an operation a deny decision refuses."""
    return {
        "data": None,
        "errors": [
            {
                "message": "the operation is refused by policy",
                "extensions": {"code": "FORBIDDEN", "coordinates": list(coordinates)},
            }
        ],
    }


def _invalid_upstream(message: str) -> dict[str, Any]:
    return {"data": None, "errors": [{"message": message, "extensions": {"code": "BAD_UPSTREAM"}}]}


def _fill(report: RedactionReport, plan: Plan, walked: WalkResult) -> None:
    fields = plan.fields
    for index, n in walked.counts.items():
        fp = fields[index >> 1]
        key = (fp.coordinate, _NULL if index & 1 else fp.action)
        report.counts[key] = report.counts.get(key, 0) + n
    report.unknown_keys += walked.unknown


def materialise(chain: Chain) -> list[str | int]:
    """The JSON path of a chain, root first."""
    path: list[str | int] = []
    while chain is not None:
        chain, key = chain
        path.append(key)
    path.reverse()
    return path


class _Walk:
    __slots__ = ("counts", "errors", "mutate", "redacted", "unknown")

    def __init__(self, slots: int, *, mutate: bool) -> None:
        self.mutate = mutate
        self.errors: list[dict[str, Any]] = []
        self.redacted: list[list[str | int]] = []
        # Two counters per field slot: [2s] its own action applied, [2s+1] nulled.
        self.counts = [0] * (2 * slots)
        self.unknown = 0

    def nonzero_counts(self) -> dict[int, int]:
        """The counters that are not zero, by index."""
        return {i: n for i, n in enumerate(self.counts) if n}

    def _null(self, fp: FieldPlan, chain: Chain) -> None:
        # Count a nulled value; in mutate mode record its path and REDACTED error.
        self.counts[2 * fp.slot + 1] += 1
        if self.mutate:
            path = materialise(chain)
            self.redacted.append(path)
            self.errors.append(
                {
                    "message": fp.error_message,
                    "path": path,
                    "extensions": {"code": "REDACTED", "coordinate": fp.coordinate},
                }
            )

    def _null_key(self, obj: dict[str, Any], fp: FieldPlan, chain: Chain) -> bool:
        # Null obj[fp.key] with its error; False when the object must become null.
        self._null(fp, (chain, fp.key))
        if self.mutate:
            obj[fp.key] = None
            return fp.nullable[0]
        return True

    def _upstream_null(self, fp: FieldPlan, chain: Chain) -> None:
        # A null where the schema says non-null: say so, since it will propagate.
        if self.mutate:
            self.errors.append(
                {
                    "message": UPSTREAM_NULL_MESSAGE,
                    "path": materialise(chain),
                    "extensions": {"code": "BAD_UPSTREAM", "coordinate": fp.coordinate},
                }
            )

    def _drop_unknown(self, obj: dict[str, Any], allowed: frozenset[str], chain: Chain) -> None:
        for key in [k for k in obj if k not in allowed]:
            self.unknown += 1
            if self.mutate:
                self.redacted.append(materialise((chain, key)))
                del obj[key]

    def obj(self, obj: dict[str, Any], sel: SelectionPlan, chain: Chain) -> bool:
        """Rewrite one object; False when it must become null (a non-null child was nulled)."""
        tp = sel.only
        if tp is None:
            typename = obj.get(sel.typename_key)  # type: ignore[arg-type]
            tp = sel.by_type.get(typename) if type(typename) is str else None
            if tp is None:
                # Unknown or missing concrete type: the plan cannot vouch for any key.
                self.unknown += 1
                if self.mutate:
                    path = materialise(chain)
                    self.redacted.append(path)
                    self.errors.append(
                        {
                            "message": UNKNOWN_TYPE_MESSAGE,
                            "path": path,
                            "extensions": {"code": "REDACTED"},
                        }
                    )
                return False
        mutate = self.mutate
        if not obj.keys() <= tp.allowed:
            self._drop_unknown(obj, tp.allowed, chain)
        plain = tp.plain_keys
        required = tp.plain_required
        if (plain and not _SCALARS.issuperset(map(type, map(obj.get, plain)))) or (
            required and None in map(obj.get, required, repeat(_MISSING))
        ):
            # Some kept scalar is not a scalar (drift: redact it), or is null where the
            # schema says non-null (the upstream broke the contract: propagate, as the spec).
            ok = True
            for key in plain:
                value = obj.get(key, _MISSING)
                fp = tp.plain_fields[key]
                if value is None and not fp.nullable[0]:
                    self._upstream_null(fp, (chain, key))
                    ok = False
                elif value is not _MISSING and type(value) not in _SCALARS:
                    self._null(fp, (chain, key))
                    if mutate:
                        obj[key] = None
                    ok = ok and fp.nullable[0]
            if not ok and mutate:
                return False
        for fp in tp.work:
            value = obj.get(fp.key, _MISSING)
            if value is _MISSING:
                continue
            if fp.injected:
                if mutate:
                    del obj[fp.key]
                continue
            if fp.action is _NULL:
                if not self._null_key(obj, fp, chain):
                    return False
                continue
            if fp.opaque:
                continue
            if fp.child is None and len(fp.nullable) == 1:
                # A leaf with a transform (kept leaves are plain keys).
                if value is None:
                    if not fp.nullable[0]:
                        self._upstream_null(fp, (chain, fp.key))
                        if mutate:
                            return False
                    continue
                new = fp.transform(value) if type(value) in _SCALARS else None  # type: ignore[misc]
                if new is None:
                    if not self._null_key(obj, fp, chain):
                        return False
                    continue
                self.counts[2 * fp.slot] += 1
                if mutate:
                    obj[fp.key] = new
                continue
            new, good = self.value(value, fp, 0, (chain, fp.key))
            if mutate:
                if new is not value:
                    obj[fp.key] = new
                if not good:
                    return False
        return True

    def value(self, value: Any, fp: FieldPlan, level: int, chain: Chain) -> tuple[Any, bool]:
        """Rewrite the value at one position of a field; (replacement, still valid)."""
        nullable = fp.nullable
        if value is None:
            if not nullable[level]:
                self._upstream_null(fp, chain)
            return None, nullable[level]
        if level < len(nullable) - 1:
            if type(value) is not list:
                self._null(fp, chain)
                return None, nullable[level]
            for i, item in enumerate(value):
                new, ok = self.value(item, fp, level + 1, (chain, i))
                if not ok and self.mutate:
                    return None, nullable[level]
                if new is not item and self.mutate:
                    value[i] = new
            return value, True
        child = fp.child
        if child is not None:
            if type(value) is not dict:
                self._null(fp, chain)
                return None, nullable[level]
            if self.obj(value, child, chain):
                return value, True
            return None, nullable[level]
        if fp.opaque:
            return value, True
        if fp.transform is None:
            if type(value) in _SCALARS:
                return value, True
            self._null(fp, chain)
            return None, nullable[level]
        new = fp.transform(value) if type(value) in _SCALARS else None
        if new is None:
            self._null(fp, chain)
            return None, nullable[level]
        self.counts[2 * fp.slot] += 1
        return new, True


def _kept_upstream_errors(
    plan: Plan, upstream: Any, redacted_paths: list[list[str | int]], report: RedactionReport
) -> list[dict[str, Any]]:
    if not isinstance(upstream, list):
        return []
    redacted = {tuple(p) for p in redacted_paths}
    kept = []
    for entry in upstream:
        if not isinstance(entry, dict):
            report.dropped_errors += 1
            continue
        path = entry.get("path")
        if isinstance(path, list) and (
            (redacted and _under(path, redacted)) or _plan_redacts(plan.root, path)
        ):
            report.dropped_errors += 1
            continue
        kept.append(entry)
    return kept


def _plan_redacts(root: SelectionPlan, path: list[Any]) -> bool:
    """Whether an error path reaches a key the plan does not keep, for any concrete type.

    This holds even when the walk saw no value there (say, `data` is null), so an upstream
    error about a redacted field is dropped whatever happened to the data.
    """
    frontier = [root]
    for step in path:
        if type(step) is int:
            continue
        if type(step) is not str:
            return True
        following: list[SelectionPlan] = []
        for sel in frontier:
            for tp in sel.by_type.values():
                fp = tp.plain_fields.get(step) or next((f for f in tp.work if f.key == step), None)
                if fp is None:
                    continue
                if fp.action is not Action.KEEP or fp.injected:
                    return True
                if fp.child is not None:
                    following.append(fp.child)
        if not following and not any(
            step in tp.allowed for s in frontier for tp in s.by_type.values()
        ):
            return True  # a key the plan does not know
        frontier = following
        if not frontier:
            return False
    return False


def _under(path: list[Any], redacted: set[tuple[Any, ...]]) -> bool:
    try:
        return any(tuple(path[:n]) in redacted for n in range(1, len(path) + 1))
    except TypeError:  # an unhashable path element: it cannot be trusted
        return True
