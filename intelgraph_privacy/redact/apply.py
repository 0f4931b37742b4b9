"""Applying a plan to a decoded GraphQL response: one walk, in place.

Null, mask, hash and generalise per response path; a null in a non-null position propagates to the
nearest nullable parent as the GraphQL specification says; every nulled field gets an `errors[]`
entry with code REDACTED; upstream errors at or under a redacted path are dropped; keys the plan
does not know, and values whose JSON type does not fit the schema, are redacted (fail closed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from intelgraph_privacy.actions import Action
from intelgraph_privacy.redact.plan import FieldPlan, Plan, SelectionPlan
from intelgraph_privacy.redact.report import RedactionReport

_SCALARS = frozenset({str, int, float, bool, type(None)})
_MISSING: Any = object()
_NULL = Action.NULL
# A path is a chain of (parent, key) pairs, built in O(1) and turned into a list only when needed.
Chain = tuple[Any, str | int] | None


@dataclass(frozen=True, slots=True)
class Redacted:
    """A rewritten response and what the rewrite did."""

    response: dict[str, Any]
    report: RedactionReport


def apply(plan: Plan, response: Any) -> Redacted:
    """Rewrite `response` (decoded JSON, modified in place) according to `plan`."""
    report = RedactionReport()
    if plan.denied:
        report.denied = True
        return Redacted(denied_response(plan.denied), report)
    if not isinstance(response, dict):
        return Redacted(_invalid_upstream("the upstream response is not a JSON object"), report)
    walk = _Walk(mutate=True)
    out: dict[str, Any] = {}
    if "data" in response:
        data = response["data"]
        if data is not None:
            if type(data) is not dict:
                return Redacted(_invalid_upstream("the upstream `data` is not an object"), report)
            if not walk.obj(data, plan.root, None):
                data = None
        out["data"] = data
    errors = _kept_upstream_errors(response.get("errors"), walk, report)
    errors.extend(walk.errors)
    if errors:
        out["errors"] = errors
    walk.fill(report)
    return Redacted(out, report)


def preview(plan: Plan, response: Any) -> RedactionReport:
    """What `apply` would redact, without changing `response` (shadow mode)."""
    report = RedactionReport(denied=bool(plan.denied))
    if not isinstance(response, dict) or type(response.get("data")) is not dict:
        return report
    walk = _Walk(mutate=False)
    walk.obj(response["data"], plan.root, None)
    walk.fill(report)
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

    def __init__(self, *, mutate: bool) -> None:
        self.mutate = mutate
        self.errors: list[dict[str, Any]] = []
        self.redacted: list[Chain] = []
        self.counts: dict[tuple[str, Action], int] = {}
        self.unknown = 0

    def fill(self, report: RedactionReport) -> None:
        for key, n in self.counts.items():
            report.counts[key] = report.counts.get(key, 0) + n
        report.unknown_keys += self.unknown

    def _count(self, fp: FieldPlan, action: Action) -> None:
        key = (fp.coordinate, action)
        self.counts[key] = self.counts.get(key, 0) + 1

    def _null(self, fp: FieldPlan, chain: Chain) -> None:
        # Record a redacted path and its REDACTED error entry.
        self._count(fp, _NULL)
        if self.mutate:
            self.redacted.append(chain)
            self.errors.append(
                {
                    "message": fp.error_message,
                    "path": materialise(chain),
                    "extensions": fp.error_extensions,
                }
            )

    def _drop_unknown(self, obj: dict[str, Any], allowed: frozenset[str], chain: Chain) -> None:
        for key in [k for k in obj if k not in allowed]:
            self.unknown += 1
            if self.mutate:
                self.redacted.append((chain, key))
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
                    self.redacted.append(chain)
                    self.errors.append(
                        {
                            "message": "object of unknown type redacted",
                            "path": materialise(chain),
                            "extensions": {"code": "REDACTED"},
                        }
                    )
                return False
        mutate = self.mutate
        if not obj.keys() <= tp.allowed:
            self._drop_unknown(obj, tp.allowed, chain)
        ok = True
        plain = tp.plain_keys
        if plain and not _SCALARS.issuperset(map(type, map(obj.get, plain))):
            for key in plain:
                if type(obj.get(key)) not in _SCALARS:
                    fp = tp.plain_fields[key]
                    self._null(fp, (chain, key))
                    if mutate:
                        obj[key] = None
                    ok = ok and fp.nullable[0]
        for fp in tp.work:
            value = obj.get(fp.key, _MISSING)
            if value is _MISSING:
                continue
            if fp.injected:
                if mutate:
                    del obj[fp.key]
                continue
            if fp.action is _NULL:
                self._null(fp, (chain, fp.key))
                if mutate:
                    obj[fp.key] = None
                    if not fp.nullable[0]:
                        return False
                continue
            if fp.opaque:
                continue
            if fp.child is None and len(fp.nullable) == 1:
                # A leaf with a transform (kept leaves are plain keys).
                if value is None:
                    continue
                new = fp.transform(value) if type(value) in _SCALARS else None  # type: ignore[misc]
                if new is None:
                    self._null(fp, (chain, fp.key))
                    if mutate:
                        obj[fp.key] = None
                        if not fp.nullable[0]:
                            return False
                    continue
                self._count(fp, fp.action)
                if mutate:
                    obj[fp.key] = new
                continue
            new, good = self.value(value, fp, 0, (chain, fp.key))
            if mutate:
                if new is not value:
                    obj[fp.key] = new
                if not good:
                    return False
        return ok or not mutate

    def value(self, value: Any, fp: FieldPlan, level: int, chain: Chain) -> tuple[Any, bool]:
        """Rewrite the value at one position of a field; (replacement, still valid)."""
        nullable = fp.nullable
        if value is None:
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
        self._count(fp, fp.action)
        return new, True


def _kept_upstream_errors(
    upstream: Any, walk: _Walk, report: RedactionReport
) -> list[dict[str, Any]]:
    if not isinstance(upstream, list):
        return []
    redacted = {tuple(materialise(c)) for c in walk.redacted} if walk.redacted else set()
    kept = []
    for entry in upstream:
        if not isinstance(entry, dict):
            report.dropped_errors += 1
            continue
        path = entry.get("path")
        if redacted and isinstance(path, list) and _under(path, redacted):
            report.dropped_errors += 1
            continue
        kept.append(entry)
    return kept


def _under(path: list[Any], redacted: set[tuple[Any, ...]]) -> bool:
    try:
        return any(tuple(path[:n]) in redacted for n in range(1, len(path) + 1))
    except TypeError:  # an unhashable path element: it cannot be trusted
        return True
