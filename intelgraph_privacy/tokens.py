"""Purpose-bound access tokens: strict JWT verification against a JWKS, claims, issuing.

The sidecar turns every request's Bearer token into a `Principal` with `TokenVerifier.verify`.
Verification follows RFC 8725 (JWT best current practices) and is written out rule by rule here
instead of relying on library defaults, so every rule can be read and tested:

- compact JWS only, size-capped before parsing, strict canonical base64url, JSON object parts;
- `alg` from a short allow-list (EdDSA, ES256, RS256; never `none`, never HS*) and bound to the
  key type, so a token can never choose how it is checked;
- `kid` selects the key (required when the set holds several); `jku`, `x5u`, `jwk`, `x5c` are
  never fetched nor trusted; `crit` is refused;
- then `exp`, `nbf`, `iat` (bounded leeway), exact `iss`, `aud`, and the claims a `Principal`
  needs.

jwcrypto (the project's JOSE library) parses keys and runs the signature primitives.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from http.client import HTTPException
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from cachetools import LRUCache
from jwcrypto import jwk, jws
from jwcrypto.jwa import JWA
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from intelgraph_privacy import codec
from intelgraph_privacy.errors import ConfigError, PrivacyError
from intelgraph_privacy.principal import Principal

__all__ = [
    "DEFAULT_ALGORITHMS",
    "DEMO_AUDIENCE",
    "DEMO_ISSUER",
    "DEMO_KID",
    "MAX_LEEWAY_SECONDS",
    "SUPPORTED_ALGORITHMS",
    "Claims",
    "KeySet",
    "TokenError",
    "TokenVerifier",
    "demo_jwks",
    "demo_private_key",
    "issue_token",
    "load_jwks",
]

TokenErrorReason = Literal[
    "malformed",
    "too_large",
    "algorithm",
    "unknown_key",
    "signature",
    "expired",
    "not_yet_valid",
    "issued_in_future",
    "issuer",
    "audience",
    "claims",
    "demo_key",
]

#: Every algorithm this module can verify, each bound to exactly one key type (see `_key_alg`).
SUPPORTED_ALGORITHMS: frozenset[str] = frozenset({"EdDSA", "ES256", "RS256"})
DEFAULT_ALGORITHMS: tuple[str, ...] = ("EdDSA", "ES256", "RS256")
#: Clock skew tolerance is capped: a larger leeway silently extends every token's life.
MAX_LEEWAY_SECONDS = 60
MIN_RSA_BITS = 2048
#: A JWKS larger than this is not a key set (and must not exhaust memory when fetched).
MAX_JWKS_BYTES = 1 << 20

DEMO_KID = "intelgraph-demo-2026"
DEMO_ISSUER = "https://demo.intelgraph.invalid"
DEMO_AUDIENCE = "intelgraph-graph-api"

_B64URL = re.compile(r"[A-Za-z0-9_-]*")
# JWK members that only a private or symmetric key has; a JWKS for verification never needs them.
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_TYPES = frozenset({"jwt", "at+jwt", "application/jwt", "application/at+jwt"})
# Claims `issue_token` sets itself; `extra` may not override them.
_ISSUED_CLAIMS = frozenset({"iss", "sub", "aud", "tenant", "roles", "purpose", "iat", "exp"})


class TokenError(PrivacyError):
    """A token was refused. `reason` is a short stable code; the message never echoes the token."""

    def __init__(self, reason: TokenErrorReason, message: str) -> None:
        super().__init__(message)
        self.reason: TokenErrorReason = reason


class Claims(BaseModel):
    """The verified claims of an access token (unknown claims are kept as extras)."""

    model_config = ConfigDict(frozen=True, extra="allow")

    sub: StrictStr = Field(min_length=1)
    tenant: StrictStr = Field(min_length=1)
    roles: tuple[StrictStr, ...] = ()
    purpose: StrictStr = Field(min_length=1)
    iss: StrictStr
    aud: StrictStr | tuple[StrictStr, ...]
    exp: StrictInt
    iat: StrictInt
    nbf: StrictInt | None = None
    jti: StrictStr | None = None
    region: StrictStr | None = None

    def principal(self) -> Principal:
        """The caller as the policy sees it."""
        return Principal(
            sub=self.sub,
            tenant=self.tenant,
            roles=self.roles,
            purpose=self.purpose,
            region=self.region,
        )


@dataclass(frozen=True, slots=True)
class _VerificationKey:
    kid: str | None
    alg: str  # the one algorithm this key verifies
    key: Any  # jwk.JWK, public only
    thumbprint: str  # RFC 7638, over the key material only (a renamed kid keeps it)


def _key_alg(key: Any) -> str | None:
    """The one algorithm a key may verify, or None when this module does not support it.

    Binding the algorithm to the key type (never taking it from the token alone) is what makes
    `alg: none` and RS256/HS256 key confusion impossible.
    """
    kty, crv = key.get("kty"), key.get("crv")
    if kty == "OKP" and crv == "Ed25519":
        return "EdDSA"
    if kty == "EC" and crv == "P-256":
        return "ES256"
    if kty == "RSA":
        return "RS256"
    return None


def _rsa_bits(key: Any) -> int:
    return int(key.get_op_key("verify").key_size)


class KeySet:
    """The public keys tokens are verified with (a JWKS), immutable once loaded."""

    __slots__ = ("_by_kid", "_keys", "fingerprint", "kids", "skipped", "thumbprints")

    def __init__(self, keys: Iterable[_VerificationKey], skipped: Sequence[str] = ()) -> None:
        """Use `KeySet.from_json` or `load_jwks`; this constructor takes already checked keys."""
        self._keys: tuple[_VerificationKey, ...] = tuple(keys)
        if not self._keys:
            raise ConfigError("the JWKS holds no key usable for EdDSA, ES256 or RS256")
        kids = [k.kid for k in self._keys if k.kid is not None]
        if len(kids) != len(set(kids)):
            raise ConfigError("the JWKS holds two keys with the same kid")
        if len(self._keys) > 1 and len(kids) != len(self._keys):
            # Tokens must name their key when there are several, so a kid-less key is unreachable.
            raise ConfigError("every key of a JWKS with several keys needs a kid")
        self._by_kid: dict[str, _VerificationKey] = {
            k.kid: k for k in self._keys if k.kid is not None
        }
        #: The key ids in the set.
        self.kids: frozenset[str] = frozenset(kids)
        #: RFC 7638 thumbprints (SHA-256) of the keys.
        self.thumbprints: frozenset[str] = frozenset(k.thumbprint for k in self._keys)
        #: Keys left out (encryption keys, unsupported types, weak RSA), described for the logs.
        self.skipped: tuple[str, ...] = tuple(skipped)
        #: SHA-256 over (kid, alg, thumbprint) of every key: logs say which JWKS is loaded.
        self.fingerprint: str = hashlib.sha256(
            codec.dumps(sorted([k.kid or "", k.alg, k.thumbprint] for k in self._keys))
        ).hexdigest()

    @classmethod
    def from_json(cls, data: bytes | str | Mapping[str, Any]) -> KeySet:
        """Load a JWKS document (`{"keys": [...]}`) of public keys.

        Raises ConfigError when it is not a JWKS, carries private or symmetric key material, or
        holds no key usable for the supported algorithms. Keys that are valid but unusable here
        (`use: enc`, other curves, RSA under 2048 bits) are skipped and listed in `skipped`.
        """
        if isinstance(data, bytes | str):
            try:
                data = codec.loads(data)
            except codec.JSONDecodeError as exc:
                raise ConfigError(f"the JWKS is not valid JSON: {exc}") from exc
        if not isinstance(data, Mapping) or not isinstance(data.get("keys"), list):
            raise ConfigError('a JWKS must be a JSON object with a "keys" list')
        keys: list[_VerificationKey] = []
        skipped: list[str] = []
        for index, entry in enumerate(data["keys"]):
            loaded = _load_public_key(index, entry, skipped)
            if loaded is not None:
                keys.append(loaded)
        return cls(keys, skipped)

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"KeySet(kids={sorted(self.kids)!r}, fingerprint={self.fingerprint[:16]!r})"

    @property
    def algorithms(self) -> frozenset[str]:
        """The algorithms the keys of this set can verify."""
        return frozenset(k.alg for k in self._keys)

    def _select(self, kid: str | None) -> _VerificationKey:
        if kid is None:
            if len(self._keys) == 1:
                return self._keys[0]
            raise TokenError("unknown_key", "the token has no kid and the key set has several keys")
        found = self._by_kid.get(kid)
        if found is None:
            raise TokenError("unknown_key", "the token's kid names no key in the key set")
        return found


def _load_public_key(index: int, entry: Any, skipped: list[str]) -> _VerificationKey | None:
    """Check one JWKS member; None (with a note in `skipped`) when it is unusable here."""
    if not isinstance(entry, Mapping):
        raise ConfigError(f"JWKS key #{index} is not a JSON object")
    kid = entry.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise ConfigError(f"JWKS key #{index} has a kid that is not a string")
    name = f"JWKS key #{index}" + (f" (kid {kid!r})" if kid is not None else "")
    secret = sorted(_PRIVATE_MEMBERS.intersection(entry))
    if secret:
        # A verifier never needs these: their presence means a private key was published.
        raise ConfigError(
            f"{name} carries private or symmetric key material ({', '.join(secret)}); "
            "a JWKS for token verification must hold public keys only"
        )
    use, ops = entry.get("use"), entry.get("key_ops")
    if use is not None and use != "sig":
        skipped.append(f"{name}: use {use!r} is not 'sig'")
        return None
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        skipped.append(f"{name}: key_ops does not include 'verify'")
        return None
    alg = _key_alg(entry)
    if alg is None:
        skipped.append(f"{name}: key type {entry.get('kty')!r}/{entry.get('crv')!r} unsupported")
        return None
    declared = entry.get("alg")
    if declared is not None and declared != alg:
        # A key is used with the one algorithm it declares (RFC 8725 section 3.1).
        skipped.append(f"{name}: declared alg {declared!r} is not supported")
        return None
    try:
        key = jwk.JWK(**entry)
        thumbprint = key.thumbprint()
        # Build the public key object now: an invalid point or modulus fails here, not per token.
        public = key.get_op_key("verify")
        bits = int(public.key_size) if alg == "RS256" else 0
    except Exception as exc:  # jwcrypto raises many types for bad key material
        raise ConfigError(f"{name} is not a valid {alg} public key: {exc}") from exc
    if alg == "RS256" and bits < MIN_RSA_BITS:
        skipped.append(f"{name}: RSA key of {bits} bits (minimum {MIN_RSA_BITS})")
        return None
    return _VerificationKey(kid=kid, alg=alg, key=key, thumbprint=thumbprint)


class _NoDowngradeRedirect(urllib.request.HTTPRedirectHandler):
    """Follow redirects, but never from https to anything else (keys must stay authenticated)."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        if req.full_url.lower().startswith("https:") and not newurl.lower().startswith("https:"):
            raise ConfigError("the JWKS URL redirects from https to a non-https URL; refused")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _display_url(url: str) -> str:
    # Never put URL credentials (user:password@) into an error message.
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def load_jwks(source: str, *, timeout: float = 5.0) -> KeySet:
    """Load a JWKS from a file path or an http(s):// URL (fetched once; call again to refresh).

    Raises ConfigError when the source cannot be read or is not a usable public JWKS.
    """
    scheme = source.split("://", 1)[0].lower() if "://" in source else ""
    if scheme in {"http", "https"}:
        shown = _display_url(source)
        if urllib.parse.urlsplit(source).username is not None:
            # urllib would take user:password@ for part of the host name; refuse it plainly.
            raise ConfigError(f"JWKS URL {shown} must not carry credentials")
        opener = urllib.request.build_opener(_NoDowngradeRedirect)
        request = urllib.request.Request(
            source, headers={"Accept": "application/json", "User-Agent": "intelgraph-privacy"}
        )
        try:
            with opener.open(request, timeout=timeout) as response:
                if response.status != 200:
                    raise ConfigError(f"JWKS {shown} answered HTTP {response.status}")
                body: bytes = response.read(MAX_JWKS_BYTES + 1)
        except urllib.error.HTTPError as exc:
            raise ConfigError(f"JWKS {shown} answered HTTP {exc.code}") from exc
        except (urllib.error.URLError, HTTPException, OSError, ValueError) as exc:
            raise ConfigError(f"JWKS {shown} could not be fetched: {exc}") from exc
    elif scheme:
        raise ConfigError(f"JWKS source scheme {scheme!r} is not supported (use a path or https)")
    else:
        shown = source
        try:
            with Path(source).open("rb") as handle:
                body = handle.read(MAX_JWKS_BYTES + 1)
        except OSError as exc:
            raise ConfigError(f"JWKS file {source} cannot be read: {exc}") from exc
    if len(body) > MAX_JWKS_BYTES:
        raise ConfigError(f"JWKS {shown} is larger than {MAX_JWKS_BYTES} bytes")
    try:
        return KeySet.from_json(body)
    except ConfigError as exc:
        raise ConfigError(f"JWKS {shown}: {exc}") from exc


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


class TokenVerifier:
    """Verifies access tokens strictly (RFC 8725) against a key set, issuer and audience."""

    def __init__(
        self,
        keys: KeySet,
        *,
        issuer: str,
        audience: str,
        algorithms: Collection[str] = DEFAULT_ALGORITHMS,
        leeway: int = 30,
        max_token_bytes: int = 8192,
        clock: Callable[[], float] = time.time,
        allow_demo_key: bool = False,
        cache_size: int = 4096,
    ) -> None:
        """Raises ConfigError on an unsafe or inconsistent configuration.

        Verified tokens are remembered (at most `cache_size`, per key set): a token seen again is
        not parsed or signature-checked again, but its times are checked again on every use.
        """
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
        if type(max_token_bytes) is not int or max_token_bytes <= 0:
            raise ConfigError("max_token_bytes must be a positive integer")
        self.issuer = issuer
        self.audience = audience
        self.algorithms: frozenset[str] = frozenset(algorithms)
        self.leeway = leeway
        self.max_token_bytes = max_token_bytes
        self.allow_demo_key = allow_demo_key
        self._clock = clock
        # token -> (the key set that verified it, its claims, their principal); a new key set
        # misses every entry.
        self._verified: LRUCache[str, tuple[KeySet, Claims, Principal]] = LRUCache(
            maxsize=max(1, cache_size)
        )
        self._verified_lock = threading.Lock()
        self._keys: KeySet
        self.keys = keys

    @property
    def keys(self) -> KeySet:
        """The key set in use. Assigning a new one (JWKS refresh) is atomic: `verify` reads it
        once, so each verification uses either the old or the new set, never a mix."""
        return self._keys

    @keys.setter
    def keys(self, keys: KeySet) -> None:
        if not isinstance(keys, KeySet):
            raise ConfigError("keys must be a KeySet (see load_jwks)")
        if not self.allow_demo_key and _demo_thumbprint() in keys.thumbprints:
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
            self._check_times(claims.exp, claims.iat, claims.nbf)
            return claims, cached[2]
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
        claims = self._check_claims(_json_object(payload_raw, "payload"))
        principal = claims.principal()
        with self._verified_lock:
            self._verified[token] = (keys, claims, principal)
        return claims, principal

    def _demo_signed(
        self, header: Mapping[str, Any], signing_input: bytes, signature: bytes
    ) -> bool:
        # Only on the refusal path, to name the cause: someone reused the demo key outside the demo.
        if self.allow_demo_key or header.get("alg") != "EdDSA":
            return False
        return _signature_valid("EdDSA", _demo_public_key(), signing_input, signature)

    def _check_header(self, header: Mapping[str, Any], keys: KeySet) -> _VerificationKey:
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
        key = keys._select(kid)
        if key.alg != alg:
            raise TokenError("algorithm", "the token's algorithm does not match its key's type")
        return key

    def _check_times(self, exp: int, iat: int, nbf: int | None) -> None:
        now = self._clock()
        if not now < exp + self.leeway:
            raise TokenError("expired", "the token has expired")
        if nbf is not None and not now >= nbf - self.leeway:
            raise TokenError("not_yet_valid", "the token is not valid yet (nbf)")
        if iat > now + self.leeway:
            raise TokenError("issued_in_future", "the token's iat is in the future")

    def _check_claims(self, payload: dict[str, Any]) -> Claims:
        exp = _numeric_date(payload, "exp")
        iat = _numeric_date(payload, "iat")
        nbf = _numeric_date(payload, "nbf") if "nbf" in payload else None
        self._check_times(exp, iat, nbf)

        if payload.get("iss") != self.issuer:
            raise TokenError("issuer", f"the token's issuer is not {self.issuer!r}")
        aud = payload.get("aud")
        if isinstance(aud, list):
            if not all(isinstance(a, str) for a in aud) or self.audience not in aud:
                raise TokenError(
                    "audience", f"the token's audience does not include {self.audience!r}"
                )
            aud = tuple(aud)
        elif aud != self.audience:
            raise TokenError("audience", f"the token's audience is not {self.audience!r}")

        for name in ("sub", "tenant", "purpose"):
            _non_empty_string(payload, name)
        roles = payload.get("roles", [])
        if not isinstance(roles, list) or not all(isinstance(r, str) and r for r in roles):
            raise TokenError(
                "claims", "the token's roles claim must be a list of non-empty strings"
            )
        for name in ("region", "jti"):
            if name in payload:
                _non_empty_string(payload, name)
        try:
            return Claims.model_validate({**payload, "aud": aud, "roles": tuple(roles)})
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


def _signing_alg(key: Any) -> str:
    if not isinstance(key, jwk.JWK) or not key.has_private:
        raise ConfigError("issue_token needs a private JWK")
    alg = _key_alg(key)
    if alg is None:
        raise ConfigError(
            "issue_token signs with Ed25519 (EdDSA), P-256 (ES256) or RSA (RS256) keys"
        )
    if alg == "RS256" and _rsa_bits(key) < MIN_RSA_BITS:
        raise ConfigError(f"RSA signing keys need at least {MIN_RSA_BITS} bits")
    return alg


def issue_token(
    key: jwk.JWK,
    *,
    sub: str,
    tenant: str,
    roles: Collection[str],
    purpose: str,
    issuer: str,
    audience: str | Sequence[str],
    ttl: int = 3600,
    kid: str | None = None,
    now: float | None = None,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """Sign a compact JWS access token (for the demo, tests and token exchange).

    The algorithm follows the key type; `kid` defaults to the key's own kid; `extra` adds claims
    such as `region`, `jti` or `nbf` but cannot override the ones set here. Raises ConfigError.
    """
    alg = _signing_alg(key)
    if isinstance(roles, str):
        raise ConfigError("roles must be a list of strings, not one string")
    for name, value in (("sub", sub), ("tenant", tenant), ("purpose", purpose), ("issuer", issuer)):
        if not isinstance(value, str) or not value:
            raise ConfigError(f"issue_token: {name} must be a non-empty string")
    if type(ttl) is not int or ttl <= 0:
        raise ConfigError("issue_token: ttl must be a positive number of seconds")
    clashing = sorted(_ISSUED_CLAIMS.intersection(extra or {}))
    if clashing:
        raise ConfigError(f"issue_token: extra claims may not override {clashing}")
    iat = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        **(extra or {}),
        "iss": issuer,
        "sub": sub,
        "aud": audience if isinstance(audience, str) else list(audience),
        "tenant": tenant,
        "roles": list(roles),
        "purpose": purpose,
        "iat": iat,
        "exp": iat + ttl,
    }
    header: dict[str, Any] = {"alg": alg, "typ": "JWT"}
    kid = kid if kid is not None else key.get("kid")
    if kid is not None:
        header["kid"] = kid
    token = jws.JWS(codec.dumps(claims, sort_keys=True))
    token.add_signature(key, alg=alg, protected=codec.dumps(header, sort_keys=True).decode())
    return str(token.serialize(compact=True))


@functools.cache
def _demo_document() -> dict[str, Any]:
    raw = resources.files("intelgraph_privacy").joinpath("demo_key.json").read_bytes()
    document: dict[str, Any] = codec.loads(raw)
    return document


def demo_private_key() -> jwk.JWK:
    """The demo signing key. It is public (in the repository): only the demo accepts it."""
    return jwk.JWK(**_demo_document()["key"])


def demo_jwks() -> dict[str, Any]:
    """The public JWKS of the demo key."""
    return {"keys": [demo_private_key().export_public(as_dict=True)]}


@functools.cache
def _demo_public_key() -> Any:
    return jwk.JWK(**demo_jwks()["keys"][0])


@functools.cache
def _demo_thumbprint() -> str:
    # Compared by thumbprint, not kid: renaming the kid must not smuggle the demo key in.
    return str(_demo_public_key().thumbprint())
