"""The public testing harness generates what it promises, and its checks catch real defects."""

from __future__ import annotations

import copy

import pytest
from graphql import FieldNode, FragmentSpreadNode, parse, validate
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from intelgraph_privacy import Redactor
from intelgraph_privacy.redact import Plan
from intelgraph_privacy.testing import (
    Canaries,
    assert_no_leak,
    assert_spec_nulls,
    queries,
    responses,
)
from tests.conftest import principal
from tests.test_properties import HARNESS, SCHEMA

FEATURES = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.filter_too_much]
)


def _features(text: str) -> set[str]:
    found: set[str] = set()
    pending = list(parse(text).definitions)
    while pending:
        node = pending.pop()
        if isinstance(node, FieldNode):
            if node.alias:
                found.add("alias")
            if node.directives:
                found.add("directive")
        if isinstance(node, FragmentSpreadNode):
            found.add("named fragment")
        sel = getattr(node, "selection_set", None)
        if sel is not None:
            pending.extend(sel.selections)
    return found


def test_generated_queries_are_valid_and_use_aliases_fragments_and_directives() -> None:
    seen: set[str] = set()

    @FEATURES
    @given(queries(SCHEMA))
    def collect(text: str) -> None:
        assert not validate(SCHEMA, parse(text))
        seen.update(_features(text))

    collect()
    assert seen == {"alias", "directive", "named fragment"}


def test_generated_responses_carry_unique_canaries() -> None:
    query = "{ people { id ssn age riskScore aliases } }"
    shape = HARNESS.redactor.shape(query)

    @settings(max_examples=30, deadline=None)
    @given(st.data())
    def check(data: st.DataObject) -> None:
        canaries = Canaries()
        data.draw(responses(SCHEMA, shape, canaries))
        values = [v for vs in canaries.by_coordinate.values() for v in vs]
        assert len(values) == len(set(values))
        assert set(canaries.by_coordinate) <= {
            "Person.id",
            "Person.ssn",
            "Person.age",
            "Person.riskScore",
            "Person.aliases",
        }

    check()


def _case(redactor: Redactor) -> tuple[Plan, dict, dict]:  # type: ignore[type-arg]
    plan = redactor.plan("{ people { name ssn } }", None, principal("analyst"))
    original = {"data": {"people": [{"name": "Maria", "ssn": "512-44-6789"}]}}
    redacted = redactor.apply(plan, copy.deepcopy(original)).response
    return plan, original, redacted


def test_assert_no_leak_catches_a_leaked_value(redactor: Redactor) -> None:
    plan, original, redacted = _case(redactor)
    assert_no_leak(plan, original, redacted)
    leaked = copy.deepcopy(redacted)
    leaked["errors"][0]["message"] = "ssn was 512-44-6789"
    with pytest.raises(AssertionError, match="leaked"):
        assert_no_leak(plan, original, leaked)


def test_assert_spec_nulls_catches_a_missing_error_and_a_bad_null(redactor: Redactor) -> None:
    plan, original, redacted = _case(redactor)
    assert_spec_nulls(plan, original, redacted)
    no_error = copy.deepcopy(redacted)
    no_error.pop("errors")
    with pytest.raises(AssertionError, match="no REDACTED error"):
        assert_spec_nulls(plan, original, no_error)
    bad_null = copy.deepcopy(redacted)
    bad_null["data"]["people"][0]["name"] = None  # name is String!
    with pytest.raises(AssertionError, match="non-null"):
        assert_spec_nulls(plan, original, bad_null)
    extra_key = copy.deepcopy(redacted)
    extra_key["data"]["people"][0]["dob"] = "1987-03-14"
    with pytest.raises(AssertionError, match="the plan does not know"):
        assert_spec_nulls(plan, original, extra_key)


pytest_plugins = ["pytester"]


def test_pytest_plugin_gives_users_a_configured_harness(pytester: pytest.Pytester) -> None:
    from tests.conftest import PRESETS, REGO

    pytester.makeini(
        f"""
        [pytest]
        intelgraph_schema = {PRESETS / "demo.graphql"}
        intelgraph_catalog = {PRESETS / "catalog.yaml"}
        intelgraph_policies = {REGO}
        """
    )
    pytester.makepyfile(
        """
        from hypothesis import given, settings, HealthCheck
        from hypothesis import strategies as st

        def test_invariants(intelgraph_harness):
            @settings(max_examples=10, deadline=None,
                      suppress_health_check=[HealthCheck.filter_too_much])
            @given(intelgraph_harness.cases())
            def run(case):
                case.check()
            run()
        """
    )
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
