"""The one configuration model (the sidecar's and the CLI's): YAML, overridden by environment.

Every setting has a default except `upstream.url`. An environment variable overrides a setting by
its path, upper-cased, joined with `__`, under the prefix `INTELGRAPH_`: `upstream.timeout_seconds`
is `INTELGRAPH_UPSTREAM__TIMEOUT_SECONDS`. Values convert to the setting's type (`true`, `30`);
a list is written in YAML flow style (`[a, b]`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from intelgraph_privacy.errors import ConfigError

ENV_PREFIX = "INTELGRAPH_"
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ListenConfig(_Section):
    """Where the sidecar listens."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)


#: Headers `upstream.forward_headers` may not name.
UNFORWARDABLE_HEADERS = frozenset(
    {
        "accept",
        "accept-encoding",
        "connection",
        "content-encoding",
        "content-length",
        "content-type",
        "expect",
        "host",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)


class UpstreamConfig(_Section):
    """The graph API behind the sidecar."""

    #: The upstream GraphQL endpoint, e.g. http://127.0.0.1:8081/graphql.
    url: str
    #: An SDL file of the upstream schema; when unset the schema is fetched by introspection.
    schema_sdl: Path | None = None
    #: How often to re-introspect the upstream schema (0 = only at start-up).
    schema_refresh_seconds: float = Field(default=300.0, ge=0)
    #: Whole-request timeout for one upstream call.
    timeout_seconds: float = Field(default=10.0, gt=0)
    connect_timeout_seconds: float = Field(default=2.0, gt=0)
    #: Pooled connections to the upstream.
    max_connections: int = Field(default=100, ge=1)
    #: Larger upstream responses are refused (502).
    max_response_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    #: Client headers copied to the upstream (e.g. authorization); nothing else is forwarded.
    forward_headers: tuple[str, ...] = ()
    #: A CA bundle, and a client certificate and key for mutual TLS, for https upstreams.
    ca_file: Path | None = None
    client_cert_file: Path | None = None
    client_key_file: Path | None = None

    @field_validator("forward_headers")
    @classmethod
    def _forwardable(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        lowered = tuple(name.strip().lower() for name in names)
        refused = sorted(set(lowered) & UNFORWARDABLE_HEADERS)
        if refused:
            # Framing and hop-by-hop headers would desynchronise the pooled connection; the
            # sidecar sets content-type and accept itself.
            raise ValueError(f"these headers cannot be forwarded: {', '.join(refused)}")
        return lowered

    @model_validator(mode="after")
    def _http_url(self) -> UpstreamConfig:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError("upstream.url must be an http:// or https:// URL")
        return self


class AuthConfig(_Section):
    """Bearer token verification."""

    #: A JWKS file path or an https:// URL.
    jwks: str | None = None
    issuer: str | None = None
    audience: str | None = None
    algorithms: tuple[str, ...] = ("EdDSA", "ES256", "RS256")
    leeway_seconds: int = Field(default=30, ge=0, le=60)
    #: How often a JWKS URL is fetched again (key rotation).
    jwks_refresh_seconds: float = Field(default=300.0, ge=0)
    #: The purpose vocabulary: a token whose purpose is not in it is refused.
    purposes: Path = Path("presets/purposes.yaml")
    #: Tokens issued longer ago than this are refused, whatever their exp says.
    max_token_age_seconds: int = Field(default=24 * 3600, ge=60, le=30 * 24 * 3600)
    #: Refuse tokens without a jti (a token without one cannot be revoked).
    require_jti: bool = True
    #: Tokens longer than this are refused before they are parsed.
    max_token_bytes: int = Field(default=8192, ge=512, le=65536)


class ClaimMappingConfig(_Section):
    """Where our claims are in the identity provider's tokens (names of its claims)."""

    sub: str = "sub"
    tenant: str | None = "tenant"
    roles: str = "roles"
    region: str | None = "region"
    clearance: str | None = "clearance"
    #: The tenant of every subject, for providers whose tokens name none.
    fixed_tenant: str | None = None

    @model_validator(mode="after")
    def _tenant_known(self) -> ClaimMappingConfig:
        if self.tenant is None and self.fixed_tenant is None:
            raise ValueError("set claims.tenant (a claim name) or claims.fixed_tenant")
        return self


class SubjectTokenConfig(_Section):
    """The identity provider whose broad tokens /token/exchange accepts."""

    #: The provider's JWKS: a file path or an https:// URL.
    jwks: str | None = None
    issuer: str | None = None
    #: The audience the provider puts in tokens meant for the exchange.
    audience: str | None = None
    algorithms: tuple[str, ...] = ("EdDSA", "ES256", "RS256")
    claims: ClaimMappingConfig = ClaimMappingConfig()


class TokenExchangeConfig(_Section):
    """POST /token/exchange (RFC 8693): broad token + purpose -> short-lived purpose-bound token."""

    enabled: bool = False
    #: The private JWK that signs exchanged tokens; its public key must be in auth.jwks.
    signing_key_file: Path | None = None
    #: Life of an exchanged token (also capped by the purpose and the subject token's exp).
    ttl_seconds: int = Field(default=300, ge=30, le=3600)
    subject: SubjectTokenConfig = SubjectTokenConfig()

    @model_validator(mode="after")
    def _complete(self) -> TokenExchangeConfig:
        if self.enabled:
            missing = [
                name
                for name, value in (
                    ("signing_key_file", self.signing_key_file),
                    ("subject.jwks", self.subject.jwks),
                    ("subject.issuer", self.subject.issuer),
                    ("subject.audience", self.subject.audience),
                )
                if value is None
            ]
            if missing:
                raise ValueError(f"token exchange is enabled but {', '.join(missing)} unset")
        return self


class LimitsConfig(_Section):
    """Guards applied before anything reaches the upstream."""

    max_body_bytes: int = Field(default=1024 * 1024, ge=256)
    max_depth: int = Field(default=12, ge=1)
    max_aliases: int = Field(default=30, ge=0)
    max_batch: int = Field(default=10, ge=1)
    max_tokens: int = Field(default=5000, ge=10)
    #: Requests being served at once; more get 503 (each may hold a decoded upstream response).
    max_in_flight: int = Field(default=256, ge=1)


class PolicyConfig(_Section):
    """The catalog, the Rego bundle and the redaction settings."""

    catalog: Path = Path("presets/catalog.yaml")
    policies: Path = Path("rego")
    #: How often the bundle is checked for changes and hot-reloaded (0 = never).
    reload_seconds: float = Field(default=5.0, ge=0)
    #: A file holding the secret key of the hash pseudonyms (at least 16 bytes).
    pseudonym_key_file: Path | None = None
    #: Roles allowed to run introspection through the sidecar.
    introspection_roles: tuple[str, ...] = ("admin",)
    #: Upstream error messages may quote any value, protected ones included. `hide` replaces
    #: every one with a generic message; `located` keeps those whose path leads to a field the
    #: plan keeps. Either way only message, path, locations and extensions.code pass.
    upstream_error_messages: Literal["hide", "located"] = "hide"
    #: How stale the shared state (admin redaction rules, revoked tokens) may be when a request
    #: is served. 0: every request waits for a read of the store that started after it arrived,
    #: so a change made through any replica applies to the next request everywhere. A store that
    #: cannot be read then fails requests closed (503), never serves under old rules.
    shared_state_max_age_seconds: float = Field(default=0.0, ge=0, le=60)


class PreviewConfig(_Section):
    """Shadow mode: report what would be redacted, return responses unchanged.

    Preview serves protected values in clear: it is a backout switch, not a mode to leave on.
    """

    enabled: bool = False
    #: Documents in preview even when `enabled` is false, by the sha256 of their text (the
    #: audit log's `document_hash`). Not by operation name: a client chooses that name.
    documents: tuple[str, ...] = ()

    @field_validator("documents")
    @classmethod
    def _sha256_hex(cls, digests: tuple[str, ...]) -> tuple[str, ...]:
        for digest in digests:
            if not _SHA256_HEX.fullmatch(digest):
                raise ValueError(
                    f"{digest!r} is not a document hash (64 lower-case hex digits, as in the "
                    "audit log's document_hash)"
                )
        return digests


class StoreConfig(_Section):
    """Where the audit log (and later modules' tables) live."""

    #: A SQLAlchemy URL (postgresql://... or sqlite:///...); unset = SQLite in `data_dir`.
    url: str | None = None
    data_dir: Path = Path(".intelgraph-data")


class AuditConfig(_Section):
    """The off-request-path audit writer."""

    batch_size: int = Field(default=256, ge=1)
    flush_interval_seconds: float = Field(default=0.2, gt=0)
    max_queue: int = Field(default=10_000, ge=1)


class AnonymityConfig(_Section):
    """k-anonymity of analytics operations (those the catalog marks `analytics: true`)."""

    #: k, the rows' quasi-identifiers and count field, suppression limit, hierarchies.
    preset: Path = Path("presets/anon.yaml")


class DpConfig(_Section):
    """Differential privacy for exports (POST /export) and the per-tenant budget ledger."""

    #: Backout switch: false pauses DP exports (503 EXPORTS_PAUSED).
    exports_enabled: bool = True
    #: The named presets (epsilon 1, 2, 4; delta 1e-6).
    presets: Path = Path("presets/dp.yaml")
    #: Budget per tenant and purpose per window, in epsilon and delta.
    budget_epsilon: float = Field(default=10.0, gt=0)
    budget_delta: float = Field(default=1e-5, ge=0, lt=1)
    window_seconds: int = Field(default=86_400, ge=60)


class RtbfConfig(_Section):
    """The right to be forgotten: the dataset registry, the keys that sign manifests."""

    #: Backout switch: false refuses new erasure requests (503 RTBF_DISABLED) and runs no job.
    enabled: bool = True
    #: The dataset registry (YAML); unset: erasure requests are refused (nothing is registered).
    registry: Path | None = None
    #: The private Ed25519 JWK that signs manifests (and every region's sub-manifest unless
    #: `region_keys` names another); its public key belongs in what auditors verify against.
    signing_key_file: Path | None = None
    #: Region -> a private JWK of that region's executor.
    region_keys: dict[str, Path] = {}
    #: Run accepted jobs in the sidecar process (the demo); false: leave them to
    #: `intelgraph-privacy rtbf run` workers.
    run_in_sidecar: bool = True


class SidecarConfig(_Section):
    """Everything the sidecar reads at start-up."""

    listen: ListenConfig = ListenConfig()
    upstream: UpstreamConfig
    auth: AuthConfig = AuthConfig()
    limits: LimitsConfig = LimitsConfig()
    policy: PolicyConfig = PolicyConfig()
    preview: PreviewConfig = PreviewConfig()
    store: StoreConfig = StoreConfig()
    audit: AuditConfig = AuditConfig()
    token_exchange: TokenExchangeConfig = TokenExchangeConfig()
    anonymity: AnonymityConfig = AnonymityConfig()
    dp: DpConfig = DpConfig()
    rtbf: RtbfConfig = RtbfConfig()
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    #: Set only by `intelgraph-privacy demo`: accepts the demo signing key and serves its JWKS.
    demo: bool = False

    @model_validator(mode="after")
    def _auth_complete(self) -> SidecarConfig:
        if not self.demo and not (self.auth.jwks and self.auth.issuer and self.auth.audience):
            raise ValueError("auth.jwks, auth.issuer and auth.audience are required")
        if not self.demo and self.policy.pseudonym_key_file is None:
            raise ValueError("policy.pseudonym_key_file is required")
        return self

    @model_validator(mode="after")
    def _rtbf_keys(self) -> SidecarConfig:
        rtbf = self.rtbf
        if rtbf.registry is not None and not self.demo and rtbf.signing_key_file is None:
            raise ValueError("rtbf.registry is set but rtbf.signing_key_file is not")
        return self

    def pseudonym_key(self) -> bytes:
        """The secret key of hash pseudonyms and subject hashes (`policy.pseudonym_key_file`).

        The demo's public key in the demo only; ConfigError when the file is missing, short,
        or holds the demo key outside the demo.
        """
        from intelgraph_privacy.demo import DEMO_PSEUDONYM_KEY

        path = self.policy.pseudonym_key_file
        if path is None:
            if self.demo:
                return DEMO_PSEUDONYM_KEY
            raise ConfigError("policy.pseudonym_key_file is required")
        try:
            # Only a trailing newline is dropped: a binary key may contain any other byte.
            key = path.read_bytes().rstrip(b"\r\n")
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the pseudonym key: {exc.strerror}") from exc
        if len(key) < 16:
            raise ConfigError(f"{path}: the pseudonym key must be at least 16 bytes")
        if key == DEMO_PSEUDONYM_KEY and not self.demo:
            raise ConfigError(f"{path}: this is the public demo pseudonym key; generate your own")
        return key

    def in_preview(self, document_hash: str) -> bool:
        """Whether the document with this sha256 runs in shadow mode."""
        return self.preview.enabled or document_hash in self.preview.documents


def load_config(
    path: str | Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> SidecarConfig:
    """Read the YAML file (if any), apply `INTELGRAPH_*` variables, then `overrides`; validate."""
    raw: dict[str, Any] = {}
    if path is not None:
        raw = _read_yaml(Path(path))
        if "demo" in raw:
            # The demo key is public: only `intelgraph-privacy demo` may accept it.
            raise ConfigError(
                f"{path}: `demo` cannot be set in a file; run `intelgraph-privacy demo`"
            )
    for name, value in sorted((os.environ if environ is None else environ).items()):
        if name.startswith(ENV_PREFIX) and ("__" in name or name == f"{ENV_PREFIX}LOG_LEVEL"):
            keys = name.removeprefix(ENV_PREFIX).lower().split("__")
            _set(raw, keys, _env_value(name, value))
    for dotted, value in (overrides or {}).items():
        _set(raw, dotted.split("."), value)
    try:
        return SidecarConfig.model_validate(raw)
    except ValidationError as exc:
        source = str(path) if path is not None else "configuration"
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"{source}: {problems}") from None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read configuration: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the configuration must be a mapping")
    # Relative paths in the file are relative to the file, not to the working directory.
    return _resolve_paths(loaded, path.parent)


_PATH_KEYS = {
    ("upstream", "schema_sdl"),
    ("upstream", "ca_file"),
    ("upstream", "client_cert_file"),
    ("upstream", "client_key_file"),
    ("policy", "catalog"),
    ("policy", "policies"),
    ("policy", "pseudonym_key_file"),
    ("store", "data_dir"),
    ("auth", "purposes"),
    ("token_exchange", "signing_key_file"),
    ("anonymity", "preset"),
    ("dp", "presets"),
    ("rtbf", "registry"),
    ("rtbf", "signing_key_file"),
}


def _resolve_paths(raw: dict[str, Any], base: Path) -> dict[str, Any]:
    for section, key in _PATH_KEYS:
        block = raw.get(section)
        if isinstance(block, dict) and isinstance(block.get(key), str):
            block[key] = str(base / block[key])
    rtbf = raw.get("rtbf")
    region_keys = rtbf.get("region_keys") if isinstance(rtbf, dict) else None
    if isinstance(region_keys, dict):
        for region, key_file in region_keys.items():
            if isinstance(key_file, str):
                region_keys[region] = str(base / key_file)
    exchange = raw.get("token_exchange")
    subject = exchange.get("subject") if isinstance(exchange, dict) else None
    for block in (raw.get("auth"), subject):
        jwks = block.get("jwks") if isinstance(block, dict) else None
        if isinstance(block, dict) and isinstance(jwks, str) and "://" not in jwks:
            block["jwks"] = str(base / jwks)
    return raw


def _env_value(name: str, value: str) -> Any:
    # Pydantic converts "30" and "true" itself; only lists need parsing ("[a, b]").
    if not value.lstrip().startswith("["):
        return value if value != "" else None
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{name}: cannot parse {value!r}: {exc}") from exc


def _set(raw: dict[str, Any], keys: list[str], value: Any) -> None:
    node = raw
    for key in keys[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    node[keys[-1]] = value


def load_store_config(path: str | Path) -> StoreConfig:
    """The store settings of a sidecar configuration file (for CLI commands that read the store)."""
    return load_config(path).store
