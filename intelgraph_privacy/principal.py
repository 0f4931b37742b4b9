"""The principal a request acts for: who, for which tenant, with which roles, for what purpose."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: Sensitivity tiers a token may say its holder is cleared for (the catalog's sensitivities).
Clearance = Literal["low", "medium", "high", "restricted"]


class Principal(BaseModel):
    """The authenticated caller, as the policy sees it (built from verified token claims)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sub: str = Field(min_length=1)
    tenant: str = Field(min_length=1)
    roles: tuple[str, ...] = ()
    purpose: str = Field(min_length=1)
    region: str | None = None
    clearance: Clearance | None = None

    @field_validator("roles", mode="before")
    @classmethod
    def _roles_sorted_unique(cls, value: Any) -> tuple[str, ...]:
        # Roles are a set: sort them so equal principals share one cache key.
        if isinstance(value, str):
            raise ValueError("roles must be a list of strings, not one string")
        return tuple(sorted(set(value)))

    def cache_key(self) -> tuple[str, str, tuple[str, ...], str, str | None, str | None]:
        """Every attribute the policy can read, as a hashable key."""
        return (self.sub, self.tenant, self.roles, self.purpose, self.region, self.clearance)

    def policy_input(self) -> dict[str, Any]:
        """The principal as the Rego policies read it (`input.user`)."""
        return {
            "sub": self.sub,
            "tenant": self.tenant,
            "roles": list(self.roles),
            "purpose": self.purpose,
            "region": self.region,
            "clearance": self.clearance,
        }
