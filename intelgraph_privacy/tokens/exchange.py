"""Token exchange (RFC 8693): a broad token plus a requested purpose -> a short-lived,
purpose-bound access token, where the exchange policy allows it.

The subject token comes from the identity provider (Okta, Entra ID, ...): it is verified as a
plain JWT against the provider's keys, issuer and audience (`JwtVerifier`), and its claims are
mapped to ours (`ClaimMapping`: Entra puts the tenant in `tid`, Okta groups in `groups`...). The
policy's `data.intelgraph.exchange.allowed_purposes` then says which purposes this subject may
act for; a subject token that already names purposes (`purpose` or `purposes`) can only be
narrowed to one of them, never widened.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from jwcrypto import jwk

from intelgraph_privacy.errors import ConfigError, PolicyError, PrivacyError
from intelgraph_privacy.policy.engine import PolicyEngine
from intelgraph_privacy.tokens.claims import TokenError
from intelgraph_privacy.tokens.issue import issue_token
from intelgraph_privacy.tokens.purposes import PurposeVocabulary
from intelgraph_privacy.tokens.verify import JwtVerifier

EXCHANGE_RULE = "data.intelgraph.exchange.allowed_purposes"
MAX_EXCHANGE_TTL = 3600
_CLEARANCES = frozenset({"low", "medium", "high", "restricted"})

ExchangeErrorCode = Literal["invalid_request", "invalid_grant", "invalid_scope", "invalid_target"]


class ExchangeError(PrivacyError):
    """A refused exchange, with its RFC 6749 section 5.2 error code."""

    def __init__(
        self,
        error: ExchangeErrorCode,
        description: str,
        *,
        sub: str | None = None,
        tenant: str | None = None,
    ) -> None:
        super().__init__(description)
        self.error: ExchangeErrorCode = error
        self.description = description
        #: Who asked, when the subject token verified (for the audit log).
        self.sub = sub
        self.tenant = tenant


@dataclass(frozen=True, slots=True)
class ClaimMapping:
    """Where our claims are found in the identity provider's token."""

    sub: str = "sub"
    tenant: str | None = "tenant"
    roles: str = "roles"
    region: str | None = "region"
    clearance: str | None = "clearance"
    #: The tenant of every subject, for providers whose tokens name none.
    fixed_tenant: str | None = None

    def __post_init__(self) -> None:
        for name in ("sub", "tenant", "roles", "region", "clearance", "fixed_tenant"):
            if getattr(self, name) == "":
                raise ConfigError(f"the claim mapping's {name} must not be empty")
        if self.tenant is None and self.fixed_tenant is None:
            raise ConfigError("the claim mapping needs a tenant claim or a fixed tenant")


@dataclass(frozen=True, slots=True)
class Subject:
    """Who the subject token speaks for, in our terms."""

    sub: str
    tenant: str
    roles: tuple[str, ...]
    region: str | None
    clearance: str | None
    #: Purposes the subject token is already limited to (None: not limited).
    purposes: tuple[str, ...] | None
    expires_at: int

    def policy_input(self) -> dict[str, Any]:
        """The subject as the exchange policy reads it (`input.subject`)."""
        out: dict[str, Any] = {
            "sub": self.sub,
            "tenant": self.tenant,
            "roles": list(self.roles),
            "region": self.region,
            "clearance": self.clearance,
        }
        if self.purposes is not None:
            out["purposes"] = list(self.purposes)
        return out


@dataclass(frozen=True, slots=True)
class ExchangeResult:
    """An issued token and what it says."""

    access_token: str
    expires_in: int
    purpose: str
    sub: str
    tenant: str
    jti: str

    def response(self) -> dict[str, Any]:
        """The RFC 8693 section 2.2.1 response body."""
        return {
            "access_token": self.access_token,
            "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "scope": f"purpose:{self.purpose}",
        }


class TokenExchange:
    """Verifies subject tokens, asks the exchange policy, signs purpose-bound access tokens."""

    def __init__(
        self,
        subject_verifier: JwtVerifier,
        policy: PolicyEngine,
        signing_key: jwk.JWK,
        *,
        issuer: str,
        audience: str,
        purposes: PurposeVocabulary,
        ttl: int = 300,
        mapping: ClaimMapping | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if type(ttl) is not int or not 0 < ttl <= MAX_EXCHANGE_TTL:
            raise ConfigError(f"the exchange ttl must be 1 to {MAX_EXCHANGE_TTL} seconds")
        if not signing_key.has_private:
            raise ConfigError("token exchange needs a private signing key")
        self.subject_verifier = subject_verifier
        self.policy = policy
        self.signing_key = signing_key
        self.issuer = issuer
        self.audience = audience
        self.purposes = purposes
        self.ttl = ttl
        self.mapping = mapping or ClaimMapping()
        self._clock = clock

    def exchange(self, subject_token: str, purpose: str) -> ExchangeResult:
        """Trade `subject_token` for a token bound to `purpose`; ExchangeError when refused."""
        if purpose not in self.purposes:
            raise ExchangeError("invalid_scope", "the requested purpose is not in the vocabulary")
        try:
            payload = self.subject_verifier.verify_payload(subject_token)
        except TokenError as exc:
            raise ExchangeError("invalid_grant", f"the subject token is invalid: {exc}") from None
        subject = self.subject(payload)
        try:
            allowed = self.policy.query(
                EXCHANGE_RULE, {"subject": subject.policy_input(), "request": {"purpose": purpose}}
            )
        except PolicyError:
            # No exchange policy, or a failing one: nothing is issued.
            raise ExchangeError(
                "invalid_scope",
                "the exchange policy could not be evaluated",
                sub=subject.sub,
                tenant=subject.tenant,
            ) from None
        if not isinstance(allowed, set | frozenset | list) or purpose not in allowed:
            raise ExchangeError(
                "invalid_scope",
                f"the exchange policy does not allow purpose {purpose!r} here",
                sub=subject.sub,
                tenant=subject.tenant,
            )
        now = int(self._clock())
        # Never outlive the subject token, nor the purpose's own maximum.
        lifetime = min(self.ttl, self.purposes[purpose].max_ttl_seconds, subject.expires_at - now)
        if lifetime <= 0:
            raise ExchangeError(
                "invalid_grant",
                "the subject token expires now",
                sub=subject.sub,
                tenant=subject.tenant,
            )
        extra: dict[str, Any] = {}
        if subject.region is not None:
            extra["region"] = subject.region
        if subject.clearance is not None:
            extra["clearance"] = subject.clearance
        jti = uuid.uuid4().hex
        token = issue_token(
            self.signing_key,
            sub=subject.sub,
            tenant=subject.tenant,
            roles=list(subject.roles),
            purpose=purpose,
            issuer=self.issuer,
            audience=self.audience,
            ttl=lifetime,
            jti=jti,
            now=now,
            extra=extra,
        )
        return ExchangeResult(token, lifetime, purpose, subject.sub, subject.tenant, jti)

    def subject(self, payload: Mapping[str, Any]) -> Subject:
        """Map a verified subject token's claims to ours; ExchangeError when they do not fit."""
        m = self.mapping
        sub = payload.get(m.sub)
        tenant = payload.get(m.tenant) if m.tenant is not None else None
        if tenant is None:
            tenant = m.fixed_tenant
        if not isinstance(sub, str) or not sub:
            raise ExchangeError("invalid_grant", f"the subject token has no {m.sub!r} claim")
        if not isinstance(tenant, str) or not tenant:
            raise ExchangeError("invalid_grant", f"the subject token has no {m.tenant!r} claim")
        roles = _roles(payload.get(m.roles, []))
        region = payload.get(m.region) if m.region is not None else None
        if region is not None and (not isinstance(region, str) or not region):
            raise ExchangeError("invalid_grant", "the subject token's region is not a string")
        clearance = payload.get(m.clearance) if m.clearance is not None else None
        if clearance is not None and clearance not in _CLEARANCES:
            raise ExchangeError("invalid_grant", "the subject token's clearance is not a tier")
        return Subject(
            sub=sub,
            tenant=tenant,
            roles=roles,
            region=region,
            clearance=clearance,
            purposes=_purposes(payload),
            expires_at=int(payload["exp"]),
        )


def _roles(value: Any) -> tuple[str, ...]:
    # Lists (Entra `roles`, Okta `groups`) or a space-separated string (an OAuth `scope` style).
    if isinstance(value, str):
        value = value.split()
    if not isinstance(value, list) or not all(isinstance(r, str) and r for r in value):
        raise ExchangeError("invalid_grant", "the subject token's roles are not a list of strings")
    return tuple(sorted(set(value)))


def _purposes(payload: Mapping[str, Any]) -> tuple[str, ...] | None:
    named: list[Any] = []
    if "purpose" in payload:
        named.append(payload["purpose"])
    if "purposes" in payload:
        listed = payload["purposes"]
        if not isinstance(listed, list):
            raise ExchangeError("invalid_grant", "the subject token's purposes are not a list")
        named.extend(listed)
    if not named and "purpose" not in payload and "purposes" not in payload:
        return None
    if not all(isinstance(p, str) and p for p in named):
        raise ExchangeError("invalid_grant", "the subject token's purposes are not strings")
    return tuple(sorted(set(named)))
