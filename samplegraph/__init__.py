"""The sample graph API: a deterministic synthetic intelligence graph behind GraphQL.

It is the upstream "existing graph API" that the demo, the tests and the benchmarks run the
privacy sidecar against. It implements `presets/demo.graphql` over a SQLite file and knows
nothing about privacy.

- `generate_database(path, people=5000, seed=20261126)`: write (or reuse) the SQLite file;
- `SampleGraph(path)`: read rows directly (`person(id)`, `people(first, after)`, ...);
- `build_executable_schema(graph)`: the GraphQL schema with resolvers;
- `create_app(db_path)`: the aiohttp application (`/graphql`, `/healthz`);
- `BackgroundServer(db_path)`: that application served from a thread, for tests and demos.

Run it alone with `python -m samplegraph --port 8081 --data-dir DIR`.
"""

from samplegraph.data import (
    DEFAULT_PEOPLE,
    DEFAULT_SEED,
    GENERATOR_VERSION,
    REFERENCE_DATE,
    database_digest,
    generate_database,
    read_metadata,
)
from samplegraph.graph import COHORT_KEYS, SEARCH_LIMIT, SampleGraph, type_of
from samplegraph.schema import MAX_FIRST, build_executable_schema, default_sdl_path
from samplegraph.server import BackgroundServer, create_app, execute_request

__all__ = [
    "COHORT_KEYS",
    "DEFAULT_PEOPLE",
    "DEFAULT_SEED",
    "GENERATOR_VERSION",
    "MAX_FIRST",
    "REFERENCE_DATE",
    "SEARCH_LIMIT",
    "BackgroundServer",
    "SampleGraph",
    "build_executable_schema",
    "create_app",
    "database_digest",
    "default_sdl_path",
    "execute_request",
    "generate_database",
    "read_metadata",
    "type_of",
]
