"""The sample graph API over HTTP: GraphQL-over-HTTP (application/json) on aiohttp.

It plays the "existing graph API" in front of which the privacy sidecar runs, so it knows
nothing about privacy: every field is returned in full.

Status codes: 400 when a request cannot start executing (body not JSON, bad request shape,
document syntax or validation errors, unknown operation, bad variables) with an errors-only
body; 405 for a mutation over GET; 415 for a POST that is not application/json; otherwise 200,
with field errors in `errors` next to `data`. A batch (JSON array) is answered with an array
of results, status 200.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any, Final

from aiohttp import web
from cachetools import LRUCache
from graphql import (
    DocumentNode,
    GraphQLError,
    GraphQLSchema,
    OperationType,
    execute_sync,
    get_operation_ast,
    parse,
    validate,
)
from graphql.execution.values import get_variable_values

from intelgraph_privacy import codec
from samplegraph.graph import SampleGraph
from samplegraph.schema import build_executable_schema

JSON: Final = "application/json"
GRAPH_KEY: Final = web.AppKey("samplegraph.graph", SampleGraph)
SCHEMA_KEY: Final = web.AppKey("samplegraph.schema", GraphQLSchema)
_DOCUMENTS_KEY: Final = web.AppKey("samplegraph.documents", LRUCache)
#: Parsed and validated documents kept per app (the sidecar and benchmarks repeat queries).
_DOCUMENT_CACHE_SIZE: Final = 512

Payload = dict[str, Any]


class RequestError(Exception):
    """A request that cannot be executed: answered with `errors` only and an HTTP status."""

    def __init__(self, status: int, errors: list[Payload]) -> None:
        super().__init__(errors[0]["message"] if errors else "bad request")
        self.status = status
        self.errors = errors


#: A cache entry: a parsed document with its validation errors, or the syntax error.
_Parsed = tuple[DocumentNode, list[Payload]] | RequestError


def _fail(message: str, status: int = 400) -> RequestError:
    return RequestError(status, [{"message": message}])


def _formatted(errors: list[GraphQLError]) -> list[Payload]:
    return [dict(error.formatted) for error in errors]


def _document(
    schema: GraphQLSchema, cache: LRUCache[str, _Parsed], query: str
) -> tuple[DocumentNode, list[Payload]]:
    """The parsed document and its validation errors (cached by query text)."""
    cached = cache.get(query)
    if cached is None:
        try:
            document = parse(query)
        except GraphQLError as exc:
            cached = RequestError(400, _formatted([exc]))
        else:
            cached = (document, _formatted(validate(schema, document)))
        cache[query] = cached
    if isinstance(cached, RequestError):
        raise cached
    return cached


def _parse_request(item: object) -> tuple[str, Payload | None, str | None]:
    if not isinstance(item, dict):
        raise _fail("a GraphQL request must be a JSON object")
    query = item.get("query")
    variables = item.get("variables")
    operation_name = item.get("operationName")
    if not isinstance(query, str) or not query:
        raise _fail("'query' must be a non-empty string")
    if variables is not None and not isinstance(variables, dict):
        raise _fail("'variables' must be an object or null")
    if operation_name is not None and not isinstance(operation_name, str):
        raise _fail("'operationName' must be a string or null")
    return query, variables, operation_name or None  # "" (an empty GET parameter) = none


def execute_request(
    schema: GraphQLSchema,
    item: object,
    *,
    method: str = "POST",
    cache: LRUCache[str, _Parsed] | None = None,
) -> tuple[int, Payload]:
    """Run one GraphQL request (the decoded JSON object) and return (HTTP status, body)."""
    try:
        query, variables, operation_name = _parse_request(item)
        document, errors = _document(schema, cache if cache is not None else LRUCache(1), query)
        operation = get_operation_ast(document, operation_name)
        # GET is for queries only: answer 405 before validation reports the missing type.
        if method == "GET" and operation and operation.operation != OperationType.QUERY:
            raise _fail(f"{operation.operation.value} operations need POST", status=405)
        if errors:
            raise RequestError(400, errors)
        if operation is None:
            if operation_name:
                raise _fail(f"Unknown operation named '{operation_name}'.")
            raise _fail("Must provide operation name if query contains multiple operations.")
        # Coerce variables up front: a bad variable is a request error (400, no data),
        # not an execution error.
        coerced = get_variable_values(schema, operation.variable_definitions or (), variables or {})
        if isinstance(coerced, list):
            raise RequestError(400, _formatted(coerced))
    except RequestError as exc:
        return exc.status, {"errors": exc.errors}
    result = execute_sync(
        schema, document, variable_values=variables, operation_name=operation_name
    )
    return 200, dict(result.formatted)


def _json_response(body: object, status: int = 200, **headers: str) -> web.Response:
    return web.Response(body=codec.dumps(body), status=status, content_type=JSON, headers=headers)


async def _post(request: web.Request) -> web.Response:
    if request.content_type != JSON:
        return _json_response(
            {"errors": [{"message": f"POST /graphql needs Content-Type {JSON}"}]}, 415
        )
    try:
        decoded = codec.loads(await request.read())
    except codec.JSONDecodeError as exc:
        return _json_response({"errors": [{"message": f"body is not valid JSON: {exc}"}]}, 400)
    schema, cache = request.app[SCHEMA_KEY], request.app[_DOCUMENTS_KEY]
    if isinstance(decoded, list):
        if not decoded:
            return _json_response({"errors": [{"message": "empty batch"}]}, 400)
        results = [execute_request(schema, item, cache=cache)[1] for item in decoded]
        return _json_response(results)
    status, body = execute_request(schema, decoded, cache=cache)
    return _json_response(body, status)


async def _get(request: web.Request) -> web.Response:
    params = request.query
    item: Payload = {"query": params.get("query"), "operationName": params.get("operationName")}
    raw_variables = params.get("variables")
    if raw_variables:
        try:
            item["variables"] = codec.loads(raw_variables)
        except codec.JSONDecodeError as exc:
            return _json_response(
                {"errors": [{"message": f"'variables' is not valid JSON: {exc}"}]}, 400
            )
    status, body = execute_request(
        request.app[SCHEMA_KEY], item, method="GET", cache=request.app[_DOCUMENTS_KEY]
    )
    headers = {"Allow": "POST"} if status == 405 else {}
    return _json_response(body, status, **headers)


async def _healthz(request: web.Request) -> web.Response:
    return _json_response({"status": "ok"})


def create_app(db_path: Path, *, sdl_path: Path | None = None) -> web.Application:
    """The aiohttp application serving `/graphql` (GET, POST) and `/healthz` over `db_path`."""
    graph = SampleGraph(db_path)
    try:
        schema = build_executable_schema(graph, sdl_path=sdl_path)
    except BaseException:
        graph.close()
        raise
    app = web.Application()
    app[GRAPH_KEY] = graph
    app[SCHEMA_KEY] = schema
    app[_DOCUMENTS_KEY] = LRUCache(_DOCUMENT_CACHE_SIZE)

    async def close_graph(app: web.Application) -> None:
        app[GRAPH_KEY].close()

    app.on_cleanup.append(close_graph)
    app.router.add_post("/graphql", _post)
    app.router.add_get("/graphql", _get)
    app.router.add_get("/healthz", _healthz)
    return app


class BackgroundServer:
    """Serve the sample graph API from a daemon thread with its own event loop.

    For tests, benchmarks and demos that need a real upstream on loopback::

        with BackgroundServer(db_path) as server:
            urlopen(server.url + "/healthz")
    """

    def __init__(
        self,
        db_path: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        sdl_path: Path | None = None,
    ) -> None:
        self._app = create_app(db_path, sdl_path=sdl_path)
        self._host = host
        self._port = port
        self._loop = asyncio.new_event_loop()
        self._runner = web.AppRunner(self._app, access_log=None)
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.port = 0

    @property
    def url(self) -> str:
        """Base URL, e.g. `http://127.0.0.1:8081` (append `/graphql`)."""
        return f"http://{self._host}:{self.port}"

    def start(self) -> BackgroundServer:
        """Start serving; returns once the port is bound."""
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=30)
        return self

    async def _start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    def stop(self) -> None:
        """Stop serving and join the thread."""
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
