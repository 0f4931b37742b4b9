"""Loading a GraphQL schema from SDL and naming its field coordinates (`Type.field`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from graphql import (
    GraphQLError,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLSchema,
    build_client_schema,
    build_schema,
)

from intelgraph_privacy.errors import ConfigError


def load_schema(path: str | Path) -> GraphQLSchema:
    """Build a schema from an SDL file; a syntax or schema error names the file."""
    path = Path(path)
    try:
        sdl = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read schema: {exc.strerror}") from exc
    return schema_from_sdl(sdl, source=str(path))


def schema_from_sdl(sdl: str, *, source: str = "<sdl>") -> GraphQLSchema:
    """Build a schema from SDL text."""
    try:
        return build_schema(sdl)
    except (GraphQLError, TypeError) as exc:
        raise ConfigError(f"{source}: invalid GraphQL schema: {exc}") from exc


def field_coordinates(schema: GraphQLSchema) -> dict[str, list[str]]:
    """Map each object and interface type to the names of its fields (introspection excluded)."""
    result: dict[str, list[str]] = {}
    for name, gtype in schema.type_map.items():
        if name.startswith("__"):
            continue
        if isinstance(gtype, GraphQLObjectType | GraphQLInterfaceType):
            result[name] = list(gtype.fields)
    return result


def schema_from_introspection(
    result: Mapping[str, Any], *, source: str = "<introspection>"
) -> GraphQLSchema:
    """Build a schema from an introspection query result (its `data` object)."""
    try:
        return build_client_schema(result)  # type: ignore[arg-type]
    except (GraphQLError, TypeError, KeyError) as exc:
        raise ConfigError(f"{source}: invalid introspection result: {exc}") from exc
