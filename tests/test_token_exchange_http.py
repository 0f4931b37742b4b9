"""POST /token/exchange (RFC 8693) end to end: real HTTP on loopback, real signed JWTs, the shipped
Rego exchange policy, the sample graph behind the sidecar.

The demo sidecar plays the identity provider with the public demo key (subject tokens under
DEMO_IDP_ISSUER / DEMO_EXCHANGE_AUDIENCE); production-config sidecars use their own "IdP" key,
a separate exchange signing key and claim mappings (Entra `tid`, Okta `groups`).
"""

from __future__ import annotations

import base64
import time
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jwcrypto import jwk

from intelgraph_privacy import codec
from intelgraph_privacy.audit import AuditLog
from intelgraph_privacy.config import load_config
from intelgraph_privacy.errors import ConfigError
from intelgraph_privacy.tokens import (
    DEMO_AUDIENCE,
    DEMO_EXCHANGE_AUDIENCE,
    DEMO_IDP_ISSUER,
    DEMO_ISSUER,
    DEMO_KID,
    demo_private_key,
    generate_signing_key,
    issue_token,
    public_jwks,
    revoke_token,
)
from sidecar.state import SidecarState
from tests.servers import Reply, http, post_json
from tests.sidecar_env import (
    AUDIENCE,
    ISSUER,
    RecordingUpstream,
    Sidecar,
    SigningKeys,
    demo_token,
    sidecar_config,
    start_demo_sidecar,
    start_sidecar,
    wait_until,
)

GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"
ACCESS_TYPE = "urn:ietf:params:oauth:token-type:access_token"
FORM = "application/x-www-form-urlencoded"
PEOPLE_QUERY = "{ people(first: 2) { id name } }"
COHORT_QUERY = '{ cohort(groupBy: ["city", "ageBand"]) { city ageBand count } }'
ROOT = Path(__file__).resolve().parents[1]

# What rego/exchange.rego says, written out independently: which roles may act for which purpose.
PURPOSE_ROLES: dict[str, frozenset[str]] = {
    "investigation": frozenset({"investigator"}),
    "analytics": frozenset({"analyst", "admin"}),
    "export": frozenset({"analyst", "admin"}),
    "administration": frozenset({"admin", "privacy-officer"}),
    "audit": frozenset({"auditor", "admin", "privacy-officer"}),
    "support": frozenset({"support"}),
}
# presets/purposes.yaml's max_ttl_seconds, written out independently.
PURPOSE_MAX_TTL = {
    "investigation": 3600,
    "analytics": 3600,
    "export": 900,
    "administration": 900,
    "audit": 3600,
    "support": 900,
}
ROLES = ["investigator", "analyst", "admin", "privacy-officer", "auditor", "support", "guest"]
ISSUED_CLAIMS = {"iss", "sub", "aud", "tenant", "roles", "purpose", "iat", "exp", "jti"}

# -- helpers ------------------------------------------------------------------------------------


def idp_token(
    sub: str = "ana",
    roles: Sequence[str] = ("analyst",),
    *,
    tenant: str = "demo",
    purpose: str | None = None,
    issuer: str = DEMO_IDP_ISSUER,
    audience: str = DEMO_EXCHANGE_AUDIENCE,
    key: jwk.JWK | None = None,
    kid: str | None = DEMO_KID,
    ttl: int = 3600,
    now: float | None = None,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """A broad "identity provider" token (the demo key and the demo IdP issuer by default)."""
    return issue_token(
        key if key is not None else demo_private_key(),
        sub=sub,
        tenant=tenant,
        roles=list(roles),
        purpose=purpose,
        issuer=issuer,
        audience=audience,
        ttl=ttl,
        kid=kid,
        now=now,
        extra=extra,
    )


def exchange_url(sidecar: Sidecar) -> str:
    return f"{sidecar.server.url}/token/exchange"


def post_form(
    sidecar: Sidecar,
    fields: Mapping[str, str] | Sequence[tuple[str, str]],
    *,
    content_type: str = FORM,
) -> Reply:
    """POST form fields (a sequence of pairs may repeat a name) to /token/exchange."""
    pairs = list(fields.items()) if isinstance(fields, Mapping) else list(fields)
    body = urllib.parse.urlencode(pairs).encode()
    return http("POST", exchange_url(sidecar), body=body, headers={"Content-Type": content_type})


def form(subject: str, purpose: str | None = "analytics", **more: str) -> dict[str, str]:
    """A well-formed exchange request for `purpose` (None: no scope), plus `more` fields."""
    fields = {"grant_type": GRANT, "subject_token": subject, "subject_token_type": JWT_TYPE}
    if purpose is not None:
        fields["scope"] = f"purpose:{purpose}"
    fields.update(more)
    return fields


def payload_of(token: str) -> dict[str, Any]:
    """The (unverified) payload of a compact JWS; verification is done by the sidecar itself."""
    segment = token.split(".")[1]
    decoded: dict[str, Any] = codec.loads(
        base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    )
    return decoded


def header_of(token: str) -> dict[str, Any]:
    """The (unverified) protected header of a compact JWS."""
    segment = token.split(".", maxsplit=1)[0]
    decoded: dict[str, Any] = codec.loads(
        base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    )
    return decoded


def _tampered(token: str) -> str:
    """The token with its payload changed (a role added) and the old signature kept."""
    head, _, signature = token.split(".")
    payload = payload_of(token)
    payload["roles"] = [*payload["roles"], "admin"]
    forged = base64.urlsafe_b64encode(codec.dumps(payload)).rstrip(b"=").decode()
    return f"{head}.{forged}.{signature}"


def assert_refused(reply: Reply, error: str, *secrets: str) -> dict[str, Any]:
    """A 400 OAuth error `error`, never cached, echoing none of `secrets`; the body."""
    assert reply.status == 400, reply.raw
    assert reply.headers.get("Cache-Control") == "no-store"
    assert reply.headers.get("Pragma") == "no-cache"
    assert reply.headers.get("Content-Type", "").startswith("application/json")
    body: dict[str, Any] = reply.json
    assert set(body) == {"error", "error_description"}, body
    assert body["error"] == error, body
    assert isinstance(body["error_description"], str) and body["error_description"]
    for secret in secrets:
        # Neither the whole token nor any of its segments (header, payload, signature).
        for piece in [secret, *[p for p in secret.split(".") if len(p) >= 8]]:
            assert piece not in reply.raw.decode(), f"the error echoes {piece[:20]}..."
    return body


def assert_granted(reply: Reply, purpose: str) -> dict[str, Any]:
    """A 200 RFC 8693 response for `purpose`, never cached; the body."""
    assert reply.status == 200, reply.raw
    assert reply.headers.get("Cache-Control") == "no-store"
    assert reply.headers.get("Pragma") == "no-cache"
    body: dict[str, Any] = reply.json
    assert set(body) == {"access_token", "issued_token_type", "token_type", "expires_in", "scope"}
    assert body["issued_token_type"] == ACCESS_TYPE
    assert body["token_type"] == "Bearer"
    assert body["scope"] == f"purpose:{purpose}"
    expires_in = body["expires_in"]
    assert isinstance(expires_in, int) and 0 < expires_in <= min(300, PURPOSE_MAX_TTL[purpose])
    return body


def admin_url(sidecar: Sidecar) -> str:
    return f"{sidecar.server.url}/admin/graphql"


def exchange_audit(sidecar: Sidecar) -> list[Any]:
    """The token-exchange audit records, oldest first."""
    sidecar.flush_audit()
    assert sidecar.state.store is not None
    entries = AuditLog(sidecar.state.store).tail(500)
    return [e.record for e in entries if e.record.operation_name == "token-exchange"]


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(
    upstream: RecordingUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Sidecar]:
    """One demo sidecar shared by the tests that need no fresh store (and the property)."""
    running = start_demo_sidecar(upstream.graphql_url, tmp_path_factory.mktemp("demo-shared"))
    yield running
    running.server.stop()


# -- demo: success ------------------------------------------------------------------------------


def test_exchange_issues_a_purpose_bound_token_that_works(demo: Sidecar) -> None:
    subject = idp_token("ana", ["analyst"])
    reply = post_form(demo, form(subject, "analytics"))
    body = assert_granted(reply, "analytics")
    token = body["access_token"]

    # The sidecar's own verifier accepts it, and it says exactly what was asked for.
    claims = demo.state.verifier.verify(token)
    assert claims.purpose == "analytics"
    assert (claims.sub, claims.tenant, claims.roles) == ("ana", "demo", ("analyst",))
    assert (claims.iss, claims.aud) == (DEMO_ISSUER, DEMO_AUDIENCE)
    assert claims.exp - claims.iat == body["expires_in"]
    assert abs(claims.iat - time.time()) < 30
    # A fresh jti: not the subject token's, and not reused by the next exchange.
    assert claims.jti and claims.jti != payload_of(subject)["jti"]
    again = assert_granted(post_form(demo, form(subject, "analytics")), "analytics")
    assert payload_of(again["access_token"])["jti"] != claims.jti
    assert set(payload_of(token)) == ISSUED_CLAIMS  # nothing else carried over
    # The issued token is not itself a subject token (same demo key, other issuer/audience).
    assert_refused(post_form(demo, form(token, "export")), "invalid_grant", token)

    # It works at /graphql for what analytics serves.
    served = demo.query(PEOPLE_QUERY, token)
    assert served.status == 200, served.raw
    assert len(served.json["data"]["people"]) == 2
    cohort = demo.query(COHORT_QUERY, token)
    assert cohort.status == 200, cohort.raw
    rows = cohort.json["data"]["cohort"]
    assert rows and all(isinstance(r["count"], int) for r in rows)


def test_token_of_one_purpose_is_refused_for_another_purposes_operation(demo: Sidecar) -> None:
    subject = idp_token("ana", ["analyst", "admin"])
    admin = assert_granted(post_form(demo, form(subject, "administration")), "administration")
    assert payload_of(admin["access_token"])["purpose"] == "administration"
    # Query.cohort serves analytics, investigation and export only.
    refused = demo.query(COHORT_QUERY, admin["access_token"])
    assert refused.status == 403, refused.raw
    assert refused.json.get("data") is None
    analytics = assert_granted(post_form(demo, form(subject, "analytics")), "analytics")
    served = demo.query(COHORT_QUERY, analytics["access_token"])
    assert served.status == 200 and served.json["data"]["cohort"], served.raw


def test_optional_parameters_naming_what_is_issued_are_accepted(demo: Sidecar) -> None:
    subject = idp_token("ana", ["analyst"])
    for extra in (
        {"audience": DEMO_AUDIENCE},
        {"requested_token_type": ACCESS_TYPE},
        {"requested_token_type": JWT_TYPE},
        {"subject_token_type": ACCESS_TYPE},
        {"subject_token_type": "urn:ietf:params:oauth:token-type:id_token"},
    ):
        assert_granted(post_form(demo, form(subject, "analytics", **extra)), "analytics")


def test_lifetime_never_exceeds_the_subject_token_nor_the_purpose(demo: Sidecar) -> None:
    short = idp_token("ana", ["analyst"], ttl=90)
    body = assert_granted(post_form(demo, form(short, "analytics")), "analytics")
    assert body["expires_in"] <= 90
    assert payload_of(body["access_token"])["exp"] <= payload_of(short)["exp"]


def test_region_and_clearance_carry_over_other_claims_do_not(demo: Sidecar) -> None:
    subject = idp_token(
        "hana",
        ["investigator", "high-clearance"],
        extra={"region": "eu", "clearance": "high", "email": "hana@example.test"},
    )
    body = assert_granted(post_form(demo, form(subject, "investigation")), "investigation")
    claims = demo.state.verifier.verify(body["access_token"])
    assert (claims.region, claims.clearance) == ("eu", "high")
    assert claims.roles == ("high-clearance", "investigator")
    assert "email" not in payload_of(body["access_token"])


# -- demo: policy -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("roles", "allowed"),
    [
        (["investigator"], {"investigation"}),
        (["analyst"], {"analytics", "export"}),
        (["admin"], {"administration", "analytics", "export", "audit"}),
        (["guest"], set()),
        ([], set()),
    ],
)
def test_exchange_policy_per_role(demo: Sidecar, roles: list[str], allowed: set[str]) -> None:
    subject = idp_token("someone", roles)
    for purpose in PURPOSE_ROLES:
        reply = post_form(demo, form(subject, purpose))
        if purpose in allowed:
            assert payload_of(assert_granted(reply, purpose)["access_token"])["purpose"] == purpose
        else:
            assert_refused(reply, "invalid_scope", subject)


def test_administration_token_works_on_the_admin_api(demo: Sidecar) -> None:
    subject = idp_token("root", ["admin"])
    admin = assert_granted(post_form(demo, form(subject, "administration")), "administration")
    reply = post_json(admin_url(demo), {"query": "{ policyVersion }"}, token=admin["access_token"])
    assert reply.status == 200, reply.raw
    assert reply.json["data"]["policyVersion"] == demo.state.policy_version()
    # The same admin exchanging for analytics cannot change or read admin settings with it.
    analytics = assert_granted(post_form(demo, form(subject, "analytics")), "analytics")
    refused = post_json(
        admin_url(demo), {"query": "{ policyVersion }"}, token=analytics["access_token"]
    )
    assert refused.status == 403, refused.raw
    assert not (refused.json.get("data") or {}).get("policyVersion")


def test_a_subject_token_naming_purposes_can_only_be_narrowed(demo: Sidecar) -> None:
    listed = idp_token("ana", ["analyst", "admin"], extra={"purposes": ["analytics"]})
    assert_granted(post_form(demo, form(listed, "analytics")), "analytics")
    for purpose in ("export", "administration", "audit"):
        assert_refused(post_form(demo, form(listed, purpose)), "invalid_scope", listed)
    # A single `purpose` claim narrows the same way.
    single = idp_token("ana", ["analyst"], purpose="export")
    assert_granted(post_form(demo, form(single, "export")), "export")
    assert_refused(post_form(demo, form(single, "analytics")), "invalid_scope", single)


# -- demo: refusals -----------------------------------------------------------------------------


def _without(fields: dict[str, str], *names: str) -> dict[str, str]:
    return {k: v for k, v in fields.items() if k not in names}


def test_request_errors(demo: Sidecar) -> None:
    subject = idp_token("ana", ["analyst"])
    ok = form(subject, "analytics")
    cases: list[tuple[str, Any, str]] = [
        ("wrong grant_type", {**ok, "grant_type": "client_credentials"}, "unsupported_grant_type"),
        ("missing grant_type", _without(ok, "grant_type"), "unsupported_grant_type"),
        ("missing subject_token", _without(ok, "subject_token"), "invalid_request"),
        ("empty subject_token", {**ok, "subject_token": ""}, "invalid_request"),
        ("missing subject_token_type", _without(ok, "subject_token_type"), "invalid_request"),
        (
            "unknown subject_token_type",
            {**ok, "subject_token_type": "urn:ietf:params:oauth:token-type:saml2"},
            "invalid_request",
        ),
        ("actor_token", {**ok, "actor_token": subject}, "invalid_request"),
        ("actor_token_type", {**ok, "actor_token_type": JWT_TYPE}, "invalid_request"),
        (
            "requested_token_type",
            {**ok, "requested_token_type": "urn:ietf:params:oauth:token-type:saml2"},
            "invalid_request",
        ),
        ("repeated scope", [*ok.items(), ("scope", "purpose:analytics")], "invalid_request"),
        ("repeated subject_token", [*ok.items(), ("subject_token", subject)], "invalid_request"),
        ("unknown parameter", {**ok, "client_secret": "x"}, "invalid_request"),
        ("missing scope", _without(ok, "scope"), "invalid_scope"),
        ("empty scope", {**ok, "scope": ""}, "invalid_scope"),
        ("two purposes", {**ok, "scope": "purpose:analytics purpose:export"}, "invalid_scope"),
        ("not purpose:", {**ok, "scope": "analytics"}, "invalid_scope"),
        ("openid scope", {**ok, "scope": "openid"}, "invalid_scope"),
        ("unknown purpose", {**ok, "scope": "purpose:marketing"}, "invalid_scope"),
        ("empty purpose", {**ok, "scope": "purpose:"}, "invalid_scope"),
        ("other audience", {**ok, "audience": "https://other.api"}, "invalid_target"),
        ("resource", {**ok, "resource": "https://graph.example/"}, "invalid_target"),
    ]
    for label, fields, error in cases:
        reply = post_form(demo, fields)
        assert reply.status == 400, (label, reply.raw)
        assert reply.json["error"] == error, (label, reply.json)
        assert_refused(reply, error, subject)


def test_bodies_that_are_not_a_form_are_refused(demo: Sidecar) -> None:
    subject = idp_token("ana", ["analyst"])
    url = exchange_url(demo)
    as_json = http(
        "POST",
        url,
        body=codec.dumps(form(subject, "analytics")),
        headers={"Content-Type": "application/json"},
    )
    assert_refused(as_json, "invalid_request", subject)
    multipart = http(
        "POST",
        url,
        body=b'--b\r\nContent-Disposition: form-data; name="grant_type"\r\n\r\nx\r\n--b--\r\n',
        headers={"Content-Type": "multipart/form-data; boundary=b"},
    )
    assert_refused(multipart, "invalid_request")
    text = http(
        "POST",
        url,
        body=urllib.parse.urlencode(form(subject)).encode(),
        headers={"Content-Type": "text/plain"},
    )
    assert_refused(text, "invalid_request", subject)
    # Over 64 KiB: refused before the scope (which alone would be invalid_scope) is read.
    huge = post_form(demo, {**form(subject), "scope": "purpose:" + "x" * (70 * 1024)})
    body = assert_refused(huge, "invalid_request", subject)
    assert "too large" in body["error_description"]
    # Parameters come from the body only: any in the URL is refused (tokens must not be logged).
    query_scope = http(
        "POST",
        f"{url}?scope=purpose:analytics",
        body=urllib.parse.urlencode(form(subject, None)).encode(),
        headers={"Content-Type": FORM},
    )
    body = assert_refused(query_scope, "invalid_request", subject)
    assert "URL" in body["error_description"]
    # A charset parameter on the form's media type is fine.
    assert_granted(
        post_form(demo, form(subject), content_type=f"{FORM}; charset=UTF-8"), "analytics"
    )
    # Only POST is served.
    assert http("GET", url).status == 405


def test_bad_subject_tokens_are_invalid_grant(demo: Sidecar) -> None:
    now = time.time()
    wrong_key = generate_signing_key("EdDSA", kid=DEMO_KID)  # the demo kid, another key
    cases = {
        "expired": idp_token("ana", ["analyst"], now=now - 7200, ttl=600),
        "wrong issuer": idp_token("ana", ["analyst"], issuer="https://evil.example"),
        # An access token for the graph API is not a subject token for the exchange.
        "graph access token": demo_token("ana", ("analyst",), "analytics"),
        "graph audience": idp_token("ana", ["analyst"], audience=DEMO_AUDIENCE),
        "wrong key": idp_token("ana", ["analyst"], key=wrong_key, kid=DEMO_KID),
        "not yet valid": idp_token("ana", ["analyst"], extra={"nbf": int(now) + 3600}),
        "tampered signature": _tampered(idp_token("ana", ["analyst"])),
        "garbage": "garbage-not-a-jwt-SECRETSECRET",
        "three garbage segments": "eyJnYXJiYWdl.eyJzZWNyZXQ.c2lnbmF0dXJlc2VjcmV0",
        "region not a string": idp_token("ana", ["analyst"], extra={"region": 7}),
        "bad clearance": idp_token("ana", ["analyst"], extra={"clearance": "top-secret"}),
        "purposes not a list": idp_token("ana", ["analyst"], extra={"purposes": "analytics"}),
        # Expired 10 s ago: inside the verifier's leeway, but nothing is left to issue.
        "expired within leeway": idp_token("ana", ["analyst"], now=now - 70, ttl=60),
    }
    for label, subject in cases.items():
        reply = post_form(demo, form(subject, "analytics"))
        assert reply.status == 400 and reply.json["error"] == "invalid_grant", (label, reply.raw)
        assert_refused(reply, "invalid_grant", subject)


def test_revoked_subject_token_is_invalid_grant(demo_sidecar: Sidecar) -> None:
    subject = idp_token("ana", ["analyst"])
    assert_granted(post_form(demo_sidecar, form(subject, "analytics")), "analytics")
    jti = payload_of(subject)["jti"]
    admin = demo_token("root", ("admin",), "administration")
    revoked = post_json(
        admin_url(demo_sidecar),
        {
            "query": 'mutation($j: ID!) { revokeToken(jti: $j, reason: "test") }',
            "variables": {"j": jti},
        },
        token=admin,
    )
    assert revoked.status == 200 and revoked.json["data"]["revokeToken"] is True, revoked.raw
    assert_refused(post_form(demo_sidecar, form(subject, "analytics")), "invalid_grant", subject)

    # A revocation written to the store by another replica applies to the next exchange too.
    other = idp_token("ana", ["analyst"])
    assert_granted(post_form(demo_sidecar, form(other, "analytics")), "analytics")
    assert demo_sidecar.state.store is not None
    revoke_token(demo_sidecar.state.store, payload_of(other)["jti"], revoked_by="replica-2")
    assert_refused(post_form(demo_sidecar, form(other, "analytics")), "invalid_grant", other)


def test_every_exchange_is_audited(demo_sidecar: Sidecar) -> None:
    subject = idp_token("ana", ["analyst"])
    #: (reply, status, detail prefix, sub, purpose); sub ... = not checked here (see the xfail).
    calls: list[tuple[Reply, int, str, Any, str | None]] = []

    def call(fields: Any, status: int, detail: str, sub: Any, purpose: str | None) -> None:
        calls.append((post_form(demo_sidecar, fields), status, detail, sub, purpose))

    call(form(subject, "analytics"), 200, "issued jti ", "ana", "analytics")
    call(form(subject, "administration"), 400, "refused: invalid_scope", ..., "administration")
    call(form("garbage", "analytics"), 400, "refused: invalid_grant", None, "analytics")
    call(form(subject, "marketing"), 400, "refused: invalid_scope", None, "marketing")
    call({**form(subject), "grant_type": "x"}, 400, "refused: unsupported_grant_type", None, None)
    call({**form(subject), "resource": "r"}, 400, "refused: invalid_target", None, None)
    json_body = http(
        "POST",
        exchange_url(demo_sidecar),
        body=codec.dumps(form(subject)),
        headers={"Content-Type": "application/json"},
    )
    calls.append((json_body, 400, "refused: invalid_request", None, None))

    records = {r.request_id: r for r in exchange_audit(demo_sidecar)}
    assert len(records) == len(calls)
    for reply, status, detail, sub, purpose in calls:
        assert reply.status == status
        record = records[reply.headers["X-Request-Id"]]
        assert record.status == status
        assert record.detail is not None and record.detail.startswith(detail), record.detail
        assert record.purpose == purpose
        if sub is not ...:
            assert (record.sub, record.tenant) == (sub, "demo" if sub else None)
        assert record.mode == "enforce"
        assert record.policy_version == demo_sidecar.state.policy_version()
        assert record.operation_type is None and record.document_hash is None
        assert subject not in (record.detail or "")
    # The granted record names the issued token's jti.
    granted = records[calls[0][0].headers["X-Request-Id"]]
    assert granted.detail == f"issued jti {payload_of(calls[0][0].json['access_token'])['jti']}"
    assert demo_sidecar.state.store is not None
    assert AuditLog(demo_sidecar.state.store).verify().ok
    metrics = demo_sidecar.get("/metrics").raw.decode()
    assert 'code="EXCHANGE_INVALID_SCOPE"' in metrics
    assert 'code="EXCHANGE_INVALID_GRANT"' in metrics


def test_a_policy_refusal_is_audited_under_the_verified_subject(demo_sidecar: Sidecar) -> None:
    subject = idp_token("ana", ["analyst"])
    reply = post_form(demo_sidecar, form(subject, "administration"))
    assert_refused(reply, "invalid_scope", subject)
    records = {r.request_id: r for r in exchange_audit(demo_sidecar)}
    record = records[reply.headers["X-Request-Id"]]
    assert (record.status, record.purpose) == (400, "administration")
    assert (record.sub, record.tenant) == ("ana", "demo")


# -- property -----------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    roles=st.lists(st.sampled_from(ROLES), unique=True, max_size=4),
    purpose=st.sampled_from([*PURPOSE_ROLES, "marketing"]),
)
def test_property_granted_exactly_when_the_policy_allows(
    demo: Sidecar, roles: list[str], purpose: str
) -> None:
    subject = idp_token("prop", roles)
    reply = post_form(demo, form(subject, purpose))
    allowed = bool(PURPOSE_ROLES.get(purpose, frozenset()) & set(roles))
    if not allowed:
        assert_refused(reply, "invalid_scope", subject)
        return
    token = assert_granted(reply, purpose)["access_token"]
    claims = demo.state.verifier.verify(token)
    assert claims.purpose == purpose and claims.roles == tuple(sorted(roles))
    served = demo.query(PEOPLE_QUERY, token)
    assert served.status == 200 and served.json["data"]["people"], served.raw


# -- production configuration -------------------------------------------------------------------

IDP_ISSUER = "https://login.idp.example.test/v2.0"
IDP_AUDIENCE = "api://intelgraph-token-exchange"


class ProductionKeys:
    """An IdP key with its JWKS file; the exchange signing key file; auth.jwks with both keys."""

    def __init__(self, base: Path, test_keys: SigningKeys) -> None:
        base.mkdir(parents=True, exist_ok=True)
        self.idp = generate_signing_key("EdDSA", kid="idp-1")
        self.idp_jwks = base / "idp-jwks.json"
        self.idp_jwks.write_bytes(codec.dumps(public_jwks(self.idp)))
        self.signing = generate_signing_key("ES256", kid="exchange-1")
        self.signing_file = base / "exchange-key.json"
        self.signing_file.write_text(self.signing.export_private())
        auth_jwks = base / "auth-jwks.json"
        auth_jwks.write_bytes(codec.dumps(public_jwks(test_keys.key, self.signing)))
        #: The test access-token key, verified against a JWKS holding both public keys.
        self.auth = SigningKeys(test_keys.key, auth_jwks)

    def settings(self, **claims: Any) -> dict[str, Any]:
        """Overrides enabling token exchange with this IdP and the given claim mapping."""
        out: dict[str, Any] = {
            "token_exchange.enabled": True,
            "token_exchange.signing_key_file": str(self.signing_file),
            "token_exchange.subject.jwks": str(self.idp_jwks),
            "token_exchange.subject.issuer": IDP_ISSUER,
            "token_exchange.subject.audience": IDP_AUDIENCE,
        }
        out.update({f"token_exchange.subject.claims.{k}": v for k, v in claims.items()})
        return out

    def token(self, roles: Sequence[str] = (), **kwargs: Any) -> str:
        """A broad token of this IdP."""
        return idp_token(
            kwargs.pop("sub", "user-1"),
            roles,
            key=self.idp,
            kid="idp-1",
            issuer=IDP_ISSUER,
            audience=IDP_AUDIENCE,
            **kwargs,
        )


@pytest.fixture(scope="module")
def prod_keys(test_keys: SigningKeys, tmp_path_factory: pytest.TempPathFactory) -> ProductionKeys:
    return ProductionKeys(tmp_path_factory.mktemp("prod-keys"), test_keys)


@pytest.fixture(scope="module")
def entra(
    upstream: RecordingUpstream,
    prod_keys: ProductionKeys,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Sidecar]:
    running = start_sidecar(
        upstream.graphql_url,
        prod_keys.auth,
        tmp_path_factory.mktemp("entra"),
        **prod_keys.settings(tenant="tid"),
    )
    yield running
    running.server.stop()


def test_entra_style_tenant_mapping(entra: Sidecar, prod_keys: ProductionKeys) -> None:
    subject = prod_keys.token(
        ["investigator"], sub="oid-42", tenant="not-this-one", extra={"tid": "contoso"}
    )
    body = assert_granted(post_form(entra, form(subject, "investigation")), "investigation")
    token = body["access_token"]
    claims = entra.state.verifier.verify(token)
    assert (claims.sub, claims.tenant, claims.roles) == ("oid-42", "contoso", ("investigator",))
    assert (claims.iss, claims.aud, claims.purpose) == (ISSUER, AUDIENCE, "investigation")
    # Signed by the exchange key (ES256, kid exchange-1), not the access-token test key.
    header = header_of(token)
    assert (header["alg"], header["kid"]) == ("ES256", "exchange-1")
    served = entra.query(PEOPLE_QUERY, token)
    assert served.status == 200 and len(served.json["data"]["people"]) == 2, served.raw

    # Without the mapped claim there is no tenant: refused, whatever `tenant` says.
    no_tid = prod_keys.token(["investigator"], tenant="not-this-one")
    assert_refused(post_form(entra, form(no_tid, "investigation")), "invalid_grant", no_tid)
    # A token signed with the access-token key, or the demo key, is not the IdP's.
    forged = idp_token(
        "oid-42",
        ["investigator"],
        key=prod_keys.auth.key,
        kid="test-key-1",
        issuer=IDP_ISSUER,
        audience=IDP_AUDIENCE,
        extra={"tid": "contoso"},
    )
    assert_refused(post_form(entra, form(forged, "investigation")), "invalid_grant", forged)
    demo_signed = idp_token(
        "oid-42",
        ["investigator"],
        issuer=IDP_ISSUER,
        audience=IDP_AUDIENCE,
        extra={"tid": "contoso"},
    )
    assert_refused(
        post_form(entra, form(demo_signed, "investigation")), "invalid_grant", demo_signed
    )
    # The production sidecar serves no demo JWKS.
    assert entra.get("/.well-known/jwks.json").status == 404


def test_okta_style_groups_and_fixed_tenant(
    upstream: RecordingUpstream, prod_keys: ProductionKeys, tmp_path: Path
) -> None:
    running = start_sidecar(
        upstream.graphql_url,
        prod_keys.auth,
        tmp_path / "okta",
        **prod_keys.settings(roles="groups", tenant=None, fixed_tenant="acme"),
    )
    try:
        subject = prod_keys.token(
            ["admin"],  # the `roles` claim is not read: groups are
            sub="00u1okta",
            tenant="ignored",
            extra={"groups": ["analyst", "Everyone"]},
        )
        body = assert_granted(post_form(running, form(subject, "analytics")), "analytics")
        claims = running.state.verifier.verify(body["access_token"])
        assert (claims.sub, claims.tenant) == ("00u1okta", "acme")
        assert claims.roles == ("Everyone", "analyst")
        cohort = running.query(COHORT_QUERY, body["access_token"])
        assert cohort.status == 200 and cohort.json["data"]["cohort"], cohort.raw
        # `roles` says admin but groups do not: no administration token.
        assert_refused(post_form(running, form(subject, "administration")), "invalid_scope")
        # The grant is audited under the mapped sub and the fixed tenant.
        granted = [r for r in exchange_audit(running) if r.status == 200]
        assert [(r.sub, r.tenant, r.purpose) for r in granted] == [
            ("00u1okta", "acme", "analytics")
        ]
    finally:
        running.server.stop()


def test_enabled_without_a_signing_key_is_a_config_error(
    upstream: RecordingUpstream, prod_keys: ProductionKeys, tmp_path: Path
) -> None:
    settings_ = prod_keys.settings()
    del settings_["token_exchange.signing_key_file"]
    with pytest.raises(ConfigError, match="signing_key_file"):
        sidecar_config(upstream.graphql_url, prod_keys.auth, tmp_path, **settings_)
    # The same straight through load_config, and a missing subject issuer.
    with pytest.raises(ConfigError, match=r"subject\.issuer"):
        load_config(
            environ={},
            overrides={
                "auth.jwks": str(prod_keys.auth.jwks_path),
                "auth.issuer": ISSUER,
                "auth.audience": AUDIENCE,
                "token_exchange.enabled": True,
                "token_exchange.signing_key_file": str(prod_keys.signing_file),
                "token_exchange.subject.jwks": str(prod_keys.idp_jwks),
                "token_exchange.subject.audience": IDP_AUDIENCE,
            },
        )
    with pytest.raises(ConfigError, match="fixed_tenant"):
        sidecar_config(
            upstream.graphql_url, prod_keys.auth, tmp_path, **prod_keys.settings(tenant=None)
        )


def test_signing_key_missing_from_auth_jwks_refuses_to_start(
    upstream: RecordingUpstream,
    prod_keys: ProductionKeys,
    test_keys: SigningKeys,
    tmp_path: Path,
) -> None:
    # auth.jwks holds only the access-token key: exchanged tokens would never verify.
    config = sidecar_config(upstream.graphql_url, test_keys, tmp_path, **prod_keys.settings())
    with pytest.raises(ConfigError, match=r"not in auth\.jwks"):
        SidecarState(config)
    # And with it present the same configuration builds an exchange.
    ok = sidecar_config(upstream.graphql_url, prod_keys.auth, tmp_path, **prod_keys.settings())
    assert SidecarState(ok).exchange is not None


def test_exchange_disabled_by_default(sidecar: Sidecar, prod_keys: ProductionKeys) -> None:
    assert sidecar.state.exchange is None
    reply = post_form(sidecar, form(prod_keys.token(["analyst"]), "analytics"))
    assert reply.status in (404, 405), reply.raw
    assert b"access_token" not in reply.raw


def test_the_identity_providers_rotated_keys_are_picked_up(
    upstream: RecordingUpstream, test_keys: SigningKeys, tmp_path: Path
) -> None:
    """The IdP's JWKS is read again like auth.jwks: a rotated key works without a restart."""
    keys = ProductionKeys(tmp_path / "keys", test_keys)
    running = start_sidecar(
        upstream.graphql_url,
        keys.auth,
        tmp_path / "rotating",
        **keys.settings(),
        auth__jwks_refresh_seconds=0.1,
    )
    try:
        assert_granted(post_form(running, form(keys.token(["analyst"]), "analytics")), "analytics")
        rotated = generate_signing_key("EdDSA", kid="idp-2")
        new_subject = idp_token(
            "user-1",
            ["analyst"],
            key=rotated,
            kid="idp-2",
            issuer=IDP_ISSUER,
            audience=IDP_AUDIENCE,
        )
        assert_refused(post_form(running, form(new_subject, "analytics")), "invalid_grant")
        # The provider publishes the new key next to the old one.
        keys.idp_jwks.write_bytes(codec.dumps(public_jwks(keys.idp, rotated)))
        assert wait_until(
            lambda: post_form(running, form(new_subject, "analytics")).status == 200, timeout=5
        )
    finally:
        running.server.stop()
