"""What one sidecar holds while it runs: schema, catalog, redactor, policy, keys, store, clients.

The schema-dependent parts (schema, catalog, redactor) form one `Runtime`, swapped atomically when
the upstream schema changes; requests read `state.runtime` once and use that snapshot throughout.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from cachetools import LRUCache
from graphql import GraphQLSchema, print_schema

from intelgraph_privacy.analytics import AnonPreset, load_anon_preset
from intelgraph_privacy.audit import AuditLog, AuditWriter
from intelgraph_privacy.catalog import Catalog, load_catalog
from intelgraph_privacy.config import SidecarConfig
from intelgraph_privacy.errors import ConfigError, PolicyError, PrivacyError
from intelgraph_privacy.kanon import load_hierarchies
from intelgraph_privacy.policy import AbacGuard, PolicyEngine
from intelgraph_privacy.principal import Principal
from intelgraph_privacy.redact import Redactor
from intelgraph_privacy.rtbf.tombstones import tombstoned_hashes
from intelgraph_privacy.rules import RedactionRule, apply_rules, load_rules
from intelgraph_privacy.schema import load_schema, schema_from_introspection
from intelgraph_privacy.store import Store, open_store
from intelgraph_privacy.store.versions import (
    REDACTION_RULES,
    REVOCATIONS,
    TOMBSTONES,
    VersionReader,
)
from intelgraph_privacy.tokens import (
    DEMO_AUDIENCE,
    DEMO_EXCHANGE_AUDIENCE,
    DEMO_IDP_ISSUER,
    DEMO_ISSUER,
    ClaimMapping,
    JwtVerifier,
    KeySet,
    PurposeVocabulary,
    RevocationList,
    TokenExchange,
    TokenVerifier,
    demo_jwks,
    demo_private_key,
    load_jwks,
    load_purposes,
    load_signing_key,
    revoked_token_ids,
)
from sidecar.erasure import ErasureService
from sidecar.errors import UpstreamError
from sidecar.guards import DocumentMeasure
from sidecar.logs import get_logger
from sidecar.metrics import SidecarMetrics
from sidecar.shared import SharedStateUnavailableError, SharedStateWatch
from sidecar.upstream import UpstreamClient

#: The bundle's k-anonymity exemptions (rego/anon.rego).
ANON_EXEMPT_RULE = "data.intelgraph.anon.exempt"
#: Until the upstream schema has loaded, introspection is retried this often.
SCHEMA_RETRY_SECONDS = 2.0
#: A cached upstream probe is trusted this long by /readyz.
READY_PROBE_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class Runtime:
    """Everything bound to one version of the upstream schema."""

    schema: GraphQLSchema
    schema_hash: str
    #: The catalog file as loaded, and the catalog in force (with the admin API's rules).
    file_catalog: Catalog
    catalog: Catalog
    redactor: Redactor
    #: The version of the redaction rules applied (the store's `redaction_rules` counter).
    rules_version: int
    #: Guard measurements per (document, operation name): documents repeat, measuring is a walk.
    measures: LRUCache[tuple[str, str | None], DocumentMeasure] = field(
        default_factory=lambda: LRUCache(maxsize=4096)
    )


class SidecarState:
    """The sidecar's long-lived objects and the background tasks that refresh them."""

    def __init__(self, config: SidecarConfig) -> None:
        self.config = config
        self.log = get_logger()
        self.metrics = SidecarMetrics()
        self.policy = PolicyEngine(config.policy.policies)
        self.abac = AbacGuard(self.policy)
        self.pseudonym_key = config.pseudonym_key()
        self.purposes: PurposeVocabulary = load_purposes(config.auth.purposes)
        #: Revoked token ids, refreshed from the store whenever its counter moves.
        self.revoked = RevocationList()
        self.verifier = self._verifier()
        self.exchange: TokenExchange | None = self._exchange()
        self.anon_preset: AnonPreset = load_anon_preset(config.anonymity.preset)
        self.anon_hierarchies: dict[str, Any] = (
            load_hierarchies(self.anon_preset.hierarchies)
            if self.anon_preset.hierarchies is not None
            else {}
        )
        #: The redaction rules set through the admin API, and the counters last applied.
        self.rules: tuple[RedactionRule, ...] = ()
        self.rules_version = 0
        self.revocations_version = 0
        #: The DP export service (presets, ledger), made on the first export.
        self.export_service: Any = None
        #: The erasure orchestrator and its worker (rtbf), made at start when configured.
        self.erasures: ErasureService | None = None
        #: Erased subjects: tenant -> keyed hashes (tombstones), refreshed like the rules.
        self.tombstones: dict[str, frozenset[str]] = {}
        self.tombstones_version = 0
        self.shared: SharedStateWatch | None = None
        self._shared_lock = asyncio.Lock()
        self._shared_executor = ThreadPoolExecutor(1, thread_name_prefix="intelgraph-shared")
        self._version_reader: VersionReader | None = None
        self.upstream = UpstreamClient(config.upstream)
        self.store: Store | None = None
        self.audit: AuditWriter | None = None
        self.runtime: Runtime | None = None
        self.schema_error: str | None = None
        self._upstream_ok_at = 0.0
        #: Requests being served, and audit records promised to them (see proxy._admit).
        self.in_flight = 0
        self.audit_reserved = 0
        self._tasks: list[asyncio.Task[None]] = []
        self.metrics.add_cache_counters(self._cache_counters)
        self.metrics.audit_queue.set_function(
            lambda: float(self.audit.queue_depth) if self.audit is not None else 0.0
        )

    # -- start and stop -------------------------------------------------------------------

    async def start(self) -> None:
        """Open the store and the upstream pool, load the schema, start the refresh loops."""
        self.store = await asyncio.to_thread(
            open_store, self.config.store.url, data_dir=self.config.store.data_dir
        )
        self.audit = AuditWriter(
            AuditLog(self.store),
            batch_size=self.config.audit.batch_size,
            flush_interval=self.config.audit.flush_interval_seconds,
            max_queue=self.config.audit.max_queue,
            on_error=self._audit_failed,
        )
        self.audit.start()
        # One dedicated connection on one thread: a read is a single round trip.
        self._version_reader = VersionReader(self.store)
        self.shared = SharedStateWatch(
            self._version_reader.read,
            max_age=self.config.policy.shared_state_max_age_seconds,
            executor=self._shared_executor,
            # SQLite is read in-process in about 20 µs, less than a hop to a thread and back.
            inline=self.store.dialect == "sqlite",
        )
        await self.sync_shared()
        if self.config.rtbf.registry is not None:
            try:
                self.erasures = await asyncio.to_thread(ErasureService, self)
            except PrivacyError as exc:
                # Erasure requests are refused until it is fixed; the rest keeps serving.
                self.log.error("erasures are unavailable", extra={"error": str(exc)})
            else:
                self.erasures.resume_waiting()
        await self.upstream.start()
        try:
            await self.refresh_schema()
        except (UpstreamError, PrivacyError) as exc:
            # Not ready until the schema loads; the loop below keeps trying.
            self.log.error("schema not loaded at start-up", extra={"error": str(exc)})
        self._spawn(self._policy_loop, self.config.policy.reload_seconds)
        if self.config.upstream.schema_sdl is None:
            self._spawn(self._schema_loop, SCHEMA_RETRY_SECONDS)
        if self.config.auth.jwks and not self.config.demo:
            # A file or a URL: both are read again, so keys rotate without a restart.
            self._spawn(
                self._jwks_loop(self.config.auth.jwks, self.verifier, "auth.jwks"),
                self.config.auth.jwks_refresh_seconds,
            )
        subject_jwks = self.config.token_exchange.subject.jwks
        if self.exchange is not None and self.config.token_exchange.enabled and subject_jwks:
            # The identity provider rotates its keys too (Okta, Entra ID: every few weeks).
            self._spawn(
                self._jwks_loop(
                    subject_jwks, self.exchange.subject_verifier, "token_exchange.subject.jwks"
                ),
                self.config.auth.jwks_refresh_seconds,
            )

    async def stop(self) -> None:
        """Stop the loops, flush the audit log, close the pool and the store."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.upstream.close()
        if self._version_reader is not None:
            # Closed on the thread that used it, then the thread ends.
            if self.shared is not None and self.shared.inline:
                self._version_reader.close()
            else:
                await asyncio.get_running_loop().run_in_executor(
                    self._shared_executor, self._version_reader.close
                )
        self._shared_executor.shutdown(wait=True)
        if self.erasures is not None:
            await asyncio.to_thread(self.erasures.close)
        if self.audit is not None:
            await asyncio.to_thread(self.audit.close)
        if self.store is not None:
            self.store.close()

    # -- schema ---------------------------------------------------------------------------

    async def refresh_schema(self) -> bool:
        """Load the upstream schema (SDL or introspection); True when a new runtime was built."""
        sdl_path = self.config.upstream.schema_sdl
        if sdl_path is not None:
            schema = load_schema(sdl_path)
        else:
            schema = schema_from_introspection(
                await self.upstream.introspect(), source=self.config.upstream.url
            )
        schema_hash = hashlib.sha256(print_schema(schema).encode()).hexdigest()
        if self.runtime is not None and self.runtime.schema_hash == schema_hash:
            return False
        try:
            runtime = self._build_runtime(schema, schema_hash)
        except PrivacyError as exc:
            self.schema_error = str(exc)
            self.metrics.schema_refreshes.labels("failed").inc()
            raise
        self.runtime = runtime
        self.schema_error = None
        self.metrics.schema_refreshes.labels("ok").inc()
        self.log.info("schema loaded", extra={"schema_hash": schema_hash[:16]})
        return True

    def _build_runtime(
        self, schema: GraphQLSchema, schema_hash: str, file_catalog: Catalog | None = None
    ) -> Runtime:
        file_catalog = file_catalog or load_catalog(self.config.policy.catalog, schema)
        catalog, skipped = apply_rules(file_catalog, self.rules)
        for rule in skipped:
            self.log.warning(
                "a redaction rule names a field the schema does not have; it cannot apply",
                extra={"coordinate": rule.coordinate},
            )
        redactor = Redactor(
            schema,
            catalog,
            self.policy,
            pseudonym_key=self.pseudonym_key,
            introspection_roles=frozenset(self.config.policy.introspection_roles),
            max_tokens=self.config.limits.max_tokens,
            # With erasures configured, every object brings its subject key (tombstones).
            subject_keys=self.config.rtbf.registry is not None,
        )
        if self.config.rtbf.registry is not None and not redactor.subject_keys:
            self.log.error(
                "erasures are configured but the catalog marks no subject_key field: "
                "erased subjects cannot be recognised in responses"
            )
        return Runtime(schema, schema_hash, file_catalog, catalog, redactor, self.rules_version)

    # -- shared state (admin rules, revocations) ------------------------------------------

    async def sync_shared(self) -> None:
        """Bring rules and revocations up to the store's counters, read after this call began.

        Raises SharedStateUnavailableError when the store cannot be read: the caller refuses the
        request rather than serve it under possibly stale rules.
        """
        assert self.shared is not None and self.store is not None
        versions = await self.shared.fresh()
        rules_version = versions.get(REDACTION_RULES, 0)
        revocations_version = versions.get(REVOCATIONS, 0)
        tombstones_version = versions.get(TOMBSTONES, 0)
        if (
            rules_version <= self.rules_version
            and revocations_version <= self.revocations_version
            and tombstones_version <= self.tombstones_version
        ):
            return
        async with self._shared_lock:
            store = self.store
            try:
                if tombstones_version > self.tombstones_version:
                    self.tombstones = await asyncio.to_thread(_tombstones_by_tenant, store)
                    self.tombstones_version = tombstones_version
                if revocations_version > self.revocations_version:
                    self.revoked.replace(await asyncio.to_thread(revoked_token_ids, store))
                    self.revocations_version = revocations_version
                if rules_version > self.rules_version:
                    self.rules = await asyncio.to_thread(load_rules, store)
                    self.rules_version = rules_version
            except PrivacyError as exc:  # StoreError: the change cannot be read, so refuse
                raise SharedStateUnavailableError(str(exc)) from exc
            if self.runtime is not None and self.runtime.rules_version != self.rules_version:
                runtime = self.runtime
                self.runtime = self._build_runtime(
                    runtime.schema, runtime.schema_hash, runtime.file_catalog
                )
                self.log.info(
                    "redaction rules applied",
                    extra={"rules_version": rules_version, "rules": len(self.rules)},
                )

    def anon_exemptions(self, principal: Principal, operations: list[str]) -> frozenset[str]:
        """The analytics operations exempt from k-anonymity for `principal` (rego/anon.rego).

        A bundle without the rule exempts nothing; a failing rule raises PolicyError.
        """
        try:
            raw = self.policy.query(
                ANON_EXEMPT_RULE, {"user": principal.policy_input(), "operations": operations}
            )
        except PolicyError as exc:
            if "not a valid rule path" in str(exc):
                return frozenset()
            raise
        if not isinstance(raw, set | frozenset | list) or not all(isinstance(o, str) for o in raw):
            raise PolicyError(f"{ANON_EXEMPT_RULE} must be a set of operation coordinates")
        return frozenset(raw) & frozenset(operations)

    def policy_version(self, runtime: Runtime | None = None) -> str:
        """The policy in force: the bundle's version and the rules version (`<bundle>+r<n>`)."""
        rules = runtime.rules_version if runtime is not None else self.rules_version
        return f"{self.policy.version}+r{rules}"

    # -- readiness ------------------------------------------------------------------------

    async def readiness(self) -> dict[str, bool]:
        """Each readiness condition: schema loaded, upstream answering, audit log writable.

        The policy needs no check: the sidecar does not start without a bundle that compiled and
        passed its tests, and a refused reload leaves that bundle serving.
        """
        now = time.monotonic()
        if now - self._upstream_ok_at > READY_PROBE_SECONDS and await self.upstream.ping():
            self._upstream_ok_at = now
        return {
            "schema": self.runtime is not None,
            "upstream": time.monotonic() - self._upstream_ok_at <= READY_PROBE_SECONDS,
            "audit": self.audit is not None and self.audit.healthy,
        }

    # -- background loops -----------------------------------------------------------------

    def _spawn(self, loop: Callable[[float], Coroutine[Any, Any, None]], period: float) -> None:
        if period > 0:
            self._tasks.append(asyncio.create_task(loop(period)))

    async def _policy_loop(self, period: float) -> None:
        while True:
            await asyncio.sleep(period)
            # On the loop thread, not a worker: regorus engines must live and die on one thread.
            result = self.policy.reload_if_changed()
            if result is None:
                continue
            self.metrics.policy_reloads.labels("ok" if result.ok else "failed").inc()
            if result.ok:
                self.log.info("policy reloaded", extra={"policy_version": result.version})
            else:
                self.log.error(
                    "policy reload refused; the previous bundle keeps serving",
                    extra={"policy_version": result.version, "error": result.error},
                )

    async def _schema_loop(self, retry: float) -> None:
        refresh = self.config.upstream.schema_refresh_seconds
        while True:
            # Until a schema is loaded, retry quickly; then at the configured interval (0: never).
            if self.runtime is not None and refresh == 0:
                return
            await asyncio.sleep(retry if self.runtime is None else refresh)
            try:
                await self.refresh_schema()
            except (UpstreamError, PrivacyError) as exc:
                self.log.error("schema refresh failed", extra={"error": str(exc)})

    def _jwks_loop(
        self, source: str, verifier: JwtVerifier, setting: str
    ) -> Callable[[float], Coroutine[Any, Any, None]]:
        async def refresh(period: float) -> None:
            while True:
                await asyncio.sleep(period)
                try:
                    keys = await asyncio.to_thread(load_jwks, source)
                    if keys.fingerprint != verifier.keys.fingerprint:
                        # Refused (ConfigError) when it holds the demo key or no usable key.
                        verifier.keys = keys
                        self.log.info(
                            "JWKS rotated",
                            extra={"jwks": keys.fingerprint[:16], "setting": setting},
                        )
                except PrivacyError as exc:
                    # Unreachable or refused: keep verifying with the previous keys, keep trying.
                    self.log.error(
                        "JWKS refresh failed; the previous keys stay",
                        extra={"error": str(exc), "setting": setting},
                    )

        return refresh

    # -- helpers --------------------------------------------------------------------------

    def _verifier(self) -> TokenVerifier:
        auth = self.config.auth
        common: dict[str, Any] = {
            "purposes": self.purposes,
            "algorithms": auth.algorithms,
            "leeway": auth.leeway_seconds,
            "max_token_age": auth.max_token_age_seconds,
            "max_token_bytes": auth.max_token_bytes,
            "require_jti": auth.require_jti,
            "revoked": self.revoked,
        }
        if self.config.demo:
            return TokenVerifier(
                KeySet.from_json(demo_jwks()),
                issuer=auth.issuer or DEMO_ISSUER,
                audience=auth.audience or DEMO_AUDIENCE,
                allow_demo_key=True,
                **common,
            )
        assert auth.jwks and auth.issuer and auth.audience  # checked by the config model
        return TokenVerifier(
            load_jwks(auth.jwks), issuer=auth.issuer, audience=auth.audience, **common
        )

    def _exchange(self) -> TokenExchange | None:
        settings = self.config.token_exchange
        if not (settings.enabled or self.config.demo):
            return None
        if self.config.demo and not settings.enabled:
            # The demo plays the identity provider too, with the same public demo key.
            signing_key = demo_private_key()
            subject_keys = KeySet.from_json(demo_jwks())
            subject_issuer, subject_audience = DEMO_IDP_ISSUER, DEMO_EXCHANGE_AUDIENCE
            algorithms: tuple[str, ...] = ("EdDSA",)
            mapping = ClaimMapping()
        else:
            subject = settings.subject
            assert settings.signing_key_file and subject.jwks  # checked by the config model
            assert subject.issuer and subject.audience
            signing_key = load_signing_key(settings.signing_key_file)
            subject_keys = load_jwks(subject.jwks)
            subject_issuer, subject_audience = subject.issuer, subject.audience
            algorithms = subject.algorithms
            mapping = ClaimMapping(**subject.claims.model_dump())
        if signing_key.thumbprint() not in self.verifier.keys.thumbprints:
            raise ConfigError(
                "token_exchange.signing_key_file: its public key is not in auth.jwks, so the "
                "tokens it issues would be refused; add it to the JWKS"
            )
        subject_verifier = JwtVerifier(
            subject_keys,
            issuer=subject_issuer,
            audience=subject_audience,
            algorithms=algorithms,
            leeway=self.config.auth.leeway_seconds,
            max_token_age=self.config.auth.max_token_age_seconds,
            revoked=self.revoked,
            allow_demo_key=self.config.demo,
        )
        return TokenExchange(
            subject_verifier,
            self.policy,
            signing_key,
            issuer=self.verifier.issuer,
            audience=self.verifier.audience,
            purposes=self.purposes,
            ttl=settings.ttl_seconds,
            mapping=mapping,
        )

    def _cache_counters(self) -> dict[str, tuple[int, int]]:
        counters = {"decision": (self.policy.stats.hits, self.policy.stats.misses)}
        if self.runtime is not None:
            r = self.runtime.redactor
            counters["plan"] = (r.plan_hits, r.plan_misses)
        return counters

    def _audit_failed(self, exc: BaseException) -> None:
        self.metrics.audit_failures.inc()
        self.log.error("audit write failed; retrying", extra={"error": str(exc)})


def _tombstones_by_tenant(store: Store) -> dict[str, frozenset[str]]:
    by_tenant: dict[str, set[str]] = {}
    for tenant, hashed in tombstoned_hashes(store):
        by_tenant.setdefault(tenant, set()).add(hashed)
    return {tenant: frozenset(hashes) for tenant, hashes in by_tenant.items()}
