"""Signing tokens: for the demo, tests, the CLI and token exchange."""

from __future__ import annotations

import time
import uuid
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from jwcrypto import jwk, jws

from intelgraph_privacy import codec
from intelgraph_privacy.errors import ConfigError
from intelgraph_privacy.tokens.keys import MIN_RSA_BITS, key_algorithm, rsa_bits

# Claims `issue_token` sets itself; `extra` may not override them.
_ISSUED_CLAIMS = frozenset({"iss", "sub", "aud", "tenant", "roles", "purpose", "iat", "exp", "jti"})


def _signing_alg(key: Any) -> str:
    if not isinstance(key, jwk.JWK) or not key.has_private:
        raise ConfigError("issue_token needs a private JWK")
    alg = key_algorithm(key)
    if alg is None:
        raise ConfigError(
            "issue_token signs with Ed25519 (EdDSA), P-256 (ES256) or RSA (RS256) keys"
        )
    if alg == "RS256" and rsa_bits(key) < MIN_RSA_BITS:
        raise ConfigError(f"RSA signing keys need at least {MIN_RSA_BITS} bits")
    return alg


def issue_token(
    key: jwk.JWK,
    *,
    sub: str,
    tenant: str,
    roles: Collection[str],
    purpose: str | None,
    issuer: str,
    audience: str | Sequence[str],
    ttl: int = 3600,
    kid: str | None = None,
    jti: str | None = None,
    now: float | None = None,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """Sign a compact JWS token.

    The algorithm follows the key type; `kid` defaults to the key's own kid; `jti` defaults to a
    fresh random id (so the token can be revoked); `purpose=None` makes a broad token without a
    purpose, such as an identity provider issues, which only token exchange accepts. `extra`
    adds claims such as `region`, `clearance` or `nbf` but cannot override the ones set here.
    Raises ConfigError.
    """
    alg = _signing_alg(key)
    if isinstance(roles, str):
        raise ConfigError("roles must be a list of strings, not one string")
    for name, value in (("sub", sub), ("tenant", tenant), ("issuer", issuer)):
        if not isinstance(value, str) or not value:
            raise ConfigError(f"issue_token: {name} must be a non-empty string")
    if purpose is not None and (not isinstance(purpose, str) or not purpose):
        raise ConfigError("issue_token: purpose must be a non-empty string or None")
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
        "iat": iat,
        "exp": iat + ttl,
        "jti": jti or uuid.uuid4().hex,
    }
    if purpose is not None:
        claims["purpose"] = purpose
    header: dict[str, Any] = {"alg": alg, "typ": "JWT"}
    kid = kid if kid is not None else key.get("kid")
    if kid is not None:
        header["kid"] = kid
    token = jws.JWS(codec.dumps(claims, sort_keys=True))
    token.add_signature(key, alg=alg, protected=codec.dumps(header, sort_keys=True).decode())
    return str(token.serialize(compact=True))
