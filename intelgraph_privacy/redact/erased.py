"""Withholding erased subjects: objects whose subject was erased leave as null, with an error.

Erasure removes a subject's rows from every registered dataset; this is the second line, for
what the graph API may still serve (a store outside the registry, a replica or cache that lags).
With subject keys asked for (`Redactor(subject_keys=True)`), every object of a type with a
subject key carries its subject's id under the plan's `subject_alias`. Before the response is
rewritten, `withhold_erased` walks it along the plan: an erased subject's object in a list is
removed from the list (the answer is the one the graph would give without them), and one in a
single position becomes null, which `apply` then propagates as the spec says; `erased_errors`
gives those nulls their `ERASED` errors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from intelgraph_privacy.redact.plan import Plan, SelectionPlan

__all__ = ["ERASED_CODE", "Withheld", "erased_errors", "withhold_erased"]

ERASED_CODE = "ERASED"
Path = list[str | int]


@dataclass
class Withheld:
    """What `withhold_erased` did: the paths it nulled, and how many list entries it removed."""

    nulled: list[Path] = field(default_factory=list)
    removed: int = 0

    def __bool__(self) -> bool:
        return bool(self.nulled) or self.removed > 0


def withhold_erased(
    plan: Plan, response: dict[str, Any], is_erased: Callable[[str], bool]
) -> Withheld:
    """Withhold (in place) every object of `response["data"]` whose subject id `is_erased`.

    Does nothing when the plan did not ask for subject keys.
    """
    withheld = Withheld()
    alias = plan.subject_alias
    data = response.get("data")
    if alias is None or not isinstance(data, dict):
        return withheld
    _object(data, plan.root, _Walk(alias, is_erased, withheld), [])
    return withheld


@dataclass(frozen=True, slots=True)
class _Walk:
    alias: str
    is_erased: Callable[[str], bool]
    withheld: Withheld

    def erased(self, value: dict[str, Any]) -> bool:
        subject = value.get(self.alias)
        return subject is not None and self.is_erased(str(subject))


def _object(obj: dict[str, Any], selection: SelectionPlan, walk: _Walk, path: Path) -> None:
    type_plan = selection.only
    if type_plan is None and selection.typename_key is not None:
        type_plan = selection.by_type.get(str(obj.get(selection.typename_key)))
    if type_plan is None:
        return  # an unknown type: apply redacts it anyway
    for field_plan in type_plan.work:
        child = field_plan.child
        if child is None or field_plan.key not in obj:
            continue
        key = field_plan.key
        value = obj[key]
        if isinstance(value, dict) and walk.erased(value):
            obj[key] = None
            walk.withheld.nulled.append([*path, key])
            continue
        _descend(value, child, walk, [*path, key])


def _descend(value: Any, selection: SelectionPlan, walk: _Walk, path: Path) -> None:
    if isinstance(value, dict):
        _object(value, selection, walk, path)
    elif isinstance(value, list):
        kept = [v for v in value if not (isinstance(v, dict) and walk.erased(v))]
        walk.withheld.removed += len(value) - len(kept)
        value[:] = kept
        for index, item in enumerate(value):
            _descend(item, selection, walk, [*path, index])


def erased_errors(paths: list[Path]) -> list[dict[str, Any]]:
    """The response errors of withheld objects (no id: the error must not name the subject)."""
    return [
        {
            "message": "withheld: this subject was erased (right to be forgotten)",
            "path": path,
            "extensions": {"code": ERASED_CODE},
        }
        for path in paths
    ]
