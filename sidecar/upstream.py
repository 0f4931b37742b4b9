"""The pooled HTTP client to the upstream graph API; every failure becomes an UpstreamError.

The upstream receives only what the sidecar planned, encoded by the sidecar: a JSON body with
the planned document, the operation's declared variables and its name, as application/json.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any

import aiohttp
from graphql import get_introspection_query

from intelgraph_privacy.codec import dumps, loads
from intelgraph_privacy.config import UpstreamConfig
from sidecar.errors import UpstreamError

_INTROSPECTION_QUERY = get_introspection_query(descriptions=True)


class UpstreamClient:
    """One aiohttp session (a connection pool) to the upstream GraphQL endpoint."""

    def __init__(self, config: UpstreamConfig) -> None:
        self.config = config
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Open the connection pool."""
        connector = aiohttp.TCPConnector(
            limit=self.config.max_connections, ssl=self._ssl_context(), enable_cleanup_closed=True
        )
        timeout = aiohttp.ClientTimeout(
            total=self.config.timeout_seconds, sock_connect=self.config.connect_timeout_seconds
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            json_serialize=lambda _: "",  # never used: bodies are encoded here
            auto_decompress=True,
            trust_env=False,
        )

    async def close(self) -> None:
        """Close the pool."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def execute(
        self,
        document: str,
        variables: Mapping[str, Any],
        operation_name: str | None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """POST one operation; the decoded JSON response, or UpstreamError (502 / 504)."""
        body: dict[str, Any] = {"query": document, "variables": dict(variables)}
        if operation_name is not None:
            body["operationName"] = operation_name
        return await self._post(dumps(body), headers or {})

    async def introspect(self) -> dict[str, Any]:
        """The upstream's introspection result (`data`), for building the schema."""
        response = await self._post(dumps({"query": _INTROSPECTION_QUERY}), {})
        data = response.get("data") if isinstance(response, dict) else None
        if not isinstance(data, dict) or "__schema" not in data:
            raise UpstreamError(502, "the upstream did not answer introspection", "BAD_UPSTREAM")
        return data

    async def ping(self) -> bool:
        """Whether the upstream answers a trivial query (for readiness)."""
        try:
            response = await self._post(b'{"query":"{__typename}"}', {})
        except UpstreamError:
            return False
        return isinstance(response, dict) and isinstance(response.get("data"), dict)

    async def _post(self, body: bytes, headers: Mapping[str, str]) -> Any:
        if self._session is None:
            raise UpstreamError(502, "the upstream client is not started", "UPSTREAM_UNAVAILABLE")
        send = {**headers, "Content-Type": "application/json", "Accept": "application/json"}
        try:
            async with self._session.post(
                self.config.url, data=body, headers=send, allow_redirects=False
            ) as response:
                # 200, or 400 for a request it refused; anything else (a redirect, 401, 5xx, ...)
                # is not a GraphQL answer to pass on.
                if response.status not in (200, 400):
                    raise UpstreamError(
                        502, f"the upstream failed with HTTP {response.status}", "UPSTREAM_ERROR"
                    )
                content_type = response.headers.get("Content-Type", "")
                if "json" not in content_type.lower():
                    raise UpstreamError(502, "the upstream did not answer JSON", "BAD_UPSTREAM")
                raw = await self._read_limited(response)
        except TimeoutError:
            raise UpstreamError(504, "the upstream timed out", "UPSTREAM_TIMEOUT") from None
        except aiohttp.ClientError as exc:
            raise UpstreamError(
                502, f"the upstream is unreachable ({type(exc).__name__})", "UPSTREAM_UNAVAILABLE"
            ) from None
        try:
            decoded = loads(raw)
        except ValueError:
            raise UpstreamError(502, "the upstream answered invalid JSON", "BAD_UPSTREAM") from None
        if not isinstance(decoded, dict) or not ("data" in decoded or "errors" in decoded):
            raise UpstreamError(502, "the upstream did not answer a GraphQL result", "BAD_UPSTREAM")
        return decoded

    async def _read_limited(self, response: aiohttp.ClientResponse) -> bytes:
        limit = self.config.max_response_bytes
        if response.content_length is not None:
            if response.content_length > limit:
                raise UpstreamError(502, "the upstream response is too large", "BAD_UPSTREAM")
            return await response.read()
        # No length announced (chunked): count while reading.
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(1 << 16):
            size += len(chunk)
            if size > limit:
                raise UpstreamError(502, "the upstream response is too large", "BAD_UPSTREAM")
            chunks.append(chunk)
        return b"".join(chunks)

    def _ssl_context(self) -> ssl.SSLContext | bool:
        if not self.config.url.startswith("https://"):
            return False
        context = ssl.create_default_context(
            cafile=str(self.config.ca_file) if self.config.ca_file else None
        )
        if self.config.client_cert_file is not None:
            # Mutual TLS: the sidecar proves itself to the upstream.
            context.load_cert_chain(
                str(self.config.client_cert_file),
                str(self.config.client_key_file) if self.config.client_key_file else None,
            )
        return context
