"""What a verified access token says, and the error every refusal raises."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from intelgraph_privacy.errors import PrivacyError
from intelgraph_privacy.principal import Clearance, Principal

TokenErrorReason = Literal[
    "malformed",
    "too_large",
    "algorithm",
    "unknown_key",
    "signature",
    "expired",
    "too_old",
    "not_yet_valid",
    "issued_in_future",
    "issuer",
    "audience",
    "claims",
    "purpose",
    "revoked",
    "demo_key",
]


class TokenError(PrivacyError):
    """A token was refused. `reason` is a short stable code; the message never echoes the token."""

    def __init__(self, reason: TokenErrorReason, message: str) -> None:
        super().__init__(message)
        self.reason: TokenErrorReason = reason


class Claims(BaseModel):
    """The verified claims of a purpose-bound access token (unknown claims are kept as extras)."""

    model_config = ConfigDict(frozen=True, extra="allow")

    sub: StrictStr = Field(min_length=1)
    tenant: StrictStr = Field(min_length=1)
    roles: tuple[StrictStr, ...] = ()
    #: Why the data is asked for: one name of the purpose vocabulary.
    purpose: StrictStr = Field(min_length=1)
    iss: StrictStr
    aud: StrictStr | tuple[StrictStr, ...]
    exp: StrictInt
    iat: StrictInt
    nbf: StrictInt | None = None
    jti: StrictStr | None = None
    region: StrictStr | None = None
    #: The highest sensitivity tier the holder is cleared for (policies may read it).
    clearance: Clearance | None = None

    def principal(self) -> Principal:
        """The caller as the policy sees it."""
        return Principal(
            sub=self.sub,
            tenant=self.tenant,
            roles=self.roles,
            purpose=self.purpose,
            region=self.region,
            clearance=self.clearance,
        )
