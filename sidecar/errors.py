"""Refusals the sidecar answers itself, as GraphQL-shaped JSON bodies."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class SidecarError(Exception):
    """A request the sidecar answers with an error of its own: HTTP status, message and code."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """The GraphQL-shaped response body (never any data)."""
        return error_body(self.message, self.code)


class ClientError(SidecarError):
    """The request is refused before anything reaches the upstream (4xx)."""


class UpstreamError(SidecarError):
    """The upstream failed (502/504): its data, if any, is never passed on."""


def error_body(message: str, code: str) -> dict[str, Any]:
    """`{"errors": [{"message": ..., "extensions": {"code": ...}}]}`."""
    return {"errors": [{"message": message, "extensions": {"code": code}}]}
