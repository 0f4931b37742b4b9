"""POST /token/exchange: RFC 8693 token exchange, answered the OAuth way (RFC 6749 section 5).

Request (application/x-www-form-urlencoded):
  grant_type=urn:ietf:params:oauth:grant-type:token-exchange
  subject_token=<the identity provider's token>
  subject_token_type=urn:ietf:params:oauth:token-type:jwt (or ...:access_token, ...:id_token)
  scope=purpose:<name>                      the purpose the new token is bound to
  requested_token_type, audience            optional; must name what this endpoint issues
Response: 200 {access_token, issued_token_type, token_type, expires_in, scope}, or 400
{error, error_description}; never cached.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from aiohttp import web

from intelgraph_privacy.audit import AuditBackpressure, AuditRecord
from intelgraph_privacy.codec import dumps
from intelgraph_privacy.tokens import ExchangeError
from sidecar.errors import SidecarError
from sidecar.proxy import STATE, request_id_of, sync_shared_or_refuse
from sidecar.state import SidecarState

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"
_TOKEN_TYPES = "urn:ietf:params:oauth:token-type:"
SUBJECT_TOKEN_TYPES = frozenset(
    {f"{_TOKEN_TYPES}jwt", f"{_TOKEN_TYPES}access_token", f"{_TOKEN_TYPES}id_token"}
)
REQUESTED_TOKEN_TYPES = frozenset({f"{_TOKEN_TYPES}access_token", f"{_TOKEN_TYPES}jwt"})
_KNOWN = frozenset(
    {
        "grant_type",
        "subject_token",
        "subject_token_type",
        "scope",
        "requested_token_type",
        "audience",
        "resource",
        "actor_token",
        "actor_token_type",
    }
)
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_MAX_FORM_BYTES = 64 * 1024


class _Refused(Exception):  # noqa: N818 - an OAuth refusal, not a fault
    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


async def handle_exchange(request: web.Request) -> web.Response:
    """POST /token/exchange."""
    state = request.app[STATE]
    request_id = request_id_of(request)
    started = time.perf_counter()
    sub: str | None = None
    tenant: str | None = None
    purpose: str | None = None
    try:
        await sync_shared_or_refuse(state)  # revocations must be current
        exchange = state.exchange
        if exchange is None:  # pragma: no cover - the route exists only when enabled
            raise _Refused("invalid_request", "token exchange is not enabled")
        form = await _read_form(request)
        _check_parameters(form, state)
        purpose = _purpose(form.get("scope"))
        result = exchange.exchange(form["subject_token"], purpose)
        sub, tenant = result.sub, result.tenant
    except SidecarError as exc:
        return web.Response(
            body=dumps({"error": "temporarily_unavailable", "error_description": exc.message}),
            status=exc.status,
            content_type="application/json",
            headers={**_NO_STORE, **exc.headers, "X-Request-Id": request_id},
        )
    except (_Refused, ExchangeError) as exc:
        error = exc.error
        if isinstance(exc, ExchangeError):
            sub, tenant = exc.sub, exc.tenant
        _audit(state, request_id, sub, tenant, purpose, 400, f"refused: {error}")
        state.metrics.refusals.labels(f"EXCHANGE_{error.upper()}").inc()
        return web.Response(
            body=dumps({"error": error, "error_description": exc.description}),
            status=400,
            content_type="application/json",
            headers={**_NO_STORE, "X-Request-Id": request_id},
        )
    _audit(state, request_id, sub, tenant, purpose, 200, f"issued jti {result.jti}")
    state.metrics.observe("token-exchange", 200, time.perf_counter() - started)
    return web.Response(
        body=dumps(result.response()),
        status=200,
        content_type="application/json",
        headers={**_NO_STORE, "X-Request-Id": request_id},
    )


async def _read_form(request: web.Request) -> dict[str, str]:
    if request.query_string:
        # Tokens never travel in URLs (logged by every proxy on the way): refuse, don't ignore.
        raise _Refused("invalid_request", "send every parameter in the form body, none in the URL")
    if request.content_type != "application/x-www-form-urlencoded":
        raise _Refused("invalid_request", "send the request as application/x-www-form-urlencoded")
    if request.content_length is not None and request.content_length > _MAX_FORM_BYTES:
        raise _Refused("invalid_request", "the request body is too large")
    try:
        posted = await request.post()
    except (ValueError, web.HTTPRequestEntityTooLarge):
        raise _Refused("invalid_request", "the request body cannot be read") from None
    form: dict[str, str] = {}
    for name, value in posted.items():
        if not isinstance(value, str):
            raise _Refused("invalid_request", f"{name} must be a plain form value")
        if name in form:
            # RFC 6749 section 3.2: request parameters must not be repeated.
            raise _Refused("invalid_request", f"{name} is given more than once")
        form[name] = value
    return form


def _purpose(scope: str | None) -> str:
    if not scope:
        raise _Refused("invalid_scope", "scope must name the purpose: scope=purpose:<name>")
    names = scope.split()
    if len(names) != 1 or not names[0].startswith("purpose:"):
        raise _Refused("invalid_scope", "scope must be exactly one purpose:<name>")
    return names[0].removeprefix("purpose:")


def _check_parameters(form: dict[str, str], state: SidecarState) -> None:
    if form.get("grant_type") != GRANT_TYPE:
        raise _Refused("unsupported_grant_type", f"grant_type must be {GRANT_TYPE}")
    if not form.get("subject_token"):
        raise _Refused("invalid_request", "subject_token is required")
    if form.get("subject_token_type") not in SUBJECT_TOKEN_TYPES:
        raise _Refused("invalid_request", "subject_token_type must be a JWT token type")
    if "actor_token" in form or "actor_token_type" in form:
        raise _Refused("invalid_request", "delegation (actor_token) is not supported")
    requested = form.get("requested_token_type")
    if requested is not None and requested not in REQUESTED_TOKEN_TYPES:
        raise _Refused("invalid_request", "only access tokens (JWT) are issued")
    audience = form.get("audience")
    if audience is not None and audience != state.verifier.audience:
        raise _Refused("invalid_target", "tokens are issued for this graph API's audience only")
    if "resource" in form:
        raise _Refused("invalid_target", "resource is not supported; use audience")
    unknown = sorted(set(form) - _KNOWN)
    if unknown:
        raise _Refused("invalid_request", f"unknown parameters: {', '.join(unknown)}")


def _audit(
    state: SidecarState,
    request_id: str,
    sub: str | None,
    tenant: str | None,
    purpose: str | None,
    status: int,
    detail: str,
) -> None:
    if state.audit is None:
        return
    record = AuditRecord(
        ts=datetime.now(UTC),
        request_id=request_id,
        sub=sub,
        tenant=tenant,
        purpose=purpose,
        operation_name="token-exchange",
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


def add_exchange_routes(app: web.Application, state: SidecarState) -> None:
    """Serve /token/exchange when token exchange is enabled."""
    if state.exchange is not None:
        app.router.add_route("POST", "/token/exchange", handle_exchange)


__all__ = ["add_exchange_routes", "handle_exchange"]
