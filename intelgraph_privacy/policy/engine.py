"""The policy engine: one cached decision per request, and hot reload with an atomic swap."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cachetools import LRUCache

from intelgraph_privacy.actions import Action
from intelgraph_privacy.catalog import Catalog, FieldEntry
from intelgraph_privacy.codec import dumps
from intelgraph_privacy.errors import PolicyError
from intelgraph_privacy.policy.bundle import PolicyBundle, load_bundle, rego_error
from intelgraph_privacy.policy.rego_tests import RegoTestResult, run_rego_tests
from intelgraph_privacy.principal import Principal

#: The rule every bundle answers through the library's decision contract.
DECISION_RULE = "data.intelgraph.decision.actions"
_ACTIONS = {a.value: a for a in Action}
_PROBE_FIELD = "Query.__probe"


@dataclass(frozen=True, slots=True)
class Decision:
    """What each touched field becomes for one principal under one policy version."""

    actions: Mapping[str, Action]
    policy_version: str

    def __getitem__(self, coordinate: str) -> Action:
        return self.actions[coordinate]


@dataclass(frozen=True, slots=True)
class ReloadResult:
    """The outcome of a reload: the version now serving, and why a candidate was refused."""

    ok: bool
    version: str
    error: str | None = None
    tests: tuple[RegoTestResult, ...] = ()


@dataclass(slots=True)
class CacheStats:
    """Decision cache counters (read by metrics)."""

    hits: int = 0
    misses: int = 0
    evaluations: int = 0
    reloads: int = 0
    reload_failures: int = 0


class PolicyEngine:
    """Evaluates a policy bundle on regorus; decisions cached in a bounded LRU."""

    def __init__(
        self,
        source: str | Path,
        *,
        data: Mapping[str, Any] | None = None,
        cache_size: int = 4096,
    ) -> None:
        self._source = Path(source)
        self._data = dict(data or {})
        self._lock = threading.Lock()
        self._cache_lock = threading.Lock()
        self._cache: LRUCache[tuple[Any, ...], Decision] = LRUCache(maxsize=cache_size)
        self.stats = CacheStats()
        self.last_error: str | None = None
        bundle, _, problem = self._build()
        if bundle is None or problem is not None:
            raise PolicyError(problem or "policy bundle failed to load")
        self._bundle: PolicyBundle = bundle
        self._fingerprint = self._source_fingerprint()

    @property
    def bundle(self) -> PolicyBundle:
        """The bundle currently serving."""
        return self._bundle

    @property
    def version(self) -> str:
        """The version of the bundle currently serving."""
        return self._bundle.version

    def decide(
        self, principal: Principal, coordinates: frozenset[str], catalog: Catalog
    ) -> Decision:
        """What each of `coordinates` becomes for `principal`: one regorus evaluation, cached."""
        bundle = self._bundle
        key = (bundle.version, catalog.version, principal.cache_key(), coordinates)
        with self._cache_lock:  # the LRU reorders itself on reads: guard it across threads
            cached = self._cache.get(key)
        if cached is not None:
            self.stats.hits += 1
            return cached
        self.stats.misses += 1
        entries = {c: catalog.entry(c) for c in coordinates}
        # No lock: each thread evaluates on an engine of its own (see PolicyBundle.thread_engine).
        operations = frozenset(c for c in coordinates if catalog.is_operation(c))
        decision = Decision(
            evaluate(bundle, principal, entries, operations=operations), bundle.version
        )
        self.stats.evaluations += 1
        with self._cache_lock:
            self._cache[key] = decision
        return decision

    def query(self, rule: str, policy_input: Mapping[str, Any]) -> Any:
        """Evaluate one rule of the serving bundle (e.g. `data.intelgraph.abac.granted`).

        Sets come back as Python sets. PolicyError when the rule is undefined or fails: callers
        treat that as a refusal.
        """
        bundle = self._bundle
        try:
            engine = bundle.thread_engine()
            engine.set_input_json(dumps(policy_input).decode())
            return engine.eval_rule(rule)
        except RuntimeError as exc:
            raise PolicyError(f"policy rule {rule} failed: {rego_error(exc)}") from exc

    def reload(self) -> ReloadResult:
        """Compile and test the source again; swap it in only if it passes."""
        fingerprint = self._source_fingerprint()
        bundle, results, problem = self._build()
        # Remember what was tried, so that unchanged broken files are not retried every poll.
        self._fingerprint = fingerprint
        if bundle is None or problem is not None:
            self.stats.reload_failures += 1
            self.last_error = problem
            return ReloadResult(False, self._bundle.version, problem, tuple(results))
        if bundle.version != self._bundle.version:
            self._bundle = bundle  # one reference assignment: the swap is atomic
            with self._cache_lock:
                self._cache.clear()
            self.stats.reloads += 1
        self.last_error = None
        return ReloadResult(True, bundle.version, None, tuple(results))

    def reload_if_changed(self) -> ReloadResult | None:
        """Reload when a policy file changed since the last load; None when nothing changed."""
        if self._source_fingerprint() == self._fingerprint:
            return None
        return self.reload()

    def _build(self) -> tuple[PolicyBundle | None, list[RegoTestResult], str | None]:
        try:
            bundle = load_bundle(self._source, data=self._data)
        except PolicyError as exc:
            return None, [], str(exc)
        results = run_rego_tests(bundle)
        failed = [r for r in results if r.outcome != "pass"]
        if failed:
            names = ", ".join(
                f"{r.rule} ({r.outcome}{': ' + r.detail if r.detail else ''})" for r in failed
            )
            return bundle, results, f"policy tests failed: {names}"
        problem = _probe(bundle)
        return bundle, results, problem

    def _source_fingerprint(self) -> tuple[tuple[str, int, int], ...]:
        paths = sorted(self._source.rglob("*.rego")) if self._source.is_dir() else [self._source]
        out = []
        for p in paths:
            try:
                st = p.stat()
            except OSError:
                continue
            out.append((str(p), st.st_mtime_ns, st.st_size))
        return tuple(out)


def evaluate(
    bundle: PolicyBundle,
    principal: Principal,
    entries: Mapping[str, FieldEntry],
    *,
    operations: frozenset[str] = frozenset(),
    lock: threading.Lock | None = None,
) -> dict[str, Action]:
    """Evaluate the decision contract once for all `entries`; fail closed on any odd answer.

    `operations` names the entries that are root fields (see `FieldEntry.policy_input`).
    """
    policy_input = {
        "user": principal.policy_input(),
        "fields": [entries[c].policy_input(c, operation=c in operations) for c in sorted(entries)],
    }
    encoded = dumps(policy_input).decode()
    try:
        engine = bundle.thread_engine()
        if lock is None:
            engine.set_input_json(encoded)
            raw = engine.eval_rule(DECISION_RULE)
        else:
            with lock:
                engine.set_input_json(encoded)
                raw = engine.eval_rule(DECISION_RULE)
    except RuntimeError as exc:
        raise PolicyError(f"policy evaluation failed: {rego_error(exc)}") from exc
    if not entries:
        return {}
    if not isinstance(raw, dict):
        raise PolicyError(
            f"{DECISION_RULE} is undefined or not an object (got {type(raw).__name__})"
        )
    actions: dict[str, Action] = {}
    for coordinate in entries:
        value = raw.get(coordinate)
        action = _ACTIONS.get(value) if isinstance(value, str) else None
        if action is None:
            raise PolicyError(f"policy gave no valid action for {coordinate} (got {value!r})")
        actions[coordinate] = action
    return actions


def _probe(bundle: PolicyBundle) -> str | None:
    # A candidate must answer the contract for a field before it may serve.
    probe_principal = Principal(sub="probe", tenant="probe", roles=(), purpose="probe")
    try:
        evaluate(bundle, probe_principal, {_PROBE_FIELD: FieldEntry()}, lock=None)
    except PolicyError as exc:
        return f"policy probe failed: {exc}"
    return None
