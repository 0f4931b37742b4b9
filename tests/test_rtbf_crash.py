"""Crash injection: a worker killed mid-job, a database connection dropped mid-transaction.

The worker is a real process (`python -c ...`) running the orchestrator over the world of
tests/rtbf_world.py, killed with `os._exit` at a chosen point (before a step's transaction,
inside it before its commit, just after the commit, after a region reported, before the
manifest is signed). A second orchestrator in this process then resumes the job: the tables
must end exactly as the oracle says, and the manifest must verify with the counts of rows the
subject really had. On PostgreSQL, the datastore connection is also terminated by the server
(`pg_terminate_backend`) inside a step's transaction.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from jwcrypto import jwk
from sqlalchemy import Engine

from intelgraph_privacy.rtbf import ErasureOrchestrator, get_job, job_steps, verify_manifest
from intelgraph_privacy.store import Store, open_store
from intelgraph_privacy.tokens import generate_signing_key, load_signing_key, public_jwks
from tests import rtbf_world
from tests.rtbf_world import TENANT, World

ROOT = Path(__file__).resolve().parents[1]
HASH_KEY = b"rtbf-crash-hash-key-0123456789abcdef"
SUBJECT = "P-00004"
KILLED = 137

#: The worker: runs one job, dying at (event, dataset) given on the command line.
WORKER = textwrap.dedent(
    """
    import os, sys
    from intelgraph_privacy.rtbf import ErasureOrchestrator, load_registry
    from intelgraph_privacy.store import open_store
    from intelgraph_privacy.tokens import load_signing_key

    registry_path, store_url, keys_dir, job_id, event, dataset, hash_key = sys.argv[1:8]

    def die(seen, step):
        name = step.dataset if step is not None else "-"
        if seen == event and name == dataset:
            os._exit(137)

    key = lambda name: load_signing_key(os.path.join(keys_dir, name + ".json"))
    with open_store(store_url) as store:
        orchestrator = ErasureOrchestrator(
            store, load_registry(registry_path), hash_key=hash_key.encode(),
            region_keys={"eu": key("eu"), "us": key("us")}, manifest_key=key("manifest"),
            hook=die,
        )
        orchestrator.run(job_id)
    sys.exit(3)  # the kill point was never reached
    """
)


@dataclass
class Setup:
    world: World
    store: Store
    store_url: str
    keys_dir: Path

    def key(self, name: str) -> jwk.JWK:
        return load_signing_key(self.keys_dir / f"{name}.json")

    def orchestrator(self, **options: Any) -> ErasureOrchestrator:
        return ErasureOrchestrator(
            self.store,
            self.world.registry,
            hash_key=HASH_KEY,
            region_keys={"eu": self.key("eu"), "us": self.key("us")},
            manifest_key=self.key("manifest"),
            **options,
        )

    @property
    def jwks(self) -> dict[str, Any]:
        return public_jwks(self.key("eu"), self.key("us"), self.key("manifest"))


def _write_keys(directory: Path) -> Path:
    directory.mkdir()
    for name in ("eu", "us", "manifest"):
        key = generate_signing_key(kid=f"{name}-crash")
        (directory / f"{name}.json").write_text(key.export_private())
    return directory


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def setup(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Setup]:
    keys = _write_keys(tmp_path / "keys")
    if request.param == "sqlite":
        world = rtbf_world.build(rtbf_world.sqlite_urls(tmp_path), tmp_path)
        url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
        with open_store(url) as store:
            yield Setup(world, store, url, keys)
        world.close()
        return
    admin: Engine = request.getfixturevalue("pg_server")
    url = request.getfixturevalue("fresh_pg_url")
    urls, schemas = rtbf_world.create_pg_schemas(admin)
    try:
        world = rtbf_world.build(urls, tmp_path)
        with open_store(url) as store:
            yield Setup(world, store, url, keys)
        world.close()
    finally:
        rtbf_world.drop_pg_schemas(admin, schemas)


def _kill_worker_at(setup: Setup, job_id: str, event: str, dataset: str) -> None:
    done = subprocess.run(
        [
            sys.executable, "-c", WORKER, str(setup.world.registry_path), setup.store_url,
            str(setup.keys_dir), job_id, event, dataset, HASH_KEY.decode(),
        ],
        cwd=ROOT,
        env={**os.environ, "RUST_BACKTRACE": "0"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # fmt: skip
    assert done.returncode == KILLED, done.stderr


def _assert_resumes_to_the_oracle(setup: Setup, job_id: str, *, take_over: bool = False) -> None:
    resumed = setup.orchestrator().run(job_id, take_over=take_over)
    assert resumed.status == "done", resumed.error
    world = setup.world
    assert world.snapshot() == world.expected_after({SUBJECT})
    manifest = verify_manifest(str(resumed.manifest).encode(), setup.jwks).manifest
    rows = {a["dataset"]: a["rows"] for a in manifest["actions"] if a["op"] != "recompute"}
    assert rows == world.rows_of(SUBJECT)
    assert {a["region"] for a in manifest["actions"]} == {"eu", "us"}


KILL_POINTS = [
    ("before_erase", "knows"),  # the very first step of eu
    ("before_commit", "person"),  # inside a transaction: rolled back by the kill
    ("after_commit", "case_file"),  # committed, but not recorded done
    ("after_commit", "city_counts"),  # a derived dataset rebuilt, not recorded
    ("region_reported", "-"),  # eu signed its part, us not started
    ("before_commit", "accounts"),  # us, anonymising
    ("before_finalize", "-"),  # every region reported, no manifest yet
]


@pytest.mark.parametrize(("event", "dataset"), KILL_POINTS)
def test_a_worker_killed_mid_job_is_resumed_to_the_exact_final_state(
    setup: Setup, event: str, dataset: str
) -> None:
    job, _ = setup.orchestrator().request(SUBJECT, f"tenant:{TENANT}", requested_by="t")
    _kill_worker_at(setup, job.id, event, dataset)
    killed = get_job(setup.store, job.id)
    assert killed is not None and killed.status == "running" and killed.manifest is None
    # The dead worker still holds the job: another one leaves it alone until its lease ends...
    untouched = setup.orchestrator().run(job.id)
    assert untouched.status == "running" and untouched.manifest is None
    # ...or an operator who knows it is gone takes it over.
    _assert_resumes_to_the_oracle(setup, job.id, take_over=True)


@pytest.mark.postgres
def test_a_connection_dropped_inside_a_step_fails_the_job_and_it_resumes(
    pg_server: Engine, fresh_pg_url: str, tmp_path: Path
) -> None:
    keys = _write_keys(tmp_path / "keys")
    urls, schemas = rtbf_world.create_pg_schemas(pg_server)
    try:
        world = rtbf_world.build(urls, tmp_path)
        with open_store(fresh_pg_url) as store:
            setup = Setup(world, store, fresh_pg_url, keys)
            dropped: list[int] = []

            def drop_connection(event: str, step: Any) -> None:
                if event == "before_commit" and step.dataset == "person" and not dropped:
                    with pg_server.connect() as admin:
                        killed = admin.exec_driver_sql(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE application_name = 'igp_rtbf_world' AND pid <> pg_backend_pid()"
                        ).all()
                    dropped.append(len(killed))

            job, _ = setup.orchestrator().request(SUBJECT, f"tenant:{TENANT}", requested_by="t")
            failed = setup.orchestrator(hook=drop_connection).run(job.id)
            assert dropped and dropped[0] >= 1
            assert failed.status == "failed" and "person (eu)" in str(failed.error)
            steps = {s["dataset"]: s["status"] for s in job_steps(store, job.id)}
            assert steps["person"] == "failed" and steps["knows"] == "done"
            assert any(r[0] == SUBJECT for r in world.snapshot()["person"])  # rolled back
            _assert_resumes_to_the_oracle(setup, job.id)
        world.close()
    finally:
        rtbf_world.drop_pg_schemas(pg_server, schemas)
