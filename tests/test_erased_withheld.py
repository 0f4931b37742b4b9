"""Tombstones in the sidecar: objects of erased subjects are withheld, whatever the graph serves.

The upstream here is the sample graph, which still holds the subject (the erasure job is only
recorded, not run): what reaches the client is decided by the tombstone alone. Subjects are
recognised by the subject key the sidecar asks for itself (`_igSubject: id`), so a query that
does not select `id` (or aliases it, or reaches the person through an interface or a union)
is covered too.
"""

from __future__ import annotations

from typing import Any

from graphql import parse

from intelgraph_privacy.catalog import Catalog
from intelgraph_privacy.policy import PolicyEngine
from intelgraph_privacy.principal import Principal
from intelgraph_privacy.redact import Redactor
from intelgraph_privacy.redact.erased import withhold_erased
from tests.conftest import TEST_PSEUDONYM_KEY
from tests.servers import post_json
from tests.sidecar_env import RecordingUpstream, Sidecar, demo_token, upstream_body

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
    assert "_igSubject: id" in sent  # the sidecar asked for the key itself

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
    assert plan.upstream_document.count("_igSubject: id") >= 3
    response = {
        "data": {
            "search": [
                {"_igTypename": "Person", "_igSubject": "P-1", "name": "A"},
                {"_igTypename": "Organization", "_igSubject": "O-1", "name": "Org"},
            ],
            "people": [
                {"_igSubject": "P-2", "name": "B", "knows": [{"_igSubject": "P-1", "name": "A"}]},
            ],
        }
    }
    withheld = withhold_erased(plan, response, lambda subject: subject == "P-1")
    assert withheld.nulled == [] and withheld.removed == 2
    assert [r["name"] for r in response["data"]["search"]] == ["Org"]
    assert response["data"]["people"][0]["knows"] == []
    single = redactor.plan('{ person(id: "P-1") { name } }', None, principal)
    answer = {"data": {"person": {"_igSubject": "P-1", "name": "A"}}}
    assert withhold_erased(single, answer, lambda s: s == "P-1").nulled == [["person"]]
    assert answer == {"data": {"person": None}}
    result = redactor.apply(plan, response).response
    assert "_igSubject" not in str(result)
    assert result["data"]["people"][0]["name"] == "B"
