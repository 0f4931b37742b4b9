"""The sidecar end to end: real HTTP on loopback, the sample graph upstream, real signed tokens."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from intelgraph_privacy.audit import AuditLog
from intelgraph_privacy.codec import dumps
from samplegraph import SampleGraph
from tests.servers import http, post_json
from tests.sidecar_env import (
    RecordingUpstream,
    Sidecar,
    SigningKeys,
    start_sidecar,
    upstream_body,
)

PERSON_QUERY = """query Dossier($id: ID!) {
  person(id: $id) { id name ssn email phone riskScore city employer { name registrationNumber } }
}"""
ANALYST = ("ana", ("analyst",), "investigation")
INVESTIGATOR = ("ivan", ("investigator",), "investigation")
CLEARED = ("hana", ("high-clearance", "investigator"), "investigation")


def first_person_id(sample_db: Path) -> str:
    return str(SampleGraph(sample_db).people(1, None)[0]["id"])


def errors_of(body: dict[str, Any]) -> list[str]:
    return [e["extensions"]["code"] for e in body.get("errors", [])]


# -- the main job --------------------------------------------------------------------------------


def test_one_person_three_principals(
    sidecar: Sidecar, test_keys: SigningKeys, sample_db: Path
) -> None:
    person_id = first_person_id(sample_db)
    raw = SampleGraph(sample_db).person(person_id)
    assert raw is not None and raw["ssn"] and raw["email"]
    seen = {}
    for sub, roles, purpose in (ANALYST, INVESTIGATOR, CLEARED):
        reply = sidecar.query(
            PERSON_QUERY, test_keys.token(sub, roles, purpose), variables={"id": person_id}
        )
        assert reply.status == 200, reply.raw
        seen[sub] = reply.json["data"]["person"]

    # The analyst: ssn nulled, email and phone masked, the risk score generalised.
    ana = seen["ana"]
    assert ana["name"] == raw["name"]
    assert ana["ssn"] is None
    assert ana["email"] != raw["email"] and ana["email"].endswith(raw["email"][-4:])
    assert raw["email"] not in dumps(seen["ana"]).decode()
    # The investigator: medium fields in full, ssn still nulled.
    ivan = seen["ivan"]
    assert ivan["email"] == raw["email"] and ivan["phone"] == raw["phone"]
    assert ivan["ssn"] is None
    # High clearance: everything.
    assert seen["hana"]["ssn"] == raw["ssn"]
    assert seen["ana"] != seen["ivan"] != seen["hana"]


def test_redacted_fields_are_reported_in_errors(sidecar: Sidecar, test_keys: SigningKeys) -> None:
    reply = sidecar.query("{ people(first: 3) { name ssn } }", test_keys.token(*ANALYST))
    body = reply.json
    assert reply.status == 200
    paths = [e["path"] for e in body["errors"] if e["extensions"]["code"] == "REDACTED"]
    assert paths == [["people", i, "ssn"] for i in range(3)]


def test_upstream_receives_exactly_the_planned_operation(
    sidecar: Sidecar, test_keys: SigningKeys, upstream: RecordingUpstream, sample_db: Path
) -> None:
    person_id = first_person_id(sample_db)
    document = """
      query A { search(text: "x") { ...Unused } }
      query B($id: ID!) { node(id: $id) { ... on Person { name } ...Org } }
      fragment Org on Organization { name }
      fragment Unused on Case { title }
    """
    before = upstream.count()
    reply = post_json(
        sidecar.url,
        {
            "query": document,
            "operationName": "B",
            "variables": {"id": person_id, "undeclared": "x"},
            "extensions": {"persistedQuery": {"sha256Hash": "abc"}},
        },
        token=test_keys.token(*ANALYST),
        headers={"X-Forwarded-For": "10.0.0.1", "Cookie": "session=1"},
    )
    assert reply.status == 200, reply.raw
    assert reply.json["data"]["node"]["name"]
    assert "_igTypename" not in reply.raw.decode()
    assert upstream.count() == before + 1
    sent = upstream.requests[-1]
    assert sent["method"] == "POST"
    assert sent["headers"]["Content-Type"] == "application/json"
    assert "Cookie" not in sent["headers"] and "Authorization" not in sent["headers"]
    body = upstream_body(sent)
    assert set(body) == {"query", "variables", "operationName"}
    assert body["operationName"] == "B" and body["variables"] == {"id": person_id}
    plan = sidecar.state.runtime.redactor.plan(  # type: ignore[union-attr]
        document, "B", analyst_principal(test_keys)
    )
    assert body["query"] == plan.upstream_document
    assert "query A" not in body["query"] and "Unused" not in body["query"]


def analyst_principal(keys: SigningKeys) -> Any:
    from intelgraph_privacy.principal import Principal

    sub, roles, purpose = ANALYST
    return Principal(sub=sub, tenant="t1", roles=roles, purpose=purpose)


def test_get_is_served(sidecar: Sidecar, test_keys: SigningKeys) -> None:
    from urllib.parse import urlencode

    query = urlencode({"query": "query Few { people(first: 2) { name ssn } }"})
    reply = http(
        "GET",
        f"{sidecar.url}?{query}",
        headers={"Authorization": f"Bearer {test_keys.token(*ANALYST)}"},
    )
    assert reply.status == 200, reply.raw
    people = reply.json["data"]["people"]
    assert len(people) == 2 and all(p["ssn"] is None and p["name"] for p in people)


def test_batch_is_handled_operation_by_operation(sidecar: Sidecar, test_keys: SigningKeys) -> None:
    batch = [
        {"query": "{ people(first: 1) { name ssn } }"},
        {"query": "{ people(first: 1) { nonsense } }"},
        {"query": 'query Q { search(text: "a") { __typename } }', "operationName": "Q"},
    ]
    reply = post_json(sidecar.url, batch, token=test_keys.token(*CLEARED))
    assert reply.status == 200
    first, second, third = reply.json
    assert first["data"]["people"][0]["ssn"]
    assert "data" not in second and errors_of(second) == ["GRAPHQL_VALIDATION_FAILED"]
    assert isinstance(third["data"]["search"], list)


# -- authentication --------------------------------------------------------------------------


def _refused_without_upstream_call(
    sidecar: Sidecar, upstream: RecordingUpstream, headers: dict[str, str]
) -> dict[str, Any]:
    before = upstream.count()
    reply = post_json(sidecar.url, {"query": "{ people { ssn } }"}, headers=headers)
    assert reply.status == 401, reply.raw
    assert reply.headers["WWW-Authenticate"].startswith("Bearer")
    assert "data" not in reply.json
    assert upstream.count() == before
    return reply.json  # type: ignore[no-any-return]


def test_missing_token_is_refused(sidecar: Sidecar, upstream: RecordingUpstream) -> None:
    body = _refused_without_upstream_call(sidecar, upstream, {})
    assert errors_of(body) == ["UNAUTHENTICATED"]


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda k: k.token(ttl=1, now=time.time() - 3600), id="expired"),
        pytest.param(lambda k: k.token(audience="someone-else"), id="wrong-audience"),
        pytest.param(lambda k: k.token(issuer="https://evil.invalid"), id="wrong-issuer"),
        pytest.param(lambda k: k.token()[:-4] + "AAAA", id="bad-signature"),
        pytest.param(lambda k: "not.a.token", id="garbage"),
        pytest.param(
            lambda k: "eyJhbGciOiJub25lIn0." + k.token().split(".")[1] + ".", id="alg-none"
        ),
    ],
)
def test_invalid_tokens_are_refused(
    sidecar: Sidecar, upstream: RecordingUpstream, test_keys: SigningKeys, make: Any
) -> None:
    body = _refused_without_upstream_call(
        sidecar, upstream, {"Authorization": f"Bearer {make(test_keys)}"}
    )
    assert body["errors"][0]["message"].startswith("invalid token")


def test_token_from_another_key_is_refused(sidecar: Sidecar, upstream: RecordingUpstream) -> None:
    from jwcrypto import jwk

    from tests.sidecar_env import SigningKeys as Keys

    stranger = Keys(jwk.JWK.generate(kty="OKP", crv="Ed25519", kid="test-key-1"), Path("/x"))
    _refused_without_upstream_call(
        sidecar, upstream, {"Authorization": f"Bearer {stranger.token()}"}
    )


def test_demo_tokens_are_refused_outside_the_demo(
    sidecar: Sidecar, upstream: RecordingUpstream
) -> None:
    from sidecar.demo import demo_token

    _refused_without_upstream_call(
        sidecar, upstream, {"Authorization": f"Bearer {demo_token('x', ('admin',), 'p')}"}
    )


# -- guards ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"query": "{ people { " + "knows { " * 12 + "name" + " }" * 13 + " }"}, "DEPTH_LIMIT"),
        (
            {"query": "{ " + " ".join(f"a{i}: people {{ name }}" for i in range(31)) + " }"},
            "ALIAS_LIMIT",
        ),
        ([{"query": "{ people { name } }"}] * 11, "BATCH_LIMIT"),
        ({"query": "{ people { name " + "id " * 6000 + "} }"}, "GRAPHQL_VALIDATION_FAILED"),
        ({"query": "{ __schema { types { name } } }"}, "INTROSPECTION_DISABLED"),
        ({"query": "{ people { name } }", "variables": [1]}, "BAD_REQUEST"),
        ([], "BAD_REQUEST"),
        ({"query": ""}, "BAD_REQUEST"),
    ],
    ids=[
        "depth",
        "aliases",
        "batch",
        "tokens",
        "introspection",
        "variables",
        "empty-batch",
        "empty-query",
    ],
)
def test_guards_refuse_with_a_graphql_shaped_400(
    sidecar: Sidecar,
    upstream: RecordingUpstream,
    test_keys: SigningKeys,
    payload: Any,
    code: str,
) -> None:
    before = upstream.count()
    reply = post_json(sidecar.url, payload, token=test_keys.token(*CLEARED))
    assert reply.status == 400, reply.raw
    assert code in errors_of(reply.json)
    assert all(e["message"] for e in reply.json["errors"])
    assert upstream.count() == before


def test_too_many_tokens_names_the_limit(sidecar: Sidecar, test_keys: SigningKeys) -> None:
    reply = sidecar.query("{ people { name " + "id " * 6000 + "} }", test_keys.token(*CLEARED))
    assert "more than 5000 tokens" in reply.json["errors"][0]["message"]


def test_body_size_limit(
    sidecar: Sidecar, upstream: RecordingUpstream, test_keys: SigningKeys
) -> None:
    before = upstream.count()
    huge = {"query": "{ people { name } }", "variables": {"pad": "x" * (1024 * 1024 + 10)}}
    reply = post_json(sidecar.url, huge, token=test_keys.token(*CLEARED))
    assert reply.status == 400 and errors_of(reply.json) == ["BODY_TOO_LARGE"]
    assert upstream.count() == before


def test_introspection_for_admins(sidecar: Sidecar, test_keys: SigningKeys) -> None:
    reply = sidecar.query(
        "{ __schema { queryType { name } } }", test_keys.token("root", ("admin",), "administration")
    )
    assert reply.status == 200, reply.raw
    assert reply.json["data"]["__schema"]["queryType"]["name"] == "Query"


def test_validation_errors_carry_no_suggestions(sidecar: Sidecar, test_keys: SigningKeys) -> None:
    reply = sidecar.query("{ people { ssnn emial } }", test_keys.token(*ANALYST))
    assert reply.status == 400
    messages = [e["message"] for e in reply.json["errors"]]
    assert messages and all("Did you mean" not in m for m in messages)
    assert "ssn'" not in dumps(reply.json).decode()


def test_content_type_and_method(sidecar: Sidecar, test_keys: SigningKeys) -> None:
    token = test_keys.token(*ANALYST)
    reply = http(
        "POST",
        sidecar.url,
        body=b"query { people { name } }",
        headers={"Content-Type": "application/graphql", "Authorization": f"Bearer {token}"},
    )
    assert reply.status == 415 and errors_of(reply.json) == ["UNSUPPORTED_MEDIA_TYPE"]
    reply = http("PUT", sidecar.url, body=b"{}", headers={"Authorization": f"Bearer {token}"})
    assert reply.status == 405 and errors_of(reply.json) == ["METHOD_NOT_ALLOWED"]
    assert (
        'intelgraph_refusals_total{code="METHOD_NOT_ALLOWED"}'
        in sidecar.get("/metrics").raw.decode()
    )
    reply = http(
        "POST",
        sidecar.url,
        body=b"{not json",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    assert reply.status == 400 and errors_of(reply.json) == ["BAD_REQUEST"]


def test_invalid_variables_are_a_client_error(sidecar: Sidecar, test_keys: SigningKeys) -> None:
    reply = sidecar.query(PERSON_QUERY, test_keys.token(*ANALYST), variables={"id": [1, 2]})
    assert reply.status == 400
    assert errors_of(reply.json) == ["GRAPHQL_VALIDATION_FAILED"]


# -- observability ---------------------------------------------------------------------------


def test_health_readiness_and_metrics(sidecar: Sidecar, test_keys: SigningKeys) -> None:
    assert sidecar.get("/healthz").status == 200
    ready = sidecar.get("/readyz")
    assert ready.status == 200, ready.raw
    assert ready.json["ready"] is True and all(ready.json["checks"].values())
    sidecar.query("query Metered { people(first: 2) { name ssn } }", test_keys.token(*ANALYST))
    sidecar.query("query Metered { people(first: 2) { name ssn } }", test_keys.token(*ANALYST))
    text = sidecar.get("/metrics").raw.decode()
    assert re.search(r'intelgraph_requests_total\{operation="Metered",status="200"\} 2\.0', text)
    assert re.search(
        r'intelgraph_request_seconds_bucket\{le="\+Inf",operation="Metered",status="200"\} 2\.0',
        text,
    )
    assert re.search(
        r'intelgraph_redacted_fields_total\{action="null",coordinate="Person.ssn"\} \d', text
    )
    hits = re.search(r'intelgraph_cache_lookups_total\{cache="plan",result="hit"\} (\d+)', text)
    assert hits and int(hits.group(1)) >= 1
    assert 'intelgraph_cache_lookups_total{cache="decision",result="miss"}' in text
    assert "intelgraph_audit_queue_depth" in text


def test_every_request_is_audited_and_the_chain_verifies(
    sidecar: Sidecar, test_keys: SigningKeys
) -> None:
    marker = f"Audited{time.monotonic_ns()}"
    sidecar.query(
        f"query {marker} {{ people(first: 2) {{ name ssn }} }}", test_keys.token(*ANALYST)
    )
    post_json(sidecar.url, {"query": "{ people { name } }"})  # unauthenticated
    sidecar.flush_audit()
    assert sidecar.state.store is not None
    log = AuditLog(sidecar.state.store)
    entries = log.tail(50)
    mine = [e for e in entries if e.record.operation_name == marker]
    assert len(mine) == 1
    record = mine[0].record
    assert (record.sub, record.tenant, record.purpose) == ("ana", "t1", "investigation")
    assert record.status == 200 and record.mode == "enforce"
    assert record.redacted == {"Person.ssn": {"null": 2}}
    assert record.policy_version == f"{sidecar.state.policy.version}+r0"
    assert record.document_hash and len(record.document_hash) == 64
    refused = [e for e in entries if e.record.detail == "UNAUTHENTICATED"]
    assert refused and refused[-1].record.sub is None and refused[-1].record.status == 401
    assert log.verify().ok


# -- policy outcomes -------------------------------------------------------------------------

EXTRA_POLICY = """package intelgraph.redact

import rego.v1

deny contains field if {
  input.field.name == "Query.search"
  input.user.purpose == "analytics"
  field := input.field.name
}

# A policy that fails at evaluation time for one principal: the sidecar must fail closed.
redact contains field if {
  input.user.sub == "boom"
  to_number("not a number") > 1
  field := input.field.name
}
"""


SHADOW_QUERY = "query Shadow { people(first: 2) { id ssn email } }"


def sha256(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture(scope="module")
def custom_policy_sidecar(
    upstream: RecordingUpstream, test_keys: SigningKeys, tmp_path_factory: pytest.TempPathFactory
) -> Any:
    import shutil

    from tests.sidecar_env import ROOT

    policies = tmp_path_factory.mktemp("policies")
    for rego in (ROOT / "rego").glob("*.rego"):
        shutil.copy(rego, policies / rego.name)
    (policies / "extra.rego").write_text(EXTRA_POLICY)
    running = start_sidecar(
        upstream.graphql_url,
        test_keys,
        tmp_path_factory.mktemp("custom"),
        **{"policy.policies": str(policies), "preview.documents": [sha256(SHADOW_QUERY)]},
    )
    yield running
    running.server.stop()


def test_denied_operation_never_reaches_upstream(
    custom_policy_sidecar: Sidecar, test_keys: SigningKeys, upstream: RecordingUpstream
) -> None:
    before = upstream.count()
    reply = custom_policy_sidecar.query(
        '{ search(text: "a") { __typename } }', test_keys.token("ana", ("analyst",), "analytics")
    )
    assert reply.status == 403 and reply.json["data"] is None
    assert errors_of(reply.json) == ["FORBIDDEN"]
    assert upstream.count() == before


def test_policy_failure_fails_closed(
    custom_policy_sidecar: Sidecar, test_keys: SigningKeys, upstream: RecordingUpstream
) -> None:
    before = upstream.count()
    reply = custom_policy_sidecar.query(
        "{ people(first: 1) { name ssn } }", test_keys.token("boom", ("analyst",), "investigation")
    )
    assert reply.status == 500 and "data" not in reply.json
    assert errors_of(reply.json) == ["POLICY_ERROR"]
    assert upstream.count() == before


def test_preview_per_operation_returns_data_unchanged_and_audits(
    custom_policy_sidecar: Sidecar, test_keys: SigningKeys, sample_db: Path
) -> None:
    token = test_keys.token(*ANALYST)
    shadow = custom_policy_sidecar.query(SHADOW_QUERY, token)
    # The same operation name in another document is not in preview: names are the client's.
    spoof = custom_policy_sidecar.query("query Shadow { people(first: 2) { ssn } }", token)
    assert all(p["ssn"] is None for p in spoof.json["data"]["people"])
    enforced = custom_policy_sidecar.query(
        "query Enforced { people(first: 2) { id ssn email } }", token
    )
    graph = SampleGraph(sample_db)
    raw = [graph.person(p["id"]) for p in shadow.json["data"]["people"]]
    assert [p["ssn"] for p in shadow.json["data"]["people"]] == [r["ssn"] for r in raw]
    assert "errors" not in shadow.json
    assert all(p["ssn"] is None for p in enforced.json["data"]["people"])
    custom_policy_sidecar.flush_audit()
    store = custom_policy_sidecar.state.store
    assert store is not None
    entries = {e.record.document_hash: e.record for e in AuditLog(store).tail(20)}
    shadowed = entries[sha256(SHADOW_QUERY)]
    assert shadowed.mode == "preview"
    assert shadowed.redacted["Person.ssn"] == {"null": 2}
    assert entries[sha256("query Shadow { people(first: 2) { ssn } }")].mode == "enforce"
    assert entries[sha256("query Enforced { people(first: 2) { id ssn email } }")].mode == "enforce"


def test_preview_records_a_deny_it_did_not_enforce(
    upstream: RecordingUpstream, test_keys: SigningKeys, tmp_path: Path
) -> None:
    import shutil

    from tests.sidecar_env import ROOT

    policies = tmp_path / "rego"
    policies.mkdir()
    for rego in (ROOT / "rego").glob("*.rego"):
        shutil.copy(rego, policies / rego.name)
    (policies / "extra.rego").write_text(EXTRA_POLICY.split("# A policy that fails", maxsplit=1)[0])
    running = start_sidecar(
        upstream.graphql_url,
        test_keys,
        tmp_path / "data",
        **{"policy.policies": str(policies), "preview.enabled": True},
    )
    try:
        reply = running.query(
            'query Wide { search(text: "a") { __typename } }',
            test_keys.token("ana", ("analyst",), "analytics"),
        )
        assert reply.status == 200 and isinstance(reply.json["data"]["search"], list)
        running.flush_audit()
        assert running.state.store is not None
        record = next(
            e.record
            for e in AuditLog(running.state.store).tail(5)
            if e.record.operation_name == "Wide"
        )
        assert (record.mode, record.status, record.detail) == ("preview", 200, "DENIED")
    finally:
        running.server.stop()


def test_body_size_limit_without_a_content_length(
    sidecar: Sidecar, upstream: RecordingUpstream, test_keys: SigningKeys
) -> None:
    import http.client
    from urllib.parse import urlsplit

    before = upstream.count()
    target = urlsplit(sidecar.url)
    chunk = b"x" * 65536
    chunks = [b'{"query": "{ people { name } }", "pad": "', *([chunk] * 20), b'"}']
    connection = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
    try:
        connection.request(
            "POST",
            target.path,
            body=iter(chunks),
            headers={
                "Content-Type": "application/json",
                "Authorization": f"Bearer {test_keys.token(*CLEARED)}",
            },
            encode_chunked=True,
        )
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    assert response.status == 400, body
    assert b"BODY_TOO_LARGE" in body
    assert upstream.count() == before
