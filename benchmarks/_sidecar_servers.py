"""The two helper servers of `sidecar_overhead.py`, each run in its own process.

- `replay`: the upstream. It answers POST /graphql with a recorded sample-graph response, looked
  up by the request's `query` string; an unknown query gets a 500 so that a mismatch between
  what was recorded and what the sidecar sends fails loudly instead of measuring an error path.
- `proxy`: the floor of any proxy. It forwards the POST body to the upstream unchanged and
  returns the upstream's bytes, with no JSON work at all.

    python benchmarks/_sidecar_servers.py replay --port P --recordings FILE
    python benchmarks/_sidecar_servers.py proxy --port P --upstream URL
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from _sidecar_gcprobe import exit_with_parent, install
from aiohttp import web

from intelgraph_privacy import codec

JSON = "application/json"
RECORDINGS: web.AppKey[dict[str, bytes]] = web.AppKey("recordings", dict)
SESSION: web.AppKey[aiohttp.ClientSession] = web.AppKey("session", aiohttp.ClientSession)
UPSTREAM: web.AppKey[str] = web.AppKey("upstream", str)
#: The proxy's pool, the same size as the sidecar's default (`upstream.max_connections`).
POOL_SIZE = 100


def load_recordings(path: Path) -> dict[str, bytes]:
    """`{query: response JSON text}` from the file, as the bytes to serve."""
    raw = codec.loads(path.read_bytes())
    return {query: text.encode() for query, text in raw.items()}


# --- replay upstream --------------------------------------------------------------------------


async def _replay(request: web.Request) -> web.Response:
    try:
        query = codec.loads(await request.read()).get("query")
    except (codec.JSONDecodeError, AttributeError):
        query = None
    body = request.app[RECORDINGS].get(query) if isinstance(query, str) else None
    if body is None:
        # Loud on purpose: the sidecar answers 502 and the load generator stops the run.
        message = f"replay: no recording for this query: {str(query)[:200]!r}"
        return web.Response(
            body=codec.dumps({"errors": [{"message": message}]}), status=500, content_type=JSON
        )
    return web.Response(body=body, content_type=JSON)


def replay_app(recordings: dict[str, bytes]) -> web.Application:
    """The replaying upstream."""
    app = web.Application()
    app[RECORDINGS] = recordings
    app.router.add_post("/graphql", _replay)
    app.router.add_get("/healthz", _healthz)
    return app


# --- plain proxy ------------------------------------------------------------------------------


async def _forward(request: web.Request) -> web.Response:
    body = await request.read()
    session = request.app[SESSION]
    async with session.post(
        request.app[UPSTREAM], data=body, headers={"Content-Type": JSON}
    ) as upstream:
        payload = await upstream.read()
        return web.Response(body=payload, status=upstream.status, content_type=JSON)


def proxy_app(upstream: str) -> web.Application:
    """The pass-through proxy in front of `upstream` (a /graphql URL)."""
    app = web.Application()
    app[UPSTREAM] = upstream

    async def session_ctx(app: web.Application) -> AsyncIterator[None]:
        app[SESSION] = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=POOL_SIZE), trust_env=False
        )
        yield
        await app[SESSION].close()

    app.cleanup_ctx.append(session_ctx)
    app.router.add_post("/graphql", _forward)
    app.router.add_get("/healthz", _healthz)
    return app


async def _healthz(request: web.Request) -> web.Response:
    return web.Response(body=b'{"status":"ok"}', content_type=JSON)


# --- main -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Serve one of the two apps on 127.0.0.1 until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="kind", required=True)
    replay = sub.add_parser("replay", help="serve recorded responses")
    replay.add_argument("--port", type=int, required=True)
    replay.add_argument("--recordings", type=Path, required=True)
    proxy = sub.add_parser("proxy", help="forward bodies to the upstream")
    proxy.add_argument("--port", type=int, required=True)
    proxy.add_argument("--upstream", required=True)
    args = parser.parse_args(argv)
    exit_with_parent()
    gc_file = os.environ.get("SIDECAR_BENCH_GC_FILE")
    if gc_file:
        install(Path(gc_file))
    if args.kind == "replay":
        app = replay_app(load_recordings(args.recordings))
    else:
        app = proxy_app(args.upstream)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
