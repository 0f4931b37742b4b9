"""The aiohttp application: /graphql, /healthz, /readyz, /metrics (and the demo's JWKS)."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from intelgraph_privacy.codec import dumps
from intelgraph_privacy.config import SidecarConfig
from sidecar.admin import add_admin_routes
from sidecar.errors import error_body
from sidecar.exchange import add_exchange_routes
from sidecar.export import add_export_routes
from sidecar.logs import get_logger
from sidecar.proxy import STATE, handle_graphql, request_id_of
from sidecar.state import SidecarState

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: One request header at most: room for the largest `auth.max_token_bytes` (64 KiB) and "Bearer ".
MAX_HEADER_BYTES = 65536 + 64


def create_app(config: SidecarConfig, *, state: SidecarState | None = None) -> web.Application:
    """Build the sidecar application; the state starts and stops with the app."""
    app = web.Application(
        client_max_size=config.limits.max_body_bytes,
        middlewares=[_fail_closed],
        # aiohttp's own limit on one header (8190 bytes) would answer long tokens itself, with a
        # plain-text 400 that quotes them: let every token up to the largest allowed reach the
        # verifier, which refuses oversized ones with the 401 contract.
        handler_args={"max_field_size": MAX_HEADER_BYTES},
    )
    state = state or SidecarState(config)
    app[STATE] = state
    app.cleanup_ctx.append(_lifecycle)
    app.router.add_route("POST", "/graphql", handle_graphql)
    app.router.add_route("GET", "/graphql", handle_graphql)
    app.router.add_route("*", "/graphql", _method_not_allowed)
    add_admin_routes(app)
    add_exchange_routes(app, state)
    add_export_routes(app)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    if config.demo:
        app.router.add_get("/.well-known/jwks.json", _demo_jwks)
    return app


@web.middleware
async def _fail_closed(request: web.Request, handler: Handler) -> web.StreamResponse:
    """An unexpected error becomes a GraphQL-shaped 500 without data, never a traceback page."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception:
        get_logger().exception("unexpected error", extra={"path": request.path})
        return web.Response(
            body=dumps(error_body("internal error", "INTERNAL_ERROR")),
            status=500,
            content_type="application/json",
            headers={"X-Request-Id": request_id_of(request)},
        )


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE]
    await state.start()
    # What start-up built (schema, caches, policy) lives as long as the process: keep it out of
    # the cyclic collector's full passes, which otherwise walk it every few thousand requests.
    gc.collect()
    gc.freeze()
    # Each response allocates thousands of short-lived containers; collecting young objects
    # every 700 allocations (the default) costs more than the garbage it finds.
    gc.set_threshold(50_000, 50, 1000)
    yield
    await state.stop()


async def _method_not_allowed(request: web.Request) -> web.Response:
    request.app[STATE].metrics.refusals.labels("METHOD_NOT_ALLOWED").inc()
    return web.Response(
        body=dumps(error_body("/graphql takes GET and POST", "METHOD_NOT_ALLOWED")),
        status=405,
        content_type="application/json",
        headers={"Allow": "GET, POST"},
    )


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"}, dumps=lambda v: dumps(v).decode())


async def _readyz(request: web.Request) -> web.Response:
    state = request.app[STATE]
    checks = await state.readiness()
    ready = all(checks.values())
    body = {
        "ready": ready,
        "checks": checks,
        "policyVersion": state.policy.version,
        "schemaError": state.schema_error,
    }
    return web.Response(
        body=dumps(body), status=200 if ready else 503, content_type="application/json"
    )


async def _metrics(request: web.Request) -> web.Response:
    body = request.app[STATE].metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _demo_jwks(request: web.Request) -> web.Response:
    from intelgraph_privacy.tokens import demo_jwks

    return web.Response(body=dumps(demo_jwks()), content_type="application/json")
