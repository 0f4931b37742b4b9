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

__all__ = ["ERASED_CODE", "Withheld", "erased_errors", "subject_key_alias", "withhold_erased"]

ERASED_CODE = "ERASED"
Path = list[str | int]


@dataclass
class Withheld:
    """What `withhold_erased` did: the paths it nulled, and how many list entries it removed."""

    nulled: list[Path] = field(default_factory=list)
    removed: int = 0
    #: Paths in the upstream response's own numbering: nulled objects, removed list entries.
    gone: list[Path] = field(default_factory=list)
    #: List path (upstream numbering) -> old index -> new index, for lists that lost entries.
    renumbered: dict[tuple[str | int, ...], dict[int, int]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.nulled) or self.removed > 0


def withhold_erased(
    plan: Plan, response: dict[str, Any], is_erased: Callable[[str], bool]
) -> Withheld:
    """Withhold (in place) every object of `response["data"]` whose subject id `is_erased`.

    Upstream errors located in what was withheld are dropped (their messages may speak of the
    subject), and the paths of the others follow the renumbered lists. Does nothing when the plan
    did not ask for subject keys.
    """
    withheld = Withheld()
    prefix = plan.subject_alias
    data = response.get("data")
    if prefix is None or not isinstance(data, dict):
        return withheld
    _object(data, plan.root, _Walk(prefix, is_erased, withheld), [], [])
    if withheld and isinstance(response.get("errors"), list):
        response["errors"] = _follow(response["errors"], withheld)
    return withheld


@dataclass(frozen=True, slots=True)
class _Walk:
    prefix: str
    is_erased: Callable[[str], bool]
    withheld: Withheld

    def erased(self, value: dict[str, Any], selection: SelectionPlan) -> bool:
        if selection.typename_key is not None:
            type_name = str(value.get(selection.typename_key))
        else:
            type_name = next(iter(selection.by_type), "")
        subject = value.get(subject_key_alias(self.prefix, type_name))
        return subject is not None and self.is_erased(str(subject))


def subject_key_alias(prefix: str, type_name: str) -> str:
    """The response key of a type's injected subject key (one alias per type: the subject-key
    fields of a union's members may differ in type, and one alias for all would conflict)."""
    return f"{prefix}_{type_name}"


def _object(
    obj: dict[str, Any], selection: SelectionPlan, walk: _Walk, path: Path, original: Path
) -> None:
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
        if isinstance(value, dict) and walk.erased(value, child):
            obj[key] = None
            walk.withheld.nulled.append([*path, key])
            walk.withheld.gone.append([*original, key])
            continue
        _descend(value, child, walk, [*path, key], [*original, key])


def _descend(value: Any, selection: SelectionPlan, walk: _Walk, path: Path, original: Path) -> None:
    if isinstance(value, dict):
        _object(value, selection, walk, path, original)
    elif isinstance(value, list):
        kept: list[tuple[int, Any]] = []
        for index, item in enumerate(value):
            if isinstance(item, dict) and walk.erased(item, selection):
                walk.withheld.gone.append([*original, index])
            else:
                kept.append((index, item))
        if len(kept) < len(value):
            walk.withheld.removed += len(value) - len(kept)
            walk.withheld.renumbered[tuple(original)] = {
                old: new for new, (old, _) in enumerate(kept)
            }
            value[:] = [item for _, item in kept]
        for new, (old, item) in enumerate(kept):
            _descend(item, selection, walk, [*path, new], [*original, old])


def _follow(errors: list[Any], withheld: Withheld) -> list[Any]:
    """Upstream errors without those located in withheld objects, renumbered like the lists."""
    gone = [tuple(p) for p in withheld.gone]
    kept = []
    for error in errors:
        path = error.get("path") if isinstance(error, dict) else None
        if not isinstance(path, list):
            kept.append(error)
            continue
        located = tuple(path)
        if any(located[: len(g)] == g for g in gone):
            continue  # about a withheld subject: its message may name them
        renumbered = [
            withheld.renumbered.get(tuple(path[:i]), {}).get(step, step)
            if isinstance(step, int)
            else step
            for i, step in enumerate(path)
        ]
        kept.append({**error, "path": renumbered})
    return kept


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
