"""Fail closed: an upstream that is down, slow, or answers garbage never gets its data through."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from tests.servers import AppThread
from tests.sidecar_env import ROOT, Sidecar, SigningKeys, start_sidecar

SDL = str(ROOT / "presets" / "demo.graphql")
QUERY = "{ people(first: 1) { name ssn } }"
SECRET = "123-45-6789"


MODE = web.AppKey("mode", dict)


def misbehaving_upstream() -> web.Application:
    """An upstream whose behaviour is chosen per request by the `mode` it was last set to."""
    app = web.Application()
    app[MODE] = {"mode": "ok"}

    async def graphql(request: web.Request) -> web.Response:
        mode = request.app[MODE]["mode"]
        person = {"name": "Ann", "ssn": SECRET}
        if mode == "ok":
            return web.json_response({"data": {"people": [person]}})
        if mode == "slow":
            await asyncio.sleep(3)
            return web.json_response({"data": {"people": [person]}})
        if mode == "html":
            return web.Response(text=f"<html>{SECRET}</html>", content_type="text/html")
        if mode == "5xx":
            return web.json_response({"data": {"people": [person]}}, status=503)
        if mode == "bad-json":
            return web.Response(
                body=b'{"data": {"people": [' + SECRET.encode(), content_type="application/json"
            )
        if mode == "huge":
            pad = "x" * (2 * 1024 * 1024)
            return web.json_response({"data": {"people": [{**person, "name": pad}]}})
        if mode == "not-object":
            return web.json_response([person])
        if mode == "error-quoting":
            return web.json_response(
                {
                    "data": {"people": [{"name": "Ann", "ssn": None}]},
                    "errors": [
                        {"message": f"row {SECRET} failed"},
                        {"message": f"also {SECRET}", "path": None},
                        {"message": f"empty {SECRET}", "path": []},
                        {"message": f"index {SECRET}", "path": [0]},
                        {
                            "message": f"kept path {SECRET}",
                            "path": ["people", 0, "name"],
                            "locations": [{"line": 1, "column": 3, "note": SECRET}],
                            "extensions": {"code": "RESOLVER", "stacktrace": [SECRET]},
                        },
                    ],
                }
            )
        if mode == "401":
            return web.json_response({"message": f"unauthorized {SECRET}"}, status=401)
        if mode == "redirect":
            raise web.HTTPFound(f"/elsewhere?{SECRET}")
        if mode == "no-result":
            return web.json_response({"message": SECRET})
        raise AssertionError(mode)

    app.router.add_post("/graphql", graphql)
    return app


@pytest.fixture(scope="module")
def bad_upstream() -> Iterator[AppThread]:
    server = AppThread(misbehaving_upstream).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def guarded(
    bad_upstream: AppThread, test_keys: SigningKeys, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Sidecar]:
    running = start_sidecar(
        f"{bad_upstream.url}/graphql",
        test_keys,
        tmp_path_factory.mktemp("failures"),
        **{
            "upstream.schema_sdl": SDL,
            "upstream.timeout_seconds": 1,
            "upstream.max_response_bytes": 1024 * 1024,
        },
    )
    yield running
    running.server.stop()


def set_mode(server: AppThread, mode: str) -> None:
    assert server.app is not None
    server.app[MODE]["mode"] = mode


@pytest.mark.parametrize(
    ("mode", "status", "code"),
    [
        ("slow", 504, "UPSTREAM_TIMEOUT"),
        ("html", 502, "BAD_UPSTREAM"),
        ("5xx", 502, "UPSTREAM_ERROR"),
        ("bad-json", 502, "BAD_UPSTREAM"),
        ("huge", 502, "BAD_UPSTREAM"),
        ("401", 502, "UPSTREAM_ERROR"),
        ("redirect", 502, "UPSTREAM_ERROR"),
        ("no-result", 502, "BAD_UPSTREAM"),
        ("not-object", 502, "BAD_UPSTREAM"),
    ],
)
def test_upstream_failures_never_pass_data(
    guarded: Sidecar,
    bad_upstream: AppThread,
    test_keys: SigningKeys,
    mode: str,
    status: int,
    code: str,
) -> None:
    set_mode(bad_upstream, mode)
    try:
        reply = guarded.query(QUERY, test_keys.token("hana", ("high-clearance",), "investigation"))
    finally:
        set_mode(bad_upstream, "ok")
    assert reply.status == status, reply.raw
    assert reply.json == {
        "errors": [{"message": reply.json["errors"][0]["message"], "extensions": {"code": code}}]
    }
    assert SECRET not in reply.raw.decode()


def test_unlocated_upstream_errors_are_not_quoted(
    guarded: Sidecar, bad_upstream: AppThread, test_keys: SigningKeys
) -> None:
    set_mode(bad_upstream, "error-quoting")
    try:
        reply = guarded.query(QUERY, test_keys.token())
    finally:
        set_mode(bad_upstream, "ok")
    assert reply.status == 200
    assert SECRET not in reply.raw.decode()
    errors = reply.json["errors"]
    assert {"message": "the upstream reported an error"} in errors
    # Even at a kept path, only message (replaced), path, locations and the code pass.
    assert {
        "message": "the upstream reported an error",
        "path": ["people", 0, "name"],
        "locations": [{"line": 1, "column": 3}],
        "extensions": {"code": "RESOLVER"},
    } in errors


def test_located_upstream_messages_can_be_kept(
    bad_upstream: AppThread, test_keys: SigningKeys, tmp_path: Path
) -> None:
    running = start_sidecar(
        f"{bad_upstream.url}/graphql",
        test_keys,
        tmp_path,
        **{"upstream.schema_sdl": SDL, "policy.upstream_error_messages": "located"},
    )
    set_mode(bad_upstream, "error-quoting")
    try:
        reply = running.query(QUERY, test_keys.token())
    finally:
        set_mode(bad_upstream, "ok")
        running.server.stop()
    messages = [e["message"] for e in reply.json["errors"]]
    # Kept: the one at a path into the response; replaced: no path, [] and [0].
    assert f"kept path {SECRET}" in messages
    assert messages.count("the upstream reported an error") == 4


def test_requests_in_flight_are_capped(
    bad_upstream: AppThread, test_keys: SigningKeys, tmp_path: Path
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    running = start_sidecar(
        f"{bad_upstream.url}/graphql",
        test_keys,
        tmp_path,
        **{
            "upstream.schema_sdl": SDL,
            "limits.max_in_flight": 1,
            "upstream.timeout_seconds": 5,
        },
    )
    set_mode(bad_upstream, "slow")
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            first = pool.submit(running.query, QUERY, test_keys.token("hana", ("high-clearance",)))
            time.sleep(0.5)
            second = running.query(QUERY, test_keys.token())
            assert second.status == 503
            assert second.json["errors"][0]["extensions"]["code"] == "BUSY"
            assert first.result().status == 200
    finally:
        set_mode(bad_upstream, "ok")
        running.server.stop()


def test_working_upstream_is_redacted(guarded: Sidecar, test_keys: SigningKeys) -> None:
    reply = guarded.query(QUERY, test_keys.token())
    assert reply.status == 200
    assert reply.json["data"]["people"] == [{"name": "Ann", "ssn": None}]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_upstream_down(test_keys: SigningKeys, tmp_path: Path) -> None:
    port = free_port()
    running = start_sidecar(
        f"http://127.0.0.1:{port}/graphql", test_keys, tmp_path, **{"upstream.schema_sdl": SDL}
    )
    try:
        reply = running.query(QUERY, test_keys.token())
        assert reply.status == 502
        assert reply.json["errors"][0]["extensions"]["code"] == "UPSTREAM_UNAVAILABLE"
        ready = running.get("/readyz")
        assert ready.status == 503 and ready.json["checks"]["upstream"] is False
        assert running.get("/healthz").status == 200
        metrics = running.get("/metrics").raw.decode()
        assert 'intelgraph_upstream_errors_total{code="UPSTREAM_UNAVAILABLE"} 1.0' in metrics
    finally:
        running.server.stop()


def test_not_ready_until_the_schema_loads(test_keys: SigningKeys, tmp_path: Path) -> None:
    # Introspection against an upstream that is down: no schema, so nothing is served.
    running = start_sidecar(f"http://127.0.0.1:{free_port()}/graphql", test_keys, tmp_path)
    try:
        reply = running.query(QUERY, test_keys.token())
        assert reply.status == 503
        assert reply.json["errors"][0]["extensions"]["code"] == "NOT_READY"
        ready = running.get("/readyz")
        assert ready.status == 503 and ready.json["checks"]["schema"] is False
    finally:
        running.server.stop()
