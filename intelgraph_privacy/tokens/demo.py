"""The demo signing key: public (it is in the repository); only `intelgraph-privacy demo` takes it.

DEMO ONLY. The demo also plays the identity provider for token exchange: its "IdP" tokens are
signed with the same key, under their own issuer and audience.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

from jwcrypto import jwk

from intelgraph_privacy import codec

DEMO_KID = "intelgraph-demo-2026"
DEMO_ISSUER = "https://demo.intelgraph.invalid"
DEMO_AUDIENCE = "intelgraph-graph-api"
#: The demo's stand-in identity provider, whose broad tokens /token/exchange accepts.
DEMO_IDP_ISSUER = "https://idp.demo.intelgraph.invalid"
DEMO_EXCHANGE_AUDIENCE = "intelgraph-token-exchange"


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
def demo_public_key() -> Any:
    """The demo key's public half (a jwcrypto JWK)."""
    return jwk.JWK(**demo_jwks()["keys"][0])


@functools.cache
def demo_thumbprint() -> str:
    """RFC 7638 thumbprint of the demo key."""
    # Compared by thumbprint, not kid: renaming the kid must not smuggle the demo key in.
    return str(demo_public_key().thumbprint())
