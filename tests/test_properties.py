"""Property tests of the redaction invariants over generated queries on the demo schema."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from intelgraph_privacy import (
    PolicyEngine,
    Principal,
    Redactor,
    load_catalog,
    load_schema,
)
from intelgraph_privacy.codec import dumps
from intelgraph_privacy.testing import PrivacyHarness, RedactionCase, principals
from tests.conftest import PRESETS, REGO, TEST_PSEUDONYM_KEY

SCHEMA = load_schema(PRESETS / "demo.graphql")
CATALOG = load_catalog(PRESETS / "catalog.yaml", SCHEMA)
HARNESS = PrivacyHarness(
    Redactor(SCHEMA, CATALOG, PolicyEngine(REGO), pseudonym_key=TEST_PSEUDONYM_KEY)
)
PROPERTY = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

#: Principals that hold neither high- nor restricted-clearance, with any purpose.
UNCLEARED = principals(roles=("analyst", "investigator", "auditor", "admin"))
FULLY_CLEARED = Principal(
    sub="u1",
    tenant="t1",
    roles=("high-clearance", "restricted-clearance", "investigator"),
    purpose="investigation",
)


def _protected_by_catalog(case: RedactionCase) -> dict[str, list[Any]]:
    # Independent of the plan: what the catalog says an uncleared reader must never see.
    return {
        coordinate: values
        for coordinate, values in case.canaries.by_coordinate.items()
        if CATALOG.entry(coordinate).sensitivity in ("high", "restricted")
    }


@PROPERTY
@given(case=HARNESS.cases(UNCLEARED))
def test_uncleared_principals_never_receive_high_or_restricted_values(
    case: RedactionCase,
) -> None:
    encoded = dumps(case.redacted).decode()
    for coordinate, values in _protected_by_catalog(case).items():
        for value in values:
            assert str(value) not in encoded, f"{coordinate} leaked {value!r}"
    case.check()


@PROPERTY
@given(case=HARNESS.cases(principals()))
def test_no_value_the_plan_does_not_keep_leaks_and_nulls_follow_the_spec(
    case: RedactionCase,
) -> None:
    case.check()


def _without_key(value: Any, key: str) -> Any:
    if isinstance(value, dict):
        return {k: _without_key(v, key) for k, v in value.items() if k != key}
    if isinstance(value, list):
        return [_without_key(v, key) for v in value]
    return value


@PROPERTY
@given(case=HARNESS.cases(st.just(FULLY_CLEARED)))
def test_fully_cleared_principal_gets_the_response_unchanged(case: RedactionCase) -> None:
    alias = HARNESS.redactor.shape(case.query).typename_alias
    assert case.redacted == _without_key(case.original, alias)
    assert case.report.total() == 0
