"""Rego policies on regorus: bundles, the per-request decision, hot reload and Rego tests."""

from intelgraph_privacy.policy.abac import ABAC_RULE, AbacGuard
from intelgraph_privacy.policy.bundle import (
    PolicyBundle,
    RegoFile,
    compile_bundle,
    contract_source,
    load_bundle,
)
from intelgraph_privacy.policy.engine import (
    DECISION_RULE,
    Decision,
    PolicyEngine,
    ReloadResult,
    evaluate,
)
from intelgraph_privacy.policy.rego_tests import RegoTestResult, run_rego_tests

__all__ = [
    "ABAC_RULE",
    "DECISION_RULE",
    "AbacGuard",
    "Decision",
    "PolicyBundle",
    "PolicyEngine",
    "RegoFile",
    "RegoTestResult",
    "ReloadResult",
    "compile_bundle",
    "contract_source",
    "evaluate",
    "load_bundle",
    "run_rego_tests",
]
