"""Strict JWT verification (RFC 8725): `JwtVerifier` for any signed JWT, `TokenVerifier` for
the purpose-bound access tokens the sidecar accepts.

The rules are written out one by one instead of relying on library defaults, so each can be read
and tested:

- compact JWS only, size-capped before parsing, strict canonical base64url, JSON object parts;
- `alg` from a short allow-list (EdDSA, ES256, RS256; never `none`, never HS*) and bound to the
  key type, so a token can never choose how it is checked;
- `kid` selects the key (required when the set holds several); `jku`, `x5u`, `jwk`, `x5c` are
  never fetched nor trusted; `crit` is refused;
- then `exp`, `nbf`, `iat` (bounded leeway), a maximum token age, exact `iss`, `aud`, revoked
  `jti`s; and for access tokens the claims a `Principal` needs, with a purpose from the vocabulary.

jwcrypto (the project's JOSE library) parses keys and runs the signature primitives.
"""

from __future__ import annotations

import base64
import re
import threading
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any

from cachetools import LRUCache
from jwcrypto.jwa import JWA
from pydantic import ValidationError

from intelgraph_privacy import codec
from intelgraph_privacy.errors import ConfigError
from intelgraph_privacy.principal import Principal
from intelgraph_privacy.tokens.claims import Claims, TokenError
from intelgraph_privacy.tokens.demo import demo_public_key, demo_thumbprint
from intelgraph_privacy.tokens.keys import (
    DEFAULT_ALGORITHMS,
    SUPPORTED_ALGORITHMS,
    KeySet,
    VerificationKey,
)
from intelgraph_privacy.tokens.purposes import PurposeVocabulary

#: Clock skew tolerance is capped: a larger leeway silently extends every token's life.
MAX_LEEWAY_SECONDS = 60
#: Tokens issued longer ago than this are refused, whatever their `exp` says.
DEFAULT_MAX_TOKEN_AGE = 24 * 3600

_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_TYPES = frozenset({"jwt", "at+jwt", "application/jwt", "application/at+jwt"})
_CLEARANCES = ("low", "medium", "high", "restricted")

#: Is this `jti` revoked? (See `RevocationList`.)
RevocationCheck = Callable[[str], bool]


def _b64decode(segment: str, part: str) -> bytes:
    """Strict base64url: no padding, no foreign characters, canonical encoding only.

    Canonical matters: otherwise two token strings that differ in the last character's unused
    bits would decode to the same bytes and both verify.
    """
    if not _B64URL.fullmatch(segment) or len(segment) % 4 == 1:
        raise TokenError("malformed", f"the token's {part} is not base64url")
    raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    if base64.urlsafe_b64encode(raw).rstrip(b"=") != segment.encode("ascii"):
        raise TokenError("malformed", f"the token's {part} is not canonical base64url")
    return raw


def _json_object(raw: bytes, part: str) -> dict[str, Any]:
    # orjson keeps the lexically last of duplicate members, as RFC 7519 section 4 allows.
    try:
        value = codec.loads(raw)
    except codec.JSONDecodeError:
        raise TokenError("malformed", f"the token's {part} is not JSON") from None
    if not isinstance(value, dict):
        raise TokenError("malformed", f"the token's {part} is not a JSON object")
    return value


def _numeric_date(payload: Mapping[str, Any], name: str) -> int:
    if name not in payload:
        raise TokenError("claims", f"the token has no {name} claim")
    value = payload[name]
    if type(value) is not int:  # bool is an int subclass; floats and strings are refused
        raise TokenError("claims", f"the token's {name} claim must be an integer NumericDate")
    return value


def _non_empty_string(payload: Mapping[str, Any], name: str) -> str:
    value = payload.get(name)
    if not isinstance(value, str) or not value:
        raise TokenError("claims", f"the token's {name} claim must be a non-empty string")
    return value


class JwtVerifier:
    """Verifies any signed JWT strictly (RFC 8725) against a key set, issuer and audience.

    `verify_payload` returns the authenticated payload; `TokenVerifier` adds the access-token
    claims on top. Token exchange uses this class directly for identity-provider tokens.
    """

    def __init__(
        self,
        keys: KeySet,
        *,
        issuer: str,
        audience: str,
        algorithms: Collection[str] = DEFAULT_ALGORITHMS,
        leeway: int = 30,
        max_token_age: int = DEFAULT_MAX_TOKEN_AGE,
        max_token_bytes: int = 8192,
        require_jti: bool = False,
        revoked: RevocationCheck | None = None,
        clock: Callable[[], float] = time.time,
        allow_demo_key: bool = False,
    ) -> None:
        """Raises ConfigError on an unsafe or inconsistent configuration."""
        if not isinstance(issuer, str) or not issuer:
            raise ConfigError("the token issuer must be a non-empty string")
        if not isinstance(audience, str) or not audience:
            raise ConfigError("the token audience must be a non-empty string")
        if isinstance(algorithms, str):
            raise ConfigError("algorithms must be a list of algorithm names, not one string")
        unsupported = sorted(set(algorithms) - SUPPORTED_ALGORITHMS)
        if unsupported:
            raise ConfigError(
                f"token algorithms {unsupported} are not supported; choose from "
                f"{sorted(SUPPORTED_ALGORITHMS)} (none and HS* are never accepted)"
            )
        if not algorithms:
            raise ConfigError("at least one token algorithm must be allowed")
        if type(leeway) is not int or not 0 <= leeway <= MAX_LEEWAY_SECONDS:
            raise ConfigError(f"token leeway must be an integer from 0 to {MAX_LEEWAY_SECONDS} s")
        if type(max_token_age) is not int or max_token_age <= 0:
            raise ConfigError("max_token_age must be a positive number of seconds")
        if type(max_token_bytes) is not int or max_token_bytes <= 0:
            raise ConfigError("max_token_bytes must be a positive integer")
        self.issuer = issuer
        self.audience = audience
        self.algorithms: frozenset[str] = frozenset(algorithms)
        self.leeway = leeway
        self.max_token_age = max_token_age
        self.max_token_bytes = max_token_bytes
        self.require_jti = require_jti
        self.revoked = revoked
        self.allow_demo_key = allow_demo_key
        self._clock = clock
        self._keys: KeySet
        self.keys = keys

    @property
    def keys(self) -> KeySet:
        """The key set in use. Assigning a new one (JWKS refresh) is atomic: a verification reads
        it once, so each uses either the old or the new set, never a mix."""
        return self._keys

    @keys.setter
    def keys(self, keys: KeySet) -> None:
        if not isinstance(keys, KeySet):
            raise ConfigError("keys must be a KeySet (see load_jwks)")
        if not self.allow_demo_key and demo_thumbprint() in keys.thumbprints:
            raise ConfigError(
                "the key set contains the public demo key, which anyone can sign with; "
                "only `intelgraph-privacy demo` accepts it"
            )
        if not keys.algorithms & self.algorithms:
            raise ConfigError(
                f"no key of the set can verify an allowed algorithm {sorted(self.algorithms)} "
                f"(the keys verify {sorted(keys.algorithms)})"
            )
        self._keys = keys  # one reference assignment: atomic under concurrent readers

    def verify_payload(self, token: str) -> dict[str, Any]:
        """Verify signature, times, issuer, audience and revocation; the payload. TokenError."""
        return self._verify(token, self._keys)

    def _verify(self, token: str, keys: KeySet) -> dict[str, Any]:
        if not isinstance(token, str):
            raise TokenError("malformed", "the token must be a string")
        # Characters <= bytes, so this refuses oversized tokens before any parsing.
        if len(token) > self.max_token_bytes:
            raise TokenError("too_large", f"the token is larger than {self.max_token_bytes} bytes")
        if not token.isascii():
            raise TokenError("malformed", "the token is not a compact JWS (non-ASCII characters)")
        parts = token.split(".")
        if len(parts) != 3:
            raise TokenError(
                "malformed", "the token is not a compact JWS (three dot-separated parts)"
            )
        header_b64, payload_b64, signature_b64 = parts
        header = _json_object(_b64decode(header_b64, "header"), "header")
        payload_raw = _b64decode(payload_b64, "payload")
        signature = _b64decode(signature_b64, "signature")

        signing_input = f"{header_b64}.{payload_b64}".encode("ascii")
        try:
            key = self._check_header(header, keys)
            # Over the exact bytes received, not a re-encoding of the decoded parts.
            if not _signature_valid(key.alg, key.key, signing_input, signature):
                raise TokenError("signature", "the token's signature does not verify")
        except TokenError as exc:
            if exc.reason in {"algorithm", "unknown_key", "signature"} and self._demo_signed(
                header, signing_input, signature
            ):
                raise TokenError(
                    "demo_key",
                    "the token is signed with the public demo key, "
                    "which only `intelgraph-privacy demo` accepts",
                ) from None
            raise
        # Only now, authenticated, is the payload looked at.
        payload = _json_object(payload_raw, "payload")
        exp = _numeric_date(payload, "exp")
        iat = _numeric_date(payload, "iat")
        nbf = _numeric_date(payload, "nbf") if "nbf" in payload else None
        self.check_times(exp, iat, nbf)
        if payload.get("iss") != self.issuer:
            raise TokenError("issuer", f"the token's issuer is not {self.issuer!r}")
        aud = payload.get("aud")
        if isinstance(aud, list):
            if not all(isinstance(a, str) for a in aud) or self.audience not in aud:
                raise TokenError(
                    "audience", f"the token's audience does not include {self.audience!r}"
                )
        elif aud != self.audience:
            raise TokenError("audience", f"the token's audience is not {self.audience!r}")
        if "jti" in payload or self.require_jti:
            self.check_revoked(_non_empty_string(payload, "jti"))
        return payload

    def check_times(self, exp: int, iat: int, nbf: int | None) -> None:
        """Refuse a token that has expired, is too old, not valid yet or issued in the future."""
        now = self._clock()
        if not now < exp + self.leeway:
            raise TokenError("expired", "the token has expired")
        if now - iat > self.max_token_age + self.leeway:
            raise TokenError(
                "too_old", f"the token was issued more than {self.max_token_age} s ago"
            )
        if nbf is not None and not now >= nbf - self.leeway:
            raise TokenError("not_yet_valid", "the token is not valid yet (nbf)")
        if iat > now + self.leeway:
            raise TokenError("issued_in_future", "the token's iat is in the future")

    def check_revoked(self, jti: str | None) -> None:
        """Refuse a revoked token id."""
        if jti is not None and self.revoked is not None and self.revoked(jti):
            raise TokenError("revoked", "the token has been revoked")

    def _demo_signed(
        self, header: Mapping[str, Any], signing_input: bytes, signature: bytes
    ) -> bool:
        # Only on the refusal path, to name the cause: someone reused the demo key outside the demo.
        if self.allow_demo_key or header.get("alg") != "EdDSA":
            return False
        return _signature_valid("EdDSA", demo_public_key(), signing_input, signature)

    def _check_header(self, header: Mapping[str, Any], keys: KeySet) -> VerificationKey:
        typ = header.get("typ")
        if typ is not None and (not isinstance(typ, str) or typ.lower() not in _TYPES):
            raise TokenError("malformed", "the token's typ header must be JWT or at+jwt")
        if "crit" in header:
            raise TokenError("malformed", "the token has a crit header; no extension is supported")
        if header.get("b64", True) is not True:
            raise TokenError("malformed", "unencoded payloads (b64: false) are not accepted")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            allowed = ", ".join(sorted(self.algorithms))
            raise TokenError("algorithm", f"the token's algorithm is not allowed ({allowed})")
        # jku, x5u, jwk and x5c are deliberately never read: keys come from the configured set only.
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise TokenError("malformed", "the token's kid header must be a string")
        key = keys.select(kid)
        if key.alg != alg:
            raise TokenError("algorithm", "the token's algorithm does not match its key's type")
        return key


class TokenVerifier(JwtVerifier):
    """Verifies purpose-bound access tokens: `JwtVerifier`'s checks, then the access claims
    (sub, tenant, roles, a purpose from the vocabulary, optional region and clearance)."""

    def __init__(
        self,
        keys: KeySet,
        *,
        issuer: str,
        audience: str,
        purposes: PurposeVocabulary | Collection[str],
        algorithms: Collection[str] = DEFAULT_ALGORITHMS,
        leeway: int = 30,
        max_token_age: int = DEFAULT_MAX_TOKEN_AGE,
        max_token_bytes: int = 8192,
        require_jti: bool = False,
        revoked: RevocationCheck | None = None,
        clock: Callable[[], float] = time.time,
        allow_demo_key: bool = False,
        cache_size: int = 4096,
    ) -> None:
        """Raises ConfigError on an unsafe or inconsistent configuration.

        Verified tokens are remembered (at most `cache_size`, per key set): a token seen again is
        not parsed or signature-checked again, but its times and revocation are checked again on
        every use.
        """
        super().__init__(
            keys,
            issuer=issuer,
            audience=audience,
            algorithms=algorithms,
            leeway=leeway,
            max_token_age=max_token_age,
            max_token_bytes=max_token_bytes,
            require_jti=require_jti,
            revoked=revoked,
            clock=clock,
            allow_demo_key=allow_demo_key,
        )
        if isinstance(purposes, str):
            raise ConfigError("purposes must be a vocabulary or a list of names, not one string")
        self.purposes: frozenset[str] = frozenset(purposes)
        if not self.purposes:
            raise ConfigError("the purpose vocabulary is empty: every token would be refused")
        # token -> (the key set that verified it, its claims, their principal); a new key set
        # misses every entry.
        self._verified: LRUCache[str, tuple[KeySet, Claims, Principal]] = LRUCache(
            maxsize=max(1, cache_size)
        )
        self._verified_lock = threading.Lock()

    def verify(self, token: str) -> Claims:
        """Verify a compact JWS access token and return its claims; raises TokenError."""
        return self.authenticate(token)[0]

    def authenticate(self, token: str) -> tuple[Claims, Principal]:
        """Verify a token; its claims and the principal they make. Raises TokenError."""
        keys = self._keys  # one snapshot for the whole verification
        if not isinstance(token, str):
            raise TokenError("malformed", "the token must be a string")
        with self._verified_lock:
            cached = self._verified.get(token)
        if cached is not None and cached[0] is keys:
            claims = cached[1]
            self.check_times(claims.exp, claims.iat, claims.nbf)
            self.check_revoked(claims.jti)
            return claims, cached[2]
        claims = self._access_claims(self._verify(token, keys))
        principal = claims.principal()
        with self._verified_lock:
            self._verified[token] = (keys, claims, principal)
        return claims, principal

    def _access_claims(self, payload: dict[str, Any]) -> Claims:
        for name in ("sub", "tenant"):
            _non_empty_string(payload, name)
        if "purpose" not in payload:
            raise TokenError("purpose", "the token carries no purpose claim")
        purpose = _non_empty_string(payload, "purpose")
        if purpose not in self.purposes:
            raise TokenError("purpose", "the token's purpose is not in the purpose vocabulary")
        roles = payload.get("roles", [])
        if not isinstance(roles, list) or not all(isinstance(r, str) and r for r in roles):
            raise TokenError(
                "claims", "the token's roles claim must be a list of non-empty strings"
            )
        if "region" in payload:
            _non_empty_string(payload, "region")
        if "clearance" in payload and payload["clearance"] not in _CLEARANCES:
            raise TokenError(
                "claims", f"the token's clearance claim must be one of {', '.join(_CLEARANCES)}"
            )
        aud = payload["aud"]
        try:
            return Claims.model_validate(
                {
                    **payload,
                    "aud": tuple(aud) if isinstance(aud, list) else aud,
                    "roles": tuple(roles),
                }
            )
        except ValidationError as exc:  # a backstop: every rule above should have caught it
            raise TokenError(
                "claims", f"the token's claims are invalid ({exc.error_count()} errors)"
            ) from None


def _signature_valid(alg: str, key: Any, signing_input: bytes, signature: bytes) -> bool:
    try:
        JWA.signing_alg(alg).verify(key, signing_input, signature)
    except Exception:  # InvalidSignature, or ValueError for a signature of the wrong size
        return False
    return True
