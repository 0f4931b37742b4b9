"""Wildcard negations get their Rego meaning ("no element matches") on regorus."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from intelgraph_privacy import Action, FieldEntry, PolicyError
from intelgraph_privacy.policy import compile_bundle, contract_source, evaluate
from intelgraph_privacy.policy.bundle import CONTRACT_PATH
from intelgraph_privacy.policy.negation import rewrite_wildcard_negations
from tests.conftest import principal

V1_IDIOMS = """package intelgraph.redact
import rego.v1

# Written three ways; each must mean: no role is high-clearance.
redact contains input.field.name if {
\tinput.field.sensitivity == "high"
\tnot input.user.roles[_] == "high-clearance"
}

redact contains input.field.name if {
\tinput.field.sensitivity == "restricted"
\tnot "restricted-clearance" == input.user.roles[_]
}

mask contains input.field.name if {
\tinput.field.sensitivity == "medium"
\tnot input.user.roles[_] == `investigator` with input.user.roles as input.user.roles
}
"""

FIELDS = {
    "Person.ssn": FieldEntry(sensitivity="high"),
    "Case.informant": FieldEntry(sensitivity="restricted"),
    "Person.email": FieldEntry(sensitivity="medium"),
}
ROLES = ("high-clearance", "restricted-clearance", "investigator", "analyst")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(ROLES), unique=True))
def test_negated_wildcards_mean_no_element_matches(roles: list[str]) -> None:
    bundle = compile_bundle([(CONTRACT_PATH, contract_source()), ("idioms.rego", V1_IDIOMS)])
    actions = evaluate(bundle, principal(*roles), FIELDS)
    assert actions["Person.ssn"] is (Action.KEEP if "high-clearance" in roles else Action.NULL)
    assert actions["Case.informant"] is (
        Action.KEEP if "restricted-clearance" in roles else Action.NULL
    )
    assert actions["Person.email"] is (Action.KEEP if "investigator" in roles else Action.MASK)


def test_rewrite_keeps_lines_in_place() -> None:
    rewritten = rewrite_wildcard_negations("idioms.rego", V1_IDIOMS, rego_v0=False, tag="0")
    original_lines = V1_IDIOMS.splitlines()
    new_lines = rewritten.splitlines()
    assert len(new_lines) > len(original_lines)
    for old, new in zip(original_lines, new_lines, strict=False):
        assert (old == new) or (
            "not __ig_not_0_" in new and old.split("not")[0] == new.split("not")[0]
        )


def test_negation_with_local_variables_and_wildcard_is_refused() -> None:
    source = (
        "package intelgraph.redact\nimport rego.v1\n"
        "redact contains name if {\n\tname := input.field.name\n"
        "\tnot input.user.grants[_] == name\n}\n"
    )
    with pytest.raises(PolicyError, match=r"x\.rego:5: .*local variables \(name\)"):
        compile_bundle([("x.rego", source)])


def test_negation_without_wildcard_is_left_alone() -> None:
    source = 'package t\nimport rego.v1\np if not input.x == "y"\n'
    assert rewrite_wildcard_negations("t.rego", source, rego_v0=False, tag="0") == source
