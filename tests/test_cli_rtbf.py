"""`intelgraph-privacy rtbf request | run | status` with a sidecar configuration, region by region.

The world of tests/rtbf_world.py on SQLite, a real configuration file with a key per region, and
the commands run in-process through `intelgraph_privacy.cli.main`: each region's worker runs its
part (`--region`), the last one completes the job, and the manifest binds each region to its key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from intelgraph_privacy.cli import main
from intelgraph_privacy.tokens import generate_signing_key
from tests import rtbf_world
from tests.rtbf_world import TENANT, World

SUBJECT = "P-00005"


@dataclass
class Setup:
    world: World
    config: Path
    directory: Path


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    world = rtbf_world.build(rtbf_world.sqlite_urls(tmp_path), tmp_path)
    keys = {}
    for name in ("manifest", "eu", "us"):
        key = generate_signing_key(kid=f"{name}-cli")
        path = tmp_path / f"{name}.jwk"
        path.write_text(key.export_private())
        keys[name] = path
    (tmp_path / "jwks.json").write_text(
        json.dumps(
            {
                "keys": [
                    json.loads(generate_signing_key(kid="unused").export_public()),
                ]
            }
        )
    )
    (tmp_path / "pseudonym.key").write_bytes(b"cli-rtbf-pseudonym-key-0123456789")
    config = tmp_path / "sidecar.yaml"
    config.write_text(
        "upstream: {url: 'http://127.0.0.1:9/graphql'}\n"
        "auth: {jwks: jwks.json, issuer: https://idp.example.test, audience: api}\n"
        "policy: {pseudonym_key_file: pseudonym.key}\n"
        f"store: {{data_dir: '{tmp_path / 'store'}'}}\n"
        "rtbf:\n"
        f"  registry: {world.registry_path}\n"
        f"  signing_key_file: {keys['manifest']}\n"
        f"  region_keys: {{eu: {keys['eu']}, us: {keys['us']}}}\n"
    )
    # The store exists before any command reads it (as a sidecar leaves it).
    from intelgraph_privacy.store import open_store

    with open_store(None, data_dir=tmp_path / "store"):
        pass
    return Setup(world, config, tmp_path)


def cli(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_request_run_each_region_then_status_and_a_bound_manifest(
    capsys: pytest.CaptureFixture[str], setup: Setup
) -> None:
    config = ("--config", setup.config)
    code, out, err = cli(capsys, "rtbf", "request", "--subject", SUBJECT,
                         "--scope", f"tenant:{TENANT}", "--by", "acme/pia", *config)  # fmt: skip
    assert code == 0, err
    job = json.loads(out)
    assert (job["status"], job["created"], job["regions"]) == ("pending", True, ["eu", "us"])
    assert SUBJECT not in out and job["subjectId"].startswith("hmac-sha256:")

    code, out, err = cli(capsys, "rtbf", "run", job["jobId"], "--region", "eu", *config)
    assert code == 0, err
    assert out.strip() == f"{job['jobId']} running"  # us has not reported yet
    code, out, err = cli(capsys, "rtbf", "run", "--pending", "--region", "us", *config)
    assert (code, out.strip()) == (0, f"{job['jobId']} done"), err
    assert setup.world.snapshot() == setup.world.expected_after({SUBJECT})

    manifest = setup.directory / "manifest.json"
    code, out, err = cli(capsys, "rtbf", "status", job["jobId"], "--manifest", manifest, *config)
    assert code == 0, err
    status = json.loads(out)
    assert status["status"] == "done" and {s["region"] for s in status["steps"]} == {"eu", "us"}
    assert all(s["remaining"] == 0 for s in status["steps"])
    jwks = setup.directory / "verify.json"
    from intelgraph_privacy.tokens import load_signing_key, public_jwks

    jwks.write_text(
        json.dumps(
            public_jwks(
                *(load_signing_key(setup.directory / f"{n}.jwk") for n in ("manifest", "eu", "us"))
            )
        )
    )
    code, out, err = cli(capsys, "manifest", "verify", manifest, "--jwks", jwks,
                         "--region-kid", "eu=eu-cli", "--region-kid", "us=us-cli")  # fmt: skip
    assert code == 0, err
    assert out.splitlines()[:3] == [
        "manifest OK: signed by manifest-cli",
        "region eu: signed by eu-cli",
        "region us: signed by us-cli",
    ]


def test_a_failing_region_is_recorded_and_running_again_resumes(
    capsys: pytest.CaptureFixture[str], setup: Setup
) -> None:
    config = ("--config", setup.config)
    code, out, _ = cli(capsys, "rtbf", "request", "--subject", SUBJECT,
                       "--scope", f"tenant:{TENANT}", *config)  # fmt: skip
    job = json.loads(out)["jobId"]
    events = setup.world.engine("eu-events")
    with events.begin() as connection:
        connection.execute(text("ALTER TABLE events RENAME TO events_moved"))
    code, out, err = cli(capsys, "rtbf", "run", job, "--region", "eu", *config)
    assert code == 1 and out.startswith(f"{job} failed: events (eu): OperationalError"), out
    assert SUBJECT not in out
    with events.begin() as connection:
        connection.execute(text("ALTER TABLE events_moved RENAME TO events"))
    code, out, err = cli(capsys, "rtbf", "run", job, *config)
    assert (code, out.strip()) == (0, f"{job} done"), err
    assert setup.world.snapshot() == setup.world.expected_after({SUBJECT})


def test_errors(capsys: pytest.CaptureFixture[str], setup: Setup) -> None:
    config = ("--config", setup.config)
    cases: list[tuple[tuple[Any, ...], str]] = [
        (("rtbf", "status", "no-such-job", *config), "no erasure job no-such-job"),
        (("rtbf", "run", *config), "name the jobs to run, or --pending"),
        (("rtbf", "run", "--pending", "--store", "sqlite:///x.db"), "need --config"),
        (("rtbf", "request", "--subject", "", "--scope", "tenant:acme", *config), "subjectId"),
        (("rtbf", "request", "--subject", "x", "--scope", "acme", *config), "tenant:<tenant id>"),
    ]
    for args, message in cases:
        code, _, err = cli(capsys, *args)
        assert code == 1 and message in err, (args, err)
