"""Erasures in the sidecar: the admin API's `requestRTBF` records a job; this runs it.

The orchestrator (`intelgraph_privacy.rtbf`) is made on first use from the `rtbf` section. Jobs
run one at a time on a worker thread of their own, off the request path, when
`rtbf.run_in_sidecar` (the demo); otherwise `intelgraph-privacy rtbf run` workers take them. At
start-up, jobs left waiting or failed (a crash, a datastore down) are resumed. Each job that
ends is counted (`intelgraph_rtbf_jobs_total`, `intelgraph_rtbf_job_seconds`) and audited.
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from intelgraph_privacy.audit import AuditBackpressure, AuditError, AuditRecord
from intelgraph_privacy.errors import ConfigError
from intelgraph_privacy.rtbf import ErasureJob, ErasureOrchestrator
from intelgraph_privacy.rtbf.setup import orchestrator_from_config

if TYPE_CHECKING:
    from sidecar.state import SidecarState

__all__ = ["ErasureService"]


class ErasureService:
    """The sidecar's orchestrator and the worker thread that runs its jobs."""

    def __init__(self, state: SidecarState) -> None:
        if state.store is None:
            raise ConfigError("the store is not open yet")
        self.state = state
        self.orchestrator: ErasureOrchestrator = orchestrator_from_config(
            state.config, state.store, observer=self._ended
        )
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="intelgraph-rtbf")
        # Jobs recorded before erasures were configured name their subject in clear: not for long.
        self.orchestrator.adopt_legacy_jobs()

    def run_later(self, job_id: str) -> None:
        """Queue a job to run on the worker thread (when jobs run in the sidecar)."""
        if self.state.config.rtbf.run_in_sidecar and self.state.config.rtbf.enabled:
            self._worker.submit(self._run, job_id)

    def resume_waiting(self) -> int:
        """Queue every job left waiting or failed; how many."""
        if not (self.state.config.rtbf.run_in_sidecar and self.state.config.rtbf.enabled):
            return 0
        waiting = self.orchestrator.pending_jobs()
        for job_id in waiting:
            self.run_later(job_id)
        return len(waiting)

    def _run(self, job_id: str) -> None:
        try:
            self.orchestrator.run(job_id)
        except Exception:  # a job must never take the worker down; it stays resumable
            self.state.log.exception("erasure job failed to run", extra={"job": job_id})

    def _ended(self, job: ErasureJob, seconds: float, outcome: str) -> None:
        metrics = self.state.metrics
        metrics.rtbf_jobs.labels(outcome).inc()
        metrics.rtbf_job_seconds.labels(outcome).observe(seconds)
        if outcome == "failed":
            self.state.log.error("erasure job failed", extra={"job": job.id, "error": job.error})
        audit = self.state.audit
        if audit is None:
            return
        detail = f"{outcome} job {job.id}"
        if job.error:
            detail += f": {job.error[:300]}"
        record = AuditRecord(
            ts=datetime.now(UTC),
            request_id=f"rtbf-{uuid.uuid4()}",
            sub=None,
            tenant=job.tenant,
            purpose=None,
            operation_name="rtbf:job",
            operation_type=None,
            document_hash=None,
            redacted={},
            policy_version=job.policy_version,
            catalog_version=None,
            status=200 if outcome == "done" else 500,
            mode="enforce",
            detail=detail,
        )
        try:
            audit.submit(record)
        except (AuditBackpressure, AuditError):
            metrics.audit_failures.inc()

    def close(self) -> None:
        """Let the running job finish, drop the queued ones (they resume at the next start)."""
        self._worker.shutdown(wait=True, cancel_futures=True)
