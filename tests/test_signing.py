"""Signed JSON documents: real Ed25519 keys, real JWS, every refusal reason, every byte checked."""

from __future__ import annotations

import base64
import dataclasses
import datetime
import hashlib
import hmac
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jwcrypto import jwk, jws

from intelgraph_privacy import codec
from intelgraph_privacy.errors import ConfigError, PrivacyError
from intelgraph_privacy.signing import (
    SIGNATURES,
    SignatureError,
    VerifiedDocument,
    canonical_json,
    encode_signed,
    sign_document,
    verify_document,
    verify_signatures,
)
from intelgraph_privacy.tokens import KeySet, generate_signing_key, public_jwks

KEY_A = generate_signing_key("EdDSA", kid="manifest-2024")
KEY_B = generate_signing_key("EdDSA", kid="manifest-2025")
KEY_C = generate_signing_key("EdDSA", kid="manifest-2026")
JWKS_AB = KeySet.from_json(public_jwks(KEY_A, KEY_B))

DOCUMENT: dict[str, Any] = {
    "job": "6f1c0d2e-0000-4000-8000-000000000001",
    "subject": "hmac-sha256:0123abcd",
    "tenant": "acme",
    "completed": True,
    "counts": {"deleted": 12, "tombstoned": 3, "ratio": 0.25},
    "datasets": ["graph.person", "search.index", "café ☕ 𝄞"],
    "notes": None,
}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def detached(header: bytes, payload: bytes, key: jwk.JWK) -> str:
    """A detached compact JWS over `payload` with these exact header bytes, signed by `key`."""
    signing_input = f"{b64(header)}.{b64(payload)}".encode("ascii")
    return f"{b64(header)}..{b64(key.get_op_key('sign').sign(signing_input))}"


def with_signatures(document: dict[str, Any], signatures: Any) -> bytes:
    """The canonical file bytes of `document` with these signatures (valid or not)."""
    return codec.dumps({**document, SIGNATURES: signatures}, sort_keys=True) + b"\n"


def refused(data: bytes, jwks: Any = JWKS_AB, **kwargs: Any) -> str:
    with pytest.raises(SignatureError) as caught:
        verify_document(data, jwks, **kwargs)
    assert str(caught.value)
    return caught.value.reason


# --- round trips -----------------------------------------------------------------------------


@pytest.mark.parametrize("keys", [[KEY_A], [KEY_A, KEY_B], [KEY_B, KEY_A]])
def test_round_trip(keys: list[jwk.JWK]) -> None:
    signed = sign_document(DOCUMENT, keys)
    assert len(signed[SIGNATURES]) == len(keys)
    data = encode_signed(signed)
    assert data == canonical_json(signed) + b"\n"
    verified = verify_document(data, JWKS_AB)
    assert verified == VerifiedDocument(DOCUMENT, tuple(k.get("kid") for k in keys))
    assert DOCUMENT.get(SIGNATURES) is None  # the input is not changed
    with pytest.raises(dataclasses.FrozenInstanceError):
        verified.kids = ()  # type: ignore[misc]


def test_signed_copy_is_what_a_verifier_reads() -> None:
    document = {"tuple": (1, 2), "nested": {"b": [1], "a": "x"}}
    signed = sign_document(document, [KEY_A])
    assert isinstance(signed.pop(SIGNATURES), list)
    assert signed == {"tuple": [1, 2], "nested": {"a": "x", "b": [1]}}
    signed["nested"]["a"] = "changed"  # a deep copy: the caller's document stays as it was
    assert document["nested"] == {"b": [1], "a": "x"}


def test_signatures_are_standard_detached_jws() -> None:
    """RFC 7515 appendix F: plain jwcrypto verifies them over the canonical payload."""
    signed = sign_document(DOCUMENT, [KEY_A, KEY_B])
    payload = canonical_json(DOCUMENT)
    for token, key in zip(signed[SIGNATURES], [KEY_A, KEY_B], strict=True):
        header, middle, signature = token.split(".")
        assert middle == ""
        assert unb64(header) == b'{"alg":"EdDSA","kid":"%s"}' % key.get("kid").encode()
        assert len(unb64(signature)) == 64
        checked = jws.JWS()
        checked.deserialize(token)
        checked.verify(key, alg="EdDSA", detached_payload=payload)


def test_canonical_json() -> None:
    value = {"b": [1, 2.5, None, True], "a": {"é": "☕", "A": ""}, "c": (1, "x\n")}
    assert canonical_json(value) == (
        '{"a":{"A":"","é":"☕"},"b":[1,2.5,null,true],"c":[1,"x\\n"]}'.encode()
    )
    assert canonical_json({"k": 1}) == codec.dumps({"k": 1}, sort_keys=True)


@pytest.mark.parametrize(
    "value",
    [
        {"x": float("nan")},
        {"x": [float("inf")]},
        {"x": datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)},
        {"x": {1, 2}},
        {1: "int key"},
        {"x": 2**64},
        {"x": b"bytes"},
    ],
)
def test_canonical_json_refuses_what_does_not_read_back(value: Any) -> None:
    with pytest.raises(ValueError, match="not a JSON value"):
        canonical_json(value)
    with pytest.raises(SignatureError) as caught:
        sign_document(value, [KEY_A])
    assert caught.value.reason == "not_json"


# --- keys: rotation, unknown and wrong keys ---------------------------------------------------


def test_key_rotation_selects_by_kid() -> None:
    old, current, upcoming = KEY_A, KEY_B, KEY_C
    rotating = KeySet.from_json(public_jwks(old, current, upcoming))
    by_old = encode_signed(sign_document(DOCUMENT, [old]))
    by_current = encode_signed(sign_document(DOCUMENT, [current]))
    assert verify_document(by_old, rotating).kids == ("manifest-2024",)
    assert verify_document(by_current, rotating).kids == ("manifest-2025",)
    # Retiring the old key: what it signed is no longer accepted.
    retired = KeySet.from_json(public_jwks(current, upcoming))
    assert refused(by_old, retired) == "unknown_kid"
    assert verify_document(by_current, retired).kids == ("manifest-2025",)


def test_unknown_kid_refused() -> None:
    data = encode_signed(sign_document(DOCUMENT, [KEY_C]))
    assert refused(data) == "unknown_kid"


def test_every_signature_must_verify_not_just_one() -> None:
    data = encode_signed(sign_document(DOCUMENT, [KEY_A, KEY_C]))
    assert refused(data) == "unknown_kid"  # KEY_A's signature alone is not enough
    a, b = sign_document(DOCUMENT, [KEY_A, KEY_B])[SIGNATURES]
    other = sign_document({**DOCUMENT, "tenant": "other"}, [KEY_B])[SIGNATURES][0]
    assert refused(with_signatures(DOCUMENT, [a, other])) == "bad_signature"
    assert refused(with_signatures(DOCUMENT, [other, a])) == "bad_signature"
    assert verify_document(with_signatures(DOCUMENT, [b, a]), JWKS_AB).kids == (
        "manifest-2025",
        "manifest-2024",
    )


def test_wrong_key_with_the_same_kid_refused() -> None:
    impostor = generate_signing_key("EdDSA", kid="manifest-2024")
    data = encode_signed(sign_document(DOCUMENT, [impostor]))
    assert refused(data) == "bad_signature"


def test_kid_naming_a_non_ed25519_key_refused() -> None:
    ec = generate_signing_key("ES256", kid="ec-key")
    impostor = generate_signing_key("EdDSA", kid="ec-key")
    data = encode_signed(sign_document(DOCUMENT, [impostor]))
    assert refused(data, KeySet.from_json(public_jwks(ec, KEY_A))) == "key_not_eddsa"


def test_required_kids() -> None:
    data = encode_signed(sign_document(DOCUMENT, [KEY_A, KEY_B]))
    assert verify_document(data, JWKS_AB, required_kids={"manifest-2024"}).kids
    assert verify_document(data, JWKS_AB, required_kids=["manifest-2024", "manifest-2025"]).kids
    only_a = encode_signed(sign_document(DOCUMENT, [KEY_A]))
    assert refused(only_a, required_kids={"manifest-2025"}) == "missing_kid"


def test_one_key_signing_twice_refused() -> None:
    token = sign_document(DOCUMENT, [KEY_A])[SIGNATURES][0]
    assert refused(with_signatures(DOCUMENT, [token, token])) == "duplicate_kid"
    twin = generate_signing_key("EdDSA", kid="manifest-2024")
    with pytest.raises(SignatureError) as caught:
        sign_document(DOCUMENT, [KEY_A, twin])
    assert caught.value.reason == "duplicate_kid"


def test_key_set_forms() -> None:
    data = encode_signed(sign_document(DOCUMENT, [KEY_A]))
    jwkset = jwk.JWKSet()
    jwkset.add(KEY_A)  # a private key: only its public part is used
    for keys in (JWKS_AB, public_jwks(KEY_A), jwkset):
        assert verify_document(data, keys).kids == ("manifest-2024",)
    with pytest.raises(ConfigError, match="private"):
        verify_document(data, {"keys": [KEY_A.export_private(as_dict=True)]})


# --- the bytes: canonical form and JSON ------------------------------------------------------


def test_not_canonical_refused() -> None:
    signed = sign_document(DOCUMENT, [KEY_A])
    data = encode_signed(signed)
    variants = [
        data[:-1],  # no newline
        data + b"\n",
        data[:-1] + b"\r\n",
        b" " + data,
        json.dumps(signed, indent=2, sort_keys=True).encode() + b"\n",
        json.dumps(signed, sort_keys=True).encode() + b"\n",  # ", " and ": "
        json.dumps(signed, separators=(",", ":")).encode() + b"\n",  # key order
        json.dumps(signed, separators=(",", ":"), sort_keys=True).encode() + b"\n",  # \u escapes
        data.replace(b'{"completed":true,', b'{"completed":false,"completed":true,'),
        data.replace(b'"ratio":0.25', b'"ratio":2.5e-1'),
        data.replace(b'"tenant":"acme"', b'"tenant":"\\u0061cme"'),
    ]
    for variant in variants:
        assert variant != data
        assert codec.loads(variant) == codec.loads(data)  # same content, other bytes
        assert refused(variant) == "not_canonical", variant


@pytest.mark.parametrize(
    "data", [b"\n", b"nope\n", b"[]\n", b'"text"\n', b"null\n", b'{"a":"\xff"}\n', b"{\n"]
)
def test_not_a_json_object_refused(data: bytes) -> None:
    assert refused(data) == "bad_json"


def test_bytes_only() -> None:
    data = encode_signed(sign_document(DOCUMENT, [KEY_A]))
    assert verify_document(bytearray(data), JWKS_AB).kids == ("manifest-2024",)
    with pytest.raises(TypeError):
        verify_document(data.decode(), JWKS_AB)  # type: ignore[arg-type]


def test_missing_signatures_refused() -> None:
    assert refused(codec.dumps(DOCUMENT, sort_keys=True) + b"\n") == "no_signatures"


@pytest.mark.parametrize("signatures", [None, [], "", "abc", {}, 5])
def test_empty_or_not_a_list_of_signatures_refused(signatures: Any) -> None:
    assert refused(with_signatures(DOCUMENT, signatures)) == "no_signatures"


# --- the signatures: structure, base64, header -----------------------------------------------


def test_malformed_jws_refused() -> None:
    token = sign_document(DOCUMENT, [KEY_A])[SIGNATURES][0]
    header, _, signature = token.split(".")
    for bad in [
        5,
        None,
        "abc",
        f"{header}.{signature}",
        f"{header}...{signature}",
        f"{header}..{signature}=",  # padding
        f"{header}..{signature[:-2]}+/",  # not the url-safe alphabet
        f"{header}..{signature[:-1]}",  # 85 characters: no whole byte count
    ]:
        assert refused(with_signatures(DOCUMENT, [bad])) == "malformed_jws", bad


def test_short_or_empty_signature_refused() -> None:
    token = sign_document(DOCUMENT, [KEY_A])[SIGNATURES][0]
    header, _, signature = token.split(".")
    short = b64(unb64(signature)[:63])
    for bad in [f"{header}..", f"{header}..{short}"]:
        assert refused(with_signatures(DOCUMENT, [bad])) == "bad_signature"


def test_non_canonical_base64_refused() -> None:
    """The last character of an 86-character signature carries 4 unused bits: changing them
    leaves the decoded signature the same, so only the re-encoding check sees it."""
    token = sign_document(DOCUMENT, [KEY_A])[SIGNATURES][0]
    header, _, signature = token.split(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(signature[-1])
    for unused_bits in range(1, 16):
        swapped = signature[:-1] + alphabet[last ^ unused_bits]
        assert unb64(swapped) == unb64(signature)  # a lenient decoder sees the same signature
        bad = f"{header}..{swapped}"
        assert refused(with_signatures(DOCUMENT, [bad])) == "not_canonical_base64"


def test_attached_payload_refused() -> None:
    token = jws.JWS(canonical_json(DOCUMENT))
    token.add_signature(KEY_A, protected='{"alg":"EdDSA","kid":"manifest-2024"}')
    attached = token.serialize(compact=True)
    assert refused(with_signatures(DOCUMENT, [attached])) == "payload_not_detached"


def tampered_headers() -> Iterator[tuple[str, bytes]]:
    kid = "manifest-2024"
    public = KEY_A.export_public(as_dict=True)
    yield "jku", codec.dumps({"alg": "EdDSA", "jku": "https://evil.test/jwks", "kid": kid})
    yield "jwk", codec.dumps({"alg": "EdDSA", "jwk": public, "kid": kid})
    yield "x5u", codec.dumps({"alg": "EdDSA", "kid": kid, "x5u": "https://evil.test/cert"})
    yield "crit", codec.dumps({"alg": "EdDSA", "crit": ["b64"], "kid": kid, "b64": False})
    yield "typ", codec.dumps({"alg": "EdDSA", "kid": kid, "typ": "JWT"})
    yield "no kid", b'{"alg":"EdDSA"}'
    yield "kid not a string", b'{"alg":"EdDSA","kid":1}'
    yield "empty kid", b'{"alg":"EdDSA","kid":""}'
    yield "member order", b'{"kid":"manifest-2024","alg":"EdDSA"}'
    yield "whitespace", b'{"alg": "EdDSA", "kid": "manifest-2024"}'
    yield "escaped", b'{"alg":"EdDSA","kid":"manifest\\u002d2024"}'
    yield "duplicate alg", b'{"alg":"none","alg":"EdDSA","kid":"manifest-2024"}'
    yield "Ed25519 alg", b'{"alg":"Ed25519","kid":"manifest-2024"}'
    yield "ES256", b'{"alg":"ES256","kid":"manifest-2024"}'
    yield "not JSON", b"EdDSA"
    yield "array", b'["EdDSA","manifest-2024"]'


@pytest.mark.parametrize(("name", "header"), list(tampered_headers()))
def test_tampered_header_refused_even_when_validly_signed(name: str, header: bytes) -> None:
    token = detached(header, canonical_json(DOCUMENT), KEY_A)
    assert refused(with_signatures(DOCUMENT, [token])) == "bad_header", name


def test_lenient_verifier_would_accept_a_jku_header() -> None:
    """Why the exact header check matters: jwcrypto alone verifies this one."""
    header = codec.dumps({"alg": "EdDSA", "jku": "https://evil.test/jwks", "kid": "manifest-2024"})
    token = detached(header, canonical_json(DOCUMENT), KEY_A)
    checked = jws.JWS()
    checked.deserialize(token)
    checked.verify(KEY_A, detached_payload=canonical_json(DOCUMENT))


def test_alg_none_and_hs256_refused() -> None:
    payload = canonical_json(DOCUMENT)
    none = b64(b'{"alg":"none","kid":"manifest-2024"}') + ".."
    hs_header = b'{"alg":"HS256","kid":"manifest-2024"}'
    # Key confusion: HMAC keyed with the public key's bytes, as a confused verifier would do.
    secret = KEY_A.export_public().encode()
    mac = hmac.new(secret, f"{b64(hs_header)}.{b64(payload)}".encode(), hashlib.sha256).digest()
    hs256 = f"{b64(hs_header)}..{b64(mac)}"
    for token in (none, hs256):
        assert refused(with_signatures(DOCUMENT, [token])) == "bad_header"
        # Not even next to a good signature.
        good = sign_document(DOCUMENT, [KEY_B])[SIGNATURES][0]
        assert refused(with_signatures(DOCUMENT, [good, token])) == "bad_header"


# --- the content: any change is refused ------------------------------------------------------


def leaf_paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaf_paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from leaf_paths(item, (*path, index))
    else:
        yield path


def changed(value: Any) -> Any:
    if value is None:
        return 0
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    return value + "x"


def test_changing_any_value_refused() -> None:
    signed = sign_document(DOCUMENT, [KEY_A, KEY_B])
    paths = list(leaf_paths(DOCUMENT))
    assert len(paths) == 11
    for path in paths:
        tampered = json.loads(json.dumps(signed))
        holder = tampered
        for step in path[:-1]:
            holder = holder[step]
        holder[path[-1]] = changed(holder[path[-1]])
        assert refused(encode_signed(tampered)) == "bad_signature", path
    for tampered in (
        {**signed, "extra": 1},
        {k: v for k, v in signed.items() if k != "notes"},
        {**signed, "datasets": signed["datasets"][::-1]},
        {**signed, "counts": {**signed["counts"], "deleted": 12.0}},  # 12 and 12.0 differ
    ):
        assert refused(encode_signed(tampered)) == "bad_signature"


def mutants(data: bytes) -> Iterator[bytes]:
    """Every single-byte change of `data`: flips, deletions and insertions at every position."""
    for i in range(len(data)):
        for mask in (0x01, 0x02, 0x20, 0x80):
            yield data[:i] + bytes([data[i] ^ mask]) + data[i + 1 :]
        yield data[:i] + data[i + 1 :]
    for i in range(len(data) + 1):
        for byte in (b" ", b"0", b"\n", b"A"):
            yield data[:i] + byte + data[i:]


def test_every_byte_position_is_checked() -> None:
    data = encode_signed(sign_document({"a": [1, "é", None], "b": {"c": True}}, [KEY_A, KEY_B]))
    count = 0
    for mutant in mutants(data):
        assert mutant != data
        with pytest.raises(SignatureError):
            verify_document(mutant, JWKS_AB)
        count += 1
    assert count == 9 * len(data) + 4


JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)
DOCUMENTS = st.dictionaries(
    st.text(max_size=6).filter(lambda key: key != SIGNATURES), JSON_VALUES, max_size=5
)


@st.composite
def mutation(draw: st.DrawFn, data: bytes) -> bytes:
    kind = draw(st.sampled_from(["flip", "delete", "insert"]))
    if kind == "insert":
        at = draw(st.integers(0, len(data)))
        return data[:at] + bytes([draw(st.integers(0, 255))]) + data[at:]
    at = draw(st.integers(0, len(data) - 1))
    if kind == "delete":
        return data[:at] + data[at + 1 :]
    return data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=DOCUMENTS, two_keys=st.booleans(), data=st.data())
def test_any_single_byte_change_is_refused(
    document: dict[str, Any], two_keys: bool, data: st.DataObject
) -> None:
    keys = [KEY_A, KEY_B] if two_keys else [KEY_B]
    encoded = encode_signed(sign_document(document, keys))
    verified = verify_document(encoded, JWKS_AB)
    assert verified.document == codec.loads(canonical_json(document))
    assert len(verified.kids) == len(keys)
    for _ in range(5):
        mutant = data.draw(mutation(encoded))
        with pytest.raises(SignatureError):
            verify_document(mutant, JWKS_AB)


# --- signing refusals and nested documents ---------------------------------------------------


def test_sign_refuses_an_already_signed_document() -> None:
    signed = sign_document(DOCUMENT, [KEY_A])
    for document in (signed, {**DOCUMENT, SIGNATURES: []}):
        with pytest.raises(SignatureError) as caught:
            sign_document(document, [KEY_B])
        assert caught.value.reason == "already_signed"


def bad_signing_keys() -> Iterator[tuple[str, Any]]:
    yield "public", jwk.JWK(**KEY_A.export_public(as_dict=True))
    yield "ES256", generate_signing_key("ES256", kid="ec")
    yield "Ed448", jwk.JWK.generate(kty="OKP", crv="Ed448", kid="ed448")
    yield "oct", jwk.JWK.generate(kty="oct", size=256, kid="hmac")
    yield "no kid", jwk.JWK.generate(kty="OKP", crv="Ed25519")
    declared = jwk.JWK.generate(kty="OKP", crv="Ed25519", kid="x")
    declared.update({"alg": "ES256"})
    yield "declared alg", declared
    encryption = jwk.JWK.generate(kty="OKP", crv="Ed25519", kid="x", use="enc")
    yield "use enc", encryption
    yield "a dict", KEY_A.export_private(as_dict=True)


@pytest.mark.parametrize(("name", "key"), list(bad_signing_keys()))
def test_sign_refuses_unusable_keys(name: str, key: Any) -> None:
    with pytest.raises(SignatureError) as caught:
        sign_document(DOCUMENT, [KEY_A, key])
    assert caught.value.reason == "bad_key", name
    assert isinstance(caught.value, PrivacyError)


def test_sign_needs_a_key_and_an_object() -> None:
    with pytest.raises(SignatureError) as caught:
        sign_document(DOCUMENT, [])
    assert caught.value.reason == "bad_key"
    with pytest.raises(SignatureError) as caught:
        sign_document([1, 2], [KEY_A])  # type: ignore[arg-type]
    assert caught.value.reason == "not_json"


def test_encode_signed_refuses_unsigned() -> None:
    for document in (DOCUMENT, {**DOCUMENT, SIGNATURES: []}):
        with pytest.raises(SignatureError) as caught:
            encode_signed(document)
        assert caught.value.reason == "no_signatures"


def test_nested_region_sub_documents() -> None:
    """A manifest embeds per-region signed sub-manifests and is signed as a whole."""
    eu, us = generate_signing_key(kid="region-eu"), generate_signing_key(kid="region-us")
    keys = KeySet.from_json(public_jwks(KEY_A, eu, us))
    regions = [
        sign_document({"region": "eu", "deleted": 4}, [eu]),
        sign_document({"region": "us", "deleted": 8}, [us]),
    ]
    data = encode_signed(sign_document({**DOCUMENT, "regions": regions}, [KEY_A]))
    verified = verify_document(data, keys)
    for region, kid in zip(verified.document["regions"], ["region-eu", "region-us"], strict=True):
        content = {k: v for k, v in region.items() if k != SIGNATURES}
        assert verify_signatures(content, region[SIGNATURES], keys) == (kid,)
        assert verify_signatures(content, region[SIGNATURES], keys, required_kids=[kid])
        with pytest.raises(SignatureError) as caught:
            verify_signatures({**content, "deleted": 0}, region[SIGNATURES], keys)
        assert caught.value.reason == "bad_signature"
        with pytest.raises(SignatureError) as caught:
            verify_signatures(content, region[SIGNATURES], JWKS_AB)
        assert caught.value.reason == "unknown_kid"
        with pytest.raises(SignatureError) as caught:
            verify_signatures(content, [], keys)
        assert caught.value.reason == "no_signatures"
        with pytest.raises(ValueError, match="without"):
            verify_signatures(region, region[SIGNATURES], keys)
    # A region signed by the wrong regional key is refused.
    content = {k: v for k, v in regions[0].items() if k != SIGNATURES}
    with pytest.raises(SignatureError) as caught:
        verify_signatures(content, regions[0][SIGNATURES], keys, required_kids=["region-us"])
    assert caught.value.reason == "missing_kid"
