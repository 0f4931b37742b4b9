"""Access token verification: real keys, real signatures, every refusal reason, JWKS loading."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jwcrypto import jwk
from jwcrypto.jwa import JWA

from intelgraph_privacy.errors import ConfigError, PrivacyError
from intelgraph_privacy.principal import Principal
from intelgraph_privacy.tokens import (
    DEMO_AUDIENCE,
    DEMO_ISSUER,
    DEMO_KID,
    Claims,
    KeySet,
    PurposeVocabulary,
    TokenError,
    TokenVerifier,
    demo_jwks,
    demo_private_key,
    issue_token,
    load_jwks,
)
from intelgraph_privacy.tokens.demo import demo_public_key, demo_thumbprint

ISS = "https://idp.example.test"
AUD = "intelgraph-graph-api"
NOW = 1_800_000_000
LEEWAY = 30

# Real keys, generated once per test session (RSA generation is the slow one).
ED = jwk.JWK.generate(kty="OKP", crv="Ed25519", kid="ed-1")
EC = jwk.JWK.generate(kty="EC", crv="P-256", kid="ec-1")
RSA = jwk.JWK.generate(kty="RSA", size=2048, kid="rsa-1")
ATTACKER = jwk.JWK.generate(kty="OKP", crv="Ed25519", kid="ed-1")  # same kid, other key
KEYS = {"EdDSA": ED, "ES256": EC, "RS256": RSA}
# Every verifier needs a purpose vocabulary; these are the purposes the tests' tokens carry.
PURPOSES = PurposeVocabulary.of(["investigation", "analytics"])


def jwks_of(*keys: Any) -> dict[str, Any]:
    return {"keys": [k.export_public(as_dict=True) for k in keys]}


def verifier(*keys: Any, **options: Any) -> TokenVerifier:
    options.setdefault("clock", lambda: NOW)
    options.setdefault("leeway", LEEWAY)
    options.setdefault("purposes", PURPOSES)
    return TokenVerifier(KeySet.from_json(jwks_of(*keys)), issuer=ISS, audience=AUD, **options)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**changes: Any) -> dict[str, Any]:
    """A valid payload; a change to None removes the claim."""
    payload: dict[str, Any] = {
        "iss": ISS,
        "aud": AUD,
        "sub": "u1",
        "tenant": "t1",
        "roles": ["analyst"],
        "purpose": "investigation",
        "iat": NOW - 10,
        "exp": NOW + 600,
    }
    payload.update(changes)
    return {k: v for k, v in payload.items() if v is not None}


def sign_raw(
    key: Any, header: dict[str, Any], payload: dict[str, Any] | bytes, using: str | None = None
) -> str:
    """Sign any header and payload directly with the JWA primitive (independent of issue_token).

    `using` is the primitive, by default the header's alg (a fuzzed header may carry any alg).
    """
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(raw)}"
    signature = JWA.signing_alg(using or header["alg"]).sign(key, signing_input.encode())
    return f"{signing_input}.{b64(signature)}"


def token(key: Any = ED, alg: str = "EdDSA", **changes: Any) -> str:
    return sign_raw(key, {"alg": alg, "typ": "JWT", "kid": key["kid"]}, claims(**changes))


def refused(v: TokenVerifier, tok: str, reason: str) -> TokenError:
    with pytest.raises(TokenError) as info:
        v.verify(tok)
    assert info.value.reason == reason, str(info.value)
    # The message explains, but never echoes the token or any of its parts.
    message = str(info.value)
    assert tok not in message
    assert all(part not in message for part in tok.split(".") if len(part) > 8)
    return info.value


# --- round trips ----------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["EdDSA", "ES256", "RS256"])
def test_round_trip_for_each_key_type(alg: str) -> None:
    key = KEYS[alg]
    tok = issue_token(
        key,
        sub="u1",
        tenant="t1",
        roles=["analyst", "auditor"],
        purpose="investigation",
        issuer=ISS,
        audience=AUD,
        now=NOW,
        jti="j-1",
        extra={"region": "eu-west", "acr": "mfa"},
    )
    header = json.loads(base64.urlsafe_b64decode(tok.split(".")[0] + "=="))
    assert header == {"alg": alg, "kid": key["kid"], "typ": "JWT"}
    got = verifier(ED, EC, RSA).verify(tok)
    assert got.sub == "u1" and got.tenant == "t1" and got.purpose == "investigation"
    assert got.roles == ("analyst", "auditor")
    assert (got.iss, got.aud, got.iat, got.exp) == (ISS, AUD, NOW, NOW + 3600)
    assert (got.region, got.jti) == ("eu-west", "j-1")
    assert got.model_extra == {"acr": "mfa"}  # unknown claims are kept
    assert got.principal() == Principal(
        sub="u1",
        tenant="t1",
        roles=("auditor", "analyst"),
        purpose="investigation",
        region="eu-west",
    )


def test_single_key_set_needs_no_kid_and_roles_default_to_empty() -> None:
    tok = sign_raw(ED, {"alg": "EdDSA"}, claims(roles=None))
    got = verifier(ED).verify(tok)
    assert got.roles == ()
    assert got.principal().roles == ()


@pytest.mark.parametrize("typ", ["JWT", "jwt", "at+jwt", "AT+JWT", "application/at+jwt"])
def test_access_token_types_accepted(typ: str) -> None:
    tok = sign_raw(ED, {"alg": "EdDSA", "typ": typ, "kid": "ed-1"}, claims())
    assert verifier(ED).verify(tok).sub == "u1"


@pytest.mark.parametrize("typ", ["JOSE", "secevent+jwt", "", 1])
def test_other_types_refused(typ: object) -> None:
    refused(verifier(ED), sign_raw(ED, {"alg": "EdDSA", "typ": typ}, claims()), "malformed")


def test_claims_model_is_frozen_and_strict() -> None:
    got = verifier(ED).verify(token())
    with pytest.raises(ValueError):
        got.sub = "someone-else"
    with pytest.raises(ValueError):
        Claims(sub="u", tenant="t", purpose="", iss=ISS, aud=AUD, exp=1, iat=1)
    with pytest.raises(ValueError):
        Claims(sub="u", tenant="t", purpose="p", iss=ISS, aud=AUD, exp="1", iat=1)  # type: ignore[arg-type]


# --- algorithms and keys --------------------------------------------------------------------


def test_alg_none_refused() -> None:
    header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    tok = f"{header}.{b64(json.dumps(claims()).encode())}."
    refused(verifier(ED), tok, "algorithm")
    with pytest.raises(ConfigError, match="not supported"):
        verifier(ED, algorithms=["none"])


def test_hs256_signed_with_the_public_key_as_secret_refused() -> None:
    # The classic confusion attack: the RSA public key (which anyone has) used as an HMAC secret.
    secret = RSA.export_to_pem()
    for kid in ("rsa-1", None):
        header: dict[str, Any] = {"alg": "HS256", "typ": "JWT"}
        if kid:
            header["kid"] = kid
        signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims()).encode())}"
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        refused(verifier(RSA), f"{signing_input}.{b64(mac)}", "algorithm")
    with pytest.raises(ConfigError, match="HS"):
        verifier(RSA, algorithms=["RS256", "HS256"])


@pytest.mark.parametrize(
    ("signer", "alg", "kid"),
    [
        (EC, "ES256", "ed-1"),  # an ES256 signature claiming the Ed25519 key
        (RSA, "RS256", "ed-1"),
        (ED, "EdDSA", "rsa-1"),  # an EdDSA token naming the RSA key
        (RSA, "RS256", "ec-1"),
    ],
)
def test_alg_must_match_the_key_type(signer: Any, alg: str, kid: str) -> None:
    tok = sign_raw(signer, {"alg": alg, "kid": kid}, claims())
    refused(verifier(ED, EC, RSA), tok, "algorithm")


def test_alg_outside_the_allow_list_refused_even_with_a_matching_key() -> None:
    refused(verifier(ED, RSA, algorithms=["EdDSA"]), token(RSA, "RS256"), "algorithm")


def test_unknown_kid_refused() -> None:
    tok = sign_raw(ED, {"alg": "EdDSA", "kid": "nobody"}, claims())
    refused(verifier(ED, EC), tok, "unknown_key")
    refused(verifier(ED), tok, "unknown_key")  # a kid must name a key even in a one-key set


def test_missing_kid_with_two_keys_refused() -> None:
    refused(verifier(ED, EC), sign_raw(ED, {"alg": "EdDSA"}, claims()), "unknown_key")


def test_kid_must_be_a_string() -> None:
    refused(verifier(ED), sign_raw(ED, {"alg": "EdDSA", "kid": 7}, claims()), "malformed")


def test_crit_header_refused() -> None:
    tok = sign_raw(ED, {"alg": "EdDSA", "kid": "ed-1", "crit": ["exp"], "exp": 1}, claims())
    refused(verifier(ED), tok, "malformed")
    tok = sign_raw(ED, {"alg": "EdDSA", "kid": "ed-1", "b64": False}, claims())
    refused(verifier(ED), tok, "malformed")


# --- header key references are never fetched or trusted ---------------------------------------


class _Recorder(BaseHTTPRequestHandler):
    body = b"{}"
    requests: list[str]

    def do_GET(self) -> None:
        self.requests.append(self.path)
        if self.path.startswith("/missing"):
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[tuple[str, type[_Recorder]]]:
    handler = type("Handler", (_Recorder,), {"requests": [], "body": b"{}"})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_jku_x5u_and_jwk_headers_are_ignored(http_server: tuple[str, type[_Recorder]]) -> None:
    base, handler = http_server
    handler.body = json.dumps(jwks_of(ATTACKER)).encode()
    v = verifier(ED)
    # The attacker signs with their key and points jku/x5u at a JWKS holding it, or embeds it.
    for extra in (
        {"jku": f"{base}/jwks.json"},
        {"x5u": f"{base}/cert.pem"},
        {"jwk": ATTACKER.export_public(as_dict=True)},
    ):
        forged = sign_raw(ATTACKER, {"alg": "EdDSA", "kid": "ed-1", **extra}, claims())
        refused(v, forged, "signature")
    # A genuine token with a jku header still verifies against the configured keys only.
    genuine = sign_raw(ED, {"alg": "EdDSA", "kid": "ed-1", "jku": f"{base}/jwks.json"}, claims())
    assert v.verify(genuine).sub == "u1"
    assert handler.requests == []  # nothing was ever fetched


# --- tampering --------------------------------------------------------------------------------


def test_payload_edited_after_signing_refused() -> None:
    header, _, signature = token().split(".")
    forged_payload = b64(json.dumps(claims(roles=["admin"], tenant="t2")).encode())
    refused(verifier(ED), f"{header}.{forged_payload}.{signature}", "signature")


def test_header_edited_after_signing_refused() -> None:
    _, payload, signature = token().split(".")
    for header in (
        {"alg": "EdDSA", "kid": "ed-1", "typ": "at+jwt"},
        {"alg": "EdDSA", "kid": "ed-1"},
    ):
        refused(
            verifier(ED), f"{b64(json.dumps(header).encode())}.{payload}.{signature}", "signature"
        )


def test_signature_of_another_token_refused() -> None:
    one, two = token(sub="alice"), token(sub="bob")
    spliced = ".".join(one.split(".")[:2] + two.split(".")[2:])
    refused(verifier(ED), spliced, "signature")


def test_oversized_token_refused_before_parsing() -> None:
    refused(verifier(ED), "x" * 8193, "too_large")
    tok = token()
    refused(verifier(ED, max_token_bytes=len(tok) - 1), tok, "too_large")
    assert verifier(ED, max_token_bytes=len(tok)).verify(tok).sub == "u1"


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t + ".",  # four parts
        lambda t: ".".join(t.split(".")[:2]),  # two parts
        lambda t: t + "..x.y",  # five parts (the JWE shape)
        lambda t: t.replace(".", "=.", 1),  # padding
        lambda t: "é" + t,  # non-ASCII
        lambda t: " " + t,
        lambda t: b64(b"[1,2]") + t[t.index(".") :],  # header not an object
        lambda t: b64(b"\xff\xfe") + t[t.index(".") :],  # header not UTF-8 JSON
    ],
)
def test_malformed_tokens_refused(mangle: Any) -> None:
    refused(verifier(ED), mangle(token()), "malformed")


def test_non_canonical_base64_refused() -> None:
    # The last character of a 64-byte signature carries 4 unused bits: setting them would decode
    # to the same signature, so a lax decoder would accept a different token string.
    tok = token()
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(tok[-1])
    twin = tok[:-1] + alphabet[last | 1]
    assert twin != tok
    assert base64.urlsafe_b64decode(twin.split(".")[2] + "==") == base64.urlsafe_b64decode(
        tok.split(".")[2] + "=="
    )
    refused(verifier(ED), twin, "malformed")


def test_non_json_payload_refused_after_signature() -> None:
    refused(verifier(ED), sign_raw(ED, {"alg": "EdDSA"}, b"not json"), "malformed")
    refused(verifier(ED), sign_raw(ED, {"alg": "EdDSA"}, b'["a"]'), "malformed")


# --- time -------------------------------------------------------------------------------------


def test_expired_not_yet_valid_and_future_iat_refused() -> None:
    refused(verifier(ED), token(exp=NOW - 3600), "expired")
    refused(verifier(ED), token(nbf=NOW + 3600), "not_yet_valid")
    refused(verifier(ED), token(iat=NOW + 3600), "issued_in_future")


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"exp": NOW - LEEWAY}, "expired"),  # now < exp + leeway is false at equality
        ({"exp": NOW - LEEWAY + 1}, None),
        ({"nbf": NOW + LEEWAY}, None),  # now >= nbf - leeway holds at equality
        ({"nbf": NOW + LEEWAY + 1}, "not_yet_valid"),
        ({"iat": NOW + LEEWAY}, None),  # iat <= now + leeway holds at equality
        ({"iat": NOW + LEEWAY + 1}, "issued_in_future"),
    ],
)
def test_leeway_edges_exactly(changes: dict[str, Any], reason: str | None) -> None:
    tok = token(**changes)
    if reason is None:
        assert verifier(ED).verify(tok).sub == "u1"
    else:
        refused(verifier(ED), tok, reason)


def test_zero_leeway_and_fractional_clock() -> None:
    v = verifier(ED, leeway=0, clock=lambda: NOW + 599.5)
    assert v.verify(token(exp=NOW + 600)).exp == NOW + 600
    refused(verifier(ED, leeway=0, clock=lambda: NOW + 600.0), token(exp=NOW + 600), "expired")


@pytest.mark.parametrize(
    "changes",
    [
        {"exp": None},
        {"iat": None},
        {"exp": float(NOW + 600)},
        {"exp": str(NOW + 600)},
        {"exp": True},
        {"iat": [NOW]},
        {"nbf": None, "extra": 0},
    ],
)
def test_time_claims_required_and_integer(changes: dict[str, Any]) -> None:
    if "extra" in changes:  # nbf present but null
        payload = claims()
        payload["nbf"] = None
        tok = sign_raw(ED, {"alg": "EdDSA"}, payload)
    else:
        tok = token(**changes)
    refused(verifier(ED), tok, "claims")


def test_leeway_is_capped() -> None:
    assert verifier(ED, leeway=60).leeway == 60
    for bad in (61, -1, 3600):
        with pytest.raises(ConfigError, match="leeway"):
            verifier(ED, leeway=bad)


# --- issuer, audience, claims -----------------------------------------------------------------


def test_issuer_must_match_exactly() -> None:
    refused(verifier(ED), token(iss="https://evil.example.test"), "issuer")
    refused(verifier(ED), token(iss=ISS + "/"), "issuer")
    refused(verifier(ED), token(iss=None), "issuer")
    refused(verifier(ED), token(iss=[ISS]), "issuer")


def test_audience_string_or_list() -> None:
    refused(verifier(ED), token(aud="another-api"), "audience")
    refused(verifier(ED), token(aud=None), "audience")
    refused(verifier(ED), token(aud=["another-api"]), "audience")
    refused(verifier(ED), token(aud=[]), "audience")
    refused(verifier(ED), token(aud=[AUD, 3]), "audience")
    got = verifier(ED).verify(token(aud=["another-api", AUD]))
    assert got.aud == ("another-api", AUD)


@pytest.mark.parametrize(
    "changes",
    [
        {"sub": None},
        {"tenant": None},
        {"purpose": ""},
        {"sub": 42},
        {"tenant": ["t1"]},
        {"roles": "admin"},  # one string is not a list
        {"roles": ["admin", 1]},
        {"roles": {"admin": True}},
        {"roles": [""]},
        {"region": 5},
        {"jti": ""},
    ],
)
def test_principal_claims_checked(changes: dict[str, Any]) -> None:
    refused(verifier(ED), token(**changes), "claims")


@pytest.mark.parametrize("purpose", [None, "marketing", "Investigation", "investigation "])
def test_purpose_must_be_in_the_vocabulary(purpose: str | None) -> None:
    # No purpose, or one the vocabulary does not name, is refused before any policy runs.
    refused(verifier(ED), token(purpose=purpose), "purpose")
    assert verifier(ED).verify(token(purpose="analytics")).purpose == "analytics"


# --- key sets ---------------------------------------------------------------------------------


def test_jwks_with_private_key_material_refused() -> None:
    with pytest.raises(ConfigError, match="private") as info:
        KeySet.from_json({"keys": [ED.export_private(as_dict=True)]})
    assert ED.export_private(as_dict=True)["d"] not in str(info.value)  # the secret is not echoed
    with pytest.raises(ConfigError, match="private"):
        KeySet.from_json(
            {"keys": [EC.export_public(as_dict=True), RSA.export_private(as_dict=True)]}
        )
    oct_key = jwk.JWK.generate(kty="oct", size=256, kid="hmac")
    with pytest.raises(ConfigError, match="symmetric"):
        KeySet.from_json({"keys": [oct_key.export(as_dict=True)]})


@pytest.mark.parametrize(
    "document",
    [b"not json", b"[]", b'{"keys": {}}', b'{"keys": []}', b'{"keys": [1]}', "{}"],
)
def test_invalid_jwks_refused(document: bytes | str) -> None:
    with pytest.raises(ConfigError):
        KeySet.from_json(document)


def test_jwks_structure_rules() -> None:
    with pytest.raises(ConfigError, match="same kid"):
        KeySet.from_json(jwks_of(ED, ATTACKER))
    kidless = ED.export_public(as_dict=True)
    del kidless["kid"]
    with pytest.raises(ConfigError, match="needs a kid"):
        KeySet.from_json({"keys": [kidless, EC.export_public(as_dict=True)]})
    broken = EC.export_public(as_dict=True) | {"x": "AAAA"}
    with pytest.raises(ConfigError, match="not a valid"):
        KeySet.from_json({"keys": [broken]})


def test_unusable_keys_are_skipped_and_reported() -> None:
    weak = jwk.JWK.generate(kty="RSA", size=1024, kid="weak")
    x25519 = jwk.JWK.generate(kty="OKP", crv="X25519", kid="xdh")
    enc = EC.export_public(as_dict=True) | {"kid": "enc", "use": "enc"}
    ps = RSA.export_public(as_dict=True) | {"kid": "ps", "alg": "PS256"}
    keys = KeySet.from_json({"keys": [*jwks_of(weak, x25519, ED)["keys"], enc, ps]})
    assert keys.kids == {"ed-1"}
    assert len(keys.skipped) == 4
    assert any("1024 bits" in note for note in keys.skipped)
    # A token naming a skipped key is refused like any unknown key.
    tok = sign_raw(weak, {"alg": "RS256", "kid": "weak"}, claims())
    refused(
        TokenVerifier(keys, issuer=ISS, audience=AUD, purposes=PURPOSES, clock=lambda: NOW),
        tok,
        "unknown_key",
    )
    with pytest.raises(ConfigError, match="no key"):
        KeySet.from_json(jwks_of(weak))


def test_key_set_select() -> None:
    one = KeySet.from_json(jwks_of(ED))
    assert one.select(None).kid == "ed-1"  # a one-key set needs no kid
    assert one.select("ed-1").alg == "EdDSA"
    three = KeySet.from_json(jwks_of(ED, EC, RSA))
    assert three.select("ec-1").alg == "ES256"
    assert three.select("rsa-1").thumbprint == RSA.thumbprint()
    assert not three.select("ed-1").key.has_private
    for kid in (None, "nobody"):
        with pytest.raises(TokenError) as info:
            three.select(kid)
        assert info.value.reason == "unknown_key"
    with pytest.raises(TokenError):
        one.select("nobody")


def test_key_set_identity() -> None:
    one = KeySet.from_json(jwks_of(ED, EC))
    same = KeySet.from_json(json.dumps(jwks_of(EC, ED)))
    other = KeySet.from_json(jwks_of(ED, RSA))
    assert one.kids == {"ed-1", "ec-1"} and len(one) == 2
    assert one.fingerprint == same.fingerprint != other.fingerprint
    assert len(one.fingerprint) == 64
    assert one.algorithms == {"EdDSA", "ES256"}
    assert one.thumbprints == {ED.thumbprint(), EC.thumbprint()}


def test_verifier_configuration_checked() -> None:
    keys = KeySet.from_json(jwks_of(ED))
    bad_options: list[dict[str, Any]] = [
        {"issuer": ""},
        {"audience": ""},
        {"algorithms": "EdDSA"},
        {"algorithms": []},
        {"purposes": "investigation"},  # one string is not a vocabulary
        {"purposes": []},  # an empty vocabulary would refuse every token
        {"max_token_age": 0},
        {"max_token_age": 1.5},
    ]
    for bad in bad_options:
        options: dict[str, Any] = {"issuer": ISS, "audience": AUD, "purposes": PURPOSES, **bad}
        with pytest.raises(ConfigError):
            TokenVerifier(keys, **options)
    with pytest.raises(ConfigError, match="no key"):
        TokenVerifier(keys, issuer=ISS, audience=AUD, purposes=PURPOSES, algorithms=["RS256"])
    with pytest.raises(ConfigError):
        TokenVerifier(keys, issuer=ISS, audience=AUD, purposes=PURPOSES, max_token_bytes=0)
    with pytest.raises(TypeError):  # the vocabulary is required: no verifier accepts any purpose
        TokenVerifier(keys, issuer=ISS, audience=AUD)  # type: ignore[call-arg]
    # A plain list of names works as well as a vocabulary.
    listed = TokenVerifier(keys, issuer=ISS, audience=AUD, purposes=["investigation"])
    assert listed.purposes == {"investigation"}


def test_keys_can_be_replaced_at_runtime() -> None:
    v = verifier(ED)
    old, new = token(ED), token(EC, "ES256")
    assert v.verify(old).sub == "u1"
    refused(v, new, "unknown_key")
    v.keys = KeySet.from_json(jwks_of(EC))
    assert v.verify(new).sub == "u1"
    refused(v, old, "unknown_key")
    with pytest.raises(ConfigError):
        v.keys = KeySet.from_json(demo_jwks())
    assert v.verify(new).sub == "u1"  # a refused replacement leaves the current set in place


def test_key_replacement_is_atomic_under_concurrent_verification() -> None:
    v = verifier(ED)
    sets = [KeySet.from_json(jwks_of(ED)), KeySet.from_json(jwks_of(ED, EC, RSA))]
    tok = token(ED)
    failures: list[BaseException] = []
    stop = threading.Event()

    def verify_loop() -> None:
        while not stop.is_set():
            try:
                assert v.verify(tok).sub == "u1"
            except BaseException as exc:
                failures.append(exc)
                return

    threads = [threading.Thread(target=verify_loop) for _ in range(3)]
    for thread in threads:
        thread.start()
    for i in range(300):
        v.keys = sets[i % 2]
    stop.set()
    for thread in threads:
        thread.join()
    assert failures == []


# --- loading a JWKS ---------------------------------------------------------------------------


def test_load_jwks_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks_of(ED, EC)))
    keys = load_jwks(str(path))
    assert keys.kids == {"ed-1", "ec-1"}
    v = TokenVerifier(keys, issuer=ISS, audience=AUD, purposes=PURPOSES, clock=lambda: NOW)
    assert v.verify(token()).sub == "u1"
    with pytest.raises(ConfigError, match="cannot be read"):
        load_jwks(str(tmp_path / "missing.json"))
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (1 << 20) + json.dumps(jwks_of(ED)).encode())
    with pytest.raises(ConfigError, match="larger"):
        load_jwks(str(big))
    path.write_text(json.dumps({"keys": [ED.export_private(as_dict=True)]}))
    with pytest.raises(ConfigError, match=r"jwks\.json.*private"):
        load_jwks(str(path))


def test_load_jwks_over_http(http_server: tuple[str, type[_Recorder]]) -> None:
    base, handler = http_server
    handler.body = json.dumps(jwks_of(ED, RSA)).encode()
    keys = load_jwks(f"{base}/.well-known/jwks.json", timeout=2)
    assert keys.kids == {"ed-1", "rsa-1"}
    assert handler.requests == ["/.well-known/jwks.json"]
    v = TokenVerifier(keys, issuer=ISS, audience=AUD, purposes=PURPOSES, clock=lambda: NOW)
    assert v.verify(token(RSA, "RS256")).sub == "u1"
    with pytest.raises(ConfigError, match="HTTP 404") as info:
        load_jwks(f"{base}/missing?api_key=s3cret", timeout=2)
    assert "s3cret" not in str(info.value)  # the query (it may hold a secret) is not echoed
    with pytest.raises(ConfigError, match="credentials") as info:
        load_jwks(f"http://reader:s3cret@{base.removeprefix('http://')}/jwks.json", timeout=2)
    assert "s3cret" not in str(info.value)
    assert handler.requests == ["/.well-known/jwks.json", "/missing?api_key=s3cret"]


def test_load_jwks_refuses_other_schemes_and_unreachable_servers() -> None:
    with pytest.raises(ConfigError, match="scheme"):
        load_jwks("file:///etc/passwd")
    with pytest.raises(ConfigError, match="could not be fetched"):
        load_jwks("http://127.0.0.1:9/jwks.json", timeout=1)  # discard port: nothing listens


# --- the demo key -----------------------------------------------------------------------------


def test_demo_key_file_is_labelled_and_consistent() -> None:
    document = json.loads(
        (Path(__file__).resolve().parents[1] / "intelgraph_privacy" / "demo_key.json").read_text()
    )
    assert "DEMO KEY" in document["_comment"] and "Never use it" in document["_comment"]
    key = demo_private_key()
    assert key["kid"] == DEMO_KID == document["key"]["kid"]
    assert (key["kty"], key["crv"]) == ("OKP", "Ed25519") and key.has_private
    public = demo_jwks()
    assert [k["kid"] for k in public["keys"]] == [DEMO_KID]
    assert "d" not in public["keys"][0]


def test_demo_helpers_name_the_demo_key_by_thumbprint() -> None:
    public = demo_public_key()
    assert not public.has_private
    assert public.export_public(as_dict=True) == demo_jwks()["keys"][0]
    assert demo_thumbprint() == demo_private_key().thumbprint() == public.thumbprint()
    assert demo_thumbprint() in KeySet.from_json(demo_jwks()).thumbprints
    assert demo_thumbprint() not in KeySet.from_json(jwks_of(ED, EC, RSA)).thumbprints


def test_demo_key_refused_unless_allowed() -> None:
    with pytest.raises(ConfigError, match="demo"):
        TokenVerifier(
            KeySet.from_json(demo_jwks()),
            issuer=DEMO_ISSUER,
            audience=DEMO_AUDIENCE,
            purposes=PURPOSES,
        )
    # Renaming the kid does not smuggle it in: keys are compared by thumbprint.
    renamed = demo_jwks()["keys"][0] | {"kid": "innocent"}
    with pytest.raises(ConfigError, match="demo"):
        TokenVerifier(
            KeySet.from_json({"keys": [renamed, EC.export_public(as_dict=True)]}),
            issuer=ISS,
            audience=AUD,
            purposes=PURPOSES,
        )
    demo = TokenVerifier(
        KeySet.from_json(demo_jwks()),
        issuer=DEMO_ISSUER,
        audience=DEMO_AUDIENCE,
        purposes=PURPOSES,
        allow_demo_key=True,
    )
    tok = issue_token(
        demo_private_key(),
        sub="demo-analyst",
        tenant="demo",
        roles=["analyst"],
        purpose="investigation",
        issuer=DEMO_ISSUER,
        audience=DEMO_AUDIENCE,
    )
    assert demo.verify(tok).principal().sub == "demo-analyst"


def test_token_signed_with_the_demo_key_is_named_as_such() -> None:
    forged = issue_token(
        demo_private_key(),
        sub="u1",
        tenant="t1",
        roles=["admin"],
        purpose="investigation",
        issuer=ISS,
        audience=AUD,
        now=NOW,
    )
    error = refused(verifier(ED, EC), forged, "demo_key")
    assert "demo" in str(error)
    # Same with the kid stripped or changed to one of the real keys.
    for kid in (None, "ed-1"):
        header: dict[str, Any] = {"alg": "EdDSA"} | ({"kid": kid} if kid else {})
        refused(verifier(ED), sign_raw(demo_private_key(), header, claims()), "demo_key")


# --- issuing ----------------------------------------------------------------------------------


def test_issue_token_refuses_bad_input() -> None:
    base: dict[str, Any] = {
        "sub": "u1",
        "tenant": "t1",
        "roles": ["a"],
        "purpose": "p",
        "issuer": ISS,
        "audience": AUD,
    }
    public = jwk.JWK(**ED.export_public(as_dict=True))
    with pytest.raises(ConfigError, match="private"):
        issue_token(public, **base)
    with pytest.raises(ConfigError, match="override"):
        issue_token(ED, **base, extra={"tenant": "t2"})
    for bad in ({"roles": "admin"}, {"purpose": ""}, {"ttl": 0}):
        with pytest.raises(ConfigError):
            issue_token(ED, **(base | bad))
    with pytest.raises(ConfigError, match="Ed25519"):
        issue_token(jwk.JWK.generate(kty="EC", crv="P-384"), **base)
    with pytest.raises(ConfigError, match="override"):
        issue_token(ED, **base, extra={"jti": "mine"})  # the jti is a parameter, not an extra
    with pytest.raises(ConfigError, match="2048"):
        issue_token(jwk.JWK.generate(kty="RSA", size=1024), **base)


def payload_of(tok: str) -> dict[str, Any]:
    """The decoded payload of a compact JWS (no verification)."""
    part = tok.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded


def test_issue_token_always_sets_a_fresh_jti() -> None:
    common: dict[str, Any] = {
        "sub": "u1",
        "tenant": "t1",
        "roles": [],
        "purpose": "investigation",
        "issuer": ISS,
        "audience": AUD,
        "now": NOW,
    }
    one, two = issue_token(ED, **common), issue_token(ED, **common)
    jtis = {payload_of(one)["jti"], payload_of(two)["jti"]}
    assert len(jtis) == 2 and all(isinstance(j, str) and len(j) >= 16 for j in jtis)
    assert verifier(ED).verify(one).jti == payload_of(one)["jti"]
    assert payload_of(issue_token(ED, **common, jti="chosen"))["jti"] == "chosen"


def test_a_broad_token_has_no_purpose_and_is_refused_as_an_access_token() -> None:
    broad = issue_token(
        ED,
        sub="u1",
        tenant="t1",
        roles=["analyst"],
        purpose=None,
        issuer=ISS,
        audience=AUD,
        now=NOW,
    )
    payload = payload_of(broad)
    assert "purpose" not in payload and payload["jti"]
    refused(verifier(ED), broad, "purpose")


def test_issue_token_ttl_kid_and_audience_list() -> None:
    tok = issue_token(
        EC,
        sub="u1",
        tenant="t1",
        roles=[],
        purpose="analytics",
        issuer=ISS,
        audience=["x", AUD],
        ttl=60,
        kid="ec-1",
        now=NOW,
        extra={"nbf": NOW},
    )
    got = verifier(EC).verify(tok)
    assert (got.exp - got.iat, got.nbf, got.aud) == (60, NOW, ("x", AUD))
    refused(verifier(EC, clock=lambda: NOW + 60 + LEEWAY), tok, "expired")


def test_token_error_is_a_privacy_error() -> None:
    with pytest.raises(PrivacyError):
        verifier(ED).verify("")


# --- fuzzing ----------------------------------------------------------------------------------

B64_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
FUZZ_VERIFIER = verifier(ED, EC, RSA)
VALID = {alg: token(key, alg) for alg, key in KEYS.items()}
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.text(max_size=400) | st.text(alphabet=B64_CHARS + ".", max_size=400))
def test_fuzz_arbitrary_strings_never_verify(text: str) -> None:
    with pytest.raises(TokenError):
        FUZZ_VERIFIER.verify(text)


mutation = st.tuples(
    st.sampled_from(["flip", "insert", "delete"]),
    st.integers(min_value=0, max_value=10_000),
    st.sampled_from(B64_CHARS + ".=+/ \x00é"),
)


@FUZZ
@given(st.sampled_from(sorted(VALID)), st.lists(mutation, min_size=0, max_size=4))
def test_fuzz_mutated_tokens_never_verify(alg: str, mutations: list[tuple[str, int, str]]) -> None:
    original = VALID[alg]
    tok = original
    for op, position, char in mutations:
        i = position % (len(tok) + 1)
        if op == "insert":
            tok = tok[:i] + char + tok[i:]
        elif tok and op == "delete":
            tok = tok[: min(i, len(tok) - 1)] + tok[min(i, len(tok) - 1) + 1 :]
        elif tok:
            i = min(i, len(tok) - 1)
            tok = tok[:i] + char + tok[i + 1 :]
    if tok == original:
        assert FUZZ_VERIFIER.verify(tok).sub == "u1"
    else:
        with pytest.raises(TokenError):
            FUZZ_VERIFIER.verify(tok)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
CLAIM_NAMES = [
    "iss",
    "aud",
    "sub",
    "tenant",
    "roles",
    "purpose",
    "exp",
    "iat",
    "nbf",
    "jti",
    "region",
    "x",
]
HEADER_NAMES = ["alg", "kid", "typ", "crit", "b64", "jku", "jwk", "x5c", "zip"]


@FUZZ
@given(
    st.dictionaries(st.sampled_from(HEADER_NAMES), json_values, max_size=3),
    st.dictionaries(st.sampled_from(CLAIM_NAMES), json_values, max_size=4),
)
def test_fuzz_signed_headers_and_claims_only_raise_token_errors(
    header_changes: dict[str, Any], claim_changes: dict[str, Any]
) -> None:
    # Correctly signed, so the checks after the signature see arbitrary JSON values too.
    header = {"alg": "EdDSA", "kid": "ed-1"} | header_changes
    tok = sign_raw(ED, header, claims() | claim_changes, using="EdDSA")
    try:
        got = FUZZ_VERIFIER.verify(tok)
    except TokenError as exc:
        assert exc.reason != "too_large"
        assert tok not in str(exc)
    else:
        assert got.iss == ISS and got.sub and got.tenant and got.purpose
        assert got.exp + LEEWAY > NOW


# --- the verified-token cache ---------------------------------------------------------------


def test_a_cached_token_still_expires() -> None:
    now = [float(NOW)]
    v = verifier(ED, clock=lambda: now[0])
    tok = token(exp=NOW + 60)
    assert v.verify(tok).sub == "u1"
    assert v.verify(tok).sub == "u1"  # served from the cache
    now[0] = NOW + 60 + LEEWAY
    refused(v, tok, "expired")


def test_a_cached_token_is_refused_after_its_key_leaves_the_set() -> None:
    v = verifier(ED, EC)
    tok = token()
    assert v.verify(tok).sub == "u1"
    v.keys = KeySet.from_json(jwks_of(EC))  # ED rotated out
    refused(v, tok, "unknown_key")


def test_the_cache_never_accepts_a_token_it_refused() -> None:
    v = verifier(ED)
    forged = token(ATTACKER)
    refused(v, forged, "signature")
    refused(v, forged, "signature")
