"""The request path: authenticate, read, guard, plan, forward, rewrite, record.

Every failure answers with a GraphQL-shaped error and no upstream data (fail closed): client
mistakes 4xx, upstream failures 502/504, policy or planning failures 500.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from graphql import OperationDefinitionNode

from intelgraph_privacy.analytics import (
    AnalyticsError,
    AnalyticsField,
    anonymize_response,
    check_analytics,
)
from intelgraph_privacy.audit import AuditBackpressure, AuditRecord
from intelgraph_privacy.codec import dumps
from intelgraph_privacy.errors import PlanError, PrivacyError
from intelgraph_privacy.principal import Principal
from intelgraph_privacy.redact import Plan, RedactionReport, denied_response
from intelgraph_privacy.redact.erased import Withheld, erased_errors, withhold_erased
from intelgraph_privacy.rtbf.tombstones import SubjectHasher
from intelgraph_privacy.tokens import TokenError
from sidecar.errors import ClientError, SidecarError, error_body
from sidecar.graphql_http import GraphQLRequest, OperationRequest, read_get, read_post
from sidecar.guards import check_document, measure
from sidecar.shared import SharedStateUnavailableError
from sidecar.state import Runtime, SidecarState

STATE: web.AppKey[SidecarState] = web.AppKey("intelgraph_state", SidecarState)
_REQUEST_ID_HEADER = "X-Request-Id"
_UPSTREAM_ERROR_MESSAGE = "the upstream reported an error"


@dataclass(slots=True)
class Outcome:
    """What one operation produced, for the response, the metrics and the audit log."""

    status: int
    body: dict[str, Any]
    operation_name: str | None = None
    operation_type: str | None = None
    document_hash: str | None = None
    report: RedactionReport = field(default_factory=RedactionReport)
    policy_version: str | None = None
    catalog_version: str | None = None
    preview: bool = False
    detail: str | None = None


async def handle_graphql(request: web.Request) -> web.StreamResponse:
    """POST and GET /graphql."""
    state = request.app[STATE]
    request_id = request_id_of(request)
    started = time.perf_counter()
    principal: Principal | None = None
    try:
        await sync_shared_or_refuse(state)
        principal = authenticate(state, request)
        graphql_request = await _read(state, request)
    except SidecarError as exc:
        outcome = Outcome(exc.status, exc.body(), detail=exc.code)
        state.metrics.refusals.labels(exc.code).inc()
        _record(state, request_id, principal, outcome, started)
        return _json(exc.status, outcome.body, request_id, exc.headers)

    operations = graphql_request.operations
    refusal = _admit(state, len(operations), request_id)
    if refusal is not None:
        return refusal
    # Admitted: audit queue room and an in-flight slot are held until the records are queued.
    state.in_flight += 1
    state.audit_reserved += len(operations)
    try:
        if len(operations) == 1:  # the common case: no task per request
            outcomes = [await _run_guarded(state, principal, operations[0], request)]
        else:
            outcomes = list(
                await asyncio.gather(
                    *(_run_guarded(state, principal, op, request) for op in operations)
                )
            )
    finally:
        state.in_flight -= 1
        state.audit_reserved -= len(operations)
    recorded = [_record(state, request_id, principal, o, started) for o in outcomes]
    if not all(recorded):
        # Nothing leaves without its audit record.
        body = error_body("the audit log cannot keep up; try again", "AUDIT_UNAVAILABLE")
        return _json(503, body, request_id, {"Retry-After": "1"})
    if graphql_request.batch:
        return _json(200, [o.body for o in outcomes], request_id)
    return _json(outcomes[0].status, outcomes[0].body, request_id)


def _admit(state: SidecarState, operations: int, request_id: str) -> web.Response | None:
    """A 503 when the sidecar cannot take the request now, before anything is forwarded."""
    if state.in_flight >= state.config.limits.max_in_flight:
        state.metrics.refusals.labels("BUSY").inc()
        body = error_body("too many requests in flight; try again", "BUSY")
        return _json(503, body, request_id, {"Retry-After": "1"})
    # Room for every record of the request, counting requests already admitted: on one event
    # loop this check and the reservation after it cannot interleave with another request.
    waiting = (state.audit.queue_depth if state.audit is not None else 0) + state.audit_reserved
    if waiting + operations > state.config.audit.max_queue:
        # A mutation must not run unaudited.
        state.metrics.refusals.labels("AUDIT_UNAVAILABLE").inc()
        state.log.warning(
            "refused: the audit queue is full", extra={"request_id": request_id, "queued": waiting}
        )
        body = error_body("the audit log cannot keep up; try again", "AUDIT_UNAVAILABLE")
        return _json(503, body, request_id, {"Retry-After": "1"})
    return None


async def run_operation(
    state: SidecarState, principal: Principal, op: OperationRequest, request: web.Request
) -> Outcome:
    """One operation through the whole request path, for other endpoints (POST /export).

    Guards, plan, forward, redaction and k-anonymity as on /graphql; never raises (a failure
    is a refusal outcome). The caller records the audit entry.
    """
    state.in_flight += 1
    try:
        return await _run_guarded(state, principal, op, request)
    finally:
        state.in_flight -= 1


async def _run_guarded(
    state: SidecarState, principal: Principal, op: OperationRequest, request: web.Request
) -> Outcome:
    """One operation; an unexpected failure becomes its own 500 outcome (still audited)."""
    try:
        return await _run_operation(state, principal, op, request)
    except Exception:
        state.log.exception("operation failed", extra={"operation": op.operation_name})
        outcome = Outcome(500, error_body("internal error", "INTERNAL_ERROR"))
        outcome.detail = "INTERNAL_ERROR"
        return outcome


async def _run_operation(
    state: SidecarState,
    principal: Principal,
    op: OperationRequest,
    request: web.Request,
) -> Outcome:
    runtime = state.runtime
    outcome = Outcome(503, {}, document_hash=hashlib.sha256(op.query.encode()).hexdigest())
    if runtime is None:
        return _refuse(state, outcome, 503, "the upstream schema is not loaded yet", "NOT_READY")
    outcome.catalog_version = runtime.catalog.version
    try:
        plan = _plan(state, runtime, principal, op, request.method, outcome)
    except SidecarError as exc:
        return _refuse(state, outcome, exc.status, exc.message, exc.code)
    except PlanError as exc:
        state.metrics.refusals.labels("GRAPHQL_VALIDATION_FAILED").inc()
        outcome.status, outcome.detail = 400, "GRAPHQL_VALIDATION_FAILED"
        outcome.body = {"errors": _plan_errors(exc)}
        return outcome
    except Exception:
        # A policy or planning failure: nothing is forwarded, nothing is served.
        state.log.exception("planning failed", extra={"operation": op.operation_name})
        return _refuse(
            state, outcome, 500, "the privacy policy could not be evaluated", "POLICY_ERROR"
        )

    outcome.policy_version = state.policy_version(runtime)
    outcome.preview = state.config.in_preview(outcome.document_hash or "")
    try:
        # Analytics rows must be anonymisable as selected: checked before anything is forwarded.
        analytics = check_analytics(plan, runtime.catalog, state.anon_preset)
    except AnalyticsError as exc:
        return _refuse(state, outcome, 400, str(exc), "ANALYTICS_SHAPE")
    if plan.denied:
        outcome.report.denied = True
        outcome.detail = "DENIED"  # in preview: what enforcement would have done
        if not outcome.preview:
            outcome.status, outcome.body = 403, denied_response(plan.denied)
            return outcome

    declared = {
        d.variable.name.value for d in _operation_node(runtime, op).variable_definitions or ()
    }
    variables = {k: v for k, v in op.variables.items() if k in declared}
    headers = {
        name: request.headers[name]
        for name in state.config.upstream.forward_headers
        if name in request.headers
    }
    try:
        upstream = await state.upstream.execute(
            plan.upstream_document, variables, plan.operation_name, headers
        )
    except SidecarError as exc:
        state.metrics.upstream_errors.labels(exc.code).inc()
        return _refuse(state, outcome, exc.status, exc.message, exc.code)

    _sanitise_upstream_errors(
        upstream, keep_located=state.config.policy.upstream_error_messages == "located"
    )
    try:
        # Preview serves what the policy would redact: erased subjects are withheld along the
        # plan that is served (the pass-through one then), so none hides under a nulled field.
        passthrough = (
            runtime.redactor.passthrough_plan(op.query, op.operation_name, principal)
            if outcome.preview
            else None
        )
        # Objects of erased subjects are withheld first, in every mode.
        withheld = _withhold_erased(state, principal, passthrough or plan, upstream)
        if passthrough is not None:
            outcome.report = runtime.redactor.preview(plan, upstream)
            outcome.body = runtime.redactor.apply(passthrough, upstream).response
        else:
            redacted = runtime.redactor.apply(plan, upstream)
            outcome.report, outcome.body = redacted.report, redacted.response
    except Exception:
        state.log.exception("rewriting the response failed", extra={"operation": op.operation_name})
        return _refuse(
            state, outcome, 500, "the response could not be rewritten", "REDACTION_ERROR"
        )
    if withheld:
        _report_erased(state, outcome, withheld)
    if analytics and not outcome.preview:
        refusal = _anonymise(state, principal, analytics, outcome)
        if refusal is not None:
            return refusal
    state.metrics.count_report(outcome.report, preview=outcome.preview)
    outcome.status = 200
    return outcome


def _withhold_erased(
    state: SidecarState, principal: Principal, plan: Plan, upstream: dict[str, Any]
) -> Withheld | None:
    """Withhold the objects of the tenant's erased subjects in the upstream response."""
    erased = state.tombstones.get(principal.tenant)
    if not erased or plan.subject_alias is None:
        return None
    hasher = SubjectHasher(state.pseudonym_key)  # the key absorbed once per response
    return withhold_erased(plan, upstream, lambda subject: hasher(subject) in erased)


def _report_erased(state: SidecarState, outcome: Outcome, withheld: Withheld) -> None:
    """Give each nulled object its ERASED error (instead of the null's BAD_UPSTREAM)."""
    body = outcome.body
    if withheld.nulled:
        errors = [
            e
            for e in body.get("errors") or []
            if not (
                e.get("extensions", {}).get("code") == "BAD_UPSTREAM"
                and e.get("path") in withheld.nulled
            )
        ]
        body["errors"] = errors + erased_errors(withheld.nulled)
    count = len(withheld.nulled) + withheld.removed
    state.metrics.erased_withheld.inc(count)
    outcome.detail = f"{outcome.detail or ''} ERASED {count}".strip()


def _anonymise(
    state: SidecarState,
    principal: Principal,
    analytics: list[AnalyticsField],
    outcome: Outcome,
) -> Outcome | None:
    """Make the analytics rows of a redacted response k-anonymous; a refusal when impossible."""
    try:
        exempt = state.anon_exemptions(principal, [f.coordinate for f in analytics])
        report = anonymize_response(
            outcome.body,
            analytics,
            state.anon_preset,
            hierarchies=state.anon_hierarchies,
            exempt=exempt,
        )
    except AnalyticsError as exc:
        for spec in analytics:
            state.metrics.kanon_results.labels(spec.coordinate, "unreachable").inc()
        # Fail closed: rows that cannot be made k-anonymous do not leave at all.
        return _refuse(state, outcome, 403, f"k-anonymity cannot be met: {exc}", "K_ANONYMITY")
    except PrivacyError:
        state.log.exception("anonymising analytics rows failed")
        return _refuse(state, outcome, 500, "the policy could not be evaluated", "POLICY_ERROR")
    for spec in analytics:
        outcome_label = "exempt" if spec.coordinate in report.exempt else "anonymised"
        state.metrics.kanon_results.labels(spec.coordinate, outcome_label).inc()
    if report.operations:
        label = analytics[0].coordinate
        state.metrics.kanon_violations.labels(label).inc(report.small_cells)
        state.metrics.kanon_suppressed.labels(label).inc(report.suppressed)
        outcome.detail = (
            f"K_ANON k={state.anon_preset.k} small_cells={report.small_cells} "
            f"suppressed={report.suppressed}"
        )
    if report.exempt:
        outcome.detail = f"K_ANON_EXEMPT {','.join(report.exempt)}"
    return None


def _plan(
    state: SidecarState,
    runtime: Runtime,
    principal: Principal,
    op: OperationRequest,
    method: str,
    outcome: Outcome,
) -> Any:
    redactor = runtime.redactor
    document = redactor.document(op.query)
    operation = _operation_node(runtime, op)
    outcome.operation_name = op.operation_name or (operation.name.value if operation.name else None)
    outcome.operation_type = operation.operation.value
    if operation.operation.value != "query" and method == "GET":
        raise ClientError(405, "only queries may be sent with GET", "METHOD_NOT_ALLOWED")
    if operation.operation.value == "subscription":
        raise ClientError(400, "subscriptions are not supported", "UNSUPPORTED_OPERATION")
    limits = state.config.limits
    key = (op.query, op.operation_name)
    measured = runtime.measures.get(key)
    if measured is None:
        measured = measure(document, operation)
        if len(op.query) <= redactor.max_cached_document_chars:
            runtime.measures[key] = measured
    check_document(
        measured,
        max_depth=limits.max_depth,
        max_aliases=limits.max_aliases,
        introspection_allowed=bool(
            set(state.config.policy.introspection_roles) & set(principal.roles)
        ),
    )
    return redactor.plan(op.query, op.operation_name, principal, op.variables)


def _operation_node(runtime: Runtime, op: OperationRequest) -> OperationDefinitionNode:
    document = runtime.redactor.document(op.query)
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if op.operation_name is None:
        if len(operations) != 1:
            raise PlanError("operationName is required for a document with several operations")
        return operations[0]
    for candidate in operations:
        if candidate.name is not None and candidate.name.value == op.operation_name:
            return candidate
    raise PlanError(f"the document has no operation named {op.operation_name!r}")


async def sync_shared_or_refuse(state: SidecarState) -> None:
    """Apply the latest shared rules and revocations; 503 when the store cannot be read."""
    try:
        await state.sync_shared()
    except SharedStateUnavailableError as exc:
        state.log.error("the shared state cannot be read", extra={"error": str(exc)})
        raise SidecarError(
            503,
            "the privacy rules cannot be read from the store; try again",
            "STORE_UNAVAILABLE",
            headers={"Retry-After": "1"},
        ) from None


def authenticate(state: SidecarState, request: web.Request) -> Principal:
    """The principal of the request's Bearer token; a 401 ClientError when there is none."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ClientError(
            401,
            "a bearer token is required",
            "UNAUTHENTICATED",
            headers={"WWW-Authenticate": 'Bearer realm="intelgraph"'},
        )
    try:
        return state.verifier.authenticate(token.strip())[1]
    except TokenError as exc:
        state.log.info("token refused", extra={"reason": exc.reason})
        raise ClientError(
            401,
            f"invalid token: {exc}",
            "UNAUTHENTICATED",
            headers={"WWW-Authenticate": 'Bearer realm="intelgraph", error="invalid_token"'},
        ) from None
    except (PrivacyError, ValueError):
        # Claims that verify but do not make a principal: refused all the same.
        raise ClientError(
            401,
            "invalid token: unusable claims",
            "UNAUTHENTICATED",
            headers={"WWW-Authenticate": 'Bearer realm="intelgraph", error="invalid_token"'},
        ) from None


async def _read(state: SidecarState, request: web.Request) -> GraphQLRequest:
    limits = state.config.limits
    if request.method == "GET":
        return read_get(request.query)
    if request.content_length is not None and request.content_length > limits.max_body_bytes:
        raise _too_large(limits.max_body_bytes)
    try:
        # The application's client_max_size is max_body_bytes: a chunked body that grows past it
        # stops being read there.
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise _too_large(limits.max_body_bytes) from None
    return read_post(request.content_type, body, max_batch=limits.max_batch)


def _too_large(limit: int) -> ClientError:
    return ClientError(400, f"the request body is larger than {limit} bytes", "BODY_TOO_LARGE")


def _refuse(state: SidecarState, outcome: Outcome, status: int, message: str, code: str) -> Outcome:
    if status < 500 or code == "NOT_READY":
        state.metrics.refusals.labels(code).inc()
    outcome.status, outcome.body, outcome.detail = status, error_body(message, code), code
    return outcome


def _plan_errors(exc: PlanError) -> list[dict[str, Any]]:
    errors = [dict(e) for e in exc.errors if isinstance(e, dict)] or [{"message": str(exc)}]
    for error in errors:
        error["extensions"] = {"code": "GRAPHQL_VALIDATION_FAILED"}
    return errors


def _sanitise_upstream_errors(upstream: dict[str, Any], *, keep_located: bool) -> None:
    """Rebuild upstream errors from what may pass: message, path, locations, extensions.code.

    A message may quote any value, protected ones included: it is replaced, unless
    `keep_located` and the error has a path into the response (errors at redacted paths are
    then dropped by the redaction itself).
    """
    errors = upstream.get("errors")
    if errors is None:
        return
    if not isinstance(errors, list):
        upstream["errors"] = [{"message": _UPSTREAM_ERROR_MESSAGE}]
        return
    clean: list[Any] = []
    for error in errors:
        if not isinstance(error, dict):
            continue
        path = error.get("path")
        if not (isinstance(path, list) and all(type(p) in (str, int) for p in path)):
            path = None
        located = path is not None and bool(path) and isinstance(path[0], str)
        message = error.get("message")
        keep = keep_located and located and isinstance(message, str)
        entry: dict[str, Any] = {"message": message if keep else _UPSTREAM_ERROR_MESSAGE}
        if path is not None:
            entry["path"] = path
        locations = error.get("locations")
        if isinstance(locations, list):
            entry["locations"] = [
                {"line": loc["line"], "column": loc["column"]}
                for loc in locations
                if isinstance(loc, dict)
                and type(loc.get("line")) is int
                and type(loc.get("column")) is int
            ]
        extensions = error.get("extensions")
        code = extensions.get("code") if isinstance(extensions, dict) else None
        if isinstance(code, str) and len(code) <= 64 and code.replace("_", "").isalnum():
            entry["extensions"] = {"code": code}
        clean.append(entry)
    upstream["errors"] = clean


def _record(
    state: SidecarState,
    request_id: str,
    principal: Principal | None,
    outcome: Outcome,
    started: float,
) -> bool:
    """Metrics, log line and audit record of one operation; False when the audit is full."""
    seconds = time.perf_counter() - started
    state.metrics.observe(outcome.operation_name, outcome.status, seconds)
    record = AuditRecord(
        ts=datetime.now(UTC),
        request_id=request_id,
        sub=principal.sub if principal else None,
        tenant=principal.tenant if principal else None,
        purpose=principal.purpose if principal else None,
        operation_name=outcome.operation_name,
        operation_type=outcome.operation_type,
        document_hash=outcome.document_hash,
        redacted=outcome.report.by_coordinate(),
        policy_version=outcome.policy_version,
        catalog_version=outcome.catalog_version,
        status=outcome.status,
        mode="preview" if outcome.preview else "enforce",
        detail=outcome.detail,
    )
    audited = True
    if state.audit is not None:
        try:
            state.audit.submit(record)
        except AuditBackpressure:
            audited = False
    if not state.log.isEnabledFor(logging.INFO):
        return audited
    state.log.info(
        "request",
        extra={
            "request_id": request_id,
            "sub": record.sub,
            "operation": outcome.operation_name,
            "status": outcome.status,
            "mode": record.mode,
            "redacted": outcome.report.total(),
            "ms": round(seconds * 1e3, 3),
            "audited": audited,
        },
    )
    return audited


def request_id_of(request: web.Request) -> str:
    """The client's X-Request-Id when it is a sane token, else a fresh one."""
    supplied = request.headers.get(_REQUEST_ID_HEADER, "")
    # ASCII only: str.isalnum() also accepts look-alike letters from any script.
    if 0 < len(supplied) <= 64 and supplied.isascii() and supplied.replace("-", "").isalnum():
        return supplied
    return uuid.uuid4().hex


def _json(
    status: int,
    body: Any,
    request_id: str,
    headers: dict[str, str] | None = None,
) -> web.Response:
    return web.Response(
        body=dumps(body),
        status=status,
        content_type="application/json",
        headers={_REQUEST_ID_HEADER: request_id, **(headers or {})},
    )
