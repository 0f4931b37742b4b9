"""Invariant checks on a redaction: nothing protected leaks, and nulls follow the GraphQL spec.

Both take the plan, the upstream response as it was before `apply` (apply works in place: pass a
copy) and the rewritten response. They raise AssertionError with the offending path.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from intelgraph_privacy.actions import Action
from intelgraph_privacy.codec import dumps
from intelgraph_privacy.redact.plan import FieldPlan, Plan, SelectionPlan, TypePlan

Path = tuple[str | int, ...]


def protected_values(plan: Plan, original: dict[str, Any]) -> dict[Path, Any]:
    """Every leaf value of `original` that the plan does not keep, by path."""
    found: dict[Path, Any] = {}
    data = original.get("data")
    if isinstance(data, dict):
        for path, fplan, value in _fields(plan.root, data, ()):
            if fplan.action is not Action.KEEP and not fplan.injected:
                for leaf_path, leaf in _leaves(value, path):
                    found[leaf_path] = leaf
    return found


def assert_no_leak(plan: Plan, original: dict[str, Any], redacted: dict[str, Any]) -> None:
    """No value at a path the plan does not keep appears anywhere in the redacted response.

    Strings are searched as substrings of the whole encoded response (errors included); numbers
    as numbers. Use responses whose protected values are distinctive (the `responses` strategy
    writes unique canaries); booleans and enum values are too small a domain to check by value.
    """
    protected = protected_values(plan, original)
    encoded = dumps(redacted).decode()
    numbers = {v for _, v in _leaves(redacted, ()) if _is_number(v)}
    for path, value in protected.items():
        if isinstance(value, str) and len(value) >= 6 and value in encoded:
            raise AssertionError(f"protected value at {list(path)} leaked: {value!r}")
        if _is_number(value) and value in numbers:
            raise AssertionError(f"protected number at {list(path)} leaked: {value!r}")


def assert_spec_nulls(plan: Plan, original: dict[str, Any], redacted: dict[str, Any]) -> None:
    """Nulls in the redacted response follow the GraphQL specification.

    - no null sits in a non-null position (unless `data` itself is null);
    - every nulled field present in the response has a REDACTED error at its exact path;
    - every REDACTED (or BAD_UPSTREAM: an upstream null in a non-null position) error path
      reaches a null (the field, or an ancestor it propagated to);
    - an object that was present upstream and is null now had a redacted field under it,
      and sits in a nullable position or its parent is null as well.
    """
    errors = [e for e in redacted.get("errors", []) if _code(e) in ("REDACTED", "BAD_UPSTREAM")]
    error_paths = {tuple(e["path"]) for e in errors if isinstance(e.get("path"), list)}
    data = redacted.get("data")
    for path in error_paths:
        if not _reaches_null(data, path):
            raise AssertionError(f"error at {list(path)} but no null on that path")
    upstream = original.get("data")
    if data is None or not isinstance(upstream, dict):
        return
    _check_object(plan.root, upstream, data, (), error_paths)


def _check_object(
    sel: SelectionPlan,
    upstream: dict[str, Any],
    output: dict[str, Any],
    path: Path,
    error_paths: set[Path],
) -> None:
    tp = _type_plan(sel, upstream)
    if tp is None:
        raise AssertionError(f"object at {list(path)} of unknown type was not nulled")
    unknown = set(output) - tp.allowed
    if unknown:
        raise AssertionError(f"keys the plan does not know at {list(path)}: {sorted(unknown)}")
    for fplan in _all_fields(tp):
        if fplan.injected:
            if fplan.key in output:
                raise AssertionError(f"sidecar __typename left in the response at {list(path)}")
            continue
        if fplan.key not in upstream:
            continue
        fpath = (*path, fplan.key)
        value = output.get(fplan.key)
        if fplan.action is Action.NULL:
            if value is not None:
                raise AssertionError(f"nulled field {list(fpath)} has a value")
            if fpath not in error_paths:
                raise AssertionError(f"nulled field {list(fpath)} has no REDACTED error")
            continue
        _check_value(fplan, 0, upstream[fplan.key], value, fpath, error_paths)


def _check_value(
    fplan: FieldPlan,
    level: int,
    upstream: Any,
    output: Any,
    path: Path,
    error_paths: set[Path],
) -> None:
    if output is None:
        if not fplan.nullable[level]:
            raise AssertionError(f"null in a non-null position at {list(path)}")
        if upstream is not None and not any(p[: len(path)] == path for p in error_paths):
            raise AssertionError(f"{list(path)} became null with no redaction under it")
        return
    if level < len(fplan.nullable) - 1:
        for i, (up, out) in enumerate(zip(upstream, output, strict=True)):
            _check_value(fplan, level + 1, up, out, (*path, i), error_paths)
    elif fplan.child is not None:
        _check_object(fplan.child, upstream, output, path, error_paths)


def _reaches_null(data: Any, path: Path) -> bool:
    node = data
    for step in path:
        if node is None:
            return True
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            return False
    return node is None


def _code(error: Any) -> Any:
    ext = error.get("extensions") if isinstance(error, dict) else None
    return ext.get("code") if isinstance(ext, dict) else None


def _type_plan(sel: SelectionPlan, obj: dict[str, Any]) -> TypePlan | None:
    if sel.only is not None:
        return sel.only
    typename = obj.get(sel.typename_key) if sel.typename_key else None
    return sel.by_type.get(typename) if isinstance(typename, str) else None


def _all_fields(tp: TypePlan) -> Iterator[FieldPlan]:
    yield from tp.plain_fields.values()
    yield from tp.work


def _fields(
    sel: SelectionPlan, obj: dict[str, Any], path: Path
) -> Iterator[tuple[Path, FieldPlan, Any]]:
    tp = _type_plan(sel, obj)
    if tp is None:
        return
    for fplan in _all_fields(tp):
        if fplan.key not in obj:
            continue
        fpath = (*path, fplan.key)
        yield fpath, fplan, obj[fplan.key]
        if fplan.action is Action.KEEP and fplan.child is not None:
            for item_path, item in _objects(obj[fplan.key], fpath):
                yield from _fields(fplan.child, item, item_path)


def _objects(value: Any, path: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    if isinstance(value, dict):
        yield path, value
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _objects(item, (*path, i))


def _leaves(value: Any, path: Path) -> Iterator[tuple[Path, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _leaves(item, (*path, i))
    elif value is not None:
        yield path, value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
