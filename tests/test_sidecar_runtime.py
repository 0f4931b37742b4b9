"""A running sidecar changes with its surroundings: policy hot reload, late upstream, full audit."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from intelgraph_privacy.codec import dumps
from samplegraph import create_app as create_sample_graph
from tests.servers import AppThread, post_json
from tests.sidecar_env import (
    ROOT,
    RecordingUpstream,
    SigningKeys,
    start_sidecar,
    wait_until,
)
from tests.test_sidecar_failures import free_port

QUERY = "{ people(first: 1) { name phone } }"
# An extra rule that nulls phone for everyone: a visible policy change (the shipped tests
# do not pin Person.phone, so the bundle still passes them).
NULL_PHONE = """package intelgraph.redact

import rego.v1

redact contains field if {
  input.field.name == "Person.phone"
  field := input.field.name
}
"""


def copy_policies(target: Path) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    for rego in (ROOT / "rego").glob("*.rego"):
        shutil.copy(rego, target / rego.name)
    return target


def test_policy_hot_reload_and_refused_bundles(
    upstream: RecordingUpstream, test_keys: SigningKeys, tmp_path: Path
) -> None:
    policies = copy_policies(tmp_path / "rego")
    running = start_sidecar(
        upstream.graphql_url,
        test_keys,
        tmp_path / "data",
        **{"policy.policies": str(policies), "policy.reload_seconds": 0.1},
    )
    token = test_keys.token("ivan", ("investigator",), "investigation")
    try:
        first = running.query(QUERY, token).json["data"]["people"][0]
        assert first["phone"]
        version = running.state.policy.version

        (policies / "null_phone.rego").write_text(NULL_PHONE)
        assert wait_until(lambda: running.state.policy.version != version)
        assert running.query(QUERY, token).json["data"]["people"][0]["phone"] is None

        # A broken bundle is refused; the last good one keeps serving.
        good = running.state.policy.version
        (policies / "broken.rego").write_text("package intelgraph.redact\nredact contains {")
        assert wait_until(lambda: running.state.policy.stats.reload_failures >= 1)
        time.sleep(0.5)  # several polls: unchanged broken files are not retried
        assert running.state.policy.stats.reload_failures == 1
        assert running.state.policy.version == good
        assert running.query(QUERY, token).json["data"]["people"][0]["phone"] is None
        metrics = running.get("/metrics").raw.decode()
        assert 'intelgraph_policy_reloads_total{result="ok"} 1.0' in metrics
        assert 'intelgraph_policy_reloads_total{result="failed"} 1.0' in metrics
    finally:
        running.server.stop()


def test_sidecar_becomes_ready_when_a_late_upstream_arrives(
    sample_db: Path, test_keys: SigningKeys, tmp_path: Path
) -> None:
    port = free_port()
    running = start_sidecar(f"http://127.0.0.1:{port}/graphql", test_keys, tmp_path)
    upstream = None
    try:
        assert running.get("/readyz").status == 503
        upstream = AppThread(lambda: create_sample_graph(sample_db), port=port).start()
        # Introspection is retried every 2 s until the schema loads (not every 5 minutes).
        assert wait_until(lambda: running.get("/readyz").status == 200, timeout=15)
        reply = running.query(QUERY, test_keys.token())
        assert reply.status == 200 and reply.json["data"]["people"][0]["name"]
    finally:
        running.server.stop()
        if upstream is not None:
            upstream.stop()


def test_a_full_audit_queue_refuses_before_the_upstream(
    upstream: RecordingUpstream, test_keys: SigningKeys, tmp_path: Path
) -> None:
    running = start_sidecar(upstream.graphql_url, test_keys, tmp_path, **{"audit.max_queue": 1})
    try:
        before = upstream.count()
        batch = [{"query": QUERY}, {"query": QUERY}]
        reply = post_json(running.url, batch, token=test_keys.token())
        assert reply.status == 503
        assert reply.json["errors"][0]["extensions"]["code"] == "AUDIT_UNAVAILABLE"
        assert reply.headers["Retry-After"] == "1"
        assert upstream.count() == before
        assert "data" not in dumps(reply.json).decode()
    finally:
        running.server.stop()


def test_jwks_file_rotation_and_a_refused_key_set(
    upstream: RecordingUpstream, tmp_path: Path
) -> None:
    from jwcrypto import jwk

    from intelgraph_privacy.tokens import demo_jwks

    old = SigningKeys(jwk.JWK.generate(kty="OKP", crv="Ed25519", kid="old"), tmp_path / "j.json")
    new = SigningKeys(jwk.JWK.generate(kty="OKP", crv="Ed25519", kid="new"), old.jwks_path)
    old.jwks_path.write_bytes(dumps({"keys": [old.key.export_public(as_dict=True)]}))
    running = start_sidecar(
        upstream.graphql_url, old, tmp_path / "data", **{"auth.jwks_refresh_seconds": 0.1}
    )
    try:
        assert running.query(QUERY, old.token()).status == 200
        # A key set holding the public demo key is refused: the old keys keep verifying.
        old.jwks_path.write_bytes(dumps(demo_jwks()))
        time.sleep(0.5)
        assert running.query(QUERY, old.token()).status == 200
        # The identity provider rotates: the new key verifies, the old one no longer does.
        old.jwks_path.write_bytes(dumps({"keys": [new.key.export_public(as_dict=True)]}))
        assert wait_until(lambda: running.query(QUERY, new.token()).status == 200)
        assert running.query(QUERY, old.token()).status == 401
    finally:
        running.server.stop()
