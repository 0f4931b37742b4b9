"""The executable GraphQL schema: `presets/demo.graphql` with resolvers over a `SampleGraph`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from graphql import (
    GraphQLAbstractType,
    GraphQLError,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLResolveInfo,
    GraphQLSchema,
    GraphQLUnionType,
)

import samplegraph
from intelgraph_privacy.errors import ConfigError
from intelgraph_privacy.schema import load_schema
from samplegraph.graph import Row, SampleGraph, type_of

#: Largest `first` any list field accepts; beyond it the field fails with an error.
MAX_FIRST: Final = 1000
#: `people` returns this many when `first` is omitted.
DEFAULT_PEOPLE_PAGE: Final = 20

Resolver = Callable[..., Any]
Info = GraphQLResolveInfo[Any]


def default_sdl_path() -> Path:
    """`presets/demo.graphql` of the checkout the package is installed from (editable)."""
    return Path(samplegraph.__file__).resolve().parents[1] / "presets" / "demo.graphql"


def _first(value: int | None, default: int | None) -> int | None:
    if value is None:
        return default
    if not 0 <= value <= MAX_FIRST:
        raise GraphQLError(f"first must be between 0 and {MAX_FIRST}, got {value}")
    return value


def _resolvers(graph: SampleGraph) -> dict[str, dict[str, Resolver]]:
    """Resolvers by type and field; scalars use the default resolver (dict keys)."""

    def people(
        _: None, info: Info, first: int | None = None, after: str | None = None
    ) -> list[Row]:
        limit = _first(first, DEFAULT_PEOPLE_PAGE)
        assert limit is not None  # a default is given
        return graph.people(limit, after)

    def cohort(_: None, info: Info, groupBy: list[str]) -> list[Row]:  # noqa: N803
        try:
            return graph.cohort(groupBy)
        except ValueError as exc:
            raise GraphQLError(str(exc)) from exc

    return {
        "Query": {
            "people": people,
            "person": lambda _, info, id: graph.person(id),
            "node": lambda _, info, id: graph.node(id),
            "search": lambda _, info, text: graph.search(text),
            "cohort": cohort,
        },
        "Person": {
            "knows": lambda p, info, first=None: graph.knows(p["id"], _first(first, None)),
            "employer": lambda p, info: (
                graph.organization(p["employerId"]) if p["employerId"] else None
            ),
            "cases": lambda p, info: graph.cases_of(p["id"]),
        },
        "Organization": {
            "employees": lambda o, info, first=None: graph.employees(o["id"], _first(first, None)),
        },
        "Case": {
            "subjects": lambda c, info: graph.subjects(c["id"]),
        },
    }


def _resolve_type(value: Row, info: Info, abstract: GraphQLAbstractType) -> str | None:
    # Every row carries its global ID, whose prefix names its type.
    return type_of(str(value["id"]))


def build_executable_schema(graph: SampleGraph, *, sdl_path: Path | None = None) -> GraphQLSchema:
    """Build the schema from SDL (default `default_sdl_path()`) and attach `graph`'s resolvers.

    Raises ConfigError when the SDL is missing, invalid, or lacks a field the resolvers serve.
    """
    schema = load_schema(sdl_path or default_sdl_path())
    for type_name, fields in _resolvers(graph).items():
        gtype = schema.get_type(type_name)
        if not isinstance(gtype, GraphQLObjectType):
            raise ConfigError(f"schema has no object type {type_name}")
        for field_name, resolver in fields.items():
            if field_name not in gtype.fields:
                raise ConfigError(f"schema has no field {type_name}.{field_name}")
            gtype.fields[field_name].resolve = resolver
    for gtype in schema.type_map.values():
        if isinstance(gtype, GraphQLInterfaceType | GraphQLUnionType):
            gtype.resolve_type = _resolve_type
    return schema
