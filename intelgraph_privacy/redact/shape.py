"""The shape of an operation: every response key it can produce, resolved to schema coordinates.

Aliases, named and inline fragments, interfaces and unions are resolved here, per concrete type,
following the specification's CollectFields. `@include`/`@skip` are deliberately ignored: a field
they might drop is still planned (the shape is a superset of what any variables can select), so no
directive or variable can change what a response key is or what it becomes. Fields that return an
interface or union get the sidecar's own `__typename` under a reserved alias, so the concrete type
of every abstract object is known when the response is rewritten.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLCompositeType,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNamedType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLSchema,
    GraphQLUnionType,
    InlineFragmentNode,
    NamedTypeNode,
    NameNode,
    OperationDefinitionNode,
    SelectionNode,
    SelectionSetNode,
    get_named_type,
    print_ast,
)

from intelgraph_privacy.errors import PlanError

TYPENAME = "__typename"
INTROSPECTION_FIELDS = frozenset({"__schema", "__type"})
_TYPENAME_ALIAS = "_igTypename"
_SUBJECT_ALIAS = "_igSubject"
_ABSTRACT = (GraphQLInterfaceType, GraphQLUnionType)
_COMPOSITE = (GraphQLObjectType, GraphQLInterfaceType, GraphQLUnionType)


@dataclass(frozen=True, slots=True)
class FieldShape:
    """One response key of one concrete type."""

    key: str
    coordinate: str
    #: The named type the field returns (`String`, `Person`, `SearchResult`...).
    type_name: str
    #: Nullability of each position, outermost first: `[Person!]!` -> (False, False).
    nullable: tuple[bool, ...]
    #: The sidecar's own `__typename`, removed from the response after use.
    injected: bool
    #: `__typename` (always kept) or an introspection field (opaque).
    meta: bool
    child: SelectionShape | None


@dataclass(frozen=True, slots=True)
class SelectionShape:
    """The keys an object can carry, per concrete type it can have."""

    by_type: dict[str, dict[str, FieldShape]]
    #: Response key carrying the concrete type name, for abstract positions.
    typename_key: str | None


@dataclass(frozen=True, slots=True)
class Shape:
    """A planned operation, independent of who asks and of variables."""

    operation_name: str | None
    operation_type: str
    root: SelectionShape
    #: Every schema coordinate the operation can touch (meta fields excluded).
    coordinates: frozenset[str]
    #: The operation the upstream must receive: the one selected, its fragments, and `__typename`.
    upstream_document: str
    typename_alias: str
    #: The prefix of the injected subject keys (`_igSubject_Person: id`, one alias per type),
    #: when subject keys are asked for: every object of a type with one then carries it.
    subject_alias: str | None = None


def build_shape(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation_name: str | None = None,
    *,
    subject_keys: Mapping[str, str] | None = None,
) -> Shape:
    """Resolve a validated document's operation to its shape.

    `subject_keys` (object type name -> its subject-key field): under every selection of such a
    type the upstream document also asks for `<subject alias>: <field>`, removed from the
    response after use (the sidecar withholds objects of erased subjects by it).
    """
    operation = _select_operation(document, operation_name)
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    root_type = schema.get_root_type(operation.operation)
    if root_type is None:
        raise PlanError(f"the schema has no {operation.operation.value} type")
    alias = _free_alias(document)
    subject_alias = _free_alias(document, _SUBJECT_ALIAS, prefix=True) if subject_keys else None
    rewriter = _TypenameInjector(schema, alias, subject_keys or {}, subject_alias)
    used = _used_fragments(operation, fragments)
    operation = dataclasses.replace(
        operation, selection_set=rewriter.selection_set(operation.selection_set, root_type)
    )
    rewritten: dict[str, FragmentDefinitionNode] = {}
    for name in used:
        frag = fragments[name]
        cond = schema.get_type(frag.type_condition.name.value)
        if not isinstance(cond, _COMPOSITE):
            raise PlanError(f"fragment {name} is on a type the schema does not have")
        rewritten[name] = dataclasses.replace(
            frag, selection_set=rewriter.selection_set(frag.selection_set, cond)
        )
    upstream = DocumentNode(definitions=(operation, *rewritten.values()))
    collector = _Collector(schema, rewritten, alias, subject_alias)
    root = collector.selection([operation.selection_set], root_type)
    return Shape(
        operation_name=operation.name.value if operation.name else None,
        operation_type=operation.operation.value,
        root=root,
        coordinates=frozenset(collector.coordinates),
        upstream_document=print_ast(upstream),
        typename_alias=alias,
        subject_alias=subject_alias,
    )


def _select_operation(document: DocumentNode, name: str | None) -> OperationDefinitionNode:
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if name:
        for op in operations:
            if op.name and op.name.value == name:
                return op
        raise PlanError(f"unknown operation named {name!r}")
    if len(operations) == 1:
        return operations[0]
    if not operations:
        raise PlanError("the document has no operation")
    raise PlanError("the document has several operations: operationName is required")


def _used_fragments(
    operation: OperationDefinitionNode, fragments: dict[str, FragmentDefinitionNode]
) -> list[str]:
    used: list[str] = []
    pending: list[SelectionSetNode] = [operation.selection_set]
    while pending:
        for sel in pending.pop().selections:
            if isinstance(sel, FragmentSpreadNode):
                name = sel.name.value
                if name not in fragments:
                    raise PlanError(f"unknown fragment {name!r}")
                if name not in used:
                    used.append(name)
                    pending.append(fragments[name].selection_set)
            elif isinstance(sel, FieldNode | InlineFragmentNode) and sel.selection_set:
                pending.append(sel.selection_set)
    return used


def _free_alias(
    document: DocumentNode, base: str = _TYPENAME_ALIAS, *, prefix: bool = False
) -> str:
    """An alias no field of the document uses (with `prefix`: that no field name starts with)."""
    names: set[str] = set()
    pending = [
        d.selection_set
        for d in document.definitions
        if isinstance(d, OperationDefinitionNode | FragmentDefinitionNode)
    ]
    while pending:
        for sel in pending.pop().selections:
            if isinstance(sel, FieldNode):
                names.add(sel.name.value)
                if sel.alias:
                    names.add(sel.alias.value)
            if isinstance(sel, FieldNode | InlineFragmentNode) and sel.selection_set:
                pending.append(sel.selection_set)

    def taken(alias: str) -> bool:
        return any(n.startswith(alias) for n in names) if prefix else alias in names

    alias, n = base, 0
    while taken(alias):
        n += 1
        alias = f"{base}{n}"
    return alias


def _field_type(parent: GraphQLCompositeType, name: str) -> GraphQLOutputType | None:
    if isinstance(parent, GraphQLObjectType | GraphQLInterfaceType):
        fdef = parent.fields.get(name)
        return fdef.type if fdef is not None else None
    return None


class _TypenameInjector:
    """Adds `alias: __typename` to every selection set of an interface or union type, and
    `subject alias: <subject key>` under every type with a subject key (when asked)."""

    def __init__(
        self,
        schema: GraphQLSchema,
        alias: str,
        subject_keys: Mapping[str, str],
        subject_alias: str | None,
    ) -> None:
        self.schema = schema
        self.field = FieldNode(alias=NameNode(value=alias), name=NameNode(value=TYPENAME))
        self.subject_keys = subject_keys
        self.subject_alias = subject_alias

    def _subject_selections(self, named: GraphQLCompositeType) -> tuple[SelectionNode, ...]:
        """`alias: key` for an object type with a subject key; for an abstract type, the same
        under an inline fragment per possible type that has one."""
        prefix = self.subject_alias
        if prefix is None:
            return ()
        if isinstance(named, GraphQLObjectType):
            key = self.subject_keys.get(named.name)
            alias = NameNode(value=f"{prefix}_{named.name}")
            return (FieldNode(alias=alias, name=NameNode(value=key)),) if key else ()
        fragments: list[SelectionNode] = []
        for possible in self.schema.get_possible_types(named):
            key = self.subject_keys.get(possible.name)
            alias = NameNode(value=f"{prefix}_{possible.name}")
            if key:
                fragments.append(
                    InlineFragmentNode(
                        type_condition=NamedTypeNode(name=NameNode(value=possible.name)),
                        selection_set=SelectionSetNode(
                            selections=(FieldNode(alias=alias, name=NameNode(value=key)),)
                        ),
                    )
                )
        return tuple(fragments)

    def selection_set(
        self, node: SelectionSetNode, parent: GraphQLCompositeType
    ) -> SelectionSetNode:
        out: list[SelectionNode] = []
        for sel in node.selections:
            out.append(self._selection(sel, parent))
        return dataclasses.replace(node, selections=tuple(out))

    def _selection(self, sel: SelectionNode, parent: GraphQLCompositeType) -> SelectionNode:
        if isinstance(sel, FieldNode) and sel.selection_set is not None:
            ftype = _field_type(parent, sel.name.value)
            named = get_named_type(ftype) if ftype is not None else None
            if isinstance(named, _COMPOSITE):
                sub = self.selection_set(sel.selection_set, named)
                injected = self._subject_selections(named)
                if isinstance(named, _ABSTRACT):
                    injected = (self.field, *injected)
                if injected:
                    sub = dataclasses.replace(sub, selections=(*injected, *sub.selections))
                return dataclasses.replace(sel, selection_set=sub)
        elif isinstance(sel, InlineFragmentNode):
            cond = (
                self.schema.get_type(sel.type_condition.name.value)
                if sel.type_condition
                else parent
            )
            if isinstance(cond, _COMPOSITE):
                return dataclasses.replace(
                    sel, selection_set=self.selection_set(sel.selection_set, cond)
                )
        return sel


class _Collector:
    """CollectFields per concrete type, recursively, into FieldShape trees."""

    def __init__(
        self,
        schema: GraphQLSchema,
        fragments: dict[str, FragmentDefinitionNode],
        alias: str,
        subject_alias: str | None = None,
    ) -> None:
        self.schema = schema
        self.fragments = fragments
        self.alias = alias
        self.subject_alias = subject_alias
        self.coordinates: set[str] = set()

    def selection(
        self, selection_sets: list[SelectionSetNode], named: GraphQLCompositeType
    ) -> SelectionShape:
        concrete: list[GraphQLObjectType]
        if isinstance(named, _ABSTRACT):
            concrete = list(self.schema.get_possible_types(named))
            typename_key: str | None = self.alias
        else:
            assert isinstance(named, GraphQLObjectType)
            concrete = [named]
            typename_key = None
        by_type = {t.name: self.fields(t, selection_sets) for t in concrete}
        return SelectionShape(by_type, typename_key)

    def fields(
        self, runtime: GraphQLObjectType, selection_sets: list[SelectionSetNode]
    ) -> dict[str, FieldShape]:
        grouped: dict[str, list[FieldNode]] = {}
        visited: set[str] = set()
        for ss in selection_sets:
            self._collect(runtime, ss, grouped, visited)
        return {key: self._field(runtime, key, nodes) for key, nodes in grouped.items()}

    def _collect(
        self,
        runtime: GraphQLObjectType,
        node: SelectionSetNode,
        grouped: dict[str, list[FieldNode]],
        visited: set[str],
    ) -> None:
        for sel in node.selections:
            if isinstance(sel, FieldNode):
                key = sel.alias.value if sel.alias else sel.name.value
                grouped.setdefault(key, []).append(sel)
            elif isinstance(sel, InlineFragmentNode):
                condition = sel.type_condition.name.value if sel.type_condition else None
                if self._applies(runtime, condition):
                    self._collect(runtime, sel.selection_set, grouped, visited)
            elif isinstance(sel, FragmentSpreadNode):
                name = sel.name.value
                if name in visited:
                    continue
                visited.add(name)
                frag = self.fragments[name]
                if self._applies(runtime, frag.type_condition.name.value):
                    self._collect(runtime, frag.selection_set, grouped, visited)

    def _applies(self, runtime: GraphQLObjectType, condition: str | None) -> bool:
        if condition is None or condition == runtime.name:
            return True
        cond = self.schema.get_type(condition)
        return isinstance(cond, _ABSTRACT) and self.schema.is_sub_type(cond, runtime)

    def _field(self, runtime: GraphQLObjectType, key: str, nodes: list[FieldNode]) -> FieldShape:
        name = nodes[0].name.value
        coordinate = f"{runtime.name}.{name}"
        if name == TYPENAME:
            injected = key == self.alias
            return FieldShape(key, coordinate, "String", (False,), injected, True, None)
        if name in INTROSPECTION_FIELDS:
            return FieldShape(key, coordinate, name, (True,), False, True, None)
        if self.subject_alias is not None and key == f"{self.subject_alias}_{runtime.name}":
            # The sidecar's own copy of the subject key: read, then removed; no policy applies
            # (the client's own selection of the field, if any, is decided as usual).
            return FieldShape(key, coordinate, "ID", (True,), True, True, None)
        fdef = runtime.fields.get(name)
        if fdef is None:
            raise PlanError(f"type {runtime.name} has no field {name!r}")
        self.coordinates.add(coordinate)
        nullable, named = _unwrap(fdef.type)
        child = None
        if isinstance(named, _COMPOSITE):
            subsets = [n.selection_set for n in nodes if n.selection_set is not None]
            child = self.selection(subsets, named)
        return FieldShape(key, coordinate, named.name, nullable, False, False, child)


def _unwrap(gtype: GraphQLOutputType) -> tuple[tuple[bool, ...], GraphQLNamedType]:
    # Walk list and non-null wrappers: one nullability flag per position, outermost first.
    flags: list[bool] = []
    current: Any = gtype
    while True:
        if isinstance(current, GraphQLNonNull):
            flags.append(False)
            current = current.of_type
        else:
            flags.append(True)
        if isinstance(current, GraphQLList):
            current = current.of_type
            continue
        return tuple(flags), current


def iter_fields(selection: SelectionShape) -> Iterable[FieldShape]:
    """Every FieldShape under a selection, depth first."""
    for fields in selection.by_type.values():
        for fshape in fields.values():
            yield fshape
            if fshape.child is not None:
                yield from iter_fields(fshape.child)
