"""Exception types shared across the library.

Every error the library raises on bad configuration or a failed privacy decision derives from
`PrivacyError`, so callers on the request path can fail closed with one `except`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


class PrivacyError(Exception):
    """Base class of every error raised by intelgraph_privacy."""


class ConfigError(PrivacyError):
    """A configuration file (catalog, preset, schema) is missing or invalid."""


class CatalogError(ConfigError):
    """The field catalog does not load or does not match the GraphQL schema."""


class PolicyError(PrivacyError):
    """A policy bundle failed to compile, to pass its tests, or to produce a decision."""


class PlanError(PrivacyError):
    """A GraphQL document cannot be planned (it does not parse or validate against the schema)."""

    def __init__(self, message: str, errors: list[dict[str, object]] | None = None) -> None:
        super().__init__(message)
        #: GraphQL-shaped error entries, ready for a response's `errors[]`.
        self.errors: list[dict[str, object]] = errors or [{"message": message}]


def describe_validation(exc: ValidationError) -> str:
    """A pydantic validation error in one line: `where: what; where: what`."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"])
        parts.append(f"{where}: {error['msg']}" if where else error["msg"])
    return "; ".join(parts)
