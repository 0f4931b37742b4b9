"""Purpose-bound access tokens: verify (strictly, against a JWKS), issue, revoke, exchange.

- `TokenVerifier` turns a Bearer token into `Claims` and a `Principal` (RFC 8725 rules, a purpose
  from the `PurposeVocabulary`, revoked ids refused); `JwtVerifier` checks any signed JWT.
- `KeySet` / `load_jwks` hold the public keys; `generate_signing_key`, `load_signing_key` and
  `public_jwks` manage signing keys; `issue_token` signs.
- `revoke_token` and `RevocationList` record and check revoked token ids in the store.
- `TokenExchange` trades a broad identity-provider token for a short-lived purpose-bound one
  (RFC 8693), where the exchange policy allows it.
"""

from intelgraph_privacy.tokens.claims import Claims, TokenError, TokenErrorReason
from intelgraph_privacy.tokens.demo import (
    DEMO_AUDIENCE,
    DEMO_EXCHANGE_AUDIENCE,
    DEMO_IDP_ISSUER,
    DEMO_ISSUER,
    DEMO_KID,
    demo_jwks,
    demo_private_key,
)
from intelgraph_privacy.tokens.exchange import (
    ClaimMapping,
    ExchangeError,
    ExchangeResult,
    TokenExchange,
)
from intelgraph_privacy.tokens.issue import issue_token
from intelgraph_privacy.tokens.keys import (
    DEFAULT_ALGORITHMS,
    SUPPORTED_ALGORITHMS,
    KeySet,
    generate_signing_key,
    load_jwks,
    load_signing_key,
    public_jwks,
)
from intelgraph_privacy.tokens.purposes import Purpose, PurposeVocabulary, load_purposes
from intelgraph_privacy.tokens.revocation import (
    RevocationList,
    prune_revocations,
    record_revocation,
    revoke_token,
    revoked_token_ids,
)
from intelgraph_privacy.tokens.verify import (
    DEFAULT_MAX_TOKEN_AGE,
    MAX_LEEWAY_SECONDS,
    JwtVerifier,
    TokenVerifier,
)

__all__ = [
    "DEFAULT_ALGORITHMS",
    "DEFAULT_MAX_TOKEN_AGE",
    "DEMO_AUDIENCE",
    "DEMO_EXCHANGE_AUDIENCE",
    "DEMO_IDP_ISSUER",
    "DEMO_ISSUER",
    "DEMO_KID",
    "MAX_LEEWAY_SECONDS",
    "SUPPORTED_ALGORITHMS",
    "ClaimMapping",
    "Claims",
    "ExchangeError",
    "ExchangeResult",
    "JwtVerifier",
    "KeySet",
    "Purpose",
    "PurposeVocabulary",
    "RevocationList",
    "TokenError",
    "TokenErrorReason",
    "TokenExchange",
    "TokenVerifier",
    "demo_jwks",
    "demo_private_key",
    "generate_signing_key",
    "issue_token",
    "load_jwks",
    "load_purposes",
    "load_signing_key",
    "prune_revocations",
    "public_jwks",
    "record_revocation",
    "revoke_token",
    "revoked_token_ids",
]
