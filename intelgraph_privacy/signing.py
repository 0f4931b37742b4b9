"""Signed JSON documents: the project's one signer and verifier (erasure manifests, attestations).

A signed document is a JSON object whose `"signatures"` member is a list of compact JWS strings
(RFC 7515) with a detached payload (appendix F: `header..signature`). Each signs the canonical
JSON of the document without its `"signatures"` member; the protected header is exactly
`{"alg":"EdDSA","kid":<kid>}`. The file form is the canonical JSON of the whole document plus
one `"\\n"`, so a verifier can refuse any byte that differs from what was signed.

Canonical JSON is `codec.dumps(value, sort_keys=True)`: orjson, keys sorted (by UTF-8 bytes),
no whitespace, UTF-8 unescaped.

- `sign_document` adds the signatures (Ed25519 private JWKs with a kid, one signature each);
- `encode_signed` gives the file bytes; `verify_document` checks them (every signature must
  verify); `verify_signatures` checks a nested signed sub-document (a region's sub-manifest).
- Every refusal is a `SignatureError` with a short `reason` code.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from jwcrypto import jwk, jws

from intelgraph_privacy import codec
from intelgraph_privacy.errors import PrivacyError
from intelgraph_privacy.tokens import KeySet, TokenError

__all__ = [
    "ALGORITHM",
    "SIGNATURES",
    "KeysLike",
    "SignatureError",
    "SignatureErrorReason",
    "VerifiedDocument",
    "canonical_json",
    "encode_signed",
    "sign_document",
    "verify_document",
    "verify_signatures",
]

#: The one algorithm documents are signed and verified with.
ALGORITHM = "EdDSA"
#: The member of a signed document that holds its signatures.
SIGNATURES = "signatures"

SignatureErrorReason = Literal[
    "not_json",  # a document to sign holds a value that is not plain JSON
    "already_signed",  # sign_document got a document that has "signatures"
    "bad_key",  # a signing key is not a private Ed25519 JWK with a kid
    "bad_json",  # the bytes are not JSON, or not a JSON object
    "not_canonical",  # the bytes are not exactly the canonical JSON plus "\n"
    "no_signatures",  # "signatures" is missing, empty or not a list
    "malformed_jws",  # a signature is not a compact JWS of base64url segments
    "not_canonical_base64",  # a segment decodes, but is not the encoding of its bytes
    "bad_header",  # the protected header is not exactly {"alg":"EdDSA","kid":...}
    "payload_not_detached",  # a signature carries its payload
    "unknown_kid",  # the key set has no key with the signature's kid
    "key_not_eddsa",  # the kid names a key that is not Ed25519
    "bad_signature",  # the signature does not verify
    "duplicate_kid",  # one key signed twice
    "missing_kid",  # a required key did not sign
]

#: What the verifiers take as the public keys: the project's KeySet (see `tokens.load_jwks`),
#: a jwcrypto JWKSet, or a JWKS document (`{"keys": [...]}`). All are checked like a KeySet.
KeysLike: TypeAlias = "KeySet | jwk.JWKSet | Mapping[str, Any]"

_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_HEADER_MEMBERS = frozenset({"alg", "kid"})
_ED25519_SIGNATURE_BYTES = 64


class SignatureError(PrivacyError):
    """A document could not be signed, or its signatures were refused.

    `reason` is a short stable code (`SignatureErrorReason`); the message says what is wrong.
    """

    def __init__(self, reason: SignatureErrorReason, message: str) -> None:
        super().__init__(message)
        self.reason: SignatureErrorReason = reason


@dataclass(frozen=True, slots=True)
class VerifiedDocument:
    """A document whose signatures all verified: its content (without "signatures") and signers."""

    document: dict[str, Any]
    #: The key ids that signed it, in the order of its signatures.
    kids: tuple[str, ...]


def canonical_json(value: Any) -> bytes:
    """The canonical JSON bytes of a plain JSON value (sorted keys, compact, UTF-8).

    Tuples encode as lists. Raises ValueError for anything a verifier would not read back as the
    same value: non-finite floats (orjson writes them as null), non-string keys, other types
    (datetimes, UUIDs, dataclasses: orjson would turn them into strings or objects), integers
    outside 64 bits, and nesting deeper than orjson allows.
    """
    try:
        encoded = codec.dumps(value, sort_keys=True)
    except TypeError as exc:  # orjson: unsupported type, non-str key, big int, too deep
        raise ValueError(f"not a JSON value: {exc}") from exc
    _check_plain_json(value, "$")
    return encoded


def _check_plain_json(value: Any, path: str) -> None:
    # Run after orjson succeeded, so the nesting is bounded (orjson refuses depth > 255).
    if value is None or isinstance(value, str | bool | int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"not a JSON value at {path}: {value!r} (non-finite float)")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            _check_plain_json(item, f"{path}.{key}")
        return
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_plain_json(item, f"{path}[{index}]")
        return
    raise ValueError(f"not a JSON value at {path}: {type(value).__name__}")


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(segment: str, what: str) -> bytes:
    """Decode a base64url segment, refusing any text that is not the one encoding of its bytes.

    Decoders ignore the unused low bits of the last character, so without the re-encoding check
    a changed last character of a signature could verify (a file byte changed, unnoticed).
    """
    if not _B64URL.fullmatch(segment) or len(segment) % 4 == 1:
        raise SignatureError("malformed_jws", f"the {what} is not base64url")
    decoded = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    if _b64encode(decoded) != segment:
        raise SignatureError(
            "not_canonical_base64", f"the {what} is not the canonical base64url of its bytes"
        )
    return decoded


def _header(kid: str) -> bytes:
    return canonical_json({"alg": ALGORITHM, "kid": kid})


def _show(kid: str) -> str:
    # Key ids are public, but an attacker chooses them: keep messages short.
    return repr(kid if len(kid) <= 64 else kid[:61] + "...")


def _check_signing_key(key: Any, index: int) -> str:
    """The kid of a usable signing key (SignatureError `bad_key` otherwise)."""
    if not isinstance(key, jwk.JWK):
        raise SignatureError("bad_key", f"signing key #{index} is not a jwcrypto JWK")
    kid = key.get("kid")
    name = f"signing key #{index}" + (f" (kid {_show(kid)})" if isinstance(kid, str) else "")
    if key.get("kty") != "OKP" or key.get("crv") != "Ed25519":
        raise SignatureError("bad_key", f"{name} is not an Ed25519 (OKP) key")
    if not key.has_private:
        raise SignatureError("bad_key", f"{name} is a public key; a private key is needed")
    if not isinstance(kid, str) or not kid:
        raise SignatureError("bad_key", f"{name} has no kid; verifiers select keys by kid")
    if key.get("alg", ALGORITHM) != ALGORITHM or key.get("use", "sig") != "sig":
        raise SignatureError("bad_key", f"{name} is declared for another algorithm or use")
    return kid


def sign_document(document: Mapping[str, Any], keys: Sequence[Any]) -> dict[str, Any]:
    """Sign `document` with each key; a new dict: the document plus its "signatures" list.

    Each key must be a private Ed25519 `jwcrypto.jwk.JWK` with a kid (see
    `tokens.generate_signing_key("EdDSA", kid=...)`); kids must differ. The returned dict is a
    deep copy decoded from the canonical JSON that was signed, so it is exactly what a verifier
    reads back. Raises SignatureError (`already_signed`, `bad_key`, `not_json`).
    """
    if not isinstance(document, Mapping):
        raise SignatureError("not_json", "a signed document must be a JSON object")
    if SIGNATURES in document:
        raise SignatureError(
            "already_signed", 'the document already has "signatures"; sign the unsigned content'
        )
    if not keys:
        raise SignatureError("bad_key", "at least one signing key is needed")
    kids = [_check_signing_key(key, index) for index, key in enumerate(keys)]
    if len(set(kids)) != len(kids):
        raise SignatureError("duplicate_kid", "two signing keys have the same kid")
    try:
        payload = canonical_json(dict(document))
    except ValueError as exc:
        raise SignatureError("not_json", f"the document cannot be signed: {exc}") from exc

    signatures: list[str] = []
    for key, kid in zip(keys, kids, strict=True):
        token = jws.JWS(payload)
        # The header is passed as text so its bytes are exactly the canonical header.
        token.add_signature(key, protected=_header(kid).decode("utf-8"))
        protected, _, signature = token.serialize(compact=True).split(".")
        signatures.append(f"{protected}..{signature}")  # RFC 7515 appendix F: detached payload
    signed: dict[str, Any] = codec.loads(payload)
    signed[SIGNATURES] = signatures
    return signed


def encode_signed(document: Mapping[str, Any]) -> bytes:
    """The file form of a signed document: its canonical JSON and one trailing newline.

    Raises SignatureError (`no_signatures`) for a document without signatures, so an unsigned
    document is never written where a signed one is expected.
    """
    signatures = document.get(SIGNATURES)
    if not isinstance(signatures, list | tuple) or not signatures:
        raise SignatureError("no_signatures", 'the document has no "signatures" list')
    try:
        return canonical_json(dict(document)) + b"\n"
    except ValueError as exc:
        raise SignatureError("not_json", f"the document cannot be encoded: {exc}") from exc


def _key_set(keys: KeysLike) -> KeySet:
    if isinstance(keys, KeySet):
        return keys
    if isinstance(keys, jwk.JWKSet):
        # Through KeySet's checks: public keys only, one kid per key, supported types.
        return KeySet.from_json(keys.export(private_keys=False, as_dict=True))
    return KeySet.from_json(keys)


def verify_document(
    data: bytes, jwks: KeysLike, *, required_kids: Collection[str] | None = None
) -> VerifiedDocument:
    """Verify the file form of a signed document (what `encode_signed` wrote).

    The bytes must be exactly the canonical JSON of the parsed object plus one "\\n" (any other
    byte, whitespace, key order or escape is refused), and every signature must verify with the
    key its kid names in `jwks`. With `required_kids`, each of those keys must have signed.
    Raises SignatureError; ConfigError when `jwks` is not a usable key set.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError("verify_document takes the document's bytes")
    data = bytes(data)
    keys = _key_set(jwks)
    if not data.endswith(b"\n"):
        raise SignatureError("not_canonical", "a signed document ends with one newline")
    try:
        parsed = codec.loads(data[:-1])
    except codec.JSONDecodeError as exc:
        raise SignatureError("bad_json", f"the document is not valid JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise SignatureError("bad_json", "a signed document must be a JSON object")
    # Parsed values are plain JSON, so orjson re-encodes them without the canonical_json checks.
    if codec.dumps(parsed, sort_keys=True) + b"\n" != data:
        raise SignatureError(
            "not_canonical",
            "the document is not in canonical form (sorted keys, no whitespace, one newline)",
        )
    if SIGNATURES not in parsed:
        raise SignatureError("no_signatures", 'the document has no "signatures"')
    signatures = parsed.pop(SIGNATURES)
    kids = verify_signatures(parsed, signatures, keys, required_kids=required_kids)
    return VerifiedDocument(document=parsed, kids=kids)


def verify_signatures(
    document_without_signatures: Mapping[str, Any],
    signatures: Sequence[str],
    jwks: KeysLike,
    *,
    required_kids: Collection[str] | None = None,
) -> tuple[str, ...]:
    """Verify detached signatures over a document's canonical JSON; the kids, in order.

    For nested signed sub-documents (a manifest's per-region sub-manifests): pass the
    sub-document without its "signatures" and that list. Every signature must verify, each key
    may sign once, and with `required_kids` each of those keys must have signed. Raises
    SignatureError; ValueError when the document still holds "signatures".
    """
    if SIGNATURES in document_without_signatures:
        raise ValueError('pass the document without its "signatures" member')
    if not isinstance(signatures, list | tuple) or not signatures:
        raise SignatureError("no_signatures", '"signatures" must be a non-empty list')
    keys = _key_set(jwks)
    try:
        payload = canonical_json(dict(document_without_signatures))
    except ValueError as exc:
        raise SignatureError("not_json", f"the document is not plain JSON: {exc}") from exc
    kids: list[str] = []
    for index, token in enumerate(signatures):
        kid = _verify_one(token, payload, keys, index)
        if kid in kids:
            raise SignatureError("duplicate_kid", f"key {_show(kid)} signed twice")
        kids.append(kid)
    missing = sorted(set(required_kids or ()) - set(kids))
    if missing:
        raise SignatureError(
            "missing_kid", "required keys did not sign: " + ", ".join(map(_show, missing))
        )
    return tuple(kids)


def _verify_one(token: Any, payload: bytes, keys: KeySet, index: int) -> str:
    """Check one compact detached JWS over `payload`; the kid that signed it."""
    name = f"signature #{index}"
    if not isinstance(token, str):
        raise SignatureError("malformed_jws", f"{name} is not a string")
    parts = token.split(".")
    if len(parts) != 3:
        raise SignatureError("malformed_jws", f"{name} is not a compact JWS (header..signature)")
    header_b64, payload_b64, signature_b64 = parts
    if payload_b64:
        raise SignatureError("payload_not_detached", f"{name} carries a payload; it must be empty")
    header_bytes = _b64decode(header_b64, f"header of {name}")
    signature = _b64decode(signature_b64, f"{name}")
    kid = _check_header(header_bytes, name)
    try:
        key = keys.select(kid)
    except TokenError:
        raise SignatureError("unknown_kid", f"{name}: no key {_show(kid)} in the key set") from None
    if key.alg != ALGORITHM:
        raise SignatureError("key_not_eddsa", f"{name}: key {_show(kid)} is not an Ed25519 key")
    if len(signature) != _ED25519_SIGNATURE_BYTES:
        raise SignatureError("bad_signature", f"{name} (key {_show(kid)}) does not verify")
    checked = jws.JWS()
    try:
        checked.deserialize(token)
        checked.verify(key.key, alg=ALGORITHM, detached_payload=payload)
    except Exception as exc:  # jwcrypto raises several types; all mean "does not verify"
        raise SignatureError("bad_signature", f"{name} (key {_show(kid)}) does not verify") from exc
    return kid


def _check_header(header_bytes: bytes, name: str) -> str:
    """The kid of a protected header that is exactly the canonical {"alg":"EdDSA","kid":...}.

    Any other member (jku, jwk, x5u, crit, b64, ...) or algorithm is refused: none is needed and
    each is a known way to make a verifier use the wrong key or payload.
    """
    try:
        header = codec.loads(header_bytes)
    except codec.JSONDecodeError:
        raise SignatureError("bad_header", f"the header of {name} is not JSON") from None
    if not isinstance(header, dict) or set(header) != _HEADER_MEMBERS:
        raise SignatureError(
            "bad_header", f'the header of {name} must hold exactly "alg" and "kid"'
        )
    alg, kid = header["alg"], header["kid"]
    if alg != ALGORITHM:
        shown = alg if isinstance(alg, str) and len(alg) <= 16 else "?"
        raise SignatureError("bad_header", f"{name} uses alg {shown!r}; only EdDSA is accepted")
    if not isinstance(kid, str) or not kid:
        raise SignatureError("bad_header", f"the kid of {name} is not a non-empty string")
    if header_bytes != _header(kid):
        raise SignatureError("bad_header", f"the header of {name} is not in canonical form")
    return kid
