"""The admin API: POST /admin/graphql, with the SDL of PRODUCT.md.

Every operation carries `@auth(abac: "<attribute>")`. Before any resolver runs, the ABAC policy
(`data.intelgraph.abac.granted`) says which attributes the token's principal holds; if any field
the operation selects needs one it lacks, nothing runs and the answer is a FORBIDDEN error (403).
A mutation's change and its audit record commit in one transaction.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from graphql import (
    DocumentNode,
    ExecutionResult,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLField,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    build_schema,
    execute,
    parse,
    validate,
)
from graphql.execution.values import get_variable_values
from graphql.language import StringValueNode
from sqlalchemy import Connection

from intelgraph_privacy.audit import AuditBackpressure, AuditLog, AuditRecord
from intelgraph_privacy.codec import dumps, loads
from intelgraph_privacy.cost.shapes import CostShapeError, approve_cost_shape
from intelgraph_privacy.errors import ConfigError, PolicyError
from intelgraph_privacy.principal import Principal
from intelgraph_privacy.rtbf.jobs import ErasureRequestError, check_subject_id, parse_scope
from intelgraph_privacy.rules import RuleError, check_rule, clear_redaction_rule, set_redaction_rule
from intelgraph_privacy.scim.reviews import count_open_reviews
from intelgraph_privacy.store.errors import StoreError
from intelgraph_privacy.tokens import record_revocation
from sidecar.errors import ClientError, SidecarError
from sidecar.guards import check_document, measure
from sidecar.proxy import STATE, authenticate, request_id_of, sync_shared_or_refuse
from sidecar.shared import SharedStateUnavailableError
from sidecar.state import SidecarState

#: The admin schema: PRODUCT.md's operations, plus reading and clearing rules and revoking tokens.
ADMIN_SDL = """
directive @auth(abac: String!) on FIELD_DEFINITION

input RedactionRuleInput {
  "A schema coordinate of the graph API, e.g. Person.name"
  field: String!
  "low, medium, high or restricted"
  tier: String!
}

type RedactionRule {
  field: String!
  tier: String!
  updatedAt: String!
  updatedBy: String!
}

type Mutation {
  setRedactionRule(rule: RedactionRuleInput!): Boolean @auth(abac: "admin.write")
  clearRedactionRule(field: String!): Boolean @auth(abac: "admin.write")
  approveCostShape(opId: String!, capUSD: Float!): Boolean @auth(abac: "admin.write")
  requestRTBF(subjectId: ID!, scope: String!): ID! @auth(abac: "privacy.write")
  revokeToken(jti: ID!, reason: String): Boolean @auth(abac: "admin.write")
}

type Query {
  accessReviewOpen: Int! @auth(abac: "admin.write")
  analyticsPacks: [String!]! @auth(abac: "analytics.read")
  redactionRules: [RedactionRule!]! @auth(abac: "admin.write")
  policyVersion: String! @auth(abac: "admin.write")
}
"""
_MAX_TOKENS = 2000


@dataclass(frozen=True, slots=True)
class AdminContext:
    """What resolvers see: the sidecar, the caller, the request."""

    state: SidecarState
    principal: Principal
    request_id: str
    document_hash: str


Resolver = Callable[..., Awaitable[Any]]


def build_admin_schema() -> GraphQLSchema:
    """The admin schema with its resolvers; every root field must carry @auth (fail closed)."""
    schema = build_schema(ADMIN_SDL)
    resolvers: dict[str, Resolver] = {
        "setRedactionRule": _set_redaction_rule,
        "clearRedactionRule": _clear_redaction_rule,
        "approveCostShape": _approve_cost_shape,
        "requestRTBF": _request_rtbf,
        "revokeToken": _revoke_token,
        "accessReviewOpen": _access_review_open,
        "analyticsPacks": _analytics_packs,
        "redactionRules": _redaction_rules,
        "policyVersion": _policy_version,
    }
    for root in (schema.query_type, schema.mutation_type):
        assert root is not None
        for name, field in root.fields.items():
            attribute = required_attribute(field)
            if attribute is None:
                raise RuntimeError(f"admin field {root.name}.{name} has no @auth directive")
            field.resolve = _guarded(attribute, resolvers[name])
    return schema


def required_attribute(field: GraphQLField) -> str | None:
    """The ABAC attribute a field's `@auth(abac: ...)` names."""
    node = field.ast_node
    for directive in (node.directives or ()) if node is not None else ():
        if directive.name.value != "auth":
            continue
        for argument in directive.arguments or ():
            if argument.name.value == "abac" and isinstance(argument.value, StringValueNode):
                return argument.value.value
    return None


def _guarded(attribute: str, resolver: Resolver) -> Resolver:
    async def resolve(_root: Any, info: Any, **arguments: Any) -> Any:
        context: AdminContext = info.context
        # Checked again here (the whole operation was checked before execution): defence in depth.
        if attribute not in context.state.abac.granted(context.principal):
            raise GraphQLError(
                f"forbidden: {info.field_name} needs {attribute}",
                extensions={"code": "FORBIDDEN"},
            )
        try:
            return await resolver(context, **arguments)
        except (RuleError, CostShapeError, ErasureRequestError, ConfigError) as exc:
            # Input the library refused (ConfigError: e.g. an empty or overlong jti).
            raise GraphQLError(str(exc), extensions={"code": "BAD_USER_INPUT"}) from None
        except StoreError:
            raise GraphQLError(
                "the store is unavailable; nothing was changed",
                extensions={"code": "STORE_UNAVAILABLE"},
            ) from None
        except SharedStateUnavailableError:
            # Committed, but this replica could not re-read the store afterwards; every
            # request (here too) re-reads it before it is served, or is refused.
            raise GraphQLError(
                "the change is stored, but the store could not be read back here; retry reads",
                extensions={"code": "STORE_UNAVAILABLE"},
            ) from None

    return resolve


# -- HTTP -----------------------------------------------------------------------------------


async def handle_admin(request: web.Request) -> web.Response:
    """POST /admin/graphql."""
    state = request.app[STATE]
    request_id = request_id_of(request)
    started = time.perf_counter()
    principal: Principal | None = None
    operation_name: str | None = None
    operation_type: str | None = None
    document_hash: str | None = None
    try:
        await sync_shared_or_refuse(state)
        principal = authenticate(state, request)
        query, variables, operation_name = await _read_body(request, state)
        # Keyed: an admin document names subjects (requestRTBF) and token ids in clear, and a
        # plain SHA-256 of a short document is reversed by trying candidate ids.
        document_hash = hmac.new(
            state.pseudonym_key, b"intelgraph-admin-document\x00" + query.encode(), "sha256"
        ).hexdigest()
        document, operation = _parse(query, operation_name, state)
        operation_type = operation.operation.value
        operation_name = operation.name.value if operation.name else operation_name
        _authorise(state, principal, document, operation)
        _check_variables(operation, variables)
        context = AdminContext(state, principal, request_id, document_hash)
        result = execute(
            _ADMIN_SCHEMA_CACHE.schema,
            document,
            variable_values=variables,
            operation_name=operation_name,
            context_value=context,
        )
        if isinstance(result, Awaitable):
            result = await result
        assert isinstance(result, ExecutionResult)
        body = _result_body(result, state)
        status = 200
        detail = _error_codes(body)
    except SidecarError as exc:
        status, body, detail = exc.status, exc.body(), exc.code
        if status == 403:
            body = {"data": None, **body}  # as /graphql answers a denied operation
        state.metrics.refusals.labels(exc.code).inc()
        where = (request_id, principal, operation_name, operation_type, document_hash)
        _submit(state, _record(state, *where, status, detail))
        return _json(status, body, request_id, exc.headers)
    state.metrics.observe(f"admin:{operation_name or '-'}", status, time.perf_counter() - started)
    if operation_type != "mutation" or detail is not None:
        # A change is audited in its own transaction; reads, and mutations any of whose fields
        # failed (bad input, another tenant, the store), are audited here.
        where = (request_id, principal, operation_name, operation_type, document_hash)
        _submit(state, _record(state, *where, status, detail))
    return _json(status, body, request_id)


async def _read_body(
    request: web.Request, state: SidecarState
) -> tuple[str, dict[str, Any], str | None]:
    if request.content_type != "application/json":
        raise ClientError(
            415, "send the admin request as application/json", "UNSUPPORTED_MEDIA_TYPE"
        )
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise ClientError(400, "the request body is too large", "BODY_TOO_LARGE") from None
    try:
        body = loads(raw)
    except ValueError:
        raise ClientError(400, "the body is not JSON", "BAD_REQUEST") from None
    if not isinstance(body, dict):
        raise ClientError(400, "the body must be one GraphQL request object", "BAD_REQUEST")
    query, variables, name = body.get("query"), body.get("variables"), body.get("operationName")
    if not isinstance(query, str) or not query.strip():
        raise ClientError(400, "query must be a non-empty string", "BAD_REQUEST")
    if variables is None:
        variables = {}
    if not isinstance(variables, dict):
        raise ClientError(400, "variables must be an object", "BAD_REQUEST")
    if name is not None and not isinstance(name, str):
        raise ClientError(400, "operationName must be a string", "BAD_REQUEST")
    return query, variables, name


def _parse(
    query: str, operation_name: str | None, state: SidecarState
) -> tuple[DocumentNode, OperationDefinitionNode]:
    try:
        document = parse(query, max_tokens=_MAX_TOKENS)
    except GraphQLError as exc:
        raise ClientError(400, f"syntax error: {exc.message}", "GRAPHQL_PARSE_FAILED") from None
    errors = validate(_ADMIN_SCHEMA_CACHE.schema, document)
    if errors:
        raise ClientError(400, errors[0].message, "GRAPHQL_VALIDATION_FAILED")
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    chosen = [
        op
        for op in operations
        if (operation_name is None and len(operations) == 1)
        or (op.name is not None and op.name.value == operation_name)
    ]
    if not chosen:
        raise ClientError(400, "choose one operation with operationName", "BAD_REQUEST")
    operation = chosen[0]
    if operation.operation.value == "subscription":
        raise ClientError(400, "subscriptions are not supported", "UNSUPPORTED_OPERATION")
    limits = state.config.limits
    check_document(
        measure(document, operation),
        max_depth=limits.max_depth,
        max_aliases=limits.max_aliases,
        introspection_allowed=True,  # the admin schema is documented; it hides nothing
    )
    return document, operation


def _check_variables(operation: OperationDefinitionNode, variables: dict[str, Any]) -> None:
    """A 400 for variables that do not fit the operation (a client mistake, caught up front)."""
    coerced = get_variable_values(
        _ADMIN_SCHEMA_CACHE.schema, operation.variable_definitions or (), variables
    )
    if isinstance(coerced, list):
        raise ClientError(400, coerced[0].message, "GRAPHQL_VALIDATION_FAILED")


def _authorise(
    state: SidecarState,
    principal: Principal,
    document: DocumentNode,
    operation: OperationDefinitionNode,
) -> None:
    """FORBIDDEN (403) before anything runs if any selected field needs an attribute not held."""
    schema = _ADMIN_SCHEMA_CACHE.schema
    root = schema.mutation_type if operation.operation.value == "mutation" else schema.query_type
    assert root is not None
    try:
        granted = state.abac.granted(principal)
    except PolicyError:
        state.log.exception("the ABAC policy could not be evaluated")
        raise SidecarError(
            500, "the access policy could not be evaluated; nothing was run", "POLICY_ERROR"
        ) from None
    missing = sorted(
        {
            (name, attribute)
            for name in _root_fields(document, operation.selection_set)
            if name in root.fields
            and (attribute := required_attribute(root.fields[name])) is not None
            and attribute not in granted
        }
    )
    if missing:
        needs = ", ".join(f"{name} needs {attribute}" for name, attribute in missing)
        raise SidecarError(403, f"forbidden: {needs}", "FORBIDDEN")


def _root_fields(document: DocumentNode, selection_set: SelectionSetNode) -> Iterator[str]:
    # Through fragments, and ignoring @skip/@include: a field that might run is checked.
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    pending, seen = [selection_set], set()
    while pending:
        for selection in pending.pop().selections:
            if isinstance(selection, FieldNode):
                yield selection.name.value
            elif isinstance(selection, InlineFragmentNode):
                pending.append(selection.selection_set)
            elif isinstance(selection, FragmentSpreadNode) and selection.name.value not in seen:
                seen.add(selection.name.value)
                if selection.name.value in fragments:
                    pending.append(fragments[selection.name.value].selection_set)


def _result_body(result: ExecutionResult, state: SidecarState) -> dict[str, Any]:
    body: dict[str, Any] = {"data": result.data}
    if result.errors:
        errors = []
        for error in result.errors:
            code = (error.extensions or {}).get("code")
            if code is None:
                # An unexpected failure inside a resolver: logged, but say nothing of it here.
                state.log.error(
                    "admin resolver failed",
                    exc_info=error.original_error or error,
                    extra={"path": list(error.path or ())},
                )
                code, message = "INTERNAL_ERROR", "internal error"
            else:
                message = error.message
            entry: dict[str, Any] = {"message": message, "extensions": {"code": code}}
            if error.path is not None:
                entry["path"] = list(error.path)
            errors.append(entry)
        body["errors"] = errors
    return body


def _error_codes(body: dict[str, Any]) -> str | None:
    codes = sorted({e["extensions"]["code"] for e in body.get("errors", [])})
    return ",".join(codes) or None


def _json(
    status: int, body: Any, request_id: str, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=dumps(body),
        status=status,
        content_type="application/json",
        headers={"X-Request-Id": request_id, **(headers or {})},
    )


# -- audit ----------------------------------------------------------------------------------


def _record(
    state: SidecarState,
    request_id: str,
    principal: Principal | None,
    operation_name: str | None,
    operation_type: str | None,
    document_hash: str | None,
    status: int,
    detail: str | None,
) -> AuditRecord:
    return AuditRecord(
        ts=datetime.now(UTC),
        request_id=request_id,
        sub=principal.sub if principal else None,
        tenant=principal.tenant if principal else None,
        purpose=principal.purpose if principal else None,
        operation_name=f"admin:{operation_name}" if operation_name else "admin",
        operation_type=operation_type,
        document_hash=document_hash,
        redacted={},
        policy_version=state.policy_version(),
        catalog_version=state.runtime.catalog.version if state.runtime else None,
        status=status,
        mode="enforce",
        detail=detail,
    )


def _submit(state: SidecarState, record: AuditRecord) -> None:
    if state.audit is None:
        return
    try:
        state.audit.submit(record)
    except AuditBackpressure:
        state.metrics.audit_failures.inc()
        state.log.error("admin audit record dropped: the audit queue is full")


async def _change(
    context: AdminContext, field: str, detail: str, apply: Callable[[Connection], Any]
) -> Any:
    """Run `apply` and append its audit record in one store transaction (in a worker thread)."""
    state = context.state
    store = state.store
    assert store is not None
    record = _record(
        state,
        context.request_id,
        context.principal,
        field,
        "mutation",
        context.document_hash,
        200,
        detail,
    )

    def transaction() -> Any:
        with store.begin() as connection:
            result = apply(connection)
            AuditLog(store).append_in(connection, [record])
            return result

    result = await asyncio.to_thread(transaction)
    if state.shared is not None:
        state.shared.invalidate()  # this replica re-reads the store before its next request
    return result


# -- resolvers ------------------------------------------------------------------------------


def _by(context: AdminContext) -> str:
    return f"{context.principal.tenant}/{context.principal.sub}"


async def _set_redaction_rule(context: AdminContext, rule: dict[str, Any]) -> bool:
    runtime = context.state.runtime
    if runtime is None:
        raise RuleError("the upstream schema is not loaded yet; try again")
    coordinate, tier = rule["field"], rule["tier"]
    check_rule(runtime.schema, coordinate, tier)
    await _change(
        context,
        "setRedactionRule",
        f"{coordinate}={tier}",
        lambda c: set_redaction_rule(c, coordinate, tier, updated_by=_by(context)),
    )
    await context.state.sync_shared()  # in force here before the answer leaves
    return True


async def _clear_redaction_rule(context: AdminContext, field: str) -> bool:
    removed = await _change(
        context, "clearRedactionRule", field, lambda c: clear_redaction_rule(c, field)
    )
    await context.state.sync_shared()
    return removed is not None


async def _approve_cost_shape(context: AdminContext, opId: str, capUSD: float) -> bool:  # noqa: N803
    principal = context.principal
    await _change(
        context,
        "approveCostShape",
        f"{opId} cap {capUSD:.2f} USD",
        lambda c: approve_cost_shape(
            c, opId, capUSD, tenant=principal.tenant, approved_by=_by(context)
        ),
    )
    return True


async def _request_rtbf(context: AdminContext, subjectId: str, scope: str) -> str:  # noqa: N803
    tenant = parse_scope(scope)
    if tenant != context.principal.tenant:
        raise GraphQLError(
            "forbidden: an erasure can only be requested within your own tenant",
            extensions={"code": "FORBIDDEN"},
        )
    state = context.state
    if not state.config.rtbf.enabled:
        raise GraphQLError(
            "erasure requests are switched off (rtbf.enabled: false)",
            extensions={"code": "RTBF_DISABLED"},
        )
    service = state.erasures
    if service is None:
        why = "no dataset registry is configured (rtbf.registry)"
        if state.config.rtbf.registry is not None:
            why = "the dataset registry or the signing keys failed to load (see the log)"
        raise GraphQLError(
            f"erasures are unavailable: {why}", extensions={"code": "RTBF_UNAVAILABLE"}
        )
    check_subject_id(subjectId)
    version = state.policy_version()

    def apply(connection: Connection) -> str:
        # The job and the subject's tombstone (a keyed hash, never the id) commit with the
        # audit record.
        [(job_id, _created)] = service.orchestrator.request_in(
            connection, [subjectId], scope, requested_by=_by(context), policy_version=version
        )
        return job_id

    # The audit detail names the scope, never the subject: the log outlives the erasure.
    job_id: str = await _change(context, "requestRTBF", f"scope {scope}", apply)
    service.run_later(job_id)
    return job_id


async def _revoke_token(context: AdminContext, jti: str, reason: str | None = None) -> bool:
    state = context.state
    max_age = state.config.auth.max_token_age_seconds
    newly: bool = await _change(
        context,
        "revokeToken",
        f"jti {jti}",
        lambda c: record_revocation(
            c, jti, revoked_by=_by(context), reason=reason, max_token_age=max_age
        ),
    )
    state.revoked.add(jti)  # refused here at once; other replicas on their next request
    return newly


async def _access_review_open(context: AdminContext) -> int:
    store = context.state.store
    assert store is not None
    return await asyncio.to_thread(count_open_reviews, store, tenant=context.principal.tenant)


async def _analytics_packs(context: AdminContext) -> list[str]:
    runtime = context.state.runtime
    if runtime is None:
        return []
    return runtime.catalog.analytics_operations()


async def _redaction_rules(context: AdminContext) -> list[dict[str, str]]:
    return [
        {
            "field": rule.coordinate,
            "tier": rule.tier,
            "updatedAt": rule.updated_at.isoformat(),
            "updatedBy": rule.updated_by,
        }
        for rule in context.state.rules
    ]


async def _policy_version(context: AdminContext) -> str:
    return context.state.policy_version()


# -- wiring ---------------------------------------------------------------------------------


class _SchemaCache:
    """The admin schema, built once per process (it does not change)."""

    _schema: GraphQLSchema | None = None

    @property
    def schema(self) -> GraphQLSchema:
        if self._schema is None:
            self._schema = build_admin_schema()
        return self._schema


_ADMIN_SCHEMA_CACHE = _SchemaCache()


def add_admin_routes(app: web.Application) -> None:
    """Serve the admin API at /admin/graphql (POST only)."""
    app.router.add_route("POST", "/admin/graphql", handle_admin)
    app.router.add_route("*", "/admin/graphql", _method_not_allowed)


async def _method_not_allowed(request: web.Request) -> web.Response:
    # Mutations never travel in a URL: the admin API takes POST only.
    request.app[STATE].metrics.refusals.labels("METHOD_NOT_ALLOWED").inc()
    body = {
        "errors": [
            {"message": "/admin/graphql takes POST", "extensions": {"code": "METHOD_NOT_ALLOWED"}}
        ]
    }
    return web.Response(
        body=dumps(body),
        status=405,
        content_type="application/json",
        headers={"Allow": "POST", "X-Request-Id": request_id_of(request)},
    )


__all__ = ["ADMIN_SDL", "add_admin_routes", "build_admin_schema", "handle_admin"]
