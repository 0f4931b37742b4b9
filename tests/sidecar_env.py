"""Fixtures for end-to-end tests: the sample graph on loopback, test keys, sidecars in front of it.

Everything is real: the sample graph API over a generated SQLite file, Ed25519 keys with a JWKS
file, signed tokens, the sidecar application on its own port, and a SQLite or PostgreSQL store.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from jwcrypto import jwk

from intelgraph_privacy.codec import dumps, loads
from intelgraph_privacy.config import load_config
from intelgraph_privacy.tokens import issue_token
from samplegraph import create_app as create_sample_graph
from samplegraph import generate_database
from sidecar.app import create_app
from sidecar.proxy import STATE
from sidecar.state import SidecarState
from tests.servers import AppThread, Reply, http, post_json

ROOT = Path(__file__).resolve().parents[1]
ISSUER = "https://idp.test.invalid"
AUDIENCE = "intelgraph-test"
#: People in the test graph: enough for every query shape, fast to generate.
TEST_PEOPLE = 400


@dataclass
class SigningKeys:
    """A signing key, its JWKS file, and a token factory."""

    key: jwk.JWK
    jwks_path: Path

    def token(
        self,
        sub: str = "ana",
        roles: tuple[str, ...] = ("analyst",),
        purpose: str = "investigation",
        *,
        tenant: str = "t1",
        ttl: int = 600,
        now: float | None = None,
        audience: str = AUDIENCE,
        issuer: str = ISSUER,
    ) -> str:
        return issue_token(
            self.key,
            sub=sub,
            tenant=tenant,
            roles=list(roles),
            purpose=purpose,
            issuer=issuer,
            audience=audience,
            ttl=ttl,
            now=now,
        )


@dataclass
class RecordingUpstream:
    """The sample graph API, recording every request it receives."""

    server: AppThread
    requests: list[dict[str, Any]] = field(default_factory=list)

    @property
    def graphql_url(self) -> str:
        return f"{self.server.url}/graphql"

    def count(self) -> int:
        return len(self.requests)


def recording_app(db_path: Path, log: list[dict[str, Any]]) -> web.Application:
    """The sample graph app with a middleware that records what reaches it."""

    @web.middleware
    async def record(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path == "/graphql":
            body = await request.read()
            log.append(
                {
                    "method": request.method,
                    "headers": dict(request.headers),
                    "query": dict(request.query),
                    "body": body,
                }
            )
        return await handler(request)

    app = create_sample_graph(db_path)
    app.middlewares.append(record)
    return app


class Sidecar:
    """A running sidecar and helpers to call it."""

    def __init__(self, server: AppThread) -> None:
        self.server = server

    @property
    def url(self) -> str:
        return f"{self.server.url}/graphql"

    @property
    def state(self) -> SidecarState:
        assert self.server.app is not None
        return self.server.app[STATE]

    def query(
        self,
        query: str,
        token: str | None,
        *,
        variables: dict[str, Any] | None = None,
        operation_name: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        payload: dict[str, Any] = {"query": query}
        if variables is not None:
            payload["variables"] = variables
        if operation_name is not None:
            payload["operationName"] = operation_name
        return post_json(self.url, payload, token=token, headers=headers)

    def get(self, path: str) -> Reply:
        return http("GET", f"{self.server.url}{path}")

    def flush_audit(self) -> None:
        audit = self.state.audit
        assert audit is not None
        assert audit.flush(timeout=10), "the audit writer did not flush"


def sidecar_config(
    upstream_url: str,
    keys: SigningKeys,
    data_dir: Path,
    **overrides: Any,
) -> Any:
    """A sidecar configuration for tests (environment variables ignored)."""
    key_file = data_dir / "pseudonym.key"
    data_dir.mkdir(parents=True, exist_ok=True)
    key_file.write_bytes(b"test-pseudonym-key-0123456789abcdef")
    settings: dict[str, Any] = {
        "upstream.url": upstream_url,
        "upstream.timeout_seconds": 5,
        "auth.jwks": str(keys.jwks_path),
        "auth.issuer": ISSUER,
        "auth.audience": AUDIENCE,
        "auth.purposes": str(ROOT / "presets" / "purposes.yaml"),
        "policy.catalog": str(ROOT / "presets" / "catalog.yaml"),
        "policy.policies": str(ROOT / "rego"),
        "policy.pseudonym_key_file": str(key_file),
        "policy.reload_seconds": 0,
        "store.data_dir": str(data_dir),
        "audit.flush_interval_seconds": 0.05,
        "log_level": "WARNING",
    }
    settings.update({k.replace("__", "."): v for k, v in overrides.items()})
    return load_config(environ={}, overrides=settings)


def start_sidecar(
    upstream_url: str, keys: SigningKeys, data_dir: Path, **overrides: Any
) -> Sidecar:
    """Start a sidecar in front of `upstream_url`; stop it with `.server.stop()`."""
    config = sidecar_config(upstream_url, keys, data_dir, **overrides)
    server = AppThread(lambda: create_app(config)).start()
    return Sidecar(server)


def start_demo_sidecar(upstream_url: str, data_dir: Path, **extra: Any) -> Sidecar:
    """The demo's sidecar (demo configuration, demo keys) in front of `upstream_url`.

    `extra` adds settings by dotted path with `__` for dots (e.g. `store__url=...`).
    """
    from urllib.parse import urlsplit

    from sidecar.demo import DemoOptions, demo_config, install_demo_registry

    upstream = urlsplit(upstream_url)
    options = DemoOptions(
        host=upstream.hostname or "127.0.0.1",
        port=0,
        upstream_port=upstream.port or 80,
        data_dir=data_dir,
        catalog=ROOT / "presets" / "catalog.yaml",
        policies=ROOT / "rego",
        purposes=ROOT / "presets" / "purposes.yaml",
        datasets=ROOT / "presets" / "demo-datasets.yaml",
    )
    install_demo_registry(options)
    # Erasure jobs are recorded, not run: the upstream here is not the sample graph's database.
    settings = {
        "audit.flush_interval_seconds": 0.05,
        "log_level": "WARNING",
        "rtbf.run_in_sidecar": False,
    }
    settings.update({k.replace("__", "."): v for k, v in extra.items()})
    config = demo_config(options, extra=settings)
    server = AppThread(lambda: create_app(config)).start()
    return Sidecar(server)


def demo_token(
    sub: str,
    roles: tuple[str, ...] | list[str],
    purpose: str,
    *,
    tenant: str = "demo",
    **claims: Any,
) -> str:
    """A token signed with the demo key, as `intelgraph-privacy token issue --demo` makes."""
    from intelgraph_privacy.tokens import DEMO_AUDIENCE, DEMO_ISSUER, DEMO_KID, demo_private_key

    return issue_token(
        demo_private_key(),
        sub=sub,
        tenant=tenant,
        roles=list(roles),
        purpose=purpose,
        issuer=DEMO_ISSUER,
        audience=DEMO_AUDIENCE,
        kid=DEMO_KID,
        extra=claims or None,
    )


def wait_until(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll `check` until it holds or the timeout passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return check()


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def test_keys(tmp_path_factory: pytest.TempPathFactory) -> SigningKeys:
    key = jwk.JWK.generate(kty="OKP", crv="Ed25519", kid="test-key-1")
    path = tmp_path_factory.mktemp("keys") / "jwks.json"
    path.write_bytes(dumps({"keys": [key.export_public(as_dict=True)]}))
    return SigningKeys(key, path)


@pytest.fixture(scope="session")
def sample_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_database(
        tmp_path_factory.mktemp("sample") / "graph.sqlite3", people=TEST_PEOPLE
    )


@pytest.fixture(scope="session")
def upstream(sample_db: Path) -> Iterator[RecordingUpstream]:
    log: list[dict[str, Any]] = []
    server = AppThread(lambda: recording_app(sample_db, log)).start()
    yield RecordingUpstream(server, log)
    server.stop()


@pytest.fixture(scope="module")
def sidecar(
    upstream: RecordingUpstream, test_keys: SigningKeys, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Sidecar]:
    """The standard sidecar: schema by introspection, SQLite store, enforcing."""
    running = start_sidecar(upstream.graphql_url, test_keys, tmp_path_factory.mktemp("sidecar"))
    yield running
    running.server.stop()


@pytest.fixture
def demo_sidecar(upstream: RecordingUpstream, tmp_path: Path) -> Iterator[Sidecar]:
    """A fresh demo sidecar (own SQLite store) in front of the recording upstream."""
    started = start_demo_sidecar(upstream.graphql_url, tmp_path / "demo-data")
    yield started
    started.server.stop()


def upstream_body(entry: dict[str, Any]) -> Any:
    """The decoded JSON body of one recorded upstream request."""
    return loads(entry["body"])
