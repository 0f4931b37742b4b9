"""`intelgraph-privacy rtbf ...`: request, run and inspect erasures from the command line.

```sh
intelgraph-privacy rtbf request --subject P-00042 --scope tenant:demo --data-dir .demo-data
intelgraph-privacy rtbf run --pending --data-dir .demo-data          # a worker: cron-friendly
intelgraph-privacy rtbf status JOB --manifest manifest.json --data-dir .demo-data
```

`--data-dir` is the demo's (its registry `datasets.yaml` and its public demo keys); `--config`
a sidecar's configuration (its `rtbf` section, its pseudonym key, its store). `run` exits 1 when
a job failed (running it again resumes it); `--region` runs one region's part only, as that
region's worker does, and completes the jobs whose every region has reported.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from intelgraph_privacy.errors import ConfigError, PrivacyError

if TYPE_CHECKING:
    from intelgraph_privacy.rtbf import ErasureJob, ErasureOrchestrator
    from intelgraph_privacy.store import Store

__all__ = ["add_rtbf_commands"]


def add_rtbf_commands(commands: argparse._SubParsersAction[Any]) -> None:
    """Add `rtbf request | run | status` to a parser's sub-parsers."""
    from intelgraph_privacy.cli import add_store_arguments

    rtbf = commands.add_parser("rtbf", help="erase data subjects (right to be forgotten)")
    actions = rtbf.add_subparsers(dest="rtbf_command", required=True, metavar="ACTION")

    request = actions.add_parser(
        "request",
        help="record an erasure job (and the subject's tombstone)",
        description="Record an erasure of a subject within a scope; prints the job as JSON. "
        "Asking again while the job is open returns the same job.",
    )
    request.add_argument("--subject", required=True, help="the subject's id")
    request.add_argument("--scope", required=True, help="tenant:<tenant id>")
    request.add_argument("--by", default="cli", help="who asks (recorded with the job)")
    request.add_argument("--run", dest="run_now", action="store_true", help="run the job at once")
    add_store_arguments(request)
    request.set_defaults(run=_request)

    run = actions.add_parser(
        "run",
        help="run (or resume) erasure jobs",
        description="Run jobs, or every waiting and failed one with --pending; exit 1 if any "
        "failed (run again to resume).",
    )
    run.add_argument("jobs", nargs="*", metavar="JOB", help="job ids")
    run.add_argument("--pending", action="store_true", help="every job waiting or failed")
    run.add_argument("--region", help="only this region's part (a region's worker)")
    run.add_argument(
        "--take-over",
        action="store_true",
        help="run the jobs even if another worker holds them (it is known to be gone)",
    )
    add_store_arguments(run)
    run.set_defaults(run=_run)

    status = actions.add_parser(
        "status",
        help="a job's state and steps; its signed manifest",
        description="Print a job's state and steps as JSON; --manifest writes its signed "
        "manifest (exit 1 while the job has none).",
    )
    status.add_argument("job", metavar="JOB")
    status.add_argument("--manifest", type=Path, help="write the signed manifest here")
    add_store_arguments(status)
    status.set_defaults(run=_status)


def _orchestrator(args: argparse.Namespace) -> tuple[Store, ErasureOrchestrator]:
    from intelgraph_privacy.cli import open_store_from_args
    from intelgraph_privacy.rtbf.setup import demo_orchestrator, orchestrator_from_config

    if args.store:
        raise ConfigError("rtbf commands need --config (a sidecar's) or --data-dir (the demo's)")
    store = open_store_from_args(args)
    try:
        if args.config:
            from intelgraph_privacy.config import load_config

            config = load_config(args.config)
            if not config.rtbf.enabled:
                raise ConfigError("RTBF jobs are switched off (rtbf.enabled: false)")
            return store, orchestrator_from_config(config, store)
        return store, demo_orchestrator(args.data_dir or Path(".demo-data"), store)
    except BaseException:
        store.close()
        raise


def _job_json(job: ErasureJob) -> dict[str, Any]:
    return {
        "jobId": job.id,
        "status": job.status,
        "subjectId": job.subject_id,
        "scope": job.scope,
        "regions": list(job.regions),
        "requestedBy": job.requested_by,
        "requestedAt": job.requested_at.isoformat(),
        "completedAt": job.completed_at.isoformat() if job.completed_at else None,
        "error": job.error,
    }


def _request(args: argparse.Namespace) -> int:
    store, orchestrator = _orchestrator(args)
    with store:
        job, created = orchestrator.request(args.subject, args.scope, requested_by=args.by)
        if args.run_now:
            job = orchestrator.run(job.id)
    print(json.dumps({**_job_json(job), "created": created}, indent=2))
    return 0 if job.status != "failed" else 1


def _run(args: argparse.Namespace) -> int:
    if not args.jobs and not args.pending:
        raise ConfigError("name the jobs to run, or --pending for every waiting one")
    store, orchestrator = _orchestrator(args)
    with store:
        ids = list(args.jobs) or orchestrator.pending_jobs()
        if args.region:
            jobs = orchestrator.jobs(ids)
            missing = [j for j in ids if j not in jobs]
            if missing:
                raise ConfigError(f"no erasure job {missing[0]}")
            by_tenant: dict[str, list[ErasureJob]] = {}
            for job in jobs.values():
                if args.region in job.regions and job.status != "done":
                    by_tenant.setdefault(job.tenant, []).append(job)
            if args.take_over:
                orchestrator.claim(ids, take_over=True)
            try:
                for tenant_jobs in by_tenant.values():
                    try:
                        orchestrator.run_region(args.region, tenant_jobs)
                    except PrivacyError as exc:  # recorded; the other tenants' jobs still run
                        orchestrator.mark_failed([j.id for j in tenant_jobs], str(exc))
                orchestrator.finalize_many(ids)
            finally:
                orchestrator.release(ids)
            results = orchestrator.jobs(ids)
        else:
            results = orchestrator.run_batch(ids, take_over=args.take_over)
    failed = 0
    for job_id in ids:
        job = results[job_id]
        failed += job.status == "failed"
        detail = f": {job.error}" if job.error else ""
        print(f"{job_id} {job.status}{detail}")
    if not ids:
        print("no erasure job is waiting")
    return 1 if failed else 0


def _status(args: argparse.Namespace) -> int:
    from intelgraph_privacy.rtbf import get_job, job_steps

    store, _ = _orchestrator(args)
    with store:
        job = get_job(store, args.job)
        if job is None:
            raise ConfigError(f"no erasure job {args.job}")
        steps = job_steps(store, job.id)
    report = _job_json(job)
    report["steps"] = [
        {
            "region": s["region"],
            "dataset": s["dataset"],
            "op": s["op"],
            "status": s["status"],
            "rows": s["rows_found"] if s["op"] != "recompute" else s["rows_affected"],
            "remaining": s["remaining"],
            "attempts": s["attempts"],
        }
        for s in steps
    ]
    print(json.dumps(report, indent=2))
    if args.manifest is not None:
        if not job.manifest:
            raise ConfigError(f"job {job.id} has no manifest yet (status {job.status})")
        args.manifest.write_text(job.manifest, encoding="utf-8")
        print(f"manifest written to {args.manifest}", file=sys.stderr)
    return 0
