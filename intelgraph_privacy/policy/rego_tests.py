"""Running a bundle's own Rego tests: every rule named `test_*` must evaluate to true."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

from intelgraph_privacy.policy.bundle import PolicyBundle, rego_error

Outcome = Literal["pass", "fail", "error"]


@dataclass(frozen=True, slots=True)
class RegoTestResult:
    """The outcome of one Rego test rule."""

    rule: str
    outcome: Outcome
    detail: str
    seconds: float


def run_rego_tests(bundle: PolicyBundle) -> list[RegoTestResult]:
    """Evaluate every `test_*` rule of the bundle on a clone of its engine (input cleared)."""
    engine = bundle.thread_engine().clone()
    engine.set_input({})
    results = []
    for rule in bundle.tests:
        started = time.perf_counter()
        try:
            value = engine.eval_rule(rule)
        except RuntimeError as exc:
            outcome: Outcome = "error"
            detail = rego_error(exc)
        else:
            # Only `true` passes: undefined, false or any other value is a failure.
            outcome = "pass" if value is True else "fail"
            detail = "" if value is True else f"evaluated to {value!r}"
        results.append(RegoTestResult(rule, outcome, detail, time.perf_counter() - started))
    return results
