"""In-process cost of the sidecar's per-request steps, to show where its time goes.

Each step is the call `sidecar/proxy.py` makes for one request, timed alone in this process with
the collector paused (so it is the step's own CPU cost; garbage collection is reported from the
sidecar process itself). What the steps do not cover is aiohttp's server and client work for the
two HTTP exchanges (which the plain proxy pays too), the event loop, and the collector.
"""

from __future__ import annotations

import gc
import hashlib
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from graphql import OperationDefinitionNode

from intelgraph_privacy import Principal, Redactor, codec
from intelgraph_privacy.audit import AuditRecord
from intelgraph_privacy.redact import Plan
from intelgraph_privacy.tokens import TokenVerifier
from sidecar.graphql_http import read_post
from sidecar.guards import check_document
from sidecar.guards import measure as measure_document
from sidecar.metrics import SidecarMetrics

#: Sidecar defaults (`LimitsConfig`) used by the guard and batch steps.
MAX_BATCH, MAX_DEPTH, MAX_ALIASES = 10, 12, 30


@dataclass(frozen=True, slots=True)
class StepInput:
    """One size's request and upstream response, and the two principals' tokens."""

    label: str
    request_body: bytes
    upstream_raw: bytes
    keep_token: str
    redact_token: str


@dataclass(frozen=True, slots=True)
class StepRow:
    """One step: its name and median microseconds per size label."""

    step: str
    us: dict[str, float]


def timed(call: Callable[[], object], reps: int) -> float:
    """Median microseconds of `call` over `reps` runs (after one untimed run), collector paused."""
    call()
    samples = []
    gc.collect()
    gc.disable()
    try:
        for _ in range(reps):
            t0 = time.perf_counter_ns()
            call()
            samples.append(time.perf_counter_ns() - t0)
    finally:
        gc.enable()
    return statistics.median(samples) / 1_000


def timed_apply(redactor: Redactor, plan: Plan, raw: bytes, reps: int) -> float:
    """Median microseconds of `apply` alone (each run gets a freshly decoded response)."""
    samples = []
    gc.collect()
    gc.disable()
    try:
        for _ in range(reps + 1):
            response = codec.loads(raw)
            t0 = time.perf_counter_ns()
            redactor.apply(plan, response)
            samples.append(time.perf_counter_ns() - t0)
    finally:
        gc.enable()
    return statistics.median(samples[1:]) / 1_000


def step_costs(
    redactor: Redactor, verifier: TokenVerifier, inputs: list[StepInput], reps: int
) -> list[StepRow]:
    """Time each step for every size; rows in request order."""
    metrics = SidecarMetrics()
    columns: dict[str, dict[str, float]] = {}
    for item in inputs:
        for step, us in _one_size(redactor, verifier, metrics, item, reps).items():
            columns.setdefault(step, {})[item.label] = us
    return [StepRow(step, us) for step, us in columns.items()]


def _one_size(
    redactor: Redactor,
    verifier: TokenVerifier,
    metrics: SidecarMetrics,
    item: StepInput,
    reps: int,
) -> dict[str, float]:
    request = read_post("application/json", item.request_body, max_batch=MAX_BATCH)
    op = request.operations[0]
    keep = verifier.verify(item.keep_token).principal()
    redact = verifier.verify(item.redact_token).principal()
    document = redactor.document(op.query)
    operation = next(d for d in document.definitions if isinstance(d, OperationDefinitionNode))
    plan_c = redactor.plan(op.query, op.operation_name, keep, op.variables)
    plan_d = redactor.plan(op.query, op.operation_name, redact, op.variables)
    out_c = redactor.apply(plan_c, codec.loads(item.upstream_raw))
    out_d = redactor.apply(plan_d, codec.loads(item.upstream_raw))
    upstream_body = {"query": plan_c.upstream_document, "variables": {}}

    def guards() -> None:
        measured = measure_document(redactor.document(op.query), operation)
        check_document(
            measured, max_depth=MAX_DEPTH, max_aliases=MAX_ALIASES, introspection_allowed=False
        )

    return {
        "read the request (`read_post`)": timed(
            lambda: read_post("application/json", item.request_body, max_batch=MAX_BATCH), reps
        ),
        "verify the bearer token (`TokenVerifier.verify`)": timed(
            lambda: verifier.verify(item.redact_token).principal(), reps
        ),
        "request id and document hash": timed(
            lambda: (uuid.uuid4().hex, hashlib.sha256(op.query.encode()).hexdigest()), reps
        ),
        "document guards (`guards.measure` walk, `check_document`)": timed(guards, reps),
        "plan lookup, cached (`Redactor.plan`)": timed(
            lambda: redactor.plan(op.query, op.operation_name, redact, op.variables), reps
        ),
        "encode the upstream request": timed(lambda: codec.dumps(upstream_body), reps),
        "decode the upstream response": timed(lambda: codec.loads(item.upstream_raw), reps),
        "apply, (c) nothing redacted": timed_apply(redactor, plan_c, item.upstream_raw, reps),
        "apply, (d) redacting": timed_apply(redactor, plan_d, item.upstream_raw, reps),
        "encode the response, (c)": timed(lambda: codec.dumps(out_c.response), reps),
        "encode the response, (d)": timed(lambda: codec.dumps(out_d.response), reps),
        "metrics and audit record": timed(
            lambda: _record(metrics, out_d, redact, plan_d, op.query), reps
        ),
    }


def _record(
    metrics: SidecarMetrics, redacted: Any, who: Principal, plan: Plan, query: str
) -> object:
    """What `proxy._record` builds for one answered request (the audit queue itself excluded)."""
    metrics.observe(plan.operation_name, 200, 0.001)
    metrics.count_report(redacted.report, preview=False)
    return AuditRecord(
        ts=datetime.now(UTC),
        request_id=uuid.uuid4().hex,
        sub=who.sub,
        tenant=who.tenant,
        purpose=who.purpose,
        operation_name=plan.operation_name,
        operation_type=plan.operation_type,
        document_hash=hashlib.sha256(query.encode()).hexdigest(),
        redacted=redacted.report.by_coordinate(),
        policy_version=plan.policy_version,
        catalog_version=None,
        status=200,
        mode="enforce",
        detail=None,
    )
