"""Erasure end to end on real SQLite and real PostgreSQL: 8 datasets in 3 datastores, 2 regions.

Every test builds the world of tests/rtbf_world.py (real foreign keys, a derived table, a table
shared by tenants, an anonymised table), erases people through `ErasureOrchestrator`, and
compares every table with the oracle's expectation computed from the generated data alone.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from jwcrypto import jwk
from sqlalchemy import Engine, insert, select, text

from intelgraph_privacy.rtbf import (
    ErasedSubjectError,
    ErasureOrchestrator,
    ErasureRequestError,
    ManifestError,
    is_erased,
    job_steps,
    refuse_if_erased,
    subject_hash,
    verify_manifest,
)
from intelgraph_privacy.signing import SignatureError
from intelgraph_privacy.store import Store, open_store
from intelgraph_privacy.store.schema import metadata, rtbf_jobs
from intelgraph_privacy.tokens import generate_signing_key, public_jwks
from tests import rtbf_world
from tests.rtbf_world import TENANT, World

HASH_KEY = b"rtbf-test-hash-key-0123456789abcdef"


@dataclass
class Setup:
    world: World
    store: Store
    keys: dict[str, jwk.JWK]  # region -> key, and "manifest"

    @property
    def jwks(self) -> dict[str, Any]:
        return public_jwks(*self.keys.values())

    def orchestrator(self, **options: Any) -> ErasureOrchestrator:
        return ErasureOrchestrator(
            self.store,
            self.world.registry,
            hash_key=HASH_KEY,
            region_keys={"eu": self.keys["eu"], "us": self.keys["us"]},
            manifest_key=self.keys["manifest"],
            policy_version="test-bundle+r0",
            **options,
        )


def _keys() -> dict[str, jwk.JWK]:
    return {name: generate_signing_key(kid=f"{name}-2026") for name in ("eu", "us", "manifest")}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def setup(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Setup]:
    if request.param == "sqlite":
        world = rtbf_world.build(rtbf_world.sqlite_urls(tmp_path), tmp_path)
        with open_store(f"sqlite:///{tmp_path / 'store.sqlite3'}") as store:
            yield Setup(world, store, _keys())
        world.close()
        return
    admin: Engine = request.getfixturevalue("pg_server")
    store_url: str = request.getfixturevalue("fresh_pg_url")
    urls, schemas = rtbf_world.create_pg_schemas(admin)
    try:
        world = rtbf_world.build(urls, tmp_path)
        with open_store(store_url) as store:
            yield Setup(world, store, _keys())
        world.close()
    finally:
        rtbf_world.drop_pg_schemas(admin, schemas)


def _store_text(store: Store) -> str:
    """Every value of every table of the store, as text (to look for leaked subject ids)."""
    parts = []
    with store.read() as connection:
        for table in metadata.sorted_tables:
            for row in connection.execute(select(table)):
                parts.extend(str(v) for v in row)
    return "\n".join(parts)


def test_one_subject_is_erased_everywhere_with_a_verifiable_manifest(setup: Setup) -> None:
    world = setup.world
    subject = "P-00003"
    orchestrator = setup.orchestrator()
    job, created = orchestrator.request(subject, f"tenant:{TENANT}", requested_by="acme/pia")
    assert created and job.status == "pending" and job.regions == ("eu", "us")
    # The tombstone is there from the request on; writers are refused at once.
    assert is_erased(setup.store, TENANT, subject_hash(HASH_KEY, subject))
    with pytest.raises(ErasedSubjectError):
        refuse_if_erased(setup.store, HASH_KEY, TENANT, subject)
    refuse_if_erased(setup.store, HASH_KEY, TENANT, "P-00004")  # others are not
    refuse_if_erased(setup.store, HASH_KEY, "globex", subject)  # nor other tenants' subjects

    done = orchestrator.run(job.id)
    assert done.status == "done", done.error
    assert world.snapshot() == world.expected_after({subject})

    assert done.manifest is not None
    check = verify_manifest(done.manifest.encode(), setup.jwks)
    manifest = check.manifest
    assert check.kids == ("manifest-2026",)
    assert dict(check.regions) == {"eu": ("eu-2026",), "us": ("us-2026",)}
    assert manifest["subjectId"] == "hmac-sha256:" + subject_hash(HASH_KEY, subject)
    assert manifest["scope"] == f"tenant:{TENANT}" and manifest["policyVersion"] == "test-bundle+r0"
    by_dataset = {a["dataset"]: a for a in manifest["actions"]}
    expected_rows = world.rows_of(subject)
    assert {d: by_dataset[d]["rows"] for d in expected_rows} == expected_rows
    assert by_dataset["city_counts"]["op"] == "recompute"
    assert by_dataset["accounts"]["op"] == "anonymise" and by_dataset["case_file"]["op"] == "unlink"
    assert all(
        a["verified"] and a["remaining"] == 0 and a["status"] == "ok" for a in by_dataset.values()
    )
    # Children before parents, derived data last, each region on its own.
    eu = [a["dataset"] for a in manifest["actions"] if a["region"] == "eu"]
    assert eu.index("knows") < eu.index("person") and eu.index("case_subject") < eu.index("person")
    assert eu.index("case_file") < eu.index("person") and eu[-1] == "city_counts"
    us = [a["dataset"] for a in manifest["actions"] if a["region"] == "us"]
    assert us == ["payments", "reviews", "accounts"]
    assert by_dataset["reviews"]["op"] == "anonymise"
    # Nothing the store keeps names the subject: not the job, not the steps, not the manifest.
    assert subject not in _store_text(setup.store)


def test_running_a_done_job_again_changes_nothing(setup: Setup) -> None:
    orchestrator = setup.orchestrator()
    job, _ = orchestrator.request("P-00005", f"tenant:{TENANT}", requested_by="t")
    first = orchestrator.run(job.id)
    snapshot = setup.world.snapshot()
    again = orchestrator.run(job.id)
    assert again.manifest == first.manifest and again.status == "done"
    assert setup.world.snapshot() == snapshot
    # Asking again after it is done opens a new job (nothing left to erase), the same tombstone.
    second, created = orchestrator.request("P-00005", f"tenant:{TENANT}", requested_by="t")
    assert created and second.id != job.id
    rerun = orchestrator.run(second.id)
    assert rerun.status == "done"
    manifest = verify_manifest(str(rerun.manifest).encode(), setup.jwks).manifest
    assert all(a["rows"] == 0 for a in manifest["actions"] if a["op"] != "recompute")


def test_a_batch_erases_many_subjects_in_one_pass(setup: Setup) -> None:
    world = setup.world
    subjects = world.people[:12]
    orchestrator = setup.orchestrator()
    jobs = orchestrator.request_many(subjects, f"tenant:{TENANT}", requested_by="t")
    results = orchestrator.run_batch([job.id for job, _ in jobs])
    assert {j.status for j in results.values()} == {"done"}
    assert world.snapshot() == world.expected_after(subjects)
    for (job, _), subject in zip(jobs, subjects, strict=True):
        manifest = verify_manifest(str(results[job.id].manifest).encode(), setup.jwks).manifest
        rows = {a["dataset"]: a["rows"] for a in manifest["actions"] if a["op"] != "recompute"}
        assert rows == world.rows_of(subject), subject


def test_a_failing_step_fails_the_job_and_a_rerun_resumes_it(setup: Setup) -> None:
    """A step that fails inside its transaction (rolled back) stops the job; resuming finishes."""
    world = setup.world
    calls: list[tuple[str, str]] = []

    def fail_once(event: str, step: Any) -> None:
        if step is None:
            return
        calls.append((event, step.dataset))
        if event == "before_commit" and step.dataset == "person" and len(calls) < 50:
            raise RuntimeError("the connection dropped")

    subject = "P-00007"
    broken = setup.orchestrator(hook=fail_once)
    job, _ = broken.request(subject, f"tenant:{TENANT}", requested_by="t")
    failed = broken.run(job.id)
    assert failed.status == "failed" and "person (eu)" in str(failed.error)
    assert subject not in str(failed.error)
    steps = {s["dataset"]: s for s in job_steps(setup.store, job.id)}
    assert steps["knows"]["status"] == "done" and steps["person"]["status"] == "failed"
    # The person row is still there (the transaction rolled back); its children are gone.
    snapshot = world.snapshot()
    assert any(r[0] == subject for r in snapshot["person"])
    assert not any(subject in r for r in snapshot["knows"])

    resumed = setup.orchestrator().run(job.id)
    assert resumed.status == "done", resumed.error
    assert world.snapshot() == world.expected_after({subject})
    manifest = verify_manifest(str(resumed.manifest).encode(), setup.jwks).manifest
    actions = {a["dataset"]: a for a in manifest["actions"]}
    assert actions["person"]["attempts"] == 2 and actions["knows"]["attempts"] == 1
    assert actions["knows"]["rows"] == world.rows_of(subject)["knows"]  # counted before the crash


def test_tampered_manifests_are_refused(setup: Setup) -> None:
    orchestrator = setup.orchestrator()
    job, _ = orchestrator.request("P-00002", f"tenant:{TENANT}", requested_by="t")
    data = str(orchestrator.run(job.id).manifest).encode()
    verify_manifest(data, setup.jwks)
    document = json.loads(data)
    document["actions"][0]["rows"] += 1
    edited = json.dumps(document, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    with pytest.raises(SignatureError):
        verify_manifest(edited, setup.jwks)
    for position in range(0, len(data), 97):
        flipped = bytearray(data)
        flipped[position] ^= 0x01
        with pytest.raises((SignatureError, ManifestError)):
            verify_manifest(bytes(flipped), setup.jwks)
    # Only the manifest key known: the regions' signatures cannot be checked.
    with pytest.raises(SignatureError) as unknown:
        verify_manifest(data, public_jwks(setup.keys["manifest"]))
    assert unknown.value.reason == "unknown_kid"


def test_bad_requests_are_refused_and_record_nothing(setup: Setup) -> None:
    orchestrator = setup.orchestrator()
    bad = [
        ("", f"tenant:{TENANT}"),
        ("P-1", "acme"),
        ("x" * 300, "tenant:acme"),
        (" P-1", "tenant:acme"),
    ]
    for subject, scope in bad:
        with pytest.raises(ErasureRequestError):
            orchestrator.request(subject, scope, requested_by="t")
    with setup.store.read() as connection:
        assert connection.execute(text("SELECT COUNT(*) FROM rtbf_jobs")).scalar() == 0
        assert connection.execute(text("SELECT COUNT(*) FROM tombstones")).scalar() == 0


def test_a_job_recorded_before_erasures_were_configured_is_adopted_then_run(
    setup: Setup,
) -> None:
    """Before the orchestrator, the admin API recorded jobs with the subject's id in clear and no
    plan. Running them hashes the id away, plans and tombstones them; none is done without it."""
    subject = "P-00011"
    now = datetime.now(UTC)
    with setup.store.begin() as connection:
        connection.execute(
            insert(rtbf_jobs).values(
                id="00000000-0000-4000-8000-000000000001",
                subject_id=subject,
                scope=f"tenant:{TENANT}",
                tenant=TENANT,
                requested_by="acme/pia",
                requested_at=now,
                status="pending",
                updated_at=now,
            )
        )
    orchestrator = setup.orchestrator()
    done = orchestrator.run("00000000-0000-4000-8000-000000000001")
    assert done.status == "done" and done.regions == ("eu", "us")
    assert done.subject_id == "hmac-sha256:" + subject_hash(HASH_KEY, subject)
    assert setup.world.snapshot() == setup.world.expected_after({subject})
    verify_manifest(str(done.manifest).encode(), setup.jwks)
    assert is_erased(setup.store, TENANT, subject_hash(HASH_KEY, subject))
    assert subject not in _store_text(setup.store)


def test_a_job_held_by_another_worker_is_left_to_it_until_its_lease_ends(setup: Setup) -> None:
    first = setup.orchestrator(owner="worker-a")
    job, _ = first.request("P-00013", f"tenant:{TENANT}", requested_by="t")
    assert first.claim([job.id]) == {job.id}
    later = datetime.now(UTC) + timedelta(minutes=11)
    second = setup.orchestrator(owner="worker-b")
    assert second.run(job.id).status == "pending"  # held: nothing ran
    assert job_steps(setup.store, job.id) == []
    expired = setup.orchestrator(owner="worker-b", clock=lambda: later)
    assert expired.run(job.id).status == "done"  # worker-a never came back
    assert setup.world.snapshot() == setup.world.expected_after({"P-00013"})


def test_two_workers_starting_the_same_job_at_once_run_it_once(setup: Setup) -> None:
    job, _ = setup.orchestrator().request("P-00014", f"tenant:{TENANT}", requested_by="t")
    workers = [setup.orchestrator(owner=f"worker-{i}") for i in range(2)]
    barrier = threading.Barrier(len(workers))

    def start(worker: ErasureOrchestrator) -> str:
        barrier.wait()
        return worker.run(job.id).status

    with ThreadPoolExecutor(len(workers)) as pool:
        statuses = list(pool.map(start, workers))
    final = setup.orchestrator().jobs([job.id])[job.id]
    assert final.status == "done" and "done" in statuses
    assert all(s["attempts"] == 1 for s in job_steps(setup.store, job.id))
    verify_manifest(str(final.manifest).encode(), setup.jwks)
    assert setup.world.snapshot() == setup.world.expected_after({"P-00014"})
