"""Document guards: depth, aliases and introspection of one operation, fragments expanded.

Fragments are measured once each and their totals multiplied by use, so a document that spreads
one fragment many times is measured by what it would make the upstream do, without walking the
expansion itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
)

from sidecar.errors import ClientError

_INTROSPECTION_FIELDS = frozenset({"__schema", "__type"})


@dataclass(frozen=True, slots=True)
class DocumentMeasure:
    """What one operation asks for, counted over its fragment expansion."""

    depth: int
    aliases: int
    introspection: bool


def measure(document: DocumentNode, operation: OperationDefinitionNode) -> DocumentMeasure:
    """Depth, alias count and introspection use of `operation` in a validated document."""
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    memo: dict[str, DocumentMeasure] = {}

    def selection_set(node: SelectionSetNode | None, visiting: frozenset[str]) -> DocumentMeasure:
        depth = aliases = 0
        introspection = False
        for sel in node.selections if node is not None else ():
            if isinstance(sel, FieldNode):
                inner = selection_set(sel.selection_set, visiting)
                depth = max(depth, 1 + inner.depth)
                aliases += inner.aliases + (1 if sel.alias is not None else 0)
                introspection |= inner.introspection or sel.name.value in _INTROSPECTION_FIELDS
                continue
            if isinstance(sel, InlineFragmentNode):
                inner = selection_set(sel.selection_set, visiting)
            elif isinstance(sel, FragmentSpreadNode):
                inner = fragment(sel.name.value, visiting)
            else:  # pragma: no cover - graphql-core has no other selection kinds
                continue
            depth = max(depth, inner.depth)
            aliases += inner.aliases
            introspection |= inner.introspection
        return DocumentMeasure(depth, aliases, introspection)

    def fragment(name: str, visiting: frozenset[str]) -> DocumentMeasure:
        if name in memo:
            return memo[name]
        definition = fragments.get(name)
        if definition is None or name in visiting:
            # Validation refuses unknown and cyclic spreads; measure nothing rather than loop.
            return DocumentMeasure(0, 0, False)
        memo[name] = selection_set(definition.selection_set, visiting | {name})
        return memo[name]

    return selection_set(operation.selection_set, frozenset())


def check_document(
    measured: DocumentMeasure,
    *,
    max_depth: int,
    max_aliases: int,
    introspection_allowed: bool,
) -> None:
    """Raise a 400 ClientError naming the first limit the operation exceeds."""
    if measured.depth > max_depth:
        raise ClientError(
            400,
            f"the operation is {measured.depth} fields deep; the limit is {max_depth}",
            "DEPTH_LIMIT",
        )
    if measured.aliases > max_aliases:
        raise ClientError(
            400,
            f"the operation uses {measured.aliases} aliases; the limit is {max_aliases}",
            "ALIAS_LIMIT",
        )
    if measured.introspection and not introspection_allowed:
        raise ClientError(
            400, "introspection is not allowed for this principal", "INTROSPECTION_DISABLED"
        )
