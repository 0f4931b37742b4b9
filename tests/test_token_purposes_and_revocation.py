"""Purpose vocabulary, the verifier's purpose/clearance/age/jti rules, revocation in the real
store (SQLite and PostgreSQL), and signing key management. Real keys and real signatures."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from jwcrypto import jwk, jws
from sqlalchemy import select

from intelgraph_privacy.errors import ConfigError
from intelgraph_privacy.policy.engine import PolicyEngine
from intelgraph_privacy.store import Store
from intelgraph_privacy.store.schema import revoked_tokens
from intelgraph_privacy.store.versions import REVOCATIONS, read_versions
from intelgraph_privacy.tokens import (
    DEFAULT_MAX_TOKEN_AGE,
    MAX_LEEWAY_SECONDS,
    JwtVerifier,
    KeySet,
    Purpose,
    PurposeVocabulary,
    RevocationList,
    TokenError,
    TokenVerifier,
    generate_signing_key,
    issue_token,
    load_purposes,
    load_signing_key,
    prune_revocations,
    public_jwks,
    revoke_token,
    revoked_token_ids,
)

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_PURPOSES = ROOT / "presets" / "purposes.yaml"
ISS = "https://issuer.example.test"
AUD = "intelgraph-graph-api"
NOW = 1_800_000_000
LEEWAY = 30
VOCABULARY = PurposeVocabulary.of(["investigation", "analytics"])

# One real Ed25519 key for every token of this module (generation is cheap).
KEY = generate_signing_key("EdDSA", kid="k-1")
KEYS = KeySet.from_json(public_jwks(KEY))
# The JWK members that only private or symmetric keys have.
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


def verifier(**options: Any) -> TokenVerifier:
    """A verifier of this module's key at the fixed time NOW."""
    options.setdefault("clock", lambda: NOW)
    options.setdefault("leeway", LEEWAY)
    options.setdefault("purposes", VOCABULARY)
    return TokenVerifier(KEYS, issuer=ISS, audience=AUD, **options)


def claims(**changes: Any) -> dict[str, Any]:
    """A valid access token payload without a jti; a change to None removes the claim."""
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


def sign(payload: dict[str, Any]) -> str:
    """Sign any payload with KEY (issue_token always adds a jti, so it cannot make these)."""
    token = jws.JWS(json.dumps(payload).encode())
    token.add_signature(KEY, alg="EdDSA", protected=json.dumps({"alg": "EdDSA", "kid": "k-1"}))
    return str(token.serialize(compact=True))


def refused(v: TokenVerifier | JwtVerifier, token: str, reason: str) -> TokenError:
    """Assert that `v` refuses `token` for `reason`."""
    with pytest.raises(TokenError) as info:
        if isinstance(v, TokenVerifier):
            v.verify(token)
        else:
            v.verify_payload(token)
    assert info.value.reason == reason, str(info.value)
    return info.value


def write(tmp_path: Path, text: str | bytes, name: str = "purposes.yaml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


# --- the purpose vocabulary -------------------------------------------------------------------


def test_load_a_valid_vocabulary(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "purposes:\n"
        "  investigation: {description: Casework, max_ttl_seconds: 600}\n"
        "  fraud.review_2:\n"
        "    description: Reviews\n",
    )
    vocabulary = load_purposes(path)
    assert sorted(vocabulary) == ["fraud.review_2", "investigation"]
    assert len(vocabulary) == 2 and "investigation" in vocabulary and "audit" not in vocabulary
    assert vocabulary["investigation"] == Purpose(description="Casework", max_ttl_seconds=600)
    assert vocabulary["fraud.review_2"].max_ttl_seconds == 3600  # the default lifetime
    assert vocabulary.source == str(path)
    assert "investigation" in repr(vocabulary)
    with pytest.raises(KeyError):
        vocabulary["audit"]
    with pytest.raises(ValueError):  # purposes are frozen
        vocabulary["investigation"].max_ttl_seconds = 10
    # A verifier built from it accepts exactly its names.
    v = verifier(purposes=vocabulary)
    assert v.purposes == {"investigation", "fraud.review_2"}
    assert v.verify(sign(claims(purpose="fraud.review_2", jti="j"))).purpose == "fraud.review_2"
    refused(v, sign(claims(purpose="analytics")), "purpose")


def test_the_shipped_vocabulary_loads_and_matches_the_exchange_policy() -> None:
    vocabulary = load_purposes(SHIPPED_PURPOSES)
    names = {"investigation", "analytics", "export", "administration", "audit", "support"}
    assert set(vocabulary) == names
    assert all(p.description.strip() for p in vocabulary.values())
    assert {n: p.max_ttl_seconds for n, p in vocabulary.items()} == {
        "investigation": 3600,
        "analytics": 3600,
        "export": 900,
        "administration": 900,
        "audit": 3600,
        "support": 900,
    }
    # Every purpose the exchange policy can grant is one the verifier will accept, and back.
    policy = PolicyEngine(ROOT / "rego")
    assert set(policy.query("data.intelgraph.exchange.purpose_roles", {})) == names


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("missing", None, "cannot read the purpose vocabulary: No such file"),
        ("not-yaml", "purposes: [unclosed\n", "not valid YAML"),
        ("tab", "purposes:\n\tanalytics: {}\n", "not valid YAML"),
        ("empty-file", "", "expected a mapping with a 'purposes' mapping"),
        ("a-list", "- investigation\n", "expected a mapping with a 'purposes' mapping"),
        ("no-purposes", "other: {}\n", "expected a mapping with a 'purposes' mapping"),
        ("purposes-list", "purposes: [a, b]\n", "expected a mapping with a 'purposes' mapping"),
        ("purposes-null", "purposes:\n", "expected a mapping with a 'purposes' mapping"),
        ("empty", "purposes: {}\n", "the purpose vocabulary is empty"),
        ("unknown-top", "purposes: {a: {description: x}}\nextra: 1\n", "unknown keys ['extra']"),
        ("unknown-field", "purposes: {a: {description: x, colour: red}}\n", "purpose a: colour"),
        ("no-description", "purposes: {a: {max_ttl_seconds: 60}}\n", "purpose a: description"),
        ("null-body", "purposes: {a: }\n", "purpose a: description"),
        ("blank-description", "purposes: {a: {description: ''}}\n", "purpose a: description"),
        ("string-body", "purposes: {a: hello}\n", "purpose a: a: Input should be"),
        ("upper-case", "purposes: {Investigation: {description: x}}\n", "'Investigation' is not"),
        ("digit-first", "purposes: {1st: {description: x}}\n", "'1st' is not a purpose name"),
        ("int-name", "purposes: {7: {description: x}}\n", "'7' is not a purpose name"),
        ("space", "purposes: {'a b': {description: x}}\n", "'a b' is not a purpose name"),
        ("too-long", "purposes: {" + "a" * 65 + ": {description: x}}\n", "at most 64"),
        ("ttl-short", "purposes: {a: {description: x, max_ttl_seconds: 29}}\n", "max_ttl_seconds"),
        ("ttl-zero", "purposes: {a: {description: x, max_ttl_seconds: 0}}\n", "max_ttl_seconds"),
        ("ttl-neg", "purposes: {a: {description: x, max_ttl_seconds: -60}}\n", "max_ttl_seconds"),
        (
            "ttl-long",
            "purposes: {a: {description: x, max_ttl_seconds: 86401}}\n",
            "max_ttl_seconds",
        ),
        ("ttl-text", "purposes: {a: {description: x, max_ttl_seconds: soon}}\n", "max_ttl_seconds"),
        (
            "ttl-float",
            "purposes: {a: {description: x, max_ttl_seconds: 60.5}}\n",
            "max_ttl_seconds",
        ),
        ("ttl-list", "purposes: {a: {description: x, max_ttl_seconds: [60]}}\n", "max_ttl_seconds"),
    ],
)
def test_vocabulary_errors_name_the_file_and_the_problem(
    tmp_path: Path, name: str, text: str | None, message: str
) -> None:
    path = tmp_path / f"{name}.yaml" if text is None else write(tmp_path, text, f"{name}.yaml")
    with pytest.raises(ConfigError) as info:
        load_purposes(path)
    assert str(info.value).startswith(f"{path}: "), str(info.value)
    assert message in str(info.value), str(info.value)


def test_a_directory_is_not_a_vocabulary(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the purpose vocabulary"):
        load_purposes(tmp_path)


def test_a_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = write(tmp_path, b"purposes:\n  analytics: {description: \xff\xfe}\n")
    with pytest.raises(ConfigError, match=r"purposes\.yaml"):
        load_purposes(path)


def test_vocabulary_of_names() -> None:
    vocabulary = PurposeVocabulary.of(["analytics", "audit"])
    assert sorted(vocabulary) == ["analytics", "audit"]
    assert vocabulary["audit"].max_ttl_seconds == 3600
    described = PurposeVocabulary.of({"audit": "Reading evidence"})
    assert described["audit"].description == "Reading evidence"
    with pytest.raises(ConfigError, match="empty"):
        PurposeVocabulary.of([])
    with pytest.raises(ConfigError, match="not a purpose name"):
        PurposeVocabulary.of(["Analytics"])
    with pytest.raises(ConfigError, match="not a purpose name"):
        PurposeVocabulary.of(["a" * 65])
    assert len(PurposeVocabulary.of(["a" * 64])) == 1


# --- purpose and clearance at verification ----------------------------------------------------


def test_a_token_without_a_purpose_is_refused_as_purpose() -> None:
    error = refused(verifier(), sign(claims(purpose=None)), "purpose")
    assert "no purpose" in str(error)


@pytest.mark.parametrize("purpose", ["marketing", "export", "INVESTIGATION", "investigation\n"])
def test_a_purpose_outside_the_vocabulary_is_refused_as_purpose(purpose: str) -> None:
    error = refused(verifier(), sign(claims(purpose=purpose)), "purpose")
    assert "vocabulary" in str(error)


@pytest.mark.parametrize("purpose", ["", 7, ["investigation"], {"name": "investigation"}, True])
def test_a_purpose_that_is_not_a_name_is_refused_as_claims(purpose: object) -> None:
    refused(verifier(), sign(claims(purpose=purpose)), "claims")


@pytest.mark.parametrize("clearance", ["low", "medium", "high", "restricted"])
def test_clearance_tiers_are_accepted_and_reach_the_principal(clearance: str) -> None:
    got, principal = verifier().authenticate(sign(claims(clearance=clearance, region="eu")))
    assert got.clearance == clearance
    assert principal.clearance == clearance and principal.region == "eu"
    assert principal.policy_input()["clearance"] == clearance


def test_no_clearance_means_none() -> None:
    assert verifier().authenticate(sign(claims()))[1].clearance is None


@pytest.mark.parametrize(
    "clearance", ["secret", "", "LOW", "high ", 3, None, ["high"], {"tier": "high"}, True]
)
def test_a_bad_clearance_is_refused_as_claims(clearance: object) -> None:
    payload = claims()
    payload["clearance"] = clearance  # also an explicit null
    error = refused(verifier(), sign(payload), "claims")
    assert "clearance" in str(error)


# --- maximum token age ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("leeway", "age", "reason"),
    [
        (30, 3600, None),
        (30, 3600 + 30, None),  # now - iat > max_age + leeway is false at equality
        (30, 3600 + 31, "too_old"),
        (0, 3600, None),
        (0, 3601, "too_old"),
        (60, 3660, None),
        (60, 3661, "too_old"),
    ],
)
def test_max_token_age_edges(leeway: int, age: int, reason: str | None) -> None:
    # exp is far away: only the age can refuse these tokens.
    token = sign(claims(iat=NOW - age, exp=NOW + 86_400))
    v = verifier(max_token_age=3600, leeway=leeway)
    if reason is None:
        assert v.verify(token).iat == NOW - age
    else:
        error = refused(v, token, reason)
        assert "3600" in str(error)


def test_default_max_token_age_is_a_day() -> None:
    assert DEFAULT_MAX_TOKEN_AGE == 86_400 and verifier().max_token_age == 86_400
    old = NOW - DEFAULT_MAX_TOKEN_AGE - LEEWAY
    assert verifier().verify(sign(claims(iat=old, exp=NOW + 60))).sub == "u1"
    refused(verifier(), sign(claims(iat=old - 1, exp=NOW + 60)), "too_old")


def test_a_cached_token_grows_too_old() -> None:
    now = [float(NOW)]
    v = verifier(max_token_age=120, clock=lambda: now[0])
    token = sign(claims(iat=NOW, exp=NOW + 86_400))
    assert v.verify(token).sub == "u1"
    assert v.verify(token).sub == "u1"  # from the cache
    now[0] = NOW + 120 + LEEWAY + 1
    refused(v, token, "too_old")


def test_expiry_is_checked_before_age() -> None:
    token = sign(claims(iat=NOW - 10_000, exp=NOW - 5_000))
    refused(verifier(max_token_age=3600), token, "expired")


# --- jti --------------------------------------------------------------------------------------


def test_require_jti_refuses_a_token_without_one() -> None:
    no_jti = sign(claims())
    assert verifier().verify(no_jti).jti is None  # optional by default
    error = refused(verifier(require_jti=True), no_jti, "claims")
    assert "jti" in str(error)
    refused(verifier(require_jti=True), sign(claims(jti="")), "claims")
    refused(verifier(require_jti=True), sign(claims(jti=12)), "claims")
    assert verifier(require_jti=True).verify(sign(claims(jti="j-1"))).jti == "j-1"
    issued = issue_token(
        KEY,
        sub="u1",
        tenant="t1",
        roles=[],
        purpose="analytics",
        issuer=ISS,
        audience=AUD,
        now=NOW,
    )
    assert verifier(require_jti=True).verify(issued).jti  # issue_token always sets one


# --- revocation in the store ------------------------------------------------------------------


def stored_rows(store: Store) -> dict[str, tuple[Any, ...]]:
    """The revocation table, read directly: jti -> (revoked_by, reason, revoked_at, expires_at)."""
    with store.read() as connection:
        rows = connection.execute(select(revoked_tokens))
        return {r.jti: (r.revoked_by, r.reason, r.revoked_at, r.expires_at) for r in rows}


def test_revoke_token_records_the_revocation_and_bumps_the_counter(store: Store) -> None:
    assert read_versions(store).get(REVOCATIONS, 0) == 0
    assert revoked_token_ids(store) == frozenset()
    assert revoke_token(store, "j-1", revoked_by="officer@t1", reason="laptop lost") is True
    assert read_versions(store)[REVOCATIONS] == 1
    assert revoked_token_ids(store) == {"j-1"}
    revoked_by, reason, revoked_at, expires_at = stored_rows(store)["j-1"]
    assert (revoked_by, reason) == ("officer@t1", "laptop lost")
    # Kept as long as a token with this jti could be accepted: max age plus the largest leeway.
    assert expires_at - revoked_at == timedelta(seconds=DEFAULT_MAX_TOKEN_AGE + MAX_LEEWAY_SECONDS)
    assert revoked_at.tzinfo is not None
    assert abs(revoked_at - datetime.now(UTC)) < timedelta(minutes=5)
    assert revoke_token(store, "j-2", revoked_by="officer@t1") is True
    assert read_versions(store)[REVOCATIONS] == 2
    assert revoked_token_ids(store) == {"j-1", "j-2"}
    assert stored_rows(store)["j-2"][1] is None  # the reason is optional


def test_revoking_again_keeps_the_first_revocation(store: Store) -> None:
    revoke_token(store, "j-1", revoked_by="officer@t1", reason="laptop lost")
    revoke_token(store, "j-1", revoked_by="someone-else", reason="again")
    rows = stored_rows(store)
    assert list(rows) == ["j-1"]
    assert rows["j-1"][:2] == ("officer@t1", "laptop lost")
    assert revoked_token_ids(store) == {"j-1"}


@pytest.mark.parametrize(
    "backend",
    [
        "sqlite",
        pytest.param(
            "postgres",
            marks=[
                pytest.mark.postgres,
            ],
        ),
    ],
)
def test_revoking_again_is_a_no_op(request: pytest.FixtureRequest, backend: str) -> None:
    store: Store = request.getfixturevalue("sqlite_store" if backend == "sqlite" else "pg_store")
    assert revoke_token(store, "j-1", revoked_by="officer@t1") is True
    # Again: False, and the counter stays (replicas have nothing to reload).
    assert revoke_token(store, "j-1", revoked_by="someone-else") is False
    assert read_versions(store)[REVOCATIONS] == 1


@pytest.mark.parametrize("jti", ["", "x" * 256, None, 7])
def test_revoke_token_refuses_a_bad_jti(store: Store, jti: Any) -> None:
    with pytest.raises(ConfigError, match="jti"):
        revoke_token(store, jti, revoked_by="officer")
    assert revoked_token_ids(store) == frozenset()
    assert read_versions(store).get(REVOCATIONS, 0) == 0


def test_a_jti_of_the_maximum_length_is_revocable(store: Store) -> None:
    assert revoke_token(store, "x" * 255, revoked_by="officer")
    assert revoked_token_ids(store) == {"x" * 255}


def test_prune_removes_only_expired_revocations(store: Store) -> None:
    t = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    revoke_token(store, "old", revoked_by="o", max_token_age=100, now=t)  # kept until t + 160 s
    revoke_token(store, "newer", revoked_by="o", max_token_age=100, now=t + timedelta(seconds=1))
    revoke_token(store, "fresh", revoked_by="o")  # default age, real time: far from expiry
    edge = t + timedelta(seconds=100 + MAX_LEEWAY_SECONDS)
    before = edge - timedelta(microseconds=1)
    assert revoked_token_ids(store, now=before) >= {"old", "newer"}
    assert "old" not in revoked_token_ids(store, now=edge)  # expires_at > now is false at equality
    assert "newer" in revoked_token_ids(store, now=edge)
    assert prune_revocations(store, now=before) == 0
    assert prune_revocations(store, now=edge) == 1
    assert set(stored_rows(store)) == {"newer", "fresh"}
    assert prune_revocations(store, now=edge) == 0
    assert prune_revocations(store) == 1  # now: "newer" expired a day ago
    assert set(stored_rows(store)) == {"fresh"}
    assert revoked_token_ids(store) == {"fresh"}


def test_revoked_token_ids_hide_expired_rows_before_pruning(store: Store) -> None:
    long_ago = datetime.now(UTC) - timedelta(days=3)
    revoke_token(store, "ancient", revoked_by="o", now=long_ago)
    assert revoked_token_ids(store) == frozenset()
    assert set(stored_rows(store)) == {"ancient"}  # still stored until pruned


def issued(jti: str | None = None, **changes: Any) -> str:
    """A real access token (with a jti) for this module's verifiers."""
    options: dict[str, Any] = {
        "sub": "u1",
        "tenant": "t1",
        "roles": ["analyst"],
        "purpose": "investigation",
        "issuer": ISS,
        "audience": AUD,
        "now": NOW,
        "jti": jti,
    }
    options.update(changes)
    return issue_token(KEY, **options)


def test_a_revoked_token_is_refused_even_after_it_was_cached(store: Store) -> None:
    victim, bystander = issued("victim-jti"), issued("bystander-jti")
    revoked = RevocationList(revoked_token_ids(store))
    v = verifier(revoked=revoked)
    assert v.verify(victim).jti == "victim-jti"  # verified, hence cached
    assert v.verify(bystander).sub == "u1"
    assert revoke_token(store, "victim-jti", revoked_by="officer")
    assert v.verify(victim).sub == "u1"  # this replica has not reloaded yet
    revoked.replace(revoked_token_ids(store))  # the reload after the counter moved
    error = refused(v, victim, "revoked")
    assert "victim-jti" not in str(error) and victim not in str(error)
    assert v.verify(bystander).sub == "u1"  # other tokens are untouched
    assert len(revoked) == 1
    # A verifier built after the revocation refuses it on first sight.
    refused(verifier(revoked=RevocationList(revoked_token_ids(store))), victim, "revoked")
    # So does a plain JWT verifier (token exchange uses one for subject tokens).
    jwt = JwtVerifier(
        KEYS,
        issuer=ISS,
        audience=AUD,
        clock=lambda: NOW,
        revoked=RevocationList(revoked_token_ids(store)),
    )
    refused(jwt, victim, "revoked")
    assert jwt.verify_payload(bystander)["jti"] == "bystander-jti"


def test_revocation_list_add_and_replace() -> None:
    revoked = RevocationList()
    v = verifier(revoked=revoked)
    token = issued("j-9")
    assert len(revoked) == 0 and v.verify(token).jti == "j-9"
    revoked.add("j-9")  # a revocation made by this process counts at once
    assert revoked("j-9") and len(revoked) == 1
    refused(v, token, "revoked")
    revoked.replace(frozenset({"other"}))  # a reload that no longer lists it
    assert not revoked("j-9")
    assert v.verify(token).jti == "j-9"


def test_revocation_applies_only_to_tokens_with_a_jti() -> None:
    # The check is by jti; a token without one cannot be revoked (hence require_jti).

    def everything(jti: str) -> bool:
        return True

    assert verifier(revoked=everything).verify(sign(claims())).jti is None
    refused(verifier(revoked=everything), sign(claims(jti="any")), "revoked")
    refused(verifier(revoked=everything, require_jti=True), sign(claims()), "claims")


# --- signing keys -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alg", "kty", "crv"),
    [("EdDSA", "OKP", "Ed25519"), ("ES256", "EC", "P-256"), ("RS256", "RSA", None)],
)
def test_generated_keys_round_trip_through_a_file(
    tmp_path: Path, alg: str, kty: str, crv: str | None
) -> None:
    key = generate_signing_key(alg)
    assert key.has_private
    assert (key["kty"], key.get("crv"), key["alg"], key["use"]) == (kty, crv, alg, "sig")
    assert key["kid"] == key.thumbprint()  # the default kid
    if alg == "RS256":
        assert key.get_op_key("verify").key_size >= 3072
    path = tmp_path / "signing.jwk"
    path.write_text(key.export_private())
    loaded = load_signing_key(path)
    assert loaded.has_private and loaded.thumbprint() == key.thumbprint()
    assert loaded["kid"] == key["kid"]
    # The loaded key signs tokens that its public JWKS verifies.
    keys = KeySet.from_json(public_jwks(loaded))
    token = issue_token(
        loaded,
        sub="u1",
        tenant="t1",
        roles=["analyst"],
        purpose="analytics",
        issuer=ISS,
        audience=AUD,
        now=NOW,
    )
    v = TokenVerifier(keys, issuer=ISS, audience=AUD, purposes=VOCABULARY, clock=lambda: NOW)
    assert v.verify(token).purpose == "analytics"
    assert keys.select(key["kid"]).alg == alg


def test_generate_signing_key_kid_and_unknown_algorithms() -> None:
    assert generate_signing_key("ES256", kid="mine")["kid"] == "mine"
    assert generate_signing_key()["kty"] == "OKP"  # EdDSA by default
    for alg in ("HS256", "none", "PS256", "ES384", "eddsa"):
        with pytest.raises(ConfigError, match="cannot generate"):
            generate_signing_key(alg)


def test_load_signing_key_refuses_what_cannot_sign(tmp_path: Path) -> None:
    def refused_file(content: str | bytes, match: str) -> None:
        path = write(tmp_path, content, "key.json")
        with pytest.raises(ConfigError, match=match) as info:
            load_signing_key(path)
        assert str(path) in str(info.value)

    ed = generate_signing_key("EdDSA")
    refused_file(ed.export_public(), "public key")
    refused_file("not json {", "not a JSON Web Key")
    refused_file(b"\xff\xfe\x00", "not a JSON Web Key")
    refused_file("[]", "not a JSON Web Key")
    refused_file(json.dumps({"kty": "nope"}), "not a JSON Web Key")
    hs = jwk.JWK.generate(kty="oct", size=256, kid="hmac")
    path = write(tmp_path, hs.export(), "hs.json")
    with pytest.raises(ConfigError) as info:  # a shared secret never signs access tokens
        load_signing_key(path)
    assert hs.export(as_dict=True)["k"] not in str(info.value)  # nor is it echoed
    refused_file(jwk.JWK.generate(kty="EC", crv="P-384").export_private(), "Ed25519, P-256 or RSA")
    refused_file(jwk.JWK.generate(kty="RSA", size=1024).export_private(), "2048")
    with pytest.raises(ConfigError, match="cannot read the signing key"):
        load_signing_key(tmp_path / "missing.jwk")


def test_public_jwks_never_exports_private_members() -> None:
    keys = [generate_signing_key(alg, kid=alg) for alg in ("EdDSA", "ES256", "RS256")]
    document = public_jwks(*keys)
    assert [k["kid"] for k in document["keys"]] == ["EdDSA", "ES256", "RS256"]
    for exported in document["keys"]:
        assert not PRIVATE_MEMBERS & set(exported), exported
        assert exported["use"] == "sig" and exported["alg"] == exported["kid"]
    text = json.dumps(document)
    for key in keys:  # no secret value anywhere in the document
        private = key.export_private(as_dict=True)
        assert all(private[m] not in text for m in PRIVATE_MEMBERS & set(private))
    loaded = KeySet.from_json(json.dumps(document))
    assert loaded.kids == {"EdDSA", "ES256", "RS256"}
    assert loaded.thumbprints == {k.thumbprint() for k in keys}
    assert loaded.skipped == ()
    # A public key in gives the same document as its private key.
    public = jwk.JWK(**keys[0].export_public(as_dict=True))
    assert public_jwks(public) == public_jwks(keys[0])
