"""Token exchange (RFC 8693) end to end in-process: a real Ed25519 "identity provider" key signs
subject tokens, the shipped Rego exchange policy decides (regorus), a separate ES256 key signs the
purpose-bound access tokens, and a `TokenVerifier` checks what comes out."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from jwcrypto import jws

from intelgraph_privacy import codec
from intelgraph_privacy.errors import ConfigError
from intelgraph_privacy.policy.engine import PolicyEngine
from intelgraph_privacy.tokens import (
    ClaimMapping,
    ExchangeError,
    ExchangeResult,
    JwtVerifier,
    KeySet,
    PurposeVocabulary,
    TokenError,
    TokenExchange,
    TokenVerifier,
    generate_signing_key,
    issue_token,
    load_purposes,
    public_jwks,
)

ROOT = Path(__file__).resolve().parents[1]
IDP_ISSUER = "https://login.idp.example.test/v2.0"
EXCHANGE_AUDIENCE = "intelgraph-token-exchange"
ISSUER = "https://intelgraph.example.test"
AUDIENCE = "intelgraph-graph-api"
NOW = 1_800_000_000
LEEWAY = 30

# The identity provider's key and ours are different keys (and key types).
IDP_KEY = generate_signing_key("EdDSA", kid="idp-1")
OTHER_IDP_KEY = generate_signing_key("EdDSA", kid="idp-1")  # same kid, another key
SIGNING_KEY = generate_signing_key("ES256", kid="exchange-1")
VOCABULARY = load_purposes(ROOT / "presets" / "purposes.yaml")

# What rego/exchange.rego says, written out independently: which roles may act for which purpose.
PURPOSE_ROLES: dict[str, frozenset[str]] = {
    "investigation": frozenset({"investigator"}),
    "analytics": frozenset({"analyst", "admin"}),
    "export": frozenset({"analyst", "admin"}),
    "administration": frozenset({"admin", "privacy-officer"}),
    "audit": frozenset({"auditor", "admin", "privacy-officer"}),
    "support": frozenset({"support"}),
}
ROLES = ["investigator", "analyst", "admin", "privacy-officer", "auditor", "support", "guest"]


@pytest.fixture(scope="module")
def policy() -> PolicyEngine:
    """The shipped policy bundle (compiled and self-tested once for the module)."""
    return PolicyEngine(ROOT / "rego")


def subject_token(
    key: Any = IDP_KEY,
    *,
    roles: Any = ("analyst",),
    tenant: str = "t1",
    purpose: str | None = None,
    issuer: str = IDP_ISSUER,
    audience: str = EXCHANGE_AUDIENCE,
    ttl: int = 3600,
    now: int = NOW,
    extra: dict[str, Any] | None = None,
) -> str:
    """A broad identity-provider token from issue_token (no purpose unless one is given)."""
    return issue_token(
        key,
        sub="alice",
        tenant=tenant,
        roles=list(roles),
        purpose=purpose,
        issuer=issuer,
        audience=audience,
        ttl=ttl,
        now=now,
        extra=extra,
    )


#: In `idp_token` claims: leave this claim out.
DROP = object()


def idp_token(claims: dict[str, Any], *, ttl: int = 3600) -> str:
    """A subject token shaped like another provider's: exactly `claims` plus iss/aud/iat/exp.

    Signed directly (not with issue_token), so the payload may carry any provider's claims and
    odd values (issue_token always writes `tenant` and `roles` in our shape).
    """
    payload = {
        "iss": IDP_ISSUER,
        "aud": EXCHANGE_AUDIENCE,
        "sub": "alice",
        "iat": NOW,
        "exp": NOW + ttl,
        **claims,
    }
    payload = {k: v for k, v in payload.items() if v is not DROP}
    token = jws.JWS(codec.dumps(payload))
    header = {"alg": "EdDSA", "typ": "JWT", "kid": IDP_KEY["kid"]}
    token.add_signature(IDP_KEY, alg="EdDSA", protected=codec.dumps(header).decode())
    return str(token.serialize(compact=True))


def make_exchange(
    policy: PolicyEngine,
    *,
    ttl: int = 300,
    mapping: ClaimMapping | None = None,
    now: float = NOW,
    purposes: PurposeVocabulary = VOCABULARY,
) -> TokenExchange:
    """An exchange whose subject verifier trusts IDP_KEY, and which signs with SIGNING_KEY."""
    subject_verifier = JwtVerifier(
        KeySet.from_json(public_jwks(IDP_KEY)),
        issuer=IDP_ISSUER,
        audience=EXCHANGE_AUDIENCE,
        leeway=LEEWAY,
        clock=lambda: now,
    )
    return TokenExchange(
        subject_verifier,
        policy,
        SIGNING_KEY,
        issuer=ISSUER,
        audience=AUDIENCE,
        purposes=purposes,
        ttl=ttl,
        mapping=mapping,
        clock=lambda: now,
    )


def access_verifier(now: float = NOW) -> TokenVerifier:
    """What the sidecar runs: the signing key's public JWKS, our issuer and audience."""
    return TokenVerifier(
        KeySet.from_json(public_jwks(SIGNING_KEY)),
        issuer=ISSUER,
        audience=AUDIENCE,
        purposes=VOCABULARY,
        leeway=LEEWAY,
        clock=lambda: now,
    )


def refused(exchange: TokenExchange, token: str, purpose: str, error: str) -> ExchangeError:
    with pytest.raises(ExchangeError) as info:
        exchange.exchange(token, purpose)
    assert info.value.error == error, (info.value.error, info.value.description)
    assert info.value.description == str(info.value)
    if token:
        assert token not in str(info.value)  # the subject token is never echoed
    return info.value


# --- which role may act for which purpose -----------------------------------------------------


@pytest.mark.parametrize(
    ("role", "purpose"),
    [
        ("investigator", "investigation"),
        ("analyst", "analytics"),
        ("analyst", "export"),
        ("admin", "administration"),
        ("privacy-officer", "administration"),
    ],
)
def test_allowed_exchange_issues_a_purpose_bound_token(
    policy: PolicyEngine, role: str, purpose: str
) -> None:
    subject = subject_token(roles=[role, "staff"], extra={"region": "eu", "clearance": "high"})
    result = make_exchange(policy).exchange(subject, purpose)
    assert isinstance(result, ExchangeResult)
    assert (result.purpose, result.sub, result.tenant) == (purpose, "alice", "t1")
    claims, principal = access_verifier().authenticate(result.access_token)
    assert claims.purpose == purpose and principal.purpose == purpose
    assert (claims.sub, claims.tenant, claims.roles) == (
        "alice",
        "t1",
        tuple(sorted([role, "staff"])),
    )
    assert (claims.iss, claims.aud) == (ISSUER, AUDIENCE)
    assert (claims.region, claims.clearance) == ("eu", "high")  # carried over from the subject
    assert claims.jti == result.jti and len(result.jti) >= 16
    assert (claims.iat, claims.exp) == (NOW, NOW + result.expires_in)
    # The subject token itself is no access token: it names no purpose.
    with pytest.raises(TokenError):
        access_verifier().verify(subject)


@pytest.mark.parametrize(
    ("role", "purpose"),
    [
        ("investigator", "analytics"),
        ("investigator", "administration"),
        ("analyst", "investigation"),
        ("analyst", "administration"),
        ("admin", "investigation"),
        ("admin", "support"),
        ("privacy-officer", "analytics"),
        ("privacy-officer", "export"),
        ("auditor", "export"),
        ("guest", "analytics"),
    ],
)
def test_refused_exchange_is_invalid_scope(policy: PolicyEngine, role: str, purpose: str) -> None:
    error = refused(make_exchange(policy), subject_token(roles=[role]), purpose, "invalid_scope")
    assert repr(purpose) in str(error)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("purpose", sorted(PURPOSE_ROLES))
def test_every_single_role_and_purpose(policy: PolicyEngine, role: str, purpose: str) -> None:
    exchange, subject = make_exchange(policy), subject_token(roles=[role])
    if role in PURPOSE_ROLES[purpose]:
        assert access_verifier().verify(exchange.exchange(subject, purpose).access_token).purpose
    else:
        refused(exchange, subject, purpose, "invalid_scope")


def test_a_subject_without_roles_gets_nothing(policy: PolicyEngine) -> None:
    exchange = make_exchange(policy)
    for subject in (subject_token(roles=[]), idp_token({"tenant": "t1"})):
        for purpose in VOCABULARY:
            refused(exchange, subject, purpose, "invalid_scope")


@pytest.mark.parametrize(
    "purpose", ["marketing", "", "Analytics", "analytics ", "purpose:analytics"]
)
def test_a_purpose_outside_the_vocabulary_is_invalid_scope(
    policy: PolicyEngine, purpose: str
) -> None:
    error = refused(make_exchange(policy), subject_token(roles=ROLES), purpose, "invalid_scope")
    assert "vocabulary" in str(error)


def test_a_purpose_the_policy_knows_but_the_vocabulary_does_not(policy: PolicyEngine) -> None:
    # The vocabulary is checked first: the policy granting it is not enough.
    narrow = make_exchange(policy, purposes=PurposeVocabulary.of(["investigation"]))
    refused(narrow, subject_token(roles=["analyst"]), "analytics", "invalid_scope")
    assert narrow.exchange(subject_token(roles=["investigator"]), "investigation").purpose


def test_without_an_exchange_policy_nothing_is_issued(tmp_path: Path) -> None:
    bundle = tmp_path / "rego"
    shutil.copytree(ROOT / "rego", bundle)
    (bundle / "exchange.rego").unlink()
    (bundle / "exchange_test.rego").unlink()
    exchange = make_exchange(PolicyEngine(bundle))
    error = refused(exchange, subject_token(roles=["admin"]), "analytics", "invalid_scope")
    assert "could not be evaluated" in str(error)


# --- the subject token ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("garbage", lambda: "not-a-token"),
        ("empty", lambda: ""),
        ("other-key", lambda: subject_token(OTHER_IDP_KEY)),
        ("our-own-key", lambda: subject_token(SIGNING_KEY)),
        ("expired", lambda: subject_token(ttl=60, now=NOW - 60 - LEEWAY)),
        ("long-expired", lambda: subject_token(ttl=3600, now=NOW - 7200)),
        ("future", lambda: subject_token(now=NOW + 3600)),
        ("wrong-issuer", lambda: subject_token(issuer="https://evil.example.test")),
        ("issuer-with-slash", lambda: subject_token(issuer=IDP_ISSUER + "/")),
        ("wrong-audience", lambda: subject_token(audience=AUDIENCE)),
    ],
)
def test_a_bad_subject_token_is_invalid_grant(policy: PolicyEngine, name: str, make: Any) -> None:
    error = refused(make_exchange(policy), make(), "analytics", "invalid_grant")
    assert str(error).startswith("the subject token is invalid"), name


def test_an_access_token_is_not_a_subject_token(policy: PolicyEngine) -> None:
    # A token this exchange issued cannot be traded in again (other key, issuer and audience).
    exchange = make_exchange(policy)
    issued = exchange.exchange(subject_token(roles=["analyst"]), "analytics").access_token
    refused(exchange, issued, "export", "invalid_grant")


@pytest.mark.parametrize(
    "changes",
    [
        {"sub": DROP},
        {"sub": None},
        {"sub": ""},
        {"sub": 5},
        {"tenant": DROP},
        {"tenant": None},
        {"tenant": ""},
        {"tenant": ["t1"]},
        {"roles": [1]},
        {"roles": [""]},
        {"roles": {"admin": True}},
        {"roles": None},
        {"roles": 7},
        {"region": 7},
        {"region": ""},
        {"clearance": "top-secret"},
        {"clearance": 3},
        {"purposes": "analytics"},  # not a list
        {"purposes": [1]},
        {"purposes": [""]},
        {"purpose": None},
        {"purpose": ""},
        {"purpose": ["analytics"]},
    ],
)
def test_subject_claims_that_do_not_fit_are_invalid_grant(
    policy: PolicyEngine, changes: dict[str, Any]
) -> None:
    claims: dict[str, Any] = {"tenant": "t1", "roles": ["analyst", "admin"]} | changes
    token = idp_token(claims)
    refused(make_exchange(policy), token, "analytics", "invalid_grant")


# --- narrowing --------------------------------------------------------------------------------


def test_subject_purposes_only_narrow(policy: PolicyEngine) -> None:
    exchange = make_exchange(policy)
    # An admin may get analytics, export, administration and audit; a token naming purposes
    # limits that to the named ones.
    limited = subject_token(roles=["admin"], extra={"purposes": ["analytics", "audit"]})
    assert exchange.exchange(limited, "analytics").purpose == "analytics"
    assert exchange.exchange(limited, "audit").purpose == "audit"
    for purpose in ("export", "administration"):
        refused(exchange, limited, purpose, "invalid_scope")
    single = subject_token(roles=["admin"], purpose="export")
    assert exchange.exchange(single, "export").purpose == "export"
    refused(exchange, single, "analytics", "invalid_scope")
    # Both claims: their union.
    both = subject_token(roles=["admin"], purpose="export", extra={"purposes": ["audit"]})
    assert {exchange.exchange(both, p).purpose for p in ("export", "audit")} == {"export", "audit"}
    refused(exchange, both, "analytics", "invalid_scope")


def test_subject_purposes_never_widen(policy: PolicyEngine) -> None:
    exchange = make_exchange(policy)
    # Naming a purpose the role may not have does not grant it.
    widened = subject_token(roles=["analyst"], extra={"purposes": ["investigation", "support"]})
    for purpose in ("investigation", "support", "analytics"):
        refused(exchange, widened, purpose, "invalid_scope")
    # An empty list limits the token to nothing.
    empty = subject_token(roles=["admin"], extra={"purposes": []})
    for purpose in VOCABULARY:
        refused(exchange, empty, purpose, "invalid_scope")


# --- lifetime ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ttl", "purpose", "subject_left", "expected"),
    [
        (300, "analytics", 3600, 300),  # the exchange's ttl
        (3600, "analytics", 7200, 3600),  # purpose max 3600
        (3600, "export", 7200, 900),  # the purpose's max_ttl_seconds
        (3600, "administration", 7200, 900),
        (600, "export", 7200, 600),
        (3600, "analytics", 120, 120),  # never outlives the subject token
        (300, "export", 1, 1),
    ],
)
def test_lifetime_is_the_smallest_limit(
    policy: PolicyEngine, ttl: int, purpose: str, subject_left: int, expected: int
) -> None:
    role = "admin" if purpose == "administration" else "analyst"
    subject = subject_token(roles=[role], ttl=subject_left + 100, now=NOW - 100)
    result = make_exchange(policy, ttl=ttl).exchange(subject, purpose)
    assert result.expires_in == expected
    claims = access_verifier().verify(result.access_token)
    assert claims.exp - claims.iat == expected and claims.iat == NOW
    assert claims.exp <= NOW + subject_left  # the subject's exp
    # And it really ends then.
    assert access_verifier(NOW + expected + LEEWAY - 1).verify(result.access_token).sub == "alice"
    with pytest.raises(TokenError) as info:
        access_verifier(NOW + expected + LEEWAY).verify(result.access_token)
    assert info.value.reason == "expired"


@pytest.mark.parametrize("expired_ago", [0, 1, LEEWAY - 1])
def test_a_subject_that_expires_now_is_invalid_grant(
    policy: PolicyEngine, expired_ago: int
) -> None:
    # Still inside the verifier's leeway, so it verifies, but there is no lifetime left to give.
    subject = subject_token(roles=["analyst"], ttl=600, now=NOW - 600 - expired_ago)
    error = refused(make_exchange(policy), subject, "analytics", "invalid_grant")
    assert "expires now" in str(error)


def test_exchange_configuration_is_checked(policy: PolicyEngine) -> None:
    for ttl in (0, -1, 3601, 1.5, True):
        with pytest.raises(ConfigError, match="ttl"):
            make_exchange(policy, ttl=ttl)  # type: ignore[arg-type]
    assert make_exchange(policy, ttl=3600).ttl == 3600
    subject_verifier = make_exchange(policy).subject_verifier
    public = KeySet.from_json(public_jwks(SIGNING_KEY)).select("exchange-1").key
    with pytest.raises(ConfigError, match="private"):
        TokenExchange(
            subject_verifier,
            policy,
            public,
            issuer=ISSUER,
            audience=AUDIENCE,
            purposes=VOCABULARY,
        )
    with pytest.raises(ConfigError, match="tenant"):
        ClaimMapping(tenant=None)


# --- identity provider claim mappings ----------------------------------------------------------


def test_entra_style_mapping(policy: PolicyEngine) -> None:
    mapping = ClaimMapping(tenant="tid", roles="roles")
    exchange = make_exchange(policy, mapping=mapping)
    token = idp_token(
        {
            "sub": "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ",
            "tid": "72f988bf-86f1-41af-91ab-2d7cd011db47",
            "oid": "00000000-0000-0000-66f3-3332eca7ea81",
            "roles": ["investigator"],
            "name": "Alice",
            "ver": "2.0",
        }
    )
    result = exchange.exchange(token, "investigation")
    assert result.tenant == "72f988bf-86f1-41af-91ab-2d7cd011db47"
    claims = access_verifier().verify(result.access_token)
    assert claims.tenant == "72f988bf-86f1-41af-91ab-2d7cd011db47"
    assert claims.sub == "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ"
    assert claims.roles == ("investigator",)
    assert "oid" not in (claims.model_extra or {})  # provider claims are not copied over
    # No tid: no tenant, and no token (a `tenant` claim is not consulted instead).
    no_tid = idp_token({"tenant": "t1", "roles": ["investigator"]})
    error = refused(exchange, no_tid, "investigation", "invalid_grant")
    assert "'tid'" in str(error)


def test_okta_style_mapping_with_a_fixed_tenant(policy: PolicyEngine) -> None:
    mapping = ClaimMapping(tenant=None, roles="groups", fixed_tenant="acme")
    exchange = make_exchange(policy, mapping=mapping)
    token = idp_token({"groups": ["Everyone", "analyst"], "tenant": "someone-else"})
    result = exchange.exchange(token, "export")
    claims = access_verifier().verify(result.access_token)
    assert (claims.tenant, result.tenant) == ("acme", "acme")  # a tenant claim is not read
    assert claims.roles == ("Everyone", "analyst")
    # The roles claim is `groups`: a `roles` claim grants nothing here.
    refused(exchange, idp_token({"roles": ["admin"]}), "administration", "invalid_scope")


def test_fixed_tenant_is_the_fallback_when_the_tenant_claim_is_absent(
    policy: PolicyEngine,
) -> None:
    exchange = make_exchange(policy, mapping=ClaimMapping(roles="groups", fixed_tenant="acme"))
    assert exchange.exchange(idp_token({"groups": ["analyst"]}), "analytics").tenant == "acme"
    with_claim = idp_token({"groups": ["analyst"], "tenant": "t9"})
    assert exchange.exchange(with_claim, "analytics").tenant == "t9"


@pytest.mark.parametrize(
    ("roles", "expected"),
    [
        ("analyst", ("analyst",)),
        ("analyst auditor", ("analyst", "auditor")),
        ("  auditor   analyst  analyst ", ("analyst", "auditor")),
    ],
)
def test_roles_as_a_space_separated_string(
    policy: PolicyEngine, roles: str, expected: tuple[str, ...]
) -> None:
    exchange = make_exchange(policy, mapping=ClaimMapping(roles="scp"))
    result = exchange.exchange(idp_token({"tenant": "t1", "scp": roles}), "analytics")
    assert access_verifier().verify(result.access_token).roles == expected


def test_an_empty_roles_string_grants_nothing(policy: PolicyEngine) -> None:
    exchange = make_exchange(policy, mapping=ClaimMapping(roles="scp"))
    refused(exchange, idp_token({"tenant": "t1", "scp": "   "}), "analytics", "invalid_scope")


# --- the response -----------------------------------------------------------------------------


def test_response_has_the_rfc8693_fields(policy: PolicyEngine) -> None:
    result = make_exchange(policy).exchange(subject_token(roles=["analyst"]), "export")
    body = result.response()
    assert body == {
        "access_token": result.access_token,
        "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "purpose:export",
    }
    assert type(body["expires_in"]) is int
    assert access_verifier().verify(body["access_token"]).purpose == "export"


def test_every_exchange_gets_a_fresh_token_id(policy: PolicyEngine) -> None:
    exchange, subject = make_exchange(policy), subject_token(roles=["analyst"])
    results = [exchange.exchange(subject, "analytics") for _ in range(5)]
    assert len({r.jti for r in results}) == 5
    assert len({r.access_token for r in results}) == 5


# --- the property -----------------------------------------------------------------------------

PURPOSE_NAMES = sorted(PURPOSE_ROLES)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    roles=st.lists(st.sampled_from(ROLES), max_size=4),
    purpose=st.sampled_from([*PURPOSE_NAMES, "marketing", "Audit"]),
    narrowed=st.none() | st.lists(st.sampled_from(PURPOSE_NAMES), max_size=3),
    ttl=st.integers(min_value=1, max_value=3600),
    subject_left=st.integers(min_value=-LEEWAY + 1, max_value=7200),
    tenant=st.text(alphabet="abcdefghij0123456789-", min_size=1, max_size=12),
)
def test_property_exchange_issues_exactly_what_is_allowed(
    policy: PolicyEngine,
    roles: list[str],
    purpose: str,
    narrowed: list[str] | None,
    ttl: int,
    subject_left: int,
    tenant: str,
) -> None:
    subject_exp = NOW + subject_left
    extra = {"purposes": narrowed} if narrowed is not None else None
    subject = subject_token(
        roles=roles, tenant=tenant, ttl=subject_left + 600, now=NOW - 600, extra=extra
    )
    allowed = (
        purpose in PURPOSE_ROLES
        and bool(PURPOSE_ROLES[purpose] & set(roles))
        and (narrowed is None or purpose in narrowed)
    )
    try:
        result = make_exchange(policy, ttl=ttl).exchange(subject, purpose)
    except ExchangeError as exc:
        event(f"refused: {exc.error}")  # --hypothesis-show-statistics shows the mix of outcomes
        if not allowed:
            assert exc.error == "invalid_scope"
        else:  # allowed, but the subject token has no life left to give
            assert (exc.error, subject_left <= 0) == ("invalid_grant", True)
        return
    event("issued")
    assert allowed and subject_left > 0
    claims, principal = access_verifier().authenticate(result.access_token)
    assert claims.purpose == purpose == result.purpose
    assert (claims.sub, claims.tenant) == ("alice", tenant)
    assert claims.roles == tuple(sorted(set(roles)))
    assert principal.roles == tuple(sorted(set(roles)))
    assert claims.exp <= subject_exp
    assert claims.exp - claims.iat == result.expires_in
    assert result.expires_in == min(ttl, VOCABULARY[purpose].max_ttl_seconds, subject_left)


def test_an_empty_fixed_tenant_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="tenant"):
        ClaimMapping(tenant=None, fixed_tenant="")
