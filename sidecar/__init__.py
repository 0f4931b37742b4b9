"""The aiohttp sidecar: a redacting GraphQL proxy built on `intelgraph_privacy`.

Empty for now: the library it will serve (catalog, policies, redaction) comes first.
"""
