"""Compiling a shape and a policy decision into a redaction plan over response paths."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from intelgraph_privacy.actions import Action
from intelgraph_privacy.catalog import Catalog
from intelgraph_privacy.policy import Decision
from intelgraph_privacy.redact.native import NATIVE_WALKER, native_form
from intelgraph_privacy.redact.shape import INTROSPECTION_FIELDS, FieldShape, SelectionShape, Shape
from intelgraph_privacy.redact.transforms import Pseudonymizer, generalise, mask

Transform = Callable[[object], object]


@dataclass(frozen=True, slots=True, eq=False)
class FieldPlan:
    """What one response key of one concrete type becomes."""

    key: str
    coordinate: str
    #: The action applied: composite fields only ever keep (and recurse) or null.
    action: Action
    nullable: tuple[bool, ...]
    child: SelectionPlan | None
    #: For mask, hash and generalise: value -> replacement (None = cannot, so null).
    transform: Transform | None
    injected: bool
    #: Introspection output, passed through untouched (only planned when allowed).
    opaque: bool
    error_message: str
    #: Index of this field in `Plan.fields` (counters are kept per slot).
    slot: int
    #: Generalisation band width (used by the generalise transform).
    band: float


@dataclass(frozen=True, slots=True)
class TypePlan:
    """The keys an object of one concrete type may carry and the work each needs."""

    #: Every key the plan knows; anything else in a response is dropped (fail closed).
    allowed: frozenset[str]
    #: Kept scalar keys that need only a type check.
    plain_keys: tuple[str, ...]
    plain_fields: dict[str, FieldPlan]
    #: The plain keys whose schema type is non-null.
    plain_required: tuple[str, ...]
    #: Keys that need a transform, a null, a recursion or removal.
    work: tuple[FieldPlan, ...]


@dataclass(frozen=True, slots=True)
class SelectionPlan:
    """Per concrete type plans for one object position."""

    by_type: dict[str, TypePlan]
    #: The only type plan when the position is not abstract (no `__typename` needed).
    only: TypePlan | None
    typename_key: str | None


@dataclass(frozen=True, slots=True)
class Plan:
    """A compiled redaction plan for one operation, principal and policy version."""

    operation_name: str | None
    operation_type: str
    root: SelectionPlan
    upstream_document: str
    coordinates: frozenset[str]
    decision: Decision
    #: Coordinates whose action is deny: the whole operation is refused.
    denied: tuple[str, ...]
    #: Every FieldPlan of the plan, indexed by its slot.
    fields: tuple[FieldPlan, ...]
    #: The plan as nested tuples for the native walker (see `redact/native.py`).
    native: object = None
    #: The response key carrying each object's subject id, when the sidecar asked for it
    #: (`Shape.subject_alias`); removed by `apply`.
    subject_alias: str | None = None

    @property
    def policy_version(self) -> str:
        """The policy version the decision came from."""
        return self.decision.policy_version

    def actions(self) -> dict[str, Action]:
        """The decision for every coordinate the operation touches."""
        return dict(self.decision.actions)


def compile_plan(
    shape: Shape,
    decision: Decision,
    catalog: Catalog,
    *,
    pseudonymizer: Pseudonymizer | None = None,
    allow_introspection: bool = False,
) -> Plan:
    """Attach the decided action to every response key of the shape."""
    missing = shape.coordinates - decision.actions.keys()
    if missing:
        # The plan never guesses: a coordinate without a decision is a caller bug.
        raise ValueError(f"decision lacks coordinates: {sorted(missing)}")
    compiler = _Compiler(decision, catalog, pseudonymizer, allow_introspection)
    denied = tuple(sorted(c for c in shape.coordinates if decision.actions[c] is Action.DENY))
    root = compiler.selection(shape.root)
    return Plan(
        operation_name=shape.operation_name,
        operation_type=shape.operation_type,
        root=root,
        upstream_document=shape.upstream_document,
        coordinates=shape.coordinates,
        decision=decision,
        denied=denied,
        fields=tuple(compiler.fields),
        native=native_form(root) if NATIVE_WALKER else None,
        subject_alias=shape.subject_alias,
    )


class _Compiler:
    def __init__(
        self,
        decision: Decision,
        catalog: Catalog,
        pseudonymizer: Pseudonymizer | None,
        allow_introspection: bool,
    ) -> None:
        self.decision = decision
        self.catalog = catalog
        self.pseudonymizer = pseudonymizer
        self.allow_introspection = allow_introspection
        self.fields: list[FieldPlan] = []

    def selection(self, shape: SelectionShape) -> SelectionPlan:
        by_type = {name: self.type_plan(fields) for name, fields in shape.by_type.items()}
        only = next(iter(by_type.values())) if shape.typename_key is None else None
        return SelectionPlan(by_type, only, shape.typename_key)

    def type_plan(self, fields: dict[str, FieldShape]) -> TypePlan:
        plain: dict[str, FieldPlan] = {}
        work: list[FieldPlan] = []
        for fshape in fields.values():
            fplan = self.field(fshape)
            simple_keep = (
                fplan.action is Action.KEEP
                and fplan.child is None
                and not fplan.injected
                and not fplan.opaque
                and len(fplan.nullable) == 1
            )
            if simple_keep:
                plain[fplan.key] = fplan
            else:
                work.append(fplan)
        required = tuple(k for k, f in plain.items() if not f.nullable[0])
        return TypePlan(frozenset(fields), tuple(plain), plain, required, tuple(work))

    def field(self, fshape: FieldShape) -> FieldPlan:
        child = self.selection(fshape.child) if fshape.child is not None else None
        transform: Transform | None = None
        opaque = False
        if fshape.meta:
            field_name = fshape.coordinate.rpartition(".")[2]
            introspection = field_name in INTROSPECTION_FIELDS
            action = Action.NULL if introspection and not self.allow_introspection else Action.KEEP
            opaque = introspection and action is Action.KEEP
        else:
            action = self.decision.actions[fshape.coordinate]
            if action is Action.DENY:
                action = Action.NULL  # the operation is refused anyway; never serve the value
            elif action in (Action.MASK, Action.HASH, Action.GENERALISE):
                transform = self._transform(action, fshape.coordinate)
                if child is not None or transform is None:
                    # Objects cannot be masked, hashed or generalised: null them (fail closed).
                    action, transform = Action.NULL, None
        fplan = FieldPlan(
            key=fshape.key,
            coordinate=fshape.coordinate,
            action=action,
            nullable=fshape.nullable,
            child=child if action is Action.KEEP else None,
            transform=transform,
            injected=fshape.injected,
            opaque=opaque,
            error_message=f"{fshape.coordinate} is redacted by policy",
            slot=len(self.fields),
            band=10.0 if fshape.meta else self.catalog.entry(fshape.coordinate).band,
        )
        self.fields.append(fplan)
        return fplan

    def _transform(self, action: Action, coordinate: str) -> Transform | None:
        if action is Action.MASK:
            return mask
        if action is Action.HASH:
            return self.pseudonymizer
        band = self.catalog.entry(coordinate).band
        return partial(generalise, band=band)
