"""Hostile tokens against the demo sidecar, end to end over real HTTP on loopback.

Every forged token is real: signed with the public demo key, an attacker's Ed25519 key, or an
HMAC secret taken from the demo public key, or left unsigned. Each one is sent to the demo
sidecar (demo key, demo issuer and audience, fresh SQLite store) in front of the recording
sample graph, and must be refused with 401, `WWW-Authenticate: Bearer ...`, a GraphQL-shaped
UNAUTHENTICATED error without `data`, no upstream call, an audit record, and a message that does
not quote the token. /admin/graphql refuses the same tokens with 401; /token/exchange refuses
bad subject tokens with RFC 6749 `invalid_grant`. Hypothesis then fuzzes token strings, mutations
of valid tokens, Authorization header values and extra headers against one module-wide sidecar.

Hand-signed controls (the same forging code, used honestly) are accepted: a refusal is caused by
the hostile property, not by the way the test builds tokens.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from aiohttp import web
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from jwcrypto import jwk
from jwcrypto.jwa import JWA

from intelgraph_privacy import codec
from intelgraph_privacy.audit import AuditLog
from intelgraph_privacy.store import Store
from intelgraph_privacy.tokens import (
    DEMO_AUDIENCE,
    DEMO_EXCHANGE_AUDIENCE,
    DEMO_IDP_ISSUER,
    DEMO_ISSUER,
    DEMO_KID,
    demo_private_key,
    revoked_token_ids,
)
from tests.servers import AppThread, Reply, http, post_json
from tests.sidecar_env import RecordingUpstream, Sidecar, recording_app, start_demo_sidecar

QUERY = '{ person(id: "P-00001") { name } }'
EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"
#: The verifier's size cap (auth.max_token_bytes default) and aiohttp's header-value cap.
MAX_TOKEN_BYTES = 8192
AIOHTTP_MAX_FIELD_SIZE = 8190

DEMO_KEY = demo_private_key()
# Module-level keys: generating them per example would dominate the fuzzing time.
ATTACKER_KEY = jwk.JWK.generate(kty="OKP", crv="Ed25519", kid="attacker-1")
#: An attacker key that claims the demo key's kid.
IMPOSTOR_KEY = jwk.JWK.generate(kty="OKP", crv="Ed25519", kid=DEMO_KID)

Claims = dict[str, Any]
Forge = Callable[[Claims], str]


# -- forging ---------------------------------------------------------------------------------


def b64(raw: bytes) -> str:
    """base64url without padding, as JWS compact serialisation uses."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def b64json(value: Any) -> str:
    return b64(codec.dumps(value))


def unb64json(segment: str) -> Any:
    return codec.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def forge(
    claims: Claims,
    *,
    key: jwk.JWK = DEMO_KEY,
    header: dict[str, Any] | None = None,
    alg: str = "EdDSA",
) -> str:
    """A compact JWS over exactly these header and claims, signed by `key` with `alg`.

    Built by hand (not jwcrypto's JWS object) so that headers jwcrypto would refuse to sign
    (crit, jku, ...) can still carry a genuine signature.
    """
    protected = {"alg": "EdDSA", "typ": "JWT", "kid": key.get("kid")} if header is None else header
    protected = {k: v for k, v in protected.items() if v is not None}
    signing_input = f"{b64json(protected)}.{b64json(claims)}"
    signature = JWA.signing_alg(alg).sign(key, signing_input.encode("ascii"))
    return f"{signing_input}.{b64(signature)}"


def hs256(claims: Claims, secret: bytes) -> str:
    """An HS256 token: the classic confusion attack when `secret` is the verifier's public key."""
    signing_input = f"{b64json({'alg': 'HS256', 'typ': 'JWT', 'kid': DEMO_KID})}.{b64json(claims)}"
    mac = hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def unsigned(claims: Claims, header: dict[str, Any]) -> str:
    """alg none: header, claims and an empty signature."""
    return f"{b64json(header)}.{b64json(claims)}."


def access_claims(
    sub: str = "ana", roles: Iterable[str] = ("analyst",), purpose: str = "investigation"
) -> Claims:
    """A valid demo access token's claims (fresh jti, 10 minutes of life)."""
    now = int(time.time())
    return {
        "iss": DEMO_ISSUER,
        "aud": DEMO_AUDIENCE,
        "sub": sub,
        "tenant": "demo",
        "roles": list(roles),
        "purpose": purpose,
        "iat": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
    }


def admin_claims() -> Claims:
    return access_claims("root", ("admin",), "administration")


def idp_claims(sub: str = "ivan", roles: Iterable[str] = ("investigator",)) -> Claims:
    """A demo "identity provider" token's claims: broad (no purpose), for /token/exchange."""
    claims = access_claims(sub, roles)
    del claims["purpose"]
    return {**claims, "iss": DEMO_IDP_ISSUER, "aud": DEMO_EXCHANGE_AUDIENCE}


def public_key_secrets() -> dict[str, bytes]:
    """Every form of the demo public key an HS256 confusion attack might use as the secret."""
    public = jwk.JWK(**DEMO_KEY.export_public(as_dict=True))
    x = public.export_public(as_dict=True)["x"]
    return {
        "raw-x": base64.urlsafe_b64decode(x + "=" * (-len(x) % 4)),
        "x-base64url": x.encode("ascii"),
        "jwk-json": public.export_public().encode(),
        "jwk-json-sorted": codec.dumps(public.export_public(as_dict=True), sort_keys=True),
        "pem": public.export_to_pem(),
    }


def edited(token: str, **changes: Any) -> str:
    """The token with its payload changed and re-encoded, the original signature kept."""
    header, payload, signature = token.split(".")
    return f"{header}.{b64json({**unb64json(payload), **changes})}.{signature}"


def shifted(claims: Claims, **offsets: int) -> Claims:
    """Claims with times set relative to now (e.g. exp=-60: expired a minute ago)."""
    now = int(time.time())
    return {**claims, **{name: now + offset for name, offset in offsets.items()}}


def without(claims: Claims, name: str) -> Claims:
    return {k: v for k, v in claims.items() if k != name}


def attacker_headers(attacker_url: str, kid: str | None) -> dict[str, Any]:
    """Headers that would make a naive verifier fetch or trust the attacker's key."""
    return {
        "alg": "EdDSA",
        "typ": "JWT",
        "kid": kid,
        "jku": f"{attacker_url}/jwks.json",
        "x5u": f"{attacker_url}/cert.pem",
        "jwk": ATTACKER_KEY.export_public(as_dict=True),
    }


# Each hostile case: (id, forge from valid claims, fragment of the refusal message naming why).
HOSTILE: list[tuple[str, Forge, str]] = [
    ("alg-none", lambda c: unsigned(c, {"alg": "none", "typ": "JWT"}), "algorithm"),
    ("alg-none-with-kid", lambda c: unsigned(c, {"alg": "none", "kid": DEMO_KID}), "algorithm"),
    ("alg-NONE-uppercase", lambda c: unsigned(c, {"alg": "NONE"}), "algorithm"),
    (
        "alg-none-keeping-a-real-signature",
        lambda c: f"{b64json({'alg': 'none'})}.{forge(c).split('.', 1)[1]}",
        "algorithm",
    ),
    *[
        (f"hs256-public-key-as-secret-{name}", lambda c, s=secret: hs256(c, s), "algorithm")
        for name, secret in public_key_secrets().items()
    ],
    (
        "es256-header-on-the-eddsa-key",
        lambda c: forge(c, header={"alg": "ES256", "kid": DEMO_KID}),
        "algorithm",
    ),
    ("expired-beyond-leeway", lambda c: forge(shifted(c, iat=-3600, exp=-90)), "expired"),
    ("nbf-in-the-future", lambda c: forge(shifted(c, nbf=3600)), "not valid yet"),
    ("nbf-beyond-leeway", lambda c: forge(shifted(c, nbf=120)), "not valid yet"),
    ("iat-in-the-future", lambda c: forge(shifted(c, iat=3600, exp=7200)), "iat is in the future"),
    ("older-than-max-age", lambda c: forge(shifted(c, iat=-25 * 3600, exp=3600)), "issued more"),
    ("exp-as-a-string", lambda c: forge({**c, "exp": "99999999999"}), "NumericDate"),
    ("wrong-audience", lambda c: forge({**c, "aud": "evil-audience-canary"}), "audience"),
    (
        "audience-list-without-ours",
        lambda c: forge({**c, "aud": ["evil-audience-canary", "other"]}),
        "audience",
    ),
    ("wrong-issuer", lambda c: forge({**c, "iss": "https://evil-issuer-canary.invalid"}), "issuer"),
    (
        "unknown-kid-demo-signed",
        lambda c: forge(c, header={"alg": "EdDSA", "kid": "evil-kid-canary"}),
        "kid names no key",
    ),
    (
        "unknown-kid-attacker-signed",
        lambda c: forge(c, key=ATTACKER_KEY),
        "kid names no key",
    ),
    (
        "no-kid-foreign-key",
        lambda c: forge(c, key=ATTACKER_KEY, header={"alg": "EdDSA", "typ": "JWT"}),
        "signature",
    ),
    ("demo-kid-foreign-key", lambda c: forge(c, key=IMPOSTOR_KEY), "signature"),
    ("missing-purpose", lambda c: forge(without(c, "purpose")), "no purpose"),
    ("unknown-purpose", lambda c: forge({**c, "purpose": "marketing"}), "purpose vocabulary"),
    (
        "payload-edited-after-signing",
        lambda c: edited(forge(c), roles=["high-clearance", "investigator"], clearance="high"),
        "signature",
    ),
    (
        "header-edited-after-signing",
        lambda c: (
            f"{b64json({'alg': 'EdDSA', 'kid': DEMO_KID, 'x': 1})}.{forge(c).split('.', 1)[1]}"
        ),
        "signature",
    ),
    (
        "crit-header-demo-signed",
        lambda c: forge(
            c,
            header={"alg": "EdDSA", "kid": DEMO_KID, "crit": ["urn:x"], "urn:x": True},
        ),
        "crit",
    ),
]
HOSTILE_BY_ID = {case_id: (make, why) for case_id, make, why in HOSTILE}


def hostile(*ids: str) -> list[Any]:
    """pytest params for the named hostile cases (all of them when none are named)."""
    chosen = ids or tuple(HOSTILE_BY_ID)
    return [pytest.param(*HOSTILE_BY_ID[i], id=i) for i in chosen]


# -- HTTP and assertions ---------------------------------------------------------------------


def lower_headers(reply: Reply) -> dict[str, str]:
    return {name.lower(): value for name, value in reply.headers.items()}


def send(
    sidecar: Sidecar,
    authorization: str | None,
    *,
    path: str = "/graphql",
    query: str = QUERY,
    headers: dict[str, str] | None = None,
) -> Reply:
    """POST a GraphQL request with this Authorization header value (none when None)."""
    extra = dict(headers or {})
    if authorization is not None:
        extra["Authorization"] = authorization
    return post_json(f"{sidecar.server.url}{path}", {"query": query}, headers=extra)


def exchange(sidecar: Sidecar, subject_token: str, *, request_id: str | None = None) -> Reply:
    """POST /token/exchange (RFC 8693) for the investigation purpose."""
    form = {
        "grant_type": EXCHANGE_GRANT,
        "subject_token": subject_token,
        "subject_token_type": JWT_TOKEN_TYPE,
        "scope": "purpose:investigation",
    }
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if request_id is not None:
        headers["X-Request-Id"] = request_id
    return http(
        "POST",
        f"{sidecar.server.url}/token/exchange",
        body=urlencode(form).encode(),
        headers=headers,
    )


def assert_not_echoed(reply: Reply, token: str, secrets: Iterable[str] = ()) -> None:
    """Neither the token nor any long segment of it (nor the given claim values) is quoted."""
    seen = reply.raw.decode("utf-8", "replace") + " ".join(reply.headers.values())
    pieces = [token, *(s for s in token.split(".") if len(s) >= 16), *secrets]
    for piece in pieces:
        if piece:
            assert piece not in seen, f"the refusal quotes {piece[:40]!r}"


def assert_refused(
    reply: Reply,
    upstream: RecordingUpstream,
    before: int,
    *,
    token: str | None = None,
    why: str | None = None,
) -> dict[str, Any]:
    """401, Bearer challenge, GraphQL-shaped UNAUTHENTICATED error, no data, no upstream call."""
    assert reply.status == 401, reply.raw
    headers = lower_headers(reply)
    challenge = headers.get("www-authenticate", "")
    assert challenge.startswith("Bearer "), headers
    assert headers.get("content-type", "").startswith("application/json")
    body = reply.json
    assert isinstance(body, dict) and "data" not in body, body
    assert [e["extensions"]["code"] for e in body["errors"]] == ["UNAUTHENTICATED"]
    message = body["errors"][0]["message"]
    if token is not None:
        # RFC 6750 section 3.1: a presented but unusable token is error="invalid_token".
        assert 'error="invalid_token"' in challenge
        assert_not_echoed(reply, token)
    if why is not None:
        assert why in message, message
    assert upstream.count() == before, "a refused request reached the upstream"
    return body


def assert_served(reply: Reply, upstream: RecordingUpstream, before: int) -> None:
    """200 with data from exactly one upstream call."""
    assert reply.status == 200, reply.raw
    assert reply.json["data"]["person"]["name"], reply.json
    assert upstream.count() == before + 1


def store_of(sidecar: Sidecar) -> Store:
    store = sidecar.state.store
    assert store is not None
    return store


def admin_revoke(sidecar: Sidecar, admin_token: str, jti: str) -> Reply:
    return send(
        sidecar,
        f"Bearer {admin_token}",
        path="/admin/graphql",
        query=f'mutation {{ revokeToken(jti: "{jti}", reason: "hostile-token suite") }}',
    )


# -- an attacker's key server, to prove jku/x5u are never fetched -----------------------------


@dataclass
class Attacker:
    """A JWKS and certificate server for the attacker's key, recording every hit."""

    server: AppThread
    hits: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.server.url


def attacker_app(hits: list[str]) -> web.Application:
    async def serve(request: web.Request) -> web.Response:
        hits.append(request.path)
        if request.path.endswith("jwks.json"):
            return web.json_response({"keys": [ATTACKER_KEY.export_public(as_dict=True)]})
        return web.Response(text="-----BEGIN CERTIFICATE-----\n", content_type="text/plain")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", serve)
    return app


@pytest.fixture
def attacker() -> Iterator[Attacker]:
    hits: list[str] = []
    server = AppThread(lambda: attacker_app(hits)).start()
    yield Attacker(server, hits)
    server.stop()


# -- the contract for each hostile token on /graphql -----------------------------------------


def test_control_valid_tokens_are_served(
    demo_sidecar: Sidecar, upstream: RecordingUpstream
) -> None:
    """The hand-signer makes tokens the demo sidecar accepts, with any scheme case."""
    token = forge(access_claims())
    for scheme in ("Bearer", "bearer", "BEARER"):
        before = upstream.count()
        assert_served(send(demo_sidecar, f"{scheme} {token}"), upstream, before)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: forge(access_claims(), header={"alg": "EdDSA"}), id="no-kid-demo"),
        pytest.param(lambda: forge(shifted(access_claims(), exp=-10)), id="exp-within-leeway"),
        pytest.param(lambda: forge(shifted(access_claims(), nbf=10)), id="nbf-within-leeway"),
        pytest.param(
            lambda: forge({**access_claims(), "aud": ["other", DEMO_AUDIENCE]}), id="aud-list"
        ),
    ],
)
def test_control_near_misses_are_served(
    demo_sidecar: Sidecar, upstream: RecordingUpstream, make: Callable[[], str]
) -> None:
    """The legitimate neighbours of the hostile cases pass: the refusals below are specific."""
    before = upstream.count()
    assert_served(send(demo_sidecar, f"Bearer {make()}"), upstream, before)


@pytest.mark.parametrize(("make", "why"), hostile())
def test_hostile_token_is_refused(
    demo_sidecar: Sidecar, upstream: RecordingUpstream, make: Forge, why: str
) -> None:
    """Each forged token is a 401 without data, before anything reaches the upstream."""
    token = make(access_claims("hana", ("high-clearance", "investigator")))
    before = upstream.count()
    body = assert_refused(
        send(demo_sidecar, f"Bearer {token}"), upstream, before, token=token, why=why
    )
    # The message names the rule, never the presented values.
    message = body["errors"][0]["message"]
    for canary in ("evil-audience-canary", "evil-issuer-canary", "evil-kid-canary", "hana"):
        assert canary not in message


def test_refusals_are_audited(demo_sidecar: Sidecar, upstream: RecordingUpstream) -> None:
    """Every refusal leaves an audit record with status 401, its code, and no token text."""
    sent: dict[str, str] = {}
    before = upstream.count()
    for case_id, make, _why in HOSTILE:
        token = make(access_claims())
        request_id = f"hostile-{len(sent):03d}"
        reply = send(demo_sidecar, f"Bearer {token}", headers={"X-Request-Id": request_id})
        assert reply.status == 401, case_id
        assert lower_headers(reply)["x-request-id"] == request_id
        sent[request_id] = token
    reply = send(demo_sidecar, None, headers={"X-Request-Id": "hostile-missing"})
    assert reply.status == 401
    sent["hostile-missing"] = ""
    assert upstream.count() == before
    demo_sidecar.flush_audit()
    entries = AuditLog(store_of(demo_sidecar)).tail(len(sent) + 20)
    by_id = {e.record.request_id: e.record for e in entries}
    assert set(sent) <= set(by_id), sorted(set(sent) - set(by_id))
    for request_id, token in sent.items():
        record = by_id[request_id]
        assert (record.status, record.detail) == (401, "UNAUTHENTICATED"), request_id
        assert record.sub is None and record.operation_name is None
        text = str(record)
        for piece in (s for s in token.split(".") if len(s) >= 16):
            assert piece not in text


def test_only_ascii_request_ids_are_kept(demo_sidecar: Sidecar) -> None:
    """A refused request's X-Request-Id is kept only when it is ASCII letters, digits, dashes."""
    supplied = ["\uff52\uff45\uff51\uff11", "\u0430dmin-req"]  # fullwidth "req1"; Cyrillic a
    for request_id in supplied:
        # http.client sends a str header as latin-1 bytes: send the UTF-8 bytes of the id.
        wire = request_id.encode("utf-8").decode("latin-1")
        reply = send(demo_sidecar, "Bearer x.y.z", headers={"X-Request-Id": wire})
        assert reply.status == 401
        echoed = lower_headers(reply)["x-request-id"].encode("latin-1").decode("utf-8")
        assert echoed.isascii(), echoed
    demo_sidecar.flush_audit()
    for entry in AuditLog(store_of(demo_sidecar)).tail(len(supplied)):
        assert entry.record.request_id.isascii(), entry.record.request_id


# -- revocation ------------------------------------------------------------------------------


def test_revoked_token_is_refused_on_graphql_and_admin(
    demo_sidecar: Sidecar, upstream: RecordingUpstream
) -> None:
    """A token that worked is refused (revoked) everywhere once an admin revokes its jti."""
    victim_claims = access_claims()
    victim = forge(victim_claims)
    admin = forge(admin_claims())
    before = upstream.count()
    # It works, and is now in the verifier's cache: revocation must beat the cache.
    assert_served(send(demo_sidecar, f"Bearer {victim}"), upstream, before)
    packs = send(
        demo_sidecar, f"Bearer {victim}", path="/admin/graphql", query="{ analyticsPacks }"
    )
    assert packs.status == 200 and "data" in packs.json, packs.raw

    revoked = admin_revoke(demo_sidecar, admin, victim_claims["jti"])
    assert revoked.status == 200 and revoked.json == {"data": {"revokeToken": True}}, revoked.raw
    assert victim_claims["jti"] in revoked_token_ids(store_of(demo_sidecar))

    before = upstream.count()
    assert_refused(
        send(demo_sidecar, f"Bearer {victim}"), upstream, before, token=victim, why="revoked"
    )
    assert_refused(
        send(demo_sidecar, f"Bearer {victim}", path="/admin/graphql", query="{ analyticsPacks }"),
        upstream,
        before,
        token=victim,
        why="revoked",
    )
    # Other tokens are untouched: an admin can still act, and revoke its own token.
    admin_jti = unb64json(admin.split(".")[1])["jti"]
    assert admin_revoke(demo_sidecar, admin, admin_jti).status == 200
    assert_refused(
        admin_revoke(demo_sidecar, admin, "another-jti"),
        upstream,
        before,
        token=admin,
        why="revoked",
    )
    assert "another-jti" not in revoked_token_ids(store_of(demo_sidecar))


# -- jku / x5u / jwk headers -----------------------------------------------------------------


@pytest.mark.parametrize("kid", [DEMO_KID, "attacker-1", None])
def test_attacker_key_headers_are_never_trusted(
    demo_sidecar: Sidecar, upstream: RecordingUpstream, attacker: Attacker, kid: str | None
) -> None:
    """Signed by the attacker's key, announced in jku, x5u and jwk: refused, nothing fetched."""
    token = forge(access_claims(), key=ATTACKER_KEY, header=attacker_headers(attacker.url, kid))
    before = upstream.count()
    assert_refused(send(demo_sidecar, f"Bearer {token}"), upstream, before, token=token)
    assert attacker.hits == []


def test_attacker_key_headers_are_ignored_on_demo_signed_tokens(
    demo_sidecar: Sidecar, upstream: RecordingUpstream, attacker: Attacker
) -> None:
    """Signed by the demo key with the same headers: accepted, so the headers play no part."""
    token = forge(access_claims(), header=attacker_headers(attacker.url, DEMO_KID))
    before = upstream.count()
    assert_served(send(demo_sidecar, f"Bearer {token}"), upstream, before)
    assert attacker.hits == []


# -- oversized tokens ------------------------------------------------------------------------


def sized_token(low: int, high: int) -> str:
    """A correctly signed demo token whose length falls in [low, high]."""
    base = forge(access_claims())
    for size in range(max(0, (low - len(base)) * 3 // 4 - 8), high):
        token = forge({**access_claims(), "blob": "x" * size})
        if low <= len(token) <= high:
            return token
    raise AssertionError(f"no token size in [{low}, {high}]")


def test_oversized_token_is_refused_before_the_upstream(
    demo_sidecar: Sidecar, upstream: RecordingUpstream
) -> None:
    """A correctly signed token over 8192 bytes: refused, no upstream call, no data, and its
    signature is not quoted (the safety part of the contract, which holds today)."""
    token = forge({**access_claims(), "blob": "x" * 9000})
    assert len(token) > MAX_TOKEN_BYTES
    before = upstream.count()
    reply = send(demo_sidecar, f"Bearer {token}")
    assert 400 <= reply.status < 500 and b'"data"' not in reply.raw, reply.raw[:200]
    assert token.split(".")[2] not in reply.raw.decode("utf-8", "replace")
    assert upstream.count() == before


def test_oversized_token_gets_the_401_contract(
    demo_sidecar: Sidecar, upstream: RecordingUpstream
) -> None:
    """Over max_token_bytes: a 401 UNAUTHENTICATED like every other refused token."""
    token = forge({**access_claims(), "blob": "x" * 9000})
    before = upstream.count()
    assert_refused(send(demo_sidecar, f"Bearer {token}"), upstream, before, token=token)


def test_token_within_max_token_bytes_is_served(
    demo_sidecar: Sidecar, upstream: RecordingUpstream
) -> None:
    """A valid token of 8184-8192 bytes is within the verifier's cap, so it must be served."""
    token = sized_token(AIOHTTP_MAX_FIELD_SIZE - len("Bearer ") + 1, MAX_TOKEN_BYTES)
    before = upstream.count()
    assert_served(send(demo_sidecar, f"Bearer {token}"), upstream, before)


def test_large_token_below_the_header_limit_is_served(
    demo_sidecar: Sidecar, upstream: RecordingUpstream
) -> None:
    """Control: a valid ~8 KB token that fits aiohttp's header limit is served."""
    token = sized_token(8000, AIOHTTP_MAX_FIELD_SIZE - len("Bearer "))
    before = upstream.count()
    assert_served(send(demo_sidecar, f"Bearer {token}"), upstream, before)


# -- the Authorization header itself ---------------------------------------------------------


def _good() -> str:
    return forge(access_claims())


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(lambda: f"Bearer {_good()} {_good()}", id="two-tokens"),
        pytest.param(lambda: f"Bearer {_good()},{_good()}", id="two-tokens-comma"),
        pytest.param(lambda: f"Bearer {_good()} garbage", id="trailing-word"),
        pytest.param(lambda: f"Bearer {_good()}garbage", id="trailing-glued"),
        pytest.param(lambda: f"Bearer {_good()}.", id="trailing-dot"),
        pytest.param(lambda: f"Bearer {_good()}==", id="padding"),
        pytest.param(lambda: f"Bearer {_good().rsplit('.', 1)[0]}", id="two-segments"),
        pytest.param(lambda: f"Bearer {_good().rsplit('.', 1)[0]}.", id="empty-signature"),
        pytest.param(lambda: f"Bearer Bearer {_good()}", id="scheme-twice"),
        pytest.param(lambda: f"Bearer\t{_good()}", id="tab-separator"),
        pytest.param(lambda: f"Basic {_good()}", id="basic-scheme"),
        pytest.param(lambda: f"Token {_good()}", id="other-scheme"),
        pytest.param(lambda: f"Bearer{_good()}", id="no-space"),
        pytest.param(_good, id="no-scheme"),
        pytest.param(lambda: "Bearer", id="scheme-only"),
        pytest.param(lambda: "Bearer     ", id="scheme-and-spaces"),
        pytest.param(lambda: "", id="empty-header"),
        pytest.param(lambda: None, id="no-header"),
    ],
)
def test_junk_authorization_header_is_refused(
    demo_sidecar: Sidecar, upstream: RecordingUpstream, header: Callable[[], str | None]
) -> None:
    value = header()
    before = upstream.count()
    reply = send(demo_sidecar, value)
    assert_refused(reply, upstream, before)
    for piece in (value or "").replace(",", " ").split():
        if len(piece) >= 16:
            assert_not_echoed(reply, piece)


def test_missing_token_challenge_has_no_error_code(
    demo_sidecar: Sidecar, upstream: RecordingUpstream
) -> None:
    """RFC 6750 section 3.1: no credentials, so the challenge carries no error code."""
    before = upstream.count()
    reply = send(demo_sidecar, None)
    assert_refused(reply, upstream, before, why="bearer token is required")
    assert "error=" not in lower_headers(reply)["www-authenticate"]


# -- /admin/graphql --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "why"),
    [
        *hostile(
            "alg-none",
            "hs256-public-key-as-secret-raw-x",
            "hs256-public-key-as-secret-pem",
            "expired-beyond-leeway",
            "older-than-max-age",
            "unknown-kid-attacker-signed",
            "no-kid-foreign-key",
            "unknown-purpose",
            "crit-header-demo-signed",
        ),
        pytest.param(
            # A genuine analyst token, edited to claim the admin role and purpose.
            lambda c: edited(forge(access_claims()), roles=["admin"], purpose="administration"),
            "signature",
            id="analyst-token-edited-to-admin",
        ),
    ],
)
def test_admin_api_refuses_hostile_tokens(
    demo_sidecar: Sidecar, upstream: RecordingUpstream, make: Forge, why: str
) -> None:
    """A forged admin token is a 401 on /admin/graphql, and its mutation does not happen."""
    token = make(admin_claims())
    before = upstream.count()
    reply = admin_revoke(demo_sidecar, token, "canary-jti")
    assert_refused(reply, upstream, before, token=token, why=why)
    assert "canary-jti" not in revoked_token_ids(store_of(demo_sidecar))


def test_admin_api_refuses_a_missing_token(
    demo_sidecar: Sidecar, upstream: RecordingUpstream
) -> None:
    before = upstream.count()
    reply = send(demo_sidecar, None, path="/admin/graphql", query="{ policyVersion }")
    assert_refused(reply, upstream, before)


# -- /token/exchange -------------------------------------------------------------------------


def assert_invalid_grant(reply: Reply, token: str, why: str | None = None) -> None:
    """RFC 6749 section 5.2: 400 {"error": "invalid_grant", ...}, never cached, no token."""
    assert reply.status == 400, reply.raw
    body = reply.json
    assert body["error"] == "invalid_grant", body
    assert isinstance(body["error_description"], str) and "access_token" not in body
    assert lower_headers(reply).get("cache-control") == "no-store"
    if why is not None:
        assert why in body["error_description"], body
    assert_not_echoed(reply, token)


def test_control_exchange_accepts_a_valid_idp_token(
    demo_sidecar: Sidecar, upstream: RecordingUpstream
) -> None:
    """The hand-signed IdP token exchanges, and what it yields is served."""
    reply = exchange(demo_sidecar, forge(idp_claims()))
    assert reply.status == 200, reply.raw
    before = upstream.count()
    assert_served(send(demo_sidecar, f"Bearer {reply.json['access_token']}"), upstream, before)


@pytest.mark.parametrize(
    ("make", "why"),
    [
        *hostile(
            "alg-none",
            "alg-none-keeping-a-real-signature",
            "hs256-public-key-as-secret-raw-x",
            "hs256-public-key-as-secret-jwk-json",
            "expired-beyond-leeway",
            "nbf-in-the-future",
            "older-than-max-age",
            "wrong-audience",
            "wrong-issuer",
            "unknown-kid-demo-signed",
            "no-kid-foreign-key",
            "demo-kid-foreign-key",
            "payload-edited-after-signing",
            "crit-header-demo-signed",
        ),
        pytest.param(
            lambda c: forge({**c, "blob": "x" * 9000}), "larger than", id="oversized-subject"
        ),
        pytest.param(
            lambda c: forge(access_claims("ivan", ("investigator",))),
            "issuer",
            id="access-token-as-subject",
        ),
    ],
)
def test_exchange_refuses_hostile_subject_tokens(
    demo_sidecar: Sidecar, upstream: RecordingUpstream, make: Forge, why: str
) -> None:
    token = make(idp_claims())
    before = upstream.count()
    assert_invalid_grant(exchange(demo_sidecar, token), token, why)
    assert upstream.count() == before


def test_exchange_refusal_is_audited_and_revoked_subjects_are_refused(
    demo_sidecar: Sidecar,
) -> None:
    """A revoked IdP token cannot be exchanged any more; both refusals are audited as 400."""
    subject_claims = idp_claims()
    subject = forge(subject_claims)
    assert exchange(demo_sidecar, subject).status == 200
    revoked = admin_revoke(demo_sidecar, forge(admin_claims()), subject_claims["jti"])
    assert revoked.status == 200, revoked.raw
    reply = exchange(demo_sidecar, subject, request_id="xchg-revoked")
    assert_invalid_grant(reply, subject, "revoked")
    forged = unsigned(idp_claims(), {"alg": "none"})
    assert_invalid_grant(exchange(demo_sidecar, forged, request_id="xchg-none"), forged)

    demo_sidecar.flush_audit()
    by_id = {e.record.request_id: e.record for e in AuditLog(store_of(demo_sidecar)).tail(20)}
    for request_id in ("xchg-revoked", "xchg-none"):
        record = by_id[request_id]
        assert (record.status, record.detail) == (400, "refused: invalid_grant")
        assert record.operation_name == "token-exchange" and record.sub is None


# -- fuzzing ---------------------------------------------------------------------------------

B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
#: Characters an HTTP field value may carry (RFC 9110: VCHAR, SP, HTAB, obs-text). Others are
#: refused by the HTTP parser (or the client) before any handler runs, which is not under test.
FIELD_CHARS = "\t" + "".join(map(chr, range(0x20, 0x7F))) + "".join(map(chr, range(0x80, 0x100)))
TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
#: Header names that change HTTP framing or what is under test; every other name is fair game.
RESERVED_HEADERS = frozenset(
    {
        "authorization",
        "connection",
        "content-encoding",
        "content-length",
        "content-type",
        "expect",
        "host",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "accept-encoding",
        "x-request-id",  # set explicitly below
    }
)
FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,  # nothing written to the working tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@dataclass
class FuzzEnv:
    """One demo sidecar and upstream for all fuzzed requests, and the valid tokens it accepts."""

    sidecar: Sidecar
    upstream: RecordingUpstream
    valid: tuple[str, ...]


@pytest.fixture(scope="module")
def fuzz(sample_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzEnv]:
    log: list[dict[str, Any]] = []
    server = AppThread(lambda: recording_app(sample_db, log)).start()
    upstream = RecordingUpstream(server, log)
    sidecar = start_demo_sidecar(upstream.graphql_url, tmp_path_factory.mktemp("fuzz-demo"))
    # Two valid tokens with identical headers: swapping their segments must not make a third.
    valid = (forge(access_claims("ana")), forge(access_claims("ivan", ("investigator",))))
    yield FuzzEnv(sidecar, upstream, valid)
    sidecar.server.stop()
    server.stop()


def field_text(max_size: int = 200) -> st.SearchStrategy[str]:
    return st.text(FIELD_CHARS, max_size=max_size)


@st.composite
def mutated(draw: st.DrawFn, valid: tuple[str, ...]) -> str:
    """A valid token with 1-3 characters flipped, inserted or deleted in its segments."""
    parts = draw(st.sampled_from(valid)).split(".")
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(parts) - 1))
        seg = parts[i]
        op = draw(st.sampled_from(["flip", "insert", "delete"] if seg else ["insert"]))
        char = draw(st.sampled_from(B64URL) | st.sampled_from(".=+/ %~"))
        pos = draw(st.integers(0, len(seg) if op == "insert" else len(seg) - 1))
        if op == "flip":
            seg = seg[:pos] + char + seg[pos + 1 :]
        elif op == "insert":
            seg = seg[:pos] + char + seg[pos:]
        else:
            seg = seg[:pos] + seg[pos + 1 :]
        parts[i] = seg
    return ".".join(parts)


@st.composite
def spliced(draw: st.DrawFn, valid: tuple[str, ...]) -> str:
    """Each segment taken from one of two valid tokens."""
    first, second = (t.split(".") for t in valid[:2])
    return ".".join(draw(st.sampled_from([a, b])) for a, b in zip(first, second, strict=True))


def tokens(valid: tuple[str, ...]) -> st.SearchStrategy[str]:
    segments = st.lists(st.text(B64URL + "=+/", max_size=60), min_size=1, max_size=5)
    return st.one_of(
        field_text(),
        segments.map(".".join),
        mutated(valid),
        spliced(valid),
        st.sampled_from(valid),  # exact valid tokens keep the 200 side of the oracle honest
    )


def valid_presented(authorization: str | None, valid: tuple[str, ...]) -> bool:
    """Whether the header presents exactly one valid token as `Bearer <token>`.

    HTTP trims the field value (optional whitespace is not part of it); the scheme is
    case-insensitive (RFC 9110 section 11.1) and one or more spaces separate it from the token.
    """
    if authorization is None:
        return False
    scheme, _, rest = authorization.strip(" \t").partition(" ")
    return scheme.lower() == "bearer" and rest.strip(" \t") in valid


def check_fuzzed(env: FuzzEnv, authorization: str | None, headers: dict[str, str]) -> None:
    """Never 5xx, always JSON; data only for an unmodified valid token; no upstream otherwise."""
    before = env.upstream.count()
    reply = send(env.sidecar, authorization, headers=headers)
    assert reply.status < 500, (reply.status, reply.raw[:300])
    body = reply.json
    assert isinstance(body, dict), body
    served = valid_presented(authorization, env.valid)
    if reply.status == 200:
        assert served, f"served a modified token: {authorization!r}"
        assert "data" in body and env.upstream.count() == before + 1
    else:
        assert not served, f"refused a valid token: {reply.raw[:300]!r}"
        assert "data" not in body and env.upstream.count() == before
        assert reply.status == 401, reply.raw[:300]
        assert lower_headers(reply)["www-authenticate"].startswith("Bearer ")
        assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        if authorization is not None:
            # Not quoted back (a short value might coincide with words of the message).
            token = authorization.strip(" \t").partition(" ")[2].strip(" \t")
            if len(token) >= 24:
                assert token not in reply.raw.decode("utf-8", "replace")
    # The request id is the one sent (as HTTP trims it) or a fresh one, never anything else.
    sent_id = headers.get("X-Request-Id")
    request_id = lower_headers(reply)["x-request-id"]
    fresh = re.fullmatch(r"[0-9a-f]{32}", request_id) is not None
    assert fresh or (sent_id is not None and request_id == sent_id.strip(" \t")), request_id
    event(f"status {reply.status}")


@FUZZ
@given(data=st.data())
def test_fuzzed_tokens(fuzz: FuzzEnv, data: st.DataObject) -> None:
    """(a) random strings, base64url-ish segments, mutations and splices of valid tokens."""
    token = data.draw(tokens(fuzz.valid), label="token")
    check_fuzzed(fuzz, f"Bearer {token}", {})


@st.composite
def authorization_values(draw: st.DrawFn, valid: tuple[str, ...]) -> str | None:
    scheme = draw(
        st.sampled_from(["Bearer", "bearer", "BEARER", "Basic", "Token", "Bearer\t", "", "Bear"])
        | st.text(TCHAR, max_size=10)
    )
    separator = draw(st.sampled_from([" ", "  ", "", "\t", " , "]))
    token = draw(tokens(valid))
    return draw(
        st.one_of(
            st.none(),
            field_text(),
            st.just(f"{scheme}{separator}{token}"),
            st.just(f"Bearer {token}{draw(field_text(20))}"),
        )
    )


@st.composite
def extra_headers(draw: st.DrawFn) -> dict[str, str]:
    names = st.text(TCHAR, min_size=1, max_size=24).filter(
        lambda n: n.lower() not in RESERVED_HEADERS
    )
    headers = draw(st.dictionaries(names, field_text(80), max_size=6))
    if draw(st.booleans()):
        headers["X-Request-Id"] = draw(field_text(100))
    return headers


@FUZZ
@given(data=st.data())
def test_fuzzed_authorization_and_headers(fuzz: FuzzEnv, data: st.DataObject) -> None:
    """(b) random Authorization values and random extra headers around the request."""
    authorization = data.draw(authorization_values(fuzz.valid), label="authorization")
    headers = data.draw(extra_headers(), label="headers")
    check_fuzzed(fuzz, authorization, headers)
