"""The erasure orchestrator: from a request to a signed manifest, region by region.

```python
orchestrator = ErasureOrchestrator(store, load_registry("datasets.yaml"), hash_key=key,
                                   region_keys={"eu": eu_key, "us": us_key}, manifest_key=key)
job, _ = orchestrator.request("P-00042", "tenant:acme", requested_by="acme/pia")
job = orchestrator.run(job.id)          # every region, then the signed manifest
job.status, job.manifest                # "done", the manifest's file text
```

`request` plans the erasure, records the job under the subject's keyed hash (never the id) and
leaves the tombstone at once, in one transaction. Running a job runs each region's steps
(`run_region`: in production, each region's worker runs its own, with its own signing key), then
`finalize` assembles the regions' signed sub-manifests into the manifest and signs it. Only the
hash and the job's metadata pass between regions. A failed job (a datastore down, a crash) is
resumed by running it again: finished steps are skipped, the rest are idempotent.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, or_, select, update

from intelgraph_privacy.codec import dumps, loads
from intelgraph_privacy.errors import ConfigError, PrivacyError
from intelgraph_privacy.rtbf.datastores import DatastorePool
from intelgraph_privacy.rtbf.executor import BatchSubject, ErasureError, RegionExecutor, StepHook
from intelgraph_privacy.rtbf.jobs import (
    RUNNABLE_STATUSES,
    ErasureJob,
    ErasureRequestError,
    check_subject_id,
    get_job,
    job_from_row,
    parse_scope,
    request_erasures,
)
from intelgraph_privacy.rtbf.manifest import build_manifest, region_report
from intelgraph_privacy.rtbf.planner import plan_erasure
from intelgraph_privacy.rtbf.progress import StoreStepRecorder, insert_new, region_steps
from intelgraph_privacy.rtbf.registry import DatasetRegistry
from intelgraph_privacy.rtbf.tombstones import HASH_SCHEME, SubjectHasher, add_tombstones
from intelgraph_privacy.signing import encode_signed, sign_document
from intelgraph_privacy.store import Store
from intelgraph_privacy.store.schema import rtbf_jobs, rtbf_region_reports
from intelgraph_privacy.store.versions import TOMBSTONES, bump_version

__all__ = ["ErasureOrchestrator", "JobObserver"]

#: How long a worker holds a job it claimed (renewed as each region starts).
DEFAULT_LEASE = timedelta(minutes=10)

#: Called when a job ends: (job, seconds it took in this run, "done" | "failed").
JobObserver = Callable[[ErasureJob, float, str], None]


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ErasureOrchestrator:
    """Plans, runs and proves erasures over a dataset registry, with the store as the record."""

    def __init__(
        self,
        store: Store,
        registry: DatasetRegistry,
        *,
        hash_key: bytes,
        region_keys: Mapping[str, Any],
        manifest_key: Any,
        policy_version: str | None = None,
        hook: StepHook | None = None,
        observer: JobObserver | None = None,
        clock: Callable[[], datetime] = _utc_now,
        lease: timedelta = DEFAULT_LEASE,
        owner: str | None = None,
    ) -> None:
        missing = [r for r in registry.regions if r not in region_keys]
        if missing:
            raise ConfigError(f"no signing key for region(s) {', '.join(missing)}")
        self.store = store
        self.registry = registry
        self.hash_key = hash_key
        self.region_keys = dict(region_keys)
        self.manifest_key = manifest_key
        self.policy_version = policy_version
        self.hook = hook
        self.observer = observer
        self.clock = clock
        #: How long a claimed job stays this worker's without a word from it.
        self.lease = lease
        #: This worker, as its leases name it.
        self.owner = owner or f"{socket.gethostname()[:64]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    # -- requests ------------------------------------------------------------------------

    def request(self, subject_id: str, scope: str, *, requested_by: str) -> tuple[ErasureJob, bool]:
        """Record an erasure job and the subject's tombstone; (job, created).

        An open job for the same subject and scope is returned instead (created False).
        ErasureRequestError on bad input.
        """
        return self.request_many([subject_id], scope, requested_by=requested_by)[0]

    def request_many(
        self, subject_ids: Sequence[str], scope: str, *, requested_by: str
    ) -> list[tuple[ErasureJob, bool]]:
        """`request` for many subjects of one scope, in one transaction."""
        with self.store.begin() as connection:
            created = self.request_in(connection, subject_ids, scope, requested_by=requested_by)
        jobs = self.jobs([job for job, _ in created])
        return [(jobs[job], new) for job, new in created]

    def request_in(
        self,
        connection: Connection,
        subject_ids: Sequence[str],
        scope: str,
        *,
        requested_by: str,
        policy_version: str | None = None,
    ) -> list[tuple[str, bool]]:
        """Record jobs and tombstones in the caller's store transaction; (job id, created) each.

        For callers that commit something else with them (the admin API: its audit record).
        `policy_version` overrides the orchestrator's (a sidecar passes the serving one).
        """
        tenant = parse_scope(scope)
        hasher = SubjectHasher(self.hash_key)
        hashes = [hasher(check_subject_id(s)) for s in subject_ids]
        regions = sorted(plan_erasure(self.registry, tenant).regions)
        if not regions:
            raise ErasureRequestError(f"no registered dataset holds data of tenant {tenant!r}")
        now = self.clock()
        created = request_erasures(
            connection,
            hashes,
            scope,
            requested_by=requested_by,
            regions=regions,
            policy_version=policy_version or self.policy_version,
            now=now,
        )
        pairs = ((h, job) for h, (job, _) in zip(hashes, created, strict=True))
        if add_tombstones(connection, tenant, pairs, now):
            # Sidecars sharing the store withhold the subject from their next request on.
            bump_version(connection, TOMBSTONES)
        return created

    def adopt_legacy_jobs(self) -> int:
        """Bring jobs recorded before erasures were configured up to date; how many.

        Such a job names its subject in clear and has no plan: its id is replaced by the keyed
        hash (the clear id leaves the store), its regions are planned, and its tombstone is left.
        """
        with self.store.begin() as connection:
            rows = connection.execute(
                select(rtbf_jobs.c.id, rtbf_jobs.c.subject_id, rtbf_jobs.c.tenant).where(
                    rtbf_jobs.c.subject_hash.is_(None)
                )
            ).all()
            if not rows:
                return 0
            hasher = SubjectHasher(self.hash_key)
            now = self.clock()
            by_tenant: dict[str, list[tuple[str, str]]] = {}
            for job_id, subject_id, tenant in rows:
                hashed = hasher(subject_id)
                regions = sorted(plan_erasure(self.registry, tenant).regions)
                connection.execute(
                    update(rtbf_jobs)
                    .where(rtbf_jobs.c.id == job_id)
                    .values(
                        subject_id=HASH_SCHEME + hashed,
                        subject_hash=hashed,
                        regions=dumps(regions).decode(),
                        updated_at=now,
                    )
                )
                by_tenant.setdefault(tenant, []).append((hashed, job_id))
            for tenant, pairs in by_tenant.items():
                add_tombstones(connection, tenant, pairs, now)
            bump_version(connection, TOMBSTONES)
        return len(rows)

    def jobs(self, job_ids: Sequence[str]) -> dict[str, ErasureJob]:
        """The jobs with these ids (missing ones left out)."""
        found: dict[str, ErasureJob] = {}
        with self.store.read() as connection:
            for start in range(0, len(job_ids), 2_000):
                chunk = list(job_ids[start : start + 2_000])
                for row in connection.execute(select(rtbf_jobs).where(rtbf_jobs.c.id.in_(chunk))):
                    found[row.id] = job_from_row(row)
        return found

    def pending_jobs(self, limit: int = 10_000) -> list[str]:
        """Ids of jobs waiting to run or to resume (oldest first)."""
        query = (
            select(rtbf_jobs.c.id)
            .where(rtbf_jobs.c.status.in_(RUNNABLE_STATUSES))
            .order_by(rtbf_jobs.c.requested_at, rtbf_jobs.c.id)
            .limit(limit)
        )
        with self.store.read() as connection:
            return [str(i) for i in connection.scalars(query)]

    # -- running -------------------------------------------------------------------------

    def run(self, job_id: str, *, take_over: bool = False) -> ErasureJob:
        """Run (or resume) one job in every region, then sign its manifest; the job after it."""
        return self.run_batch([job_id], take_over=take_over)[job_id]

    def run_batch(
        self, job_ids: Sequence[str], *, take_over: bool = False
    ) -> dict[str, ErasureJob]:
        """Run (or resume) jobs together: one pass over each dataset for all their subjects.

        Jobs already done are returned as they are. Each job is claimed first: a job another
        worker holds (its lease not expired) is left to it, unless `take_over` (the operator
        knows that worker is gone). A failure stops the jobs of its tenant (status `failed`,
        with the error); running them again resumes them.
        """
        self.adopt_legacy_jobs()
        jobs = self.jobs(job_ids)
        unknown = [j for j in job_ids if j not in jobs]
        if unknown:
            raise ErasureRequestError(f"no erasure job {unknown[0]}")
        runnable = [
            j.id
            for j in jobs.values()
            if j.status in RUNNABLE_STATUSES and j.subject_hash and j.regions
        ]
        claimed = self.claim(runnable, take_over=take_over)
        try:
            by_tenant: dict[str, list[ErasureJob]] = {}
            for job in jobs.values():
                if job.id in claimed:
                    by_tenant.setdefault(job.tenant, []).append(job)
            for tenant_jobs in by_tenant.values():
                self._run_tenant(tenant_jobs)
        finally:
            self.release(list(claimed))
        return self.jobs(job_ids)

    def claim(self, job_ids: Sequence[str], *, take_over: bool = False) -> set[str]:
        """Take the lease of these jobs for this worker; the ids claimed.

        A job is claimed when it is not done and nobody else holds an unexpired lease on it (or
        `take_over`). The lease lasts `lease` from now and is renewed as the job's regions run.
        """
        now = self.clock()
        claimed: set[str] = set()
        with self.store.begin() as connection:
            for chunk in _chunks(list(job_ids)):
                free = or_(
                    rtbf_jobs.c.lease_until.is_(None),
                    rtbf_jobs.c.lease_until < now,
                    rtbf_jobs.c.lease_owner == self.owner,
                )
                conditions = [rtbf_jobs.c.id.in_(chunk), rtbf_jobs.c.status != "done"]
                if not take_over:
                    conditions.append(free)
                statement = (
                    update(rtbf_jobs)
                    .where(*conditions)
                    .values(lease_owner=self.owner, lease_until=now + self.lease)
                    .returning(rtbf_jobs.c.id)
                )
                claimed.update(str(i) for i in connection.execute(statement).scalars())
        return claimed

    def release(self, job_ids: Sequence[str]) -> None:
        """Give up this worker's leases on these jobs."""
        with self.store.begin() as connection:
            for chunk in _chunks(list(job_ids)):
                connection.execute(
                    update(rtbf_jobs)
                    .where(rtbf_jobs.c.id.in_(chunk), rtbf_jobs.c.lease_owner == self.owner)
                    .values(lease_owner=None, lease_until=None)
                )

    def _run_tenant(self, jobs: list[ErasureJob]) -> None:
        started = time.perf_counter()
        ids = [j.id for j in jobs]
        self._set_status(ids, "running", error=None)
        regions = sorted({r for job in jobs for r in job.regions})
        try:
            for region in regions:
                self.run_region(region, [j for j in jobs if region in j.regions])
            self.finalize_many(ids)
        except PrivacyError as exc:
            self._set_status(ids, "failed", error=str(exc)[:2000])
            self._observe(ids, started, "failed")
            return
        self._observe(ids, started, "done")

    def run_region(self, region: str, jobs: Sequence[ErasureJob]) -> None:
        """Run one region's steps for jobs of one tenant, and sign and store its sub-manifests.

        What a region's worker does. Jobs this region has already reported are skipped.
        """
        if not jobs:
            return
        tenant = jobs[0].tenant
        if any(j.tenant != tenant for j in jobs):
            raise ValueError("run_region takes the jobs of one tenant")
        reported = self._reported(region, [j.id for j in jobs])
        todo = [j for j in jobs if j.id not in reported]
        if not todo:
            return
        # Claimed (or renewed: this region may take a while); jobs another worker holds are its.
        claimed = self.claim([j.id for j in todo])
        todo = [j for j in todo if j.id in claimed]
        if not todo:
            return
        self._set_status([j.id for j in todo], "running", error=None)
        steps = plan_erasure(self.registry, tenant).regions.get(region, ())
        subjects = [BatchSubject(j.id, str(j.subject_hash)) for j in todo]
        recorder = StoreStepRecorder(self.store, [j.id for j in todo], self.clock)
        pool = DatastorePool(self.registry)
        executor = RegionExecutor(self.registry, pool, self.hash_key, hook=self.hook)
        try:
            executor.run(steps, tenant, subjects, recorder)
        except ErasureError as exc:
            if exc.step is not None:
                recorder.failed(exc.step, [j.id for j in todo], str(exc))
            raise
        finally:
            pool.close()
        self._report(region, todo)
        if self.hook:
            self.hook("region_reported", None)

    def _report(self, region: str, jobs: Sequence[ErasureJob]) -> None:
        """Sign each job's sub-manifest with the region's key and store it."""
        key = self.region_keys[region]
        now = self.clock()
        steps = region_steps(self.store, [j.id for j in jobs], region)
        rows = []
        for job in jobs:
            report = region_report(
                job_id=job.id,
                subject=job.subject_id,
                scope=job.scope,
                region=region,
                steps=steps.get(job.id, []),
                policy_version=job.policy_version,
                reported_at=now,
            )
            signed = sign_document(report, [key])
            rows.append(
                {
                    "job_id": job.id,
                    "region": region,
                    "reported_at": now,
                    "report": dumps(signed, sort_keys=True).decode(),
                }
            )
        with self.store.begin() as connection:
            # A region reported twice (two workers): the first report stands.
            connection.execute(insert_new(connection, rtbf_region_reports), rows)

    def _reported(self, region: str, job_ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        with self.store.read() as connection:
            for start in range(0, len(job_ids), 2_000):
                chunk = list(job_ids[start : start + 2_000])
                query = select(rtbf_region_reports.c.job_id).where(
                    rtbf_region_reports.c.region == region,
                    rtbf_region_reports.c.job_id.in_(chunk),
                )
                found.update(str(j) for j in connection.scalars(query))
        return found

    def finalize(self, job_id: str) -> str | None:
        """When every region of the job has reported: sign the manifest, mark the job done.

        Returns the manifest's file text, or None while regions are missing.
        """
        if get_job(self.store, job_id) is None:
            raise ErasureRequestError(f"no erasure job {job_id}")
        return self.finalize_many([job_id]).get(job_id)

    def finalize_many(self, job_ids: Sequence[str]) -> dict[str, str]:
        """`finalize` for many jobs at once; job id -> manifest text, for those complete."""
        jobs = self.jobs(job_ids)
        manifests = {j.id: j.manifest for j in jobs.values() if j.status == "done" and j.manifest}
        todo = [j for j in jobs.values() if j.id not in manifests]
        reports: dict[str, dict[str, Any]] = {}
        with self.store.read() as connection:
            for chunk in _chunks([j.id for j in todo]):
                query = select(
                    rtbf_region_reports.c.job_id,
                    rtbf_region_reports.c.region,
                    rtbf_region_reports.c.report,
                ).where(rtbf_region_reports.c.job_id.in_(chunk))
                for job_id, region, report in connection.execute(query):
                    reports.setdefault(str(job_id), {})[str(region)] = loads(report)
        # A job without regions has no plan: it is never complete (not "every region of none").
        complete = [
            j for j in todo if j.regions and all(r in reports.get(j.id, {}) for r in j.regions)
        ]
        if not complete:
            return manifests
        if self.hook:
            self.hook("before_finalize", None)
        now = self.clock()
        rows = []
        for job in complete:
            manifest = build_manifest(
                job_id=job.id,
                subject=job.subject_id,
                scope=job.scope,
                requested_at=job.requested_at,
                completed_at=now,
                policy_version=job.policy_version,
                regions=[reports[job.id][r] for r in job.regions],
            )
            text = encode_signed(sign_document(manifest, [self.manifest_key])).decode()
            manifests[job.id] = text
            rows.append({"j": job.id, "m": text})
        statement = (
            update(rtbf_jobs)
            .where(rtbf_jobs.c.id == bindparam("j"))
            .values(
                status="done", manifest=bindparam("m"), completed_at=now, updated_at=now, error=None
            )
        )
        with self.store.begin() as connection:
            connection.execute(statement, rows)
        return manifests

    def mark_failed(self, job_ids: Sequence[str], error: str) -> None:
        """Record jobs as failed (resumable by running them again), with the error."""
        self._set_status(job_ids, "failed", error=error[:2000])

    def _set_status(self, job_ids: Sequence[str], status: str, *, error: str | None) -> None:
        now = self.clock()
        with self.store.begin() as connection:
            for start in range(0, len(job_ids), 2_000):
                chunk = list(job_ids[start : start + 2_000])
                connection.execute(
                    update(rtbf_jobs)
                    .where(rtbf_jobs.c.id.in_(chunk), rtbf_jobs.c.status != "done")
                    .values(status=status, error=error, updated_at=now)
                )

    def _observe(self, job_ids: Sequence[str], started: float, outcome: str) -> None:
        if self.observer is None:
            return
        seconds = time.perf_counter() - started
        for job in self.jobs(job_ids).values():
            self.observer(job, seconds, outcome)


def _chunks(items: Sequence[str], size: int = 2_000) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])
