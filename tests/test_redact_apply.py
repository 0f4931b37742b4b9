"""Planning and applying redaction on the demo schema with the shipped policies."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from intelgraph_privacy import (
    Action,
    PlanError,
    PolicyEngine,
    Redactor,
    catalog_from_mapping,
)
from intelgraph_privacy.redact import preview
from tests.conftest import TEST_PSEUDONYM_KEY, principal

ANALYST = principal("analyst")
INVESTIGATOR = principal("investigator")
CLEARED = principal("high-clearance", "investigator")

PERSON = {
    "id": "P-1",
    "name": "Maria Keller",
    "ssn": "512-44-6789",
    "email": "maria.keller@example.org",
    "phone": "+1-202-555-0147",
    "dob": "1987-03-14",
    "age": 37,
    "riskScore": 72.5,
}


def run(redactor: Redactor, query: str, who: Any, data: dict[str, Any], **extra: Any) -> Any:
    plan = redactor.plan(query, None, who)
    return redactor.apply(plan, {"data": copy.deepcopy(data), **extra})


def redacted_paths(response: dict[str, Any]) -> list[list[Any]]:
    return [e["path"] for e in response.get("errors", []) if e["extensions"]["code"] == "REDACTED"]


def test_tiers_per_role(redactor: Redactor) -> None:
    query = "{ people { id name ssn email phone dob age riskScore } }"
    data = {"people": [PERSON]}
    analyst = run(redactor, query, ANALYST, data).response["data"]["people"][0]
    assert analyst["ssn"] is None and analyst["dob"] is None
    assert analyst["email"] == "*****.******@*******.org"
    assert analyst["phone"] == "+*-***-***-0147"
    assert analyst["riskScore"] == 70.0
    assert (analyst["name"], analyst["age"], analyst["id"]) == ("Maria Keller", 37, "P-1")

    investigator = run(redactor, query, INVESTIGATOR, data).response["data"]["people"][0]
    assert investigator["ssn"] is None and investigator["dob"] is None
    assert investigator["email"] == PERSON["email"] and investigator["phone"] == PERSON["phone"]

    cleared = run(redactor, query, CLEARED, data)
    assert cleared.response == {"data": data}
    assert cleared.report.total() == 0


def test_nulled_fields_get_redacted_errors_with_paths(redactor: Redactor) -> None:
    result = run(redactor, "{ people { ssn dob } }", ANALYST, {"people": [PERSON, PERSON]})
    assert sorted(redacted_paths(result.response)) == [
        ["people", 0, "dob"],
        ["people", 0, "ssn"],
        ["people", 1, "dob"],
        ["people", 1, "ssn"],
    ]
    error = result.response["errors"][0]
    assert error["extensions"]["coordinate"] in ("Person.ssn", "Person.dob")
    assert result.report.by_coordinate() == {"Person.dob": {"null": 2}, "Person.ssn": {"null": 2}}


@pytest.mark.parametrize(
    "query",
    [
        "{ people { name: ssn } }",
        "{ people { ...P } } fragment P on Person { name: ssn }",
        "{ people { ... on Person { name: ssn } } }",
        "{ people { ... { name: ssn } } }",
        "query($yes: Boolean!) { people { name: ssn @include(if: $yes) } }",
        "{ people { name: ssn @skip(if: false) } }",
        "{ node(id: 1) { ... on Person { name: ssn } } }",
        '{ search(text: "x") { ... on Person { name: ssn } } }',
        '{ search(text: "x") { ...P } } fragment P on Person { name: ssn }',
    ],
)
def test_aliases_fragments_and_directives_do_not_change_what_a_field_becomes(
    redactor: Redactor, query: str
) -> None:
    plan = redactor.plan(query, None, ANALYST)
    assert plan.decision["Person.ssn"] is Action.NULL
    alias = redactor.shape(query).typename_alias
    item = {"name": "512-44-6789"}
    if "node" in query or "search" in query:
        item[alias] = "Person"
    root = "node" if "node" in query else "search" if "search" in query else "people"
    data = {root: item if root == "node" else [item]}
    result = redactor.apply(plan, {"data": data})
    assert "512-44-6789" not in str(result.response)
    assert "6789" not in str(result.response)


def test_unions_are_decided_per_concrete_type(redactor: Redactor) -> None:
    query = """{ search(text: "h") {
        ... on Person { ref: ssn name }
        ... on Case { ref: informant title reference }
        ... on Organization { name }
    } }"""
    alias = redactor.shape(query).typename_alias
    data = {
        "search": [
            {alias: "Person", "ref": "512-44-6789", "name": "Maria"},
            {alias: "Case", "ref": "J. Doe", "title": "Harbor", "reference": "CASE-1"},
            {alias: "Organization", "name": "Harbor Logistics"},
        ]
    }
    result = run(redactor, query, INVESTIGATOR, data)
    person, case, org = result.response["data"]["search"]
    assert person == {"ref": None, "name": "Maria"}
    assert case == {"ref": None, "title": "Harbor", "reference": "CASE-1"}
    assert org == {"name": "Harbor Logistics"}
    assert sorted(redacted_paths(result.response)) == [["search", 0, "ref"], ["search", 1, "ref"]]
    coordinates = [e["extensions"]["coordinate"] for e in result.response["errors"]]
    assert sorted(coordinates) == ["Case.informant", "Person.ssn"]


def test_client_typename_is_kept_and_injected_one_removed(redactor: Redactor) -> None:
    query = '{ search(text: "h") { __typename ... on Organization { name } } }'
    shape = redactor.shape(query)
    assert f"{shape.typename_alias}: __typename" in shape.upstream_document
    data = {
        "search": [
            {shape.typename_alias: "Organization", "__typename": "Organization", "name": "Acme"}
        ]
    }
    result = run(redactor, query, ANALYST, data)
    assert result.response["data"]["search"] == [{"__typename": "Organization", "name": "Acme"}]


def test_injected_alias_avoids_names_used_by_the_client(redactor: Redactor) -> None:
    query = '{ search(text: "h") { ... on Person { _igTypename: name } } }'
    shape = redactor.shape(query)
    assert shape.typename_alias != "_igTypename"


def test_unknown_or_missing_concrete_type_is_redacted(redactor: Redactor) -> None:
    query = "{ node(id: 1) { id } }"
    alias = redactor.shape(query).typename_alias
    for item in ({alias: "Spaceship", "id": "S-1"}, {"id": "S-1"}):
        result = run(redactor, query, CLEARED, {"node": item})
        assert result.response["data"] == {"node": None}
        assert redacted_paths(result.response) == [["node"]]


def test_keys_the_plan_does_not_know_are_dropped(redactor: Redactor) -> None:
    data = {"people": [{"name": "Maria", "ssn": "512-44-6789"}], "secret": {"ssn": "1"}}
    result = run(redactor, "{ people { name } }", CLEARED, data)
    assert result.response["data"] == {"people": [{"name": "Maria"}]}
    assert result.report.unknown_keys == 2


def test_values_of_the_wrong_json_type_are_redacted(redactor: Redactor) -> None:
    data = {"people": [{"name": {"ssn": "512-44-6789"}, "aliases": "not-a-list"}]}
    result = run(redactor, "{ people { name aliases } }", CLEARED, data)
    # name and aliases are non-null: the person cannot stand, nor the non-null list.
    assert result.response["data"] is None
    assert "512-44-6789" not in str(result.response)


def test_upstream_errors_at_or_under_redacted_paths_are_dropped(redactor: Redactor) -> None:
    errors = [
        {"message": "ssn lookup failed for 512-44-6789", "path": ["people", 0, "ssn"]},
        {"message": "name slow", "path": ["people", 0, "name"]},
        {"message": "global"},
    ]
    result = run(redactor, "{ people { name ssn } }", ANALYST, {"people": [PERSON]}, errors=errors)
    messages = [e["message"] for e in result.response["errors"]]
    assert "name slow" in messages and "global" in messages
    assert not any("512-44-6789" in m for m in messages)
    assert result.report.dropped_errors == 1


def test_upstream_extensions_are_not_passed_through(redactor: Redactor) -> None:
    result = run(redactor, "{ people { name } }", CLEARED, {"people": []}, extensions={"ssn": "1"})
    assert result.response == {"data": {"people": []}}


# --- null propagation, with a catalog where non-null fields are protected ---------------------


@pytest.fixture(scope="module")
def strict_redactor(demo_schema, shipped_policy) -> Redactor:  # type: ignore[no-untyped-def]
    catalog = catalog_from_mapping(
        {
            "default_sensitivity": "low",
            "fields": {
                "Person.name": {"sensitivity": "high"},
                "Case.reference": {"sensitivity": "high"},
            },
        },
        demo_schema,
    )
    return Redactor(demo_schema, catalog, shipped_policy, pseudonym_key=TEST_PSEUDONYM_KEY)


def test_null_in_non_null_field_nulls_the_nearest_nullable_parent(
    strict_redactor: Redactor,
) -> None:
    # person(id) is nullable: the Person becomes null, data stays.
    result = run(
        strict_redactor,
        "{ person(id: 1) { id name } }",
        ANALYST,
        {"person": {"id": "P-1", "name": "Maria"}},
    )
    assert result.response["data"] == {"person": None}
    assert redacted_paths(result.response) == [["person", "name"]]


def test_null_propagates_through_non_null_lists_to_data(strict_redactor: Redactor) -> None:
    # people: [Person!]! -> the item, the list and the root field are non-null: data is null.
    result = run(
        strict_redactor,
        "{ people { id name } }",
        ANALYST,
        {"people": [{"id": "P-1", "name": "Maria"}]},
    )
    assert result.response["data"] is None
    assert redacted_paths(result.response) == [["people", 0, "name"]]


def test_null_propagation_stops_at_a_nullable_object(strict_redactor: Redactor) -> None:
    # employer (nullable) -> employees: [Person!]! -> name: the employer becomes null.
    query = "{ person(id: 1) { id employer { id employees { name } } } }"
    data = {"person": {"id": "P-1", "employer": {"id": "O-1", "employees": [{"name": "X"}]}}}
    result = run(strict_redactor, query, ANALYST, data)
    assert result.response["data"] == {"person": {"id": "P-1", "employer": None}}
    assert redacted_paths(result.response) == [["person", "employer", "employees", 0, "name"]]


def test_mask_of_a_non_string_becomes_null(redactor: Redactor, demo_schema) -> None:  # type: ignore[no-untyped-def]
    catalog = catalog_from_mapping(
        {"default_sensitivity": "low", "fields": {"Person.age": {"sensitivity": "medium"}}},
        demo_schema,
    )
    local = Redactor(demo_schema, catalog, redactor.policy, pseudonym_key=TEST_PSEUDONYM_KEY)
    result = run(local, "{ people { age } }", ANALYST, {"people": [{"age": 37}]})
    assert result.response["data"] == {"people": [{"age": None}]}
    assert redacted_paths(result.response) == [["people", 0, "age"]]


def test_hash_is_a_stable_keyed_pseudonym(redactor: Redactor) -> None:
    query = "{ people { employer { registrationNumber } } }"
    data = {
        "people": [
            {"employer": {"registrationNumber": "HRB-1"}},
            {"employer": {"registrationNumber": "HRB-1"}},
            {"employer": {"registrationNumber": "HRB-2"}},
        ]
    }
    people = run(redactor, query, ANALYST, data).response["data"]["people"]
    values = [p["employer"]["registrationNumber"] for p in people]
    assert values[0] == values[1] != values[2]
    assert all(len(v) == 32 and "HRB" not in v for v in values)


def test_lists_of_scalars_are_transformed_per_element(redactor: Redactor) -> None:
    result = run(
        redactor,
        "{ people { aliases } }",
        ANALYST,
        {"people": [{"aliases": ["Mary Keller", "MK"]}]},
    )
    assert result.response["data"]["people"][0]["aliases"] == ["**** **ller", "**"]
    assert result.report.by_coordinate() == {"Person.aliases": {"mask": 2}}


# --- deny, preview, errors --------------------------------------------------------------------


def test_deny_refuses_the_whole_operation(tmp_path: Path, demo_schema, demo_catalog) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "deny.rego").write_text(
        "package intelgraph.redact\nimport rego.v1\n"
        'deny contains input.field.name if {\n  input.field.name == "Person.ssn"\n'
        '  input.user.purpose == "marketing"\n}\n'
    )
    local = Redactor(
        demo_schema, demo_catalog, PolicyEngine(tmp_path), pseudonym_key=TEST_PSEUDONYM_KEY
    )
    plan = local.plan("{ people { name ssn } }", None, principal("analyst", purpose="marketing"))
    assert plan.denied == ("Person.ssn",)
    result = local.apply(plan, {"data": {"people": [PERSON]}})
    assert result.response["data"] is None
    assert result.response["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert "512-44-6789" not in str(result.response)
    ok = local.plan("{ people { name ssn } }", None, principal("analyst"))
    assert ok.denied == ()


def test_preview_reports_without_changing_the_response(redactor: Redactor) -> None:
    query = "{ people { name ssn email } }"
    person = {"name": "Maria", "ssn": "512-44-6789", "email": "maria@example.org", "extra": 1}
    response = {"data": {"people": [person]}}
    before = copy.deepcopy(response)
    report = preview(redactor.plan(query, None, ANALYST), response)
    assert response == before
    assert report.by_coordinate() == {"Person.email": {"mask": 1}, "Person.ssn": {"null": 1}}
    assert report.unknown_keys == 1


def test_invalid_documents_and_variables_are_plan_errors(redactor: Redactor) -> None:
    with pytest.raises(PlanError) as syntax:
        redactor.plan("{ people { ", None, ANALYST)
    assert syntax.value.errors[0]["message"].startswith("Syntax Error")
    with pytest.raises(PlanError):
        redactor.plan("{ people { nope } }", None, ANALYST)
    with pytest.raises(PlanError):
        redactor.plan("query A { people { id } } query B { people { id } }", None, ANALYST)
    with pytest.raises(PlanError):
        redactor.plan("query($id: ID!) { person(id: $id) { id } }", None, ANALYST, {})


def test_introspection_only_for_admins(redactor: Redactor) -> None:
    query = "{ __schema { queryType { name } } }"
    data = {"__schema": {"queryType": {"name": "Query"}}}
    assert run(redactor, query, ANALYST, data).response["data"] == {"__schema": None}
    assert run(redactor, query, principal("admin"), data).response["data"] == data


def test_non_object_responses_fail_closed(redactor: Redactor) -> None:
    plan = redactor.plan("{ people { name } }", None, CLEARED)
    for bad in ([], "x", {"data": ["x"]}):
        result = redactor.apply(plan, bad)
        assert result.response["data"] is None
        assert result.response["errors"][0]["extensions"]["code"] == "BAD_UPSTREAM"


def test_plans_are_cached_per_principal_and_policy_version(redactor: Redactor) -> None:
    query = "{ people { name } }"
    first = redactor.plan(query, None, ANALYST)
    assert redactor.plan(query, None, ANALYST) is first
    assert redactor.plan(query, None, INVESTIGATOR) is not first


def test_upstream_errors_about_redacted_fields_are_dropped_even_without_data(
    redactor: Redactor,
) -> None:
    plan = redactor.plan(
        '{ people { name ssn } search(text: "x") { ...on Case { informant } } }', None, ANALYST
    )
    errors = [
        {"message": "ssn 512-44-6789 is malformed", "path": ["people", 3, "ssn"]},
        {"message": "informant J. Doe unreachable", "path": ["search", 0, "informant"]},
        {"message": "drifted", "path": ["people", 0, "secret"]},
        {"message": "name service down", "path": ["people", 3, "name"]},
    ]
    result = redactor.apply(plan, {"data": None, "errors": errors})
    assert result.response == {"data": None, "errors": [errors[3]]}
    assert result.report.dropped_errors == 3


@pytest.mark.parametrize("native", [True, False], ids=["c-walk", "python-walk"])
def test_upstream_null_in_a_non_null_position_propagates_with_an_error(
    redactor: Redactor, native: bool
) -> None:
    from intelgraph_privacy.redact import apply

    plan = redactor.plan("{ person(id: 1) { id name } people { id } }", None, CLEARED)
    nulls = {"person": {"id": "P-1", "name": None}, "people": [{"id": "P-2"}]}
    out = apply(plan, {"data": copy.deepcopy(nulls)}, native=native).response
    assert out["data"] == {"person": None, "people": [{"id": "P-2"}]}
    assert [(e["path"], e["extensions"]["code"]) for e in out["errors"]] == [
        (["person", "name"], "BAD_UPSTREAM")
    ]
    items = {"person": None, "people": [{"id": "P-2"}, None]}
    out = apply(plan, {"data": copy.deepcopy(items)}, native=native).response
    assert out["data"] is None  # [Person!]! holds a null: the list, then data, cannot stand
    assert out["errors"][0]["path"] == ["people", 1]


@pytest.mark.parametrize("native", [True, False], ids=["c-walk", "python-walk"])
def test_generalised_floats_stay_floats_with_the_default_band(
    demo_schema,
    redactor: Redactor,
    native: bool,  # type: ignore[no-untyped-def]
) -> None:
    from intelgraph_privacy.redact import apply

    catalog = catalog_from_mapping(
        {
            "default_sensitivity": "low",
            "fields": {"Person.riskScore": {"sensitivity": "medium", "reduce": "generalise"}},
        },
        demo_schema,
    )
    local = Redactor(demo_schema, catalog, redactor.policy, pseudonym_key=TEST_PSEUDONYM_KEY)
    plan = local.plan("{ people { riskScore } }", None, ANALYST)
    data = {"people": [{"riskScore": 37.5}, {"riskScore": 1e300}]}
    out = apply(plan, {"data": data}, native=native).response
    scores = [p["riskScore"] for p in out["data"]["people"]]
    assert scores == [30.0, 1e300] and all(type(s) is float for s in scores)
