"""Attribute-based access control for the admin API: which attributes a principal holds.

The bundle's `data.intelgraph.abac.granted` is the set of attributes (`admin.write`,
`privacy.write`, `analytics.read`, ...) granted to `input.user` (the principal: roles, purpose,
tenant, region, clearance). An operation annotated `@auth(abac: "admin.write")` runs only for a
principal holding that attribute. Anything odd (undefined rule, not a set of strings) grants
nothing: fail closed.
"""

from __future__ import annotations

import threading

from cachetools import LRUCache

from intelgraph_privacy.errors import PolicyError
from intelgraph_privacy.policy.engine import PolicyEngine
from intelgraph_privacy.principal import Principal

ABAC_RULE = "data.intelgraph.abac.granted"


class AbacGuard:
    """The attributes each principal holds under the serving bundle (cached per bundle version)."""

    def __init__(self, policy: PolicyEngine, *, cache_size: int = 1024) -> None:
        self.policy = policy
        self._cache: LRUCache[tuple[object, ...], frozenset[str]] = LRUCache(cache_size)
        self._lock = threading.Lock()

    def granted(self, principal: Principal) -> frozenset[str]:
        """The attributes `principal` holds; PolicyError when the policy cannot say."""
        key = (self.policy.version, principal.cache_key())
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None:
            return cached
        raw = self.policy.query(ABAC_RULE, {"user": principal.policy_input()})
        if not isinstance(raw, set | frozenset | list) or not all(isinstance(a, str) for a in raw):
            raise PolicyError(f"{ABAC_RULE} must be a set of attribute names")
        granted = frozenset(raw)
        with self._lock:
            self._cache[key] = granted
        return granted

    def allows(self, principal: Principal, attribute: str) -> bool:
        """Whether `principal` holds `attribute` (PolicyError when the policy cannot say)."""
        return attribute in self.granted(principal)
