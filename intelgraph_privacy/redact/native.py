"""The native walker and the tuple form of a plan that it walks.

`_walk` is a C extension (built from `_walk.c` when the package is installed) that performs
exactly the walk of `apply._Walk` in mutate mode; the pure-Python walker remains the reference,
is used for preview, and takes over when the extension is not built or when
INTELGRAPH_PRIVACY_PURE_PYTHON=1. Tests run both on the same inputs and compare the results.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import TYPE_CHECKING, Any

from intelgraph_privacy.actions import Action

if TYPE_CHECKING:
    from intelgraph_privacy.redact.plan import FieldPlan, SelectionPlan, TypePlan

_walk: ModuleType | None
try:
    from intelgraph_privacy.redact import _walk  # type: ignore[attr-defined, no-redef]
except ImportError:  # the extension was not built: the Python walker serves
    _walk = None

#: True when responses are rewritten by the C walker.
NATIVE_WALKER = _walk is not None and os.environ.get("INTELGRAPH_PRIVACY_PURE_PYTHON") != "1"

#: Action codes the C walker understands.
ACTION_CODES = {
    Action.KEEP: 0,
    Action.GENERALISE: 1,
    Action.MASK: 2,
    Action.HASH: 3,
    Action.NULL: 4,
}


def native_walker() -> ModuleType | None:
    """The C walker module, or None when it is not available or disabled."""
    return _walk if NATIVE_WALKER else None


def native_form(sel: SelectionPlan) -> tuple[Any, ...]:
    """S = (only T | None, {typename: T}, typename_key | None)."""
    by_type = {name: _type(tp) for name, tp in sel.by_type.items()}
    only = by_type[next(iter(by_type))] if sel.only is not None else None
    return (only, by_type, sel.typename_key)


def _type(tp: TypePlan) -> tuple[Any, ...]:
    # T = (allowed frozenset, plain fields, work fields, {key: position in plain + work})
    plain = [tp.plain_fields[k] for k in tp.plain_keys]
    return (
        tp.allowed,
        tuple(_field(f) for f in plain),
        tuple(_field(f) for f in tp.work),
        {f.key: i for i, f in enumerate([*plain, *tp.work])},
    )


def _field(fp: FieldPlan) -> tuple[Any, ...]:
    # F = (key, code, nullable, child S | None, injected, opaque, slot, message, coordinate,
    #      band, transform, pseudonym cache | None)
    return (
        fp.key,
        ACTION_CODES[fp.action],
        fp.nullable,
        native_form(fp.child) if fp.child is not None else None,
        fp.injected,
        fp.opaque,
        fp.slot,
        fp.error_message,
        fp.coordinate,
        float(fp.band),
        fp.transform,
        getattr(fp.transform, "cache", None) if fp.action is Action.HASH else None,
    )
