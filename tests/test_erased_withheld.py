"""Tombstones in the sidecar: objects of erased subjects are withheld, whatever the graph serves.

The upstream here is the sample graph, which still holds the subject (the erasure job is only
recorded, not run): what reaches the client is decided by the tombstone alone. Subjects are
recognised by the subject key the sidecar asks for itself (`_igSubject: id`), so a query that
does not select `id` (or aliases it, or reaches the person through an interface or a union)
is covered too.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from graphql import build_schema, parse, validate

from intelgraph_privacy.catalog import Catalog, catalog_from_mapping
from intelgraph_privacy.policy import PolicyEngine
from intelgraph_privacy.principal import Principal
from intelgraph_privacy.redact import Redactor
from intelgraph_privacy.redact.erased import withhold_erased
from tests.conftest import TEST_PSEUDONYM_KEY
from tests.servers import post_json
from tests.sidecar_env import (
    ROOT,
    RecordingUpstream,
    Sidecar,
    demo_token,
    start_demo_sidecar,
    upstream_body,
)

ERASED = "P-00007"
INVESTIGATOR = ("ivan", ("investigator",), "investigation")


def _request_erasure(sidecar: Sidecar, subject: str) -> str:
    admin = demo_token("root", ("admin",), "administration")
    mutation = f'mutation {{ requestRTBF(subjectId: "{subject}", scope: "tenant:demo") }}'
    reply = post_json(f"{sidecar.server.url}/admin/graphql", {"query": mutation}, token=admin)
    assert reply.status == 200, reply.raw
    job: str = reply.json["data"]["requestRTBF"]
    return job


def _ask(sidecar: Sidecar, query: str) -> dict[str, Any]:
    reply = post_json(sidecar.url, {"query": query}, token=demo_token(*INVESTIGATOR))
    assert reply.status == 200, reply.raw
    body: dict[str, Any] = reply.json
    return body


def test_an_erased_subject_is_withheld_wherever_it_appears(
    demo_sidecar: Sidecar, upstream: RecordingUpstream
) -> None:
    before = _ask(demo_sidecar, f'{{ person(id: "{ERASED}") {{ name }} }}')
    assert before["data"]["person"]["name"]
    _request_erasure(demo_sidecar, ERASED)

    # Asked for directly, without selecting its id: null, with an ERASED error.
    direct = _ask(demo_sidecar, f'{{ person(id: "{ERASED}") {{ name email }} }}')
    assert direct["data"] == {"person": None}
    assert [(e["path"], e["extensions"]["code"]) for e in direct["errors"]] == [
        (["person"], "ERASED")
    ]
    assert ERASED not in str(direct)
    sent = upstream_body(upstream.requests[-1])["query"]
    assert "_igSubject_Person: id" in sent  # the sidecar asked for the key itself

    # Through an interface and an alias.
    node = _ask(demo_sidecar, f'{{ who: node(id: "{ERASED}") {{ ... on Person {{ n: name }} }} }}')
    assert node["data"] == {"who": None}

    # In a list (non-null entries): the entry is left out, as if the graph had never had it.
    people = _ask(demo_sidecar, "{ people(first: 20) { id name } }")
    ids = [p["id"] for p in people["data"]["people"]]
    assert len(ids) == 19 and ERASED not in ids and "errors" not in people
    friends = _ask(demo_sidecar, '{ person(id: "P-00008") { knows(first: 100) { id } } }')
    assert ERASED not in str(friends)

    # Others are untouched, and the injected key never reaches the client.
    other = _ask(demo_sidecar, '{ person(id: "P-00008") { name knows(first: 50) { id } } }')
    assert other["data"]["person"]["name"] and "errors" not in other
    assert "_igSubject" not in str(other) and "_igSubject" not in str(people)


def test_other_tenants_are_not_affected(demo_sidecar: Sidecar) -> None:
    """A tombstone belongs to its tenant: the same id in another tenant is another person."""
    _request_erasure(demo_sidecar, ERASED)
    other_tenant = demo_token("olga", ("investigator",), "investigation", tenant="globex")
    reply = post_json(
        demo_sidecar.url,
        {"query": f'{{ person(id: "{ERASED}") {{ name }} }}'},
        token=other_tenant,
    )
    assert reply.status == 200 and reply.json["data"]["person"]["name"]


def test_withholding_follows_the_plan(demo_catalog: Catalog, shipped_policy: PolicyEngine) -> None:
    """Library level: subject keys are asked for under objects, interfaces and unions alike."""
    redactor = Redactor(
        demo_catalog.schema,
        demo_catalog,
        shipped_policy,
        pseudonym_key=TEST_PSEUDONYM_KEY,
        subject_keys=True,
    )
    principal = Principal(sub="i", tenant="t", roles=["investigator"], purpose="investigation")
    query = (
        '{ search(text: "x") { ... on Person { name } ... on Organization { name } } '
        "people { name knows { name } } }"
    )
    plan = redactor.plan(query, None, principal)
    assert plan.subject_alias == "_igSubject"
    parse(plan.upstream_document)  # still a valid document
    assert plan.upstream_document.count("_igSubject_Person: id") >= 3
    assert "_igSubject_Organization: id" in plan.upstream_document
    response = {
        "data": {
            "search": [
                {"_igTypename": "Person", "_igSubject_Person": "P-1", "name": "A"},
                {"_igTypename": "Organization", "_igSubject_Organization": "O-1", "name": "Org"},
            ],
            "people": [
                {
                    "_igSubject_Person": "P-2",
                    "name": "B",
                    "knows": [{"_igSubject_Person": "P-1", "name": "A"}],
                },
            ],
        }
    }
    withheld = withhold_erased(plan, response, lambda subject: subject == "P-1")
    assert withheld.nulled == [] and withheld.removed == 2
    assert [r["name"] for r in response["data"]["search"]] == ["Org"]
    assert response["data"]["people"][0]["knows"] == []
    single = redactor.plan('{ person(id: "P-1") { name } }', None, principal)
    answer = {"data": {"person": {"_igSubject_Person": "P-1", "name": "A"}}}
    assert withhold_erased(single, answer, lambda s: s == "P-1").nulled == [["person"]]
    assert answer == {"data": {"person": None}}
    result = redactor.apply(plan, response).response
    assert "_igSubject" not in str(result)
    assert result["data"]["people"][0]["name"] == "B"


def _friend_of(sample_db: Path, subject: str) -> str:
    with sqlite3.connect(sample_db) as connection:
        row = connection.execute(
            "SELECT person_id FROM knows WHERE other_id = ? ORDER BY person_id LIMIT 1", (subject,)
        ).fetchone()
    assert row is not None
    return str(row[0])


def test_preview_mode_withholds_erased_subjects_under_fields_the_policy_would_null(
    upstream: RecordingUpstream, sample_db: Path, tmp_path: Path
) -> None:
    """Preview serves what the policy would null; erased subjects inside it are still withheld."""
    preview = start_demo_sidecar(upstream.graphql_url, tmp_path / "data", preview__enabled=True)
    try:
        admin = demo_token("root", ("admin",), "administration")
        rule = 'mutation { setRedactionRule(rule: {field: "Person.knows", tier: "high"}) }'
        reply = post_json(f"{preview.server.url}/admin/graphql", {"query": rule}, token=admin)
        assert reply.status == 200, reply.raw
        friend = _friend_of(sample_db, ERASED)
        query = f'{{ person(id: "{friend}") {{ knows(first: 100) {{ id }} }} }}'
        before = _ask(preview, query)
        assert ERASED in str(before)  # served in preview although the policy would null it
        _request_erasure(preview, ERASED)
        after = _ask(preview, query)
        assert after["data"]["person"]["knows"] and ERASED not in str(after)
    finally:
        preview.server.stop()


def test_upstream_errors_about_withheld_subjects_are_dropped_and_paths_follow() -> None:
    """An upstream error located in a withheld object may name the subject: it is dropped; the
    others keep pointing at the same entries once the list is shorter."""
    schema = build_schema(
        "type Query { people: [Person!]! person: Person }"
        " type Person { id: ID! name: String city: String employer: Org }"
        " type Org { name: String }"
    )
    catalog = catalog_from_mapping(
        {"default_sensitivity": "low", "fields": {"Person.id": {"subject_key": True}}}, schema
    )
    redactor = Redactor(
        schema, catalog, PolicyEngine(ROOT / "rego"), pseudonym_key=TEST_PSEUDONYM_KEY,
        subject_keys=True,
    )  # fmt: skip
    principal = Principal(sub="i", tenant="t", roles=["investigator"], purpose="investigation")
    plan = redactor.plan(
        "{ people { name city } person { name employer { name } } }", None, principal
    )
    response: dict[str, Any] = {
        "data": {
            "people": [
                {"_igSubject_Person": "P-0", "name": "Ann", "city": None},
                {"_igSubject_Person": "P-1", "name": "Bob", "city": None},
                {"_igSubject_Person": "P-2", "name": "Cy", "city": None},
            ],
            "person": {"_igSubject_Person": "P-1", "name": "Bob", "employer": None},
        },
        "errors": [
            {"message": "city lookup failed for Bob (P-1)", "path": ["people", 1, "city"]},
            {"message": "city lookup failed for Cy", "path": ["people", 2, "city"]},
            {"message": "employer of Bob (P-1) failed", "path": ["person", "employer"]},
            {"message": "no path"},
        ],
    }
    withheld = withhold_erased(plan, response, lambda subject: subject == "P-1")
    assert (withheld.removed, withheld.nulled) == (1, [["person"]])
    assert [p["name"] for p in response["data"]["people"]] == ["Ann", "Cy"]
    assert response["errors"] == [
        {"message": "city lookup failed for Cy", "path": ["people", 1, "city"]},
        {"message": "no path"},
    ]


def test_members_of_a_union_with_different_subject_key_types_get_their_own_aliases() -> None:
    """One alias for all members would conflict (`ID!` against `String`); one per type does not."""
    schema = build_schema(
        "type Query { things: [Thing!]! }  union Thing = A | B"
        "  type A { id: ID! name: String }  type B { id: String name: String }"
    )
    catalog = catalog_from_mapping(
        {
            "default_sensitivity": "low",
            "fields": {"A.id": {"subject_key": True}, "B.id": {"subject_key": True}},
        },
        schema,
    )
    redactor = Redactor(
        schema, catalog, PolicyEngine(ROOT / "rego"), pseudonym_key=TEST_PSEUDONYM_KEY,
        subject_keys=True,
    )  # fmt: skip
    principal = Principal(sub="i", tenant="t", roles=["investigator"], purpose="investigation")
    plan = redactor.plan("{ things { ... on A { name } ... on B { name } } }", None, principal)
    assert validate(schema, parse(plan.upstream_document)) == []
    response: dict[str, Any] = {
        "data": {
            "things": [
                {"_igTypename": "A", "_igSubject_A": "x", "name": "a"},
                {"_igTypename": "B", "_igSubject_B": "x", "name": "b"},
                {"_igTypename": "B", "_igSubject_B": "y", "name": "c"},
            ]
        }
    }
    assert withhold_erased(plan, response, lambda subject: subject == "x").removed == 2
    assert redactor.apply(plan, response).response == {"data": {"things": [{"name": "c"}]}}
