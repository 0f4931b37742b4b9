"""Hypothesis strategies over a schema: principals, catalog-aware queries, matching responses.

Queries come from hypothesis-graphql, which writes fields, arguments and inline fragments; this
module adds what it does not: aliases (drawn from the schema's own field names, so `name: ssn`
is tried), named fragments and `@include`/`@skip`. Responses are built from the planned shape of
a query, with a unique canary value at every leaf so a leak can be found by value.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    ArgumentNode,
    BooleanValueNode,
    DirectiveNode,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLEnumType,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    NamedTypeNode,
    NameNode,
    OperationDefinitionNode,
    SelectionNode,
    SelectionSetNode,
    print_ast,
    validate,
)
from hypothesis import assume
from hypothesis import strategies as st
from hypothesis_graphql import queries as graphql_queries

from intelgraph_privacy.principal import Principal
from intelgraph_privacy.redact.shape import FieldShape, SelectionShape, Shape

#: Role names the shipped policies know, plus one they do not.
DEFAULT_ROLES = (
    "analyst",
    "investigator",
    "high-clearance",
    "restricted-clearance",
    "admin",
    "auditor",
)
DEFAULT_PURPOSES = ("investigation", "analytics", "export", "administration", "marketing")


def principals(
    roles: Sequence[str] = DEFAULT_ROLES,
    purposes: Sequence[str] = DEFAULT_PURPOSES,
    *,
    tenants: Sequence[str] = ("t1", "t2"),
) -> st.SearchStrategy[Principal]:
    """Principals with any subset of `roles` and one of `purposes`."""
    return st.builds(
        Principal,
        sub=st.sampled_from(("u1", "u2", "u3")),
        tenant=st.sampled_from(tuple(tenants)),
        roles=st.lists(st.sampled_from(tuple(roles)), unique=True, max_size=len(roles)).map(tuple),
        purpose=st.sampled_from(tuple(purposes)),
        region=st.sampled_from((None, "eu", "us")),
    )


def queries(
    schema: GraphQLSchema,
    *,
    fields: Iterable[str] | None = None,
    aliases: bool = True,
    named_fragments: bool = True,
    directives: bool = True,
) -> st.SearchStrategy[str]:
    """Valid query documents over `schema` (optionally only the given root fields)."""
    base = graphql_queries(
        schema,
        fields=list(fields) if fields is not None else None,
        print_ast=lambda node: node,
        allow_x00=False,
        allow_null=True,
    )
    alias_pool = _alias_pool(schema)

    @st.composite
    def build(draw: st.DrawFn) -> str:
        document: DocumentNode = draw(base)
        editor = _Editor(draw, alias_pool, aliases, named_fragments, directives)
        document = editor.document(document)
        text = print_ast(document)
        assume(not validate(schema, document))
        return text

    return build()


def _alias_pool(schema: GraphQLSchema) -> tuple[str, ...]:
    names = {"a", "b", "x1"}
    for gtype in schema.type_map.values():
        if isinstance(
            gtype, GraphQLObjectType | GraphQLInterfaceType
        ) and not gtype.name.startswith("__"):
            names.update(n for n in gtype.fields if not n.startswith("__"))
    return tuple(sorted(names))


class _Editor:
    """Adds aliases, named fragments and directives to a generated document."""

    def __init__(
        self,
        draw: st.DrawFn,
        pool: tuple[str, ...],
        aliases: bool,
        named_fragments: bool,
        directives: bool,
    ) -> None:
        self.draw = draw
        self.pool = pool
        self.aliases = aliases
        self.named_fragments = named_fragments
        self.directives = directives
        self.fragments: list[FragmentDefinitionNode] = []

    def document(self, document: DocumentNode) -> DocumentNode:
        definitions: list[Any] = []
        for definition in document.definitions:
            if isinstance(definition, OperationDefinitionNode):
                selections = self.level(definition.selection_set)
                definitions.append(dataclasses.replace(definition, selection_set=selections))
            else:
                definitions.append(definition)
        return DocumentNode(definitions=(*definitions, *self.fragments))

    def level(self, node: SelectionSetNode) -> SelectionSetNode:
        # Response keys merge across inline fragments of one level: keep aliases unique there.
        used = set(_level_keys(node))
        return self._rewrite(node, used)

    def _rewrite(self, node: SelectionSetNode, used: set[str]) -> SelectionSetNode:
        out: list[SelectionNode] = []
        for sel in node.selections:
            out.append(self._selection(sel, used))
        return dataclasses.replace(node, selections=tuple(out))

    def _selection(self, sel: SelectionNode, used: set[str]) -> SelectionNode:
        if isinstance(sel, FieldNode):
            changes: dict[str, Any] = {}
            if sel.selection_set is not None:
                changes["selection_set"] = self.level(sel.selection_set)
            if self.aliases and self.draw(st.booleans()):
                free = [a for a in self.pool if a not in used]
                if free:
                    alias = self.draw(st.sampled_from(free))
                    used.add(alias)
                    changes["alias"] = NameNode(value=alias)
            if self.directives and self.draw(st.integers(0, 5)) == 0:
                changes["directives"] = (self._directive(),)
            return dataclasses.replace(sel, **changes) if changes else sel
        if isinstance(sel, InlineFragmentNode):
            inner = self._rewrite(sel.selection_set, used)
            if self.named_fragments and sel.type_condition is not None and self.draw(st.booleans()):
                name = f"F{len(self.fragments)}"
                self.fragments.append(
                    FragmentDefinitionNode(
                        name=NameNode(value=name),
                        type_condition=NamedTypeNode(name=sel.type_condition.name),
                        selection_set=inner,
                    )
                )
                return FragmentSpreadNode(name=NameNode(value=name))
            return dataclasses.replace(sel, selection_set=inner)
        return sel

    def _directive(self) -> DirectiveNode:
        name = self.draw(st.sampled_from(("include", "skip")))
        value = self.draw(st.booleans())
        return DirectiveNode(
            name=NameNode(value=name),
            arguments=(
                ArgumentNode(name=NameNode(value="if"), value=BooleanValueNode(value=value)),
            ),
        )


def _level_keys(node: SelectionSetNode) -> Iterable[str]:
    for sel in node.selections:
        if isinstance(sel, FieldNode):
            yield sel.alias.value if sel.alias else sel.name.value
        elif isinstance(sel, InlineFragmentNode):
            yield from _level_keys(sel.selection_set)


@dataclass
class Canaries:
    """Unique, recognisable leaf values, recorded by coordinate so leaks can be found."""

    counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    by_coordinate: dict[str, list[Any]] = field(default_factory=dict)

    def string(self, coordinate: str) -> str:
        """A unique string that no transform can produce."""
        value = f"cnry{next(self.counter):05d}x{coordinate.replace('.', '')}"
        self.by_coordinate.setdefault(coordinate, []).append(value)
        return value

    def integer(self, coordinate: str) -> int:
        """A unique integer ending in 3: band generalisation (multiples of 10) never yields one."""
        value = 1_000_000_003 + 10 * next(self.counter)
        self.by_coordinate.setdefault(coordinate, []).append(value)
        return value

    def number(self, coordinate: str) -> float:
        """A unique float with a .375 fraction, never a band start."""
        value = 1_000_000.375 + next(self.counter)
        self.by_coordinate.setdefault(coordinate, []).append(value)
        return value


def responses(
    schema: GraphQLSchema,
    shape: Shape,
    canaries: Canaries | None = None,
    *,
    max_list: int = 3,
    null_chance: float = 0.1,
) -> st.SearchStrategy[dict[str, Any]]:
    """Upstream responses to a planned operation: `{"data": ...}` matching its shape.

    Every String/ID leaf gets a canary string, every Int and Float a canary number, recorded in
    `canaries` (pass one in to read them after drawing).
    """
    sink = canaries if canaries is not None else Canaries()

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        maker = _ResponseMaker(draw, schema, sink, max_list, null_chance)
        return {"data": maker.object(shape.root)}

    return build()


class _ResponseMaker:
    def __init__(
        self,
        draw: st.DrawFn,
        schema: GraphQLSchema,
        canaries: Canaries,
        max_list: int,
        null_chance: float,
    ) -> None:
        self.draw = draw
        self.schema = schema
        self.canaries = canaries
        self.max_list = max_list
        self.null_chance = null_chance

    def object(self, selection: SelectionShape) -> dict[str, Any]:
        type_name = self.draw(st.sampled_from(sorted(selection.by_type)))
        out: dict[str, Any] = {}
        for key, fshape in selection.by_type[type_name].items():
            if fshape.meta and fshape.coordinate.endswith(".__typename"):
                out[key] = type_name
            elif not fshape.meta:
                out[key] = self.value(fshape, 0)
        return out

    def value(self, fshape: FieldShape, level: int) -> Any:
        if fshape.nullable[level] and self.draw(st.floats(0, 1)) < self.null_chance:
            return None
        if level < len(fshape.nullable) - 1:
            size = self.draw(st.integers(0, self.max_list))
            return [self.value(fshape, level + 1) for _ in range(size)]
        if fshape.child is not None:
            return self.object(fshape.child)
        return self.leaf(fshape)

    def leaf(self, fshape: FieldShape) -> Any:
        gtype = self.schema.get_type(fshape.type_name)
        if fshape.type_name == "Int":
            return self.canaries.integer(fshape.coordinate)
        if fshape.type_name == "Float":
            return self.canaries.number(fshape.coordinate)
        if fshape.type_name == "Boolean":
            return self.draw(st.booleans())
        if isinstance(gtype, GraphQLEnumType):
            return self.draw(st.sampled_from(sorted(gtype.values)))
        return self.canaries.string(fshape.coordinate)
