"""Reading GraphQL-over-HTTP requests: POST JSON (one operation or a batch) and GET.

Only `query`, `variables` and `operationName` are read; everything else a client sends
(extensions, persisted-query hashes, other parameters) is ignored and never forwarded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from intelgraph_privacy.codec import loads
from sidecar.errors import ClientError

JSON_TYPES = ("application/json", "application/graphql-response+json")


@dataclass(frozen=True, slots=True)
class OperationRequest:
    """One GraphQL operation as the client asked for it."""

    query: str
    variables: dict[str, Any]
    operation_name: str | None


@dataclass(frozen=True, slots=True)
class GraphQLRequest:
    """Every operation of one HTTP request; `batch` when the body was a JSON array."""

    operations: tuple[OperationRequest, ...]
    batch: bool


def read_post(content_type: str, body: bytes, *, max_batch: int) -> GraphQLRequest:
    """Decode a POST body; a batch is a JSON array of operation objects."""
    if content_type.split(";", maxsplit=1)[0].strip().lower() not in JSON_TYPES:
        raise ClientError(
            415, "POST /graphql takes Content-Type: application/json", "UNSUPPORTED_MEDIA_TYPE"
        )
    try:
        payload = loads(body)
    except ValueError:
        raise ClientError(400, "the request body is not valid JSON", "BAD_REQUEST") from None
    if isinstance(payload, list):
        if not payload:
            raise ClientError(400, "the batch is empty", "BAD_REQUEST")
        if len(payload) > max_batch:
            raise ClientError(
                400,
                f"the batch has {len(payload)} operations; the limit is {max_batch}",
                "BATCH_LIMIT",
            )
        return GraphQLRequest(
            tuple(_operation(p, f"batch[{i}]") for i, p in enumerate(payload)), True
        )
    return GraphQLRequest((_operation(payload, "the request"),), False)


def read_get(params: Mapping[str, str]) -> GraphQLRequest:
    """Decode GET parameters (`query`, `variables` as JSON, `operationName`)."""
    variables: Any = None
    raw_variables = params.get("variables")
    if raw_variables:
        try:
            variables = loads(raw_variables)
        except ValueError:
            raise ClientError(400, "`variables` is not valid JSON", "BAD_REQUEST") from None
    payload = {
        "query": params.get("query"),
        "variables": variables,
        "operationName": params.get("operationName") or None,
    }
    return GraphQLRequest((_operation(payload, "the request"),), False)


def _operation(payload: Any, where: str) -> OperationRequest:
    if not isinstance(payload, dict):
        raise ClientError(400, f"{where} must be a JSON object", "BAD_REQUEST")
    query = payload.get("query")
    if not isinstance(query, str) or not query.strip():
        raise ClientError(400, f"{where} has no `query` string", "BAD_REQUEST")
    variables = payload.get("variables")
    if variables is None:
        variables = {}
    if not isinstance(variables, dict):
        raise ClientError(400, f"`variables` in {where} must be an object", "BAD_REQUEST")
    name = payload.get("operationName")
    if name is not None and not isinstance(name, str):
        raise ClientError(400, f"`operationName` in {where} must be a string", "BAD_REQUEST")
    return OperationRequest(query, variables, name or None)
