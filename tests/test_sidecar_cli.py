"""The console script as users run it: `demo`, `token issue`, `sidecar --config`, `audit verify`."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from intelgraph_privacy.codec import loads
from intelgraph_privacy.tokens import KeySet, TokenVerifier, demo_jwks, load_purposes
from tests.servers import http, post_json
from tests.sidecar_env import AUDIENCE, ISSUER, ROOT, RecordingUpstream, SigningKeys

CLI = [sys.executable, "-m", "sidecar.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def run_cli(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> Any:
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=120,
        check=False,
    )


def wait_for(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if http("GET", url, timeout=2).status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not become ready")


def stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    try:
        out, _ = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        out, _ = process.communicate()
        raise AssertionError("the process did not stop on SIGTERM") from None
    return out


# -- token issue -----------------------------------------------------------------------------


def test_token_issue_demo_signs_a_verifiable_token() -> None:
    done = run_cli(
        "token", "issue", "--demo", "--sub", "s1", "--roles", "analyst, investigator",
        "--purpose", "analytics", "--tenant", "acme", "--ttl", "120",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    from intelgraph_privacy.tokens import DEMO_AUDIENCE, DEMO_ISSUER

    verifier = TokenVerifier(
        KeySet.from_json(demo_jwks()),
        issuer=DEMO_ISSUER,
        audience=DEMO_AUDIENCE,
        purposes=load_purposes(ROOT / "presets" / "purposes.yaml"),
        allow_demo_key=True,
    )
    claims = verifier.verify(token)
    assert (claims.sub, claims.tenant, claims.purpose) == ("s1", "acme", "analytics")
    assert set(claims.roles) == {"analyst", "investigator"}
    assert claims.exp - claims.iat == 120


def test_token_issue_requires_demo_flag_and_positive_ttl() -> None:
    done = run_cli("token", "issue", "--sub", "s", "--purpose", "p", "--tenant", "t")
    assert done.returncode == 2 and "--demo" in done.stderr
    done = run_cli(
        "token", "issue", "--demo", "--sub", "s", "--purpose", "p", "--tenant", "t", "--ttl", "0"
    )
    assert done.returncode == 1 and "--ttl" in done.stderr


# -- demo ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    data_dir = tmp_path_factory.mktemp("demo-data")
    port, upstream_port = free_port(), free_port()
    process = subprocess.Popen(
        [
            *CLI, "demo", "--port", str(port), "--upstream-port", str(upstream_port),
            "--data-dir", str(data_dir), "--people", "300",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("Stop the demo"):
            break
    output = "".join(lines)
    assert "Stop the demo" in output, output
    wait_for(f"http://127.0.0.1:{port}/readyz")
    yield {"output": output, "port": port, "data_dir": data_dir, "process": process}
    stop(process)


def curl_commands(output: str) -> dict[str, str]:
    """The printed commands, by the comment line above each."""
    commands: dict[str, str] = {}
    label = None
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("# "):
            label = line[2:].split(" (")[0]
        elif line.startswith("curl ") and label is not None:
            command, following = line, i + 1
            while command.endswith("\\"):
                command = command[:-1] + lines[following]
                following += 1
            commands[label] = command
            label = None
    return commands


def test_demo_curl_commands_show_one_person_three_ways(demo: dict[str, Any]) -> None:
    commands = curl_commands(demo["output"])
    assert {"analyst", "investigator", "high-clearance investigator"} <= set(commands)
    seen = {}
    for label, command in commands.items():
        done = subprocess.run(
            ["bash", "-c", command], capture_output=True, text=True, timeout=30, check=False
        )
        assert done.returncode == 0, done.stderr
        seen[label] = loads(done.stdout)
    people = {label: body.get("data", {}) for label, body in seen.items()}
    analyst = people["analyst"]["person"]
    investigator = people["investigator"]["person"]
    cleared = people["high-clearance investigator"]["person"]
    assert analyst["name"] == investigator["name"] == cleared["name"]
    assert analyst["ssn"] is None and investigator["ssn"] is None and cleared["ssn"]
    assert analyst["email"] != investigator["email"] == cleared["email"]
    assert (
        seen["no token: refused with 401, nothing reaches the graph API"]["errors"][0][
            "extensions"
        ]["code"]
        == "UNAUTHENTICATED"
    )
    # Token exchange turned the broad token into a short-lived investigation token, and the
    # admin command (printed, so run, last) made Person.city restricted: the investigation
    # token is accepted, and the city is now withheld from it.
    # Analytics: every group of the k-anonymous cohort holds at least k = 5 people, and all
    # 300 people but the few suppressed are counted. The DP export carries its proof and
    # was charged to the tenant's budget.
    cohort = seen["analytics: people per city and age band, every group k-anonymous"]
    counts = [row["count"] for row in cohort["data"]["cohort"]]
    assert min(counts) >= 5 and 0.98 * 300 <= sum(counts) <= 300
    export = seen["charged to the tenant's daily privacy budget; the answer carries its proof"]
    assert len(export["value"]) == 3 and all(isinstance(v, int) for v in export["value"])
    proof = export["proof"]
    assert (proof["preset"], proof["epsilon"], proof["mechanism"]) == ("standard", 2.0, "geometric")
    assert (proof["tenant"], proof["purpose"], proof["budget_left"]) == ("demo", "export", 8.0)
    erasure = seen["`intelgraph-privacy rtbf status JOB --manifest FILE` below"]
    assert UUID.fullmatch(erasure["data"]["requestRTBF"]), erasure
    exchanged = seen["bound to the purpose investigation"]
    assert exchanged["scope"] == "purpose:investigation" and exchanged["expires_in"] == 300
    admin = seen[
        "admin API: an admin, for the purpose administration, makes Person.city restricted"
    ]
    assert admin == {"data": {"setRedactionRule": True}}
    reply = post_json(
        f"http://127.0.0.1:{demo['port']}/graphql",
        {"query": '{ person(id: "P-00001") { name city } }'},
        token=exchanged["access_token"],
    )
    assert reply.status == 200, reply.raw
    assert reply.json["data"]["person"] == {"name": cleared["name"], "city": None}


def test_demo_serves_its_public_keys(demo: dict[str, Any]) -> None:
    reply = http("GET", f"http://127.0.0.1:{demo['port']}/.well-known/jwks.json")
    assert reply.status == 200
    keys = reply.json["keys"]
    assert keys and all("d" not in k for k in keys)
    assert keys == demo_jwks()["keys"]


def test_demo_audit_log_verifies_and_tampering_is_caught(demo: dict[str, Any]) -> None:
    port = demo["port"]
    from sidecar.demo import demo_token

    reply = post_json(
        f"http://127.0.0.1:{port}/graphql",
        {"query": "{ people(first: 1) { name } }"},
        token=demo_token("auditor", ("analyst",), "investigation"),
    )
    assert reply.status == 200
    time.sleep(0.5)  # the writer flushes every 0.2 s
    done = run_cli("audit", "verify", "--data-dir", str(demo["data_dir"]))
    assert done.returncode == 0, done.stderr
    match = re.search(r"intact: (\d+) records", done.stdout)
    assert match and int(match.group(1)) >= 1


def test_audit_verify_reports_tampering(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    import sqlalchemy as sa

    from intelgraph_privacy.audit import AuditLog, AuditRecord
    from intelgraph_privacy.store import open_store

    store = open_store(None, data_dir=tmp_path)
    records = [
        AuditRecord(
            ts=datetime.now(UTC), request_id=f"r{i}", sub="s", tenant="t", purpose="p",
            operation_name="Op", operation_type="query", document_hash="0" * 64,
            redacted={"Person.ssn": {"null": i + 1}}, policy_version="v", catalog_version="c",
            status=200, mode="enforce",
        )
        for i in range(3)
    ]  # fmt: skip
    AuditLog(store).append(records)
    assert run_cli("audit", "verify", "--data-dir", str(tmp_path)).returncode == 0
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_log SET sub = 'mallory' WHERE seq = 2"))
    store.close()
    done = run_cli("audit", "verify", "--data-dir", str(tmp_path))
    assert done.returncode == 1
    assert "seq 2" in done.stderr


# -- sidecar --config ------------------------------------------------------------------------


def test_sidecar_command_runs_from_a_config_file_and_environment(
    tmp_path: Path, upstream: RecordingUpstream, test_keys: SigningKeys
) -> None:
    (tmp_path / "pseudonym.key").write_text("a-real-secret-of-32-bytes-or-so!!")
    config = tmp_path / "sidecar.yaml"
    config.write_text(
        f"""
upstream:
  url: {upstream.graphql_url}
auth:
  jwks: {test_keys.jwks_path}
  issuer: {ISSUER}
  audience: {AUDIENCE}
policy:
  catalog: {ROOT / "presets" / "catalog.yaml"}
  policies: {ROOT / "rego"}
  pseudonym_key_file: pseudonym.key
store:
  data_dir: data
log_level: INFO
"""
    )
    port = free_port()
    process = subprocess.Popen(
        [*CLI, "sidecar", "--config", str(config)],
        cwd=ROOT,
        env={**os.environ, "INTELGRAPH_LISTEN__PORT": str(port)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/readyz")
        reply = post_json(
            f"http://127.0.0.1:{port}/graphql",
            {"query": "query Logged { people(first: 1) { name ssn } }"},
            token=test_keys.token(),
            headers={"X-Request-Id": "req-12345"},
        )
        assert reply.status == 200 and reply.json["data"]["people"][0]["ssn"] is None
        assert reply.headers["X-Request-Id"] == "req-12345"
    finally:
        output = stop(process)
    # Structured logs: one JSON object per line, the request line carrying the request id.
    entries = [loads(line) for line in output.splitlines() if line.startswith("{")]
    request_lines = [e for e in entries if e.get("msg") == "request"]
    assert any(
        e["request_id"] == "req-12345" and e["operation"] == "Logged" and e["status"] == 200
        for e in request_lines
    ), output
    assert (tmp_path / "data" / "intelgraph.sqlite3").exists()
    done = run_cli("audit", "verify", "--config", str(config))
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("upstream: {url: ftp://x}\n", "upstream.url must be an http"),
        ("upstream: {url: 'http://x'}\ndemo: true\n", "`demo` cannot be set in a file"),
        ("upstream: {url: 'http://x'}\nlimits: {max_depth: 0}\n", "limits.max_depth"),
        ("upstream: {url: 'http://x'}\n", "auth.jwks, auth.issuer and auth.audience"),
        ("- not a mapping\n", "must be a mapping"),
    ],
)
def test_sidecar_refuses_bad_configuration(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    done = run_cli("sidecar", "--config", str(config))
    assert done.returncode == 1
    assert message in done.stderr, done.stderr


def test_audit_verify_with_an_anchor_catches_deleted_newest_records(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    import sqlalchemy as sa

    from intelgraph_privacy.audit import AuditLog, AuditRecord
    from intelgraph_privacy.store import open_store

    store = open_store(None, data_dir=tmp_path)
    log = AuditLog(store)
    log.append(
        [
            AuditRecord(
                ts=datetime.now(UTC), request_id=f"r{i}", sub="s", tenant="t", purpose="p",
                operation_name=None, operation_type=None, document_hash=None, redacted={},
                policy_version=None, catalog_version=None, status=401, mode="enforce",
            )
            for i in range(4)
        ]
    )  # fmt: skip
    newest = log.tail(1)[0]
    anchor = f"{newest.seq}:{newest.hash}"
    with store.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM audit_log WHERE seq = 4"))
    store.close()
    # Without the anchor, a log missing its newest record still looks intact...
    assert run_cli("audit", "verify", "--data-dir", str(tmp_path)).returncode == 0
    # ...with it, the deletion shows.
    done = run_cli("audit", "verify", "--data-dir", str(tmp_path), "--anchor", anchor)
    assert done.returncode == 1, done.stdout
    done = run_cli("audit", "verify", "--data-dir", str(tmp_path), "--anchor", "x:y")
    assert done.returncode == 1 and "--anchor takes SEQ:HASH" in done.stderr
    missing = run_cli("audit", "verify", "--store", f"sqlite:///{tmp_path}/absent.sqlite3")
    assert missing.returncode == 1 and "no store at" in missing.stderr
    assert not (tmp_path / "absent.sqlite3").exists()


def test_demo_erases_a_person_and_hands_back_a_manifest_that_verifies(
    demo: dict[str, Any], tmp_path: Path
) -> None:
    """requestRTBF on the demo really erases a person: the sidecar shows nothing of them, and
    the manifest verifies against the keys the demo serves (and fails after any edit)."""
    from sidecar.demo import demo_token

    port, data_dir = demo["port"], str(demo["data_dir"])
    subject = "P-00150"
    investigator = demo_token("ivan", ("investigator",), "investigation")
    graphql = f"http://127.0.0.1:{port}/graphql"
    query = f'{{ person(id: "{subject}") {{ id name knows {{ id }} cases {{ reference }} }} }}'
    before = post_json(graphql, {"query": query}, token=investigator)
    assert before.json["data"]["person"]["id"] == subject
    friends = [f["id"] for f in before.json["data"]["person"]["knows"]]
    people = post_json(graphql, {"query": "{ people(first: 1000) { id } }"}, token=investigator)
    assert subject in {p["id"] for p in people.json["data"]["people"]}

    admin = demo_token("root", ("admin",), "administration")
    mutation = f'mutation {{ requestRTBF(subjectId: "{subject}", scope: "tenant:demo") }}'
    reply = post_json(f"http://127.0.0.1:{port}/admin/graphql", {"query": mutation}, token=admin)
    assert reply.status == 200, reply.raw
    job = reply.json["data"]["requestRTBF"]

    manifest = tmp_path / "manifest.json"
    deadline = time.monotonic() + 30
    while True:
        status = run_cli("rtbf", "status", job, "--data-dir", data_dir)
        assert status.returncode == 0, status.stderr
        if json.loads(status.stdout)["status"] in ("done", "failed") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    report = json.loads(status.stdout)
    assert report["status"] == "done", report
    assert subject not in status.stdout  # the job names the subject by its keyed hash only
    assert {s["dataset"] for s in report["steps"]} == {"knows", "case_subject", "person"}
    done = run_cli("rtbf", "status", job, "--data-dir", data_dir, "--manifest", str(manifest))
    assert done.returncode == 0 and manifest.is_file()

    after = post_json(graphql, {"query": query}, token=investigator)
    assert after.status == 200 and after.json["data"]["person"] is None
    people = post_json(graphql, {"query": "{ people(first: 1000) { id } }"}, token=investigator)
    assert subject not in {p["id"] for p in people.json["data"]["people"]}
    for friend in friends:
        edges = post_json(
            graphql, {"query": f'{{ person(id: "{friend}") {{ knows {{ id }} }} }}'},
            token=investigator,
        )  # fmt: skip
        assert subject not in {k["id"] for k in edges.json["data"]["person"]["knows"]}

    jwks = f"http://127.0.0.1:{port}/.well-known/jwks.json"
    verified = run_cli("manifest", "verify", str(manifest), "--jwks", jwks)
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.startswith("manifest OK: signed by intelgraph-demo-2026\n")
    data = manifest.read_bytes()
    for position in (10, len(data) // 2, len(data) - 2):
        edited = bytearray(data)
        edited[position] = ord("0") if edited[position] != ord("0") else ord("1")
        tampered = tmp_path / f"tampered-{position}.json"
        tampered.write_bytes(bytes(edited))
        refused = run_cli("manifest", "verify", str(tampered), "--jwks", jwks)
        assert refused.returncode == 1 and refused.stderr.startswith("error: "), refused.stdout
    # Asking again for the same subject leaves a new job with nothing left to erase.
    again = post_json(f"http://127.0.0.1:{port}/admin/graphql", {"query": mutation}, token=admin)
    assert again.json["data"]["requestRTBF"] != job
