"""POST /export: a differentially private aggregate of an analytics query, with its proof.

```json
{"query": "{ cohort(groupBy: [\\"city\\"]) { city count } }",
 "aggregate": "histogram", "field": "city", "bins": ["Berlin", "Paris", "London"],
 "preset": "standard"}
```

The query runs exactly as on /graphql (authenticated, planned, redacted, its rows made
k-anonymous), then the aggregate is released with differential privacy per the preset, charged
to the tenant's budget for the token's purpose *before* any noise is drawn. The answer is the
release and its proof: `{"value": ..., "proof": {...}}`. Aggregates over the counted rows of an
analytics operation: `count` (people) and `histogram` (people per value of one field, over bins
the caller names: bins taken from the data would reveal which values exist).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from aiohttp import web

from intelgraph_privacy.analytics import AnalyticsError, AnalyticsField, check_analytics
from intelgraph_privacy.audit import AuditBackpressure, AuditRecord
from intelgraph_privacy.codec import dumps, loads
from intelgraph_privacy.dp import (
    Budget,
    BudgetExceededError,
    BudgetLedger,
    DPError,
    Release,
    load_presets,
    release,
)
from intelgraph_privacy.errors import PlanError, PrivacyError
from intelgraph_privacy.principal import Principal
from sidecar.errors import ClientError, SidecarError
from sidecar.graphql_http import OperationRequest
from sidecar.proxy import STATE, authenticate, request_id_of, run_operation, sync_shared_or_refuse
from sidecar.state import SidecarState

#: The purpose a token must carry to export (it is also the budget the release is charged to).
EXPORT_PURPOSE = "export"
_AGGREGATES = ("count", "histogram")
_MAX_BODY = 256 * 1024


class ExportService:
    """The presets and the budget ledger of one sidecar."""

    def __init__(self, state: SidecarState) -> None:
        settings = state.config.dp
        self.presets = load_presets(settings.presets)
        assert state.store is not None
        self.ledger = BudgetLedger(
            state.store,
            budgets=Budget(epsilon=settings.budget_epsilon, delta=settings.budget_delta),
            window=timedelta(seconds=settings.window_seconds),
        )


async def handle_export(request: web.Request) -> web.Response:
    """POST /export."""
    state = request.app[STATE]
    request_id = request_id_of(request)
    started = time.perf_counter()
    principal: Principal | None = None
    aggregate: str | None = None
    try:
        if not state.config.dp.exports_enabled:
            raise SidecarError(
                503,
                "DP exports are paused by configuration (dp.exports_enabled)",
                "EXPORTS_PAUSED",
            )
        await sync_shared_or_refuse(state)
        principal = authenticate(state, request)
        if principal.purpose != EXPORT_PURPOSE:
            raise ClientError(
                403, f"exports need a token bound to the purpose {EXPORT_PURPOSE}", "FORBIDDEN"
            )
        body = await _read(request)
        aggregate = _aggregate(body)
        op = OperationRequest(body["query"], body.get("variables") or {}, body.get("operationName"))
        _check_request(state, aggregate, body)
        spec = _analytics_field(state, principal, op)
        outcome = await run_operation(state, principal, op, request)
        if outcome.status != 200:
            return _json(outcome.status, outcome.body, request_id)
        rows = (outcome.body.get("data") or {}).get(spec.key)
        data, bins = _data(aggregate, body, rows, spec)
        released = await asyncio.to_thread(
            _release, state, principal, aggregate, data, bins, body.get("preset")
        )
    except SidecarError as exc:
        state.metrics.refusals.labels(exc.code).inc()
        _audit(state, request_id, principal, aggregate, exc.status, exc.code)
        return _json(exc.status, exc.body(), request_id, exc.headers)
    state.metrics.dp_releases.labels(aggregate, str(released.proof.preset), "released").inc()
    state.metrics.observe("export", 200, time.perf_counter() - started)
    _audit(
        state,
        request_id,
        principal,
        aggregate,
        200,
        f"DP {released.proof.release_id} epsilon={released.proof.epsilon}",
    )
    return _json(200, released.as_dict(), request_id)


async def _read(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise ClientError(415, "POST /export takes application/json", "UNSUPPORTED_MEDIA_TYPE")
    if request.content_length is not None and request.content_length > _MAX_BODY:
        raise ClientError(400, "the request body is too large", "BODY_TOO_LARGE")
    try:
        body = loads(await request.read())
    except ValueError:
        raise ClientError(400, "the body is not JSON", "BAD_REQUEST") from None
    if not isinstance(body, dict):
        raise ClientError(400, "the body must be a JSON object", "BAD_REQUEST")
    if not isinstance(body.get("query"), str) or not body["query"].strip():
        raise ClientError(400, "query must be a non-empty string", "BAD_REQUEST")
    if body.get("variables") is not None and not isinstance(body["variables"], dict):
        raise ClientError(400, "variables must be an object", "BAD_REQUEST")
    if body.get("operationName") is not None and not isinstance(body["operationName"], str):
        raise ClientError(400, "operationName must be a string", "BAD_REQUEST")
    if body.get("preset") is not None and not isinstance(body["preset"], str):
        raise ClientError(400, "preset must be a preset name", "BAD_REQUEST")
    return body


def _aggregate(body: dict[str, Any]) -> str:
    aggregate = body.get("aggregate")
    if aggregate not in _AGGREGATES:
        raise ClientError(400, f"aggregate must be one of {', '.join(_AGGREGATES)}", "BAD_REQUEST")
    return str(aggregate)


def _analytics_field(
    state: SidecarState, principal: Principal, op: OperationRequest
) -> AnalyticsField:
    """The response key of the operation's one analytics field (400 otherwise)."""
    runtime = state.runtime
    if runtime is None:
        raise SidecarError(503, "the upstream schema is not loaded yet", "NOT_READY")
    try:
        plan = runtime.redactor.plan(op.query, op.operation_name, principal, op.variables)
        fields = check_analytics(plan, runtime.catalog, state.anon_preset)
    except (PlanError, AnalyticsError) as exc:
        raise ClientError(400, str(exc), "EXPORT_NOT_ANALYTICS") from None
    root = plan.root.only
    keys = set(root.allowed) if root is not None else set()
    if len(fields) != 1 or keys - {fields[0].key, "__typename"}:
        raise ClientError(
            400,
            "an export runs exactly one analytics field and nothing else",
            "EXPORT_NOT_ANALYTICS",
        )
    return fields[0]


def _check_request(state: SidecarState, aggregate: str, body: dict[str, Any]) -> None:
    """Refuse a bad preset or histogram request before anything is forwarded."""
    preset = body.get("preset")
    if preset is not None and preset not in _service(state).presets.presets:
        raise ClientError(400, f"unknown preset {preset!r}", "BAD_REQUEST")
    if aggregate != "histogram":
        return
    if not isinstance(body.get("field"), str):
        raise ClientError(400, "histogram needs field: a field of the rows", "BAD_REQUEST")
    bins = body.get("bins")
    if not isinstance(bins, list) or not bins or not all(isinstance(b, str) for b in bins):
        raise ClientError(
            400,
            "histogram needs bins: the values to count, named by you (a list of strings)",
            "BAD_REQUEST",
        )


def _data(
    aggregate: str, body: dict[str, Any], rows: Any, spec: AnalyticsField
) -> tuple[Any, list[str] | None]:
    if not isinstance(rows, list):
        raise ClientError(400, "the analytics query returned no rows", "EXPORT_NOT_ANALYTICS")
    # The count under its response key (the client may alias it).
    count_key = spec.count_keys[0]
    counts = np.array([int(r.get(count_key) or 0) for r in rows], dtype=np.int64)
    if aggregate == "count":
        # One entry per person: the count mechanism releases the number of entries.
        return np.zeros(int(counts.sum()), dtype=np.int8), None
    field, bins = body["field"], body["bins"]
    if rows and field not in rows[0]:
        raise ClientError(400, "histogram needs field: a field of the rows", "BAD_REQUEST")
    labels = np.array([str(r.get(field)) for r in rows], dtype=object)
    return np.repeat(labels, counts), list(bins)


def _release(
    state: SidecarState,
    principal: Principal,
    aggregate: str,
    data: Any,
    bins: list[str] | None,
    preset: str | None,
) -> Release:
    service = _service(state)
    try:
        released = release(
            aggregate,
            data,
            preset=preset,
            ledger=service.ledger,
            tenant=principal.tenant,
            purpose=principal.purpose,
            presets=service.presets,
            bins=bins,
        )
    except BudgetExceededError as exc:
        state.metrics.dp_releases.labels(aggregate, str(preset), "over_budget").inc()
        raise ClientError(403, str(exc), "BUDGET_EXCEEDED") from None
    except DPError as exc:
        raise ClientError(400, str(exc), "BAD_REQUEST") from None
    except PrivacyError as exc:  # the store: no release without a recorded debit
        message = f"the budget ledger is unavailable: {exc}"
        raise SidecarError(503, message, "STORE_UNAVAILABLE") from None
    proof = released.proof
    service.ledger.record_release(
        proof.release_id,
        principal.tenant,
        principal.purpose,
        proof.aggregate,
        proof.mechanism,
        proof.epsilon,
        proof.delta,
        proof.preset,
        proof.audit_dict(),
    )
    return released


def _service(state: SidecarState) -> ExportService:
    service = state.export_service
    if not isinstance(service, ExportService):
        service = state.export_service = ExportService(state)
    return service


def _audit(
    state: SidecarState,
    request_id: str,
    principal: Principal | None,
    aggregate: str | None,
    status: int,
    detail: str,
) -> None:
    if state.audit is None:
        return
    record = AuditRecord(
        ts=datetime.now(UTC),
        request_id=request_id,
        sub=principal.sub if principal else None,
        tenant=principal.tenant if principal else None,
        purpose=principal.purpose if principal else None,
        operation_name=f"export:{aggregate}" if aggregate else "export",
        operation_type=None,
        document_hash=None,
        redacted={},
        policy_version=state.policy_version(),
        catalog_version=None,
        status=status,
        mode="enforce",
        detail=detail,
    )
    try:
        state.audit.submit(record)
    except AuditBackpressure:
        state.metrics.audit_failures.inc()


def _json(
    status: int, body: Any, request_id: str, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=dumps(body),
        status=status,
        content_type="application/json",
        headers={"X-Request-Id": request_id, "Cache-Control": "no-store", **(headers or {})},
    )


def add_export_routes(app: web.Application) -> None:
    """Serve POST /export."""
    app.router.add_route("POST", "/export", handle_export)


__all__ = ["ExportService", "add_export_routes", "handle_export"]
