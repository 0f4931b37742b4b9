"""`intelgraph-privacy demo`: the sample graph API and the sidecar in front of it, in one process.

DEMO ONLY: tokens are signed with the public demo key, which only this command's sidecar accepts.
"""

from __future__ import annotations

import asyncio
import shlex
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from aiohttp import web

from intelgraph_privacy.codec import dumps
from intelgraph_privacy.config import SidecarConfig, load_config
from intelgraph_privacy.errors import ConfigError
from intelgraph_privacy.rtbf.setup import DEMO_REGISTRY_NAME
from intelgraph_privacy.tokens import (
    DEMO_AUDIENCE,
    DEMO_EXCHANGE_AUDIENCE,
    DEMO_IDP_ISSUER,
    DEMO_ISSUER,
    DEMO_KID,
    demo_private_key,
    issue_token,
)
from samplegraph import create_app as create_sample_graph
from samplegraph import generate_database
from sidecar.app import create_app
from sidecar.logs import configure_logging

DEMO_TENANT = "demo"
#: Who the printed commands act as: (label, sub, roles, purpose).
DEMO_PRINCIPALS = (
    ("analyst", "ana", ("analyst",), "investigation"),
    ("investigator", "ivan", ("investigator",), "investigation"),
    ("high-clearance investigator", "hana", ("high-clearance", "investigator"), "investigation"),
)
DEMO_QUERY = (
    '{ person(id: "P-00001") { name ssn email phone dob age city riskScore '
    "employer { name registrationNumber } cases { reference title openedOn informant } } }"
)
TOKEN_TTL_SECONDS = 12 * 3600
ADMIN_MUTATION = 'mutation { setRedactionRule(rule: {field: "Person.city", tier: "restricted"}) }'
#: The erasure example (the admin API's requestRTBF).
RTBF_MUTATION = 'mutation { requestRTBF(subjectId: "P-00099", scope: "tenant:demo") }'
#: The analytics example: counted groups, made k-anonymous by the sidecar (presets/anon.yaml).
COHORT_QUERY = '{ cohort(groupBy: ["city", "ageBand"]) { city ageBand count } }'
#: The DP export example (POST /export): a histogram over bins the caller names.
EXPORT_REQUEST = {
    "query": '{ cohort(groupBy: ["city"]) { city count } }',
    "aggregate": "histogram",
    "field": "city",
    "bins": ["Berlin", "London", "Paris"],
    "preset": "standard",
}


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """Where the demo listens and what it serves."""

    host: str = "127.0.0.1"
    port: int = 8080
    upstream_port: int = 8081
    data_dir: Path = Path(".demo-data")
    people: int = 5000
    catalog: Path = Path("presets/catalog.yaml")
    policies: Path = Path("rego")
    purposes: Path = Path("presets/purposes.yaml")
    datasets: Path = Path("presets/demo-datasets.yaml")


def demo_config(options: DemoOptions, *, extra: Mapping[str, Any] | None = None) -> SidecarConfig:
    """The sidecar configuration of the demo (`INTELGRAPH_*` environment variables are ignored).

    `extra` adds settings by dotted path (tests use it, e.g. for a faster audit flush).
    """
    # The environment is not read: a production INTELGRAPH_* setting must never reach the demo.
    return load_config(
        environ={},
        overrides={
            "demo": True,
            "listen.host": options.host,
            "listen.port": options.port,
            "upstream.url": f"http://{options.host}:{options.upstream_port}/graphql",
            "policy.catalog": str(options.catalog),
            "auth.purposes": str(options.purposes),
            "policy.policies": str(options.policies),
            "store.data_dir": str(options.data_dir),
            "rtbf.registry": str(options.data_dir / DEMO_REGISTRY_NAME),
            # Last, so a test can point the demo at another bundle; `demo` stays fixed.
            **{k: v for k, v in (extra or {}).items() if k != "demo"},
        },
    )


def install_demo_registry(options: DemoOptions) -> Path:
    """Copy the demo's dataset registry next to its sample graph (which its URL names)."""
    target = options.data_dir / DEMO_REGISTRY_NAME
    try:
        text = options.datasets.read_text(encoding="utf-8")
        options.data_dir.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot install the demo's dataset registry: {exc}") from None
    return target


def demo_token(sub: str, roles: tuple[str, ...], purpose: str, ttl: int = TOKEN_TTL_SECONDS) -> str:
    """A token signed with the demo key."""
    return issue_token(
        demo_private_key(),
        sub=sub,
        tenant=DEMO_TENANT,
        roles=list(roles),
        purpose=purpose,
        issuer=DEMO_ISSUER,
        audience=DEMO_AUDIENCE,
        ttl=ttl,
        kid=DEMO_KID,
    )


def broad_token(sub: str, roles: tuple[str, ...], ttl: int = TOKEN_TTL_SECONDS) -> str:
    """A purpose-less token of the demo's stand-in identity provider (for /token/exchange)."""
    return issue_token(
        demo_private_key(),
        sub=sub,
        tenant=DEMO_TENANT,
        roles=list(roles),
        purpose=None,
        issuer=DEMO_IDP_ISSUER,
        audience=DEMO_EXCHANGE_AUDIENCE,
        ttl=ttl,
        kid=DEMO_KID,
    )


async def run_demo(options: DemoOptions, *, out: TextIO) -> None:
    """Generate the sample data, serve both apps, print how to try them; run until stopped."""
    if options.host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"WARNING: listening on {options.host}: anyone who can reach it can sign tokens with "
            "the public demo key.",
            file=out,
        )
    options.data_dir.mkdir(parents=True, exist_ok=True)
    print(
        f"Preparing the sample graph ({options.people} people) in {options.data_dir} ...", file=out
    )
    database = await asyncio.to_thread(
        generate_database, options.data_dir / "sample-graph.sqlite3", people=options.people
    )
    install_demo_registry(options)
    config = demo_config(options)
    configure_logging("WARNING")
    runners = []
    try:
        graph = web.AppRunner(create_sample_graph(database), access_log=None)
        runners.append(graph)
        await _serve(graph, options.host, options.upstream_port, "--upstream-port")
        sidecar = web.AppRunner(create_app(config), access_log=None)
        runners.append(sidecar)
        await _serve(sidecar, options.host, options.port, "--port")
        print(instructions(options), file=out, flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        print("\nStopping the demo ...", file=out, flush=True)
    finally:
        for runner in reversed(runners):
            await runner.cleanup()


async def _serve(runner: web.AppRunner, host: str, port: int, option: str) -> None:
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {host}:{port} ({exc.strerror}); choose another port with {option}"
        ) from None


def instructions(options: DemoOptions) -> str:
    """What the demo prints: where things are and ready-to-paste commands."""
    sidecar = f"http://{options.host}:{options.port}"
    upstream = f"http://{options.host}:{options.upstream_port}/graphql"
    body = shlex.quote(dumps({"query": DEMO_QUERY}).decode())
    officer = demo_token("pia", ("privacy-officer",), "administration")
    lines = [
        "",
        "IntelGraph Privacy demo is running (DEMO KEYS: accepted only by this demo).",
        f"  sidecar (privacy enforced) {sidecar}/graphql",
        f"  sample graph API (raw)     {upstream}",
        f"  demo public keys           {sidecar}/.well-known/jwks.json",
        f"  metrics / readiness        {sidecar}/metrics  {sidecar}/readyz",
        f"  audit log (SQLite)         {options.data_dir}/",
        "",
        "The same person, asked for by three principals (paste into another terminal):",
    ]
    for label, sub, roles, purpose in DEMO_PRINCIPALS:
        token = demo_token(sub, roles, purpose)
        lines += [
            "",
            f"# {label} (roles {', '.join(roles)}; purpose {purpose})",
            f"curl -s {sidecar}/graphql -H 'Authorization: Bearer {token}' \\",
            f"  -H 'Content-Type: application/json' -d {body} | python3 -m json.tool",
        ]
    lines += [
        "",
        "# no token: refused with 401, nothing reaches the graph API",
        f"curl -s {sidecar}/graphql -H 'Content-Type: application/json' -d {body} "
        "| python3 -m json.tool",
        "",
        "# token exchange: a broad identity-provider token (no purpose) for a 5-minute token",
        "# bound to the purpose investigation (RFC 8693)",
        f"curl -s {sidecar}/token/exchange "
        "-d grant_type=urn:ietf:params:oauth:grant-type:token-exchange \\",
        "  -d subject_token_type=urn:ietf:params:oauth:token-type:jwt "
        "-d scope=purpose:investigation \\",
        f"  -d subject_token={broad_token('ivan', ('investigator',))} | python3 -m json.tool",
        "",
        "# analytics: people per city and age band, every group k-anonymous (k = 5)",
        f"curl -s {sidecar}/graphql "
        f"-H 'Authorization: Bearer {demo_token('ana', ('analyst',), 'analytics')}' \\",
        "  -H 'Content-Type: application/json' "
        f"-d {shlex.quote(dumps({'query': COHORT_QUERY}).decode())} | python3 -m json.tool",
        "",
        "# DP export: people per city with differential privacy (preset standard, epsilon 2),",
        "# charged to the tenant's daily privacy budget; the answer carries its proof",
        f"curl -s {sidecar}/export "
        f"-H 'Authorization: Bearer {demo_token('ana', ('analyst',), 'export')}' \\",
        "  -H 'Content-Type: application/json' "
        f"-d {shlex.quote(dumps(EXPORT_REQUEST).decode())} | python3 -m json.tool",
        "",
        "# erasure: a privacy officer asks to forget P-00099 (right to be forgotten); then see",
        "# `intelgraph-privacy rtbf status JOB --manifest FILE` below",
        f"curl -s {sidecar}/admin/graphql -H 'Authorization: Bearer {officer}' \\",
        "  -H 'Content-Type: application/json' "
        f"-d {shlex.quote(dumps({'query': RTBF_MUTATION}).decode())} | python3 -m json.tool",
        "",
        "# admin API: an admin, for the purpose administration, makes Person.city restricted",
        f"curl -s {sidecar}/admin/graphql "
        f"-H 'Authorization: Bearer {demo_token('root', ('admin',), 'administration')}' \\",
        "  -H 'Content-Type: application/json' "
        f"-d {shlex.quote(dumps({'query': ADMIN_MUTATION}).decode())} | python3 -m json.tool",
        "",
        "More: a token of your own, e.g.",
        "  .venv/bin/intelgraph-privacy token issue --demo --sub me --roles analyst "
        "--purpose analytics --tenant demo",
        "  your tenant's privacy budget: .venv/bin/intelgraph-privacy budget show --tenant demo "
        f"--data-dir {options.data_dir}",
        "  an erasure's state and signed manifest: .venv/bin/intelgraph-privacy rtbf status JOB "
        f"--data-dir {options.data_dir} --manifest /tmp/manifest.json",
        "  the manifest checked: .venv/bin/intelgraph-privacy manifest verify "
        f"/tmp/manifest.json --jwks {sidecar}/.well-known/jwks.json",
        f"  then verify the audit chain: .venv/bin/intelgraph-privacy audit verify "
        f"--data-dir {options.data_dir}",
        "Stop the demo with Ctrl-C.",
    ]
    return "\n".join(lines)
