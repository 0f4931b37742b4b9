"""Real HTTP on loopback for tests: serve aiohttp apps from a thread, call them with urllib."""

from __future__ import annotations

import asyncio
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web

from intelgraph_privacy.codec import dumps, loads

T = TypeVar("T")


class AppThread:
    """An aiohttp application served on 127.0.0.1 from a daemon thread with its own loop."""

    def __init__(self, make_app: Callable[[], web.Application], *, port: int = 0) -> None:
        self._make_app = make_app
        self._port = port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self.app: web.Application | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> AppThread:
        self._thread.start()
        self.run(self._start())
        return self

    async def _start(self) -> None:
        self.app = self._make_app()
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self._port).start()
        self.port = int(self._runner.addresses[0][1])

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        """Run a coroutine on the server's loop (e.g. to poke the app's state)."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=timeout)

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        if self._runner is not None:
            self.run(self._runner.cleanup())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()

    def __enter__(self) -> AppThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass(frozen=True)
class Reply:
    """An HTTP response: status, headers and the body (decoded JSON when it is JSON)."""

    status: int
    headers: Mapping[str, str]
    raw: bytes

    @property
    def json(self) -> Any:
        return loads(self.raw)


def http(
    method: str,
    url: str,
    *,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 30,
) -> Reply:
    """One HTTP request; 4xx and 5xx are returned, not raised."""
    request = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Reply(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as exc:
        return Reply(exc.code, dict(exc.headers), exc.read())


def post_json(
    url: str,
    payload: Any,
    *,
    token: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Reply:
    """POST a JSON body (with a bearer token when given)."""
    send = {"Content-Type": "application/json", **(headers or {})}
    if token is not None:
        send["Authorization"] = f"Bearer {token}"
    return http("POST", url, body=dumps(payload), headers=send)
