"""The admin API (/admin/graphql) end to end through the demo sidecar.

Real HTTP on loopback, tokens signed with the demo key, the shipped Rego bundle (ABAC and
redaction tiers), the sidecar's own SQLite store. Every change is checked where it lands: in the
store's tables, in the audit chain, and in what the next /graphql request is served.
"""

from __future__ import annotations

import base64
import re
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import Table, insert, select

from intelgraph_privacy.audit import AuditEntry, AuditLog
from intelgraph_privacy.codec import loads
from intelgraph_privacy.demo import DEMO_PSEUDONYM_KEY
from intelgraph_privacy.rtbf import subject_hash
from intelgraph_privacy.store import Store
from intelgraph_privacy.store.schema import (
    access_reviews,
    audit_log,
    cost_shapes,
    redaction_rules,
    revoked_tokens,
    rtbf_jobs,
    state_versions,
)
from intelgraph_privacy.tokens import load_purposes
from samplegraph import SampleGraph
from tests.servers import Reply, http, post_json
from tests.sidecar_env import ROOT, RecordingUpstream, Sidecar, demo_token

PERSON_ID = "P-00001"
CITY_QUERY = 'query CityCheck { person(id: "P-00001") { name city } }'
SSN_QUERY = 'query SsnCheck { person(id: "P-00001") { name ssn } }'
SET_RULE = """mutation SetRule($field: String!, $tier: String!) {
  setRedactionRule(rule: {field: $field, tier: $tier})
}"""
CLEAR_RULE = "mutation ClearRule($field: String!) { clearRedactionRule(field: $field) }"
APPROVE = (
    "mutation Approve($op: String!, $cap: Float!) { approveCostShape(opId: $op, capUSD: $cap) }"
)
RTBF = """mutation Forget($subject: ID!, $scope: String!) {
  requestRTBF(subjectId: $subject, scope: $scope)
}"""
REVOKE = 'mutation Revoke($jti: ID!) { revokeToken(jti: $jti, reason: "test") }'
#: The tables an admin mutation may change (a refusal must leave every one untouched).
CHANGEABLE: tuple[Table, ...] = (
    redaction_rules,
    cost_shapes,
    rtbf_jobs,
    revoked_tokens,
    state_versions,
)
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


# -- helpers ------------------------------------------------------------------------------------


def admin_url(sidecar: Sidecar) -> str:
    """The admin endpoint next to the sidecar's /graphql."""
    return f"{sidecar.server.url}/admin/graphql"


def admin(
    sidecar: Sidecar,
    query: str,
    token: str | None,
    variables: dict[str, Any] | None = None,
    operation_name: str | None = None,
    request_id: str | None = None,
) -> Reply:
    """POST one admin request as JSON (with an X-Request-Id when given)."""
    payload: dict[str, Any] = {"query": query}
    if variables is not None:
        payload["variables"] = variables
    if operation_name is not None:
        payload["operationName"] = operation_name
    headers = {"X-Request-Id": request_id} if request_id else None
    return post_json(admin_url(sidecar), payload, token=token, headers=headers)


def codes(body: dict[str, Any]) -> list[str]:
    """The extension codes of a response's errors, in order."""
    return [e["extensions"]["code"] for e in body.get("errors", [])]


def token_for(roles: tuple[str, ...], purpose: str, sub: str = "adam") -> str:
    """A demo-signed token of tenant `demo`."""
    return demo_token(sub, roles, purpose)


ADMIN = token_for(("admin",), "administration")
OFFICER = token_for(("privacy-officer",), "administration", sub="pia")


def jti_of(token: str) -> str:
    """The jti claim of a compact JWS (read without verifying: the test issued it)."""
    payload = token.split(".")[1]
    claims = loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return str(claims["jti"])


def snapshot(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table an admin mutation can change (counter values included)."""
    with store.read() as connection:
        return {
            table.name: sorted(tuple(map(str, row)) for row in connection.execute(select(table)))
            for table in CHANGEABLE
        }


def audit_entries(sidecar: Sidecar) -> list[AuditEntry]:
    """Every audit entry after the writer has flushed, by request time.

    Sorted by `ts`, not seq: reads are queued to the writer thread while mutations append in
    their own transaction, so seq order need not be request order.
    """
    sidecar.flush_audit()
    store = sidecar.state.store
    assert store is not None
    return sorted(AuditLog(store).tail(10_000), key=lambda e: e.record.ts)


def chain_ok(sidecar: Sidecar) -> None:
    """The audit chain verifies end to end."""
    sidecar.flush_audit()
    store = sidecar.state.store
    assert store is not None
    verification = AuditLog(store).verify()
    assert verification.ok, verification.reason


def policy_version(sidecar: Sidecar) -> str:
    """The policy version as the admin API reports it."""
    reply = admin(sidecar, "{ policyVersion }", ADMIN)
    assert reply.status == 200, reply.raw
    return str(reply.json["data"]["policyVersion"])


def store_of(sidecar: Sidecar) -> Store:
    """The sidecar's own store (tests read it directly to see what a mutation left)."""
    store = sidecar.state.store
    assert store is not None
    return store


@pytest.fixture
def raw_person(sample_db: Path) -> dict[str, Any]:
    """P-00001 as the upstream holds it (no redaction)."""
    person = SampleGraph(sample_db).person(PERSON_ID)
    assert person is not None and person["city"] and person["ssn"]
    return dict(person)


# -- every operation, for a principal allowed to run it ------------------------------------------


def test_set_redaction_rule_restricts_city_on_the_next_request(
    demo_sidecar: Sidecar, raw_person: dict[str, Any]
) -> None:
    investigator = token_for(("investigator",), "investigation", sub="ivan")
    before = demo_sidecar.query(CITY_QUERY, investigator)
    assert before.status == 200, before.raw
    assert before.json["data"]["person"]["city"] == raw_person["city"]
    assert "errors" not in before.json
    bundle = demo_sidecar.state.policy.version
    assert policy_version(demo_sidecar) == f"{bundle}+r0"

    reply = admin(demo_sidecar, SET_RULE, ADMIN, {"field": "Person.city", "tier": "restricted"})
    assert reply.status == 200, reply.raw
    assert reply.json == {"data": {"setRedactionRule": True}}

    # The very next request, no waiting: the new tier is in force.
    after = demo_sidecar.query(CITY_QUERY, investigator)
    assert after.status == 200, after.raw
    assert after.json["data"]["person"] == {"name": raw_person["name"], "city": None}
    assert [(e["extensions"]["code"], e["path"]) for e in after.json["errors"]] == [
        ("REDACTED", ["person", "city"])
    ]
    assert raw_person["city"] not in after.raw.decode()
    assert policy_version(demo_sidecar) == f"{bundle}+r1"

    # Stored, and listed by the read side of the API.
    with store_of(demo_sidecar).read() as connection:
        rows = connection.execute(select(redaction_rules)).all()
    assert [(r.coordinate, r.tier, r.updated_by) for r in rows] == [
        ("Person.city", "restricted", "demo/adam")
    ]
    listed = admin(demo_sidecar, "query Rules { redactionRules { field tier updatedBy } }", ADMIN)
    assert listed.json["data"]["redactionRules"] == [
        {"field": "Person.city", "tier": "restricted", "updatedBy": "demo/adam"}
    ]

    # Audited: the mutation (status 200, by name) and the next /graphql request under r1.
    entries = audit_entries(demo_sidecar)
    [change] = [e.record for e in entries if e.record.operation_name == "admin:setRedactionRule"]
    assert (change.status, change.operation_type, change.sub, change.tenant, change.purpose) == (
        200,
        "mutation",
        "adam",
        "demo",
        "administration",
    )
    assert change.detail == "Person.city=restricted"
    checks = [e.record for e in entries if e.record.operation_name == "CityCheck"]
    assert [c.policy_version for c in checks] == [f"{bundle}+r0", f"{bundle}+r1"]
    assert checks[-1].redacted == {"Person.city": {"null": 1}}

    # Clearing the rule restores the catalog's tier.
    cleared = admin(demo_sidecar, CLEAR_RULE, ADMIN, {"field": "Person.city"})
    assert cleared.json == {"data": {"clearRedactionRule": True}}
    restored = demo_sidecar.query(CITY_QUERY, investigator)
    assert restored.json["data"]["person"]["city"] == raw_person["city"]
    assert "errors" not in restored.json
    assert policy_version(demo_sidecar) == f"{bundle}+r2"
    with store_of(demo_sidecar).read() as connection:
        assert connection.execute(select(redaction_rules)).all() == []
    # Clearing again finds nothing: False, and no version bump.
    again = admin(demo_sidecar, CLEAR_RULE, ADMIN, {"field": "Person.city"})
    assert again.json == {"data": {"clearRedactionRule": False}}
    assert policy_version(demo_sidecar) == f"{bundle}+r2"
    names = [e.record.operation_name for e in audit_entries(demo_sidecar)]
    assert names.count("admin:clearRedactionRule") == 2
    chain_ok(demo_sidecar)


def test_lowering_a_tier_shows_ssn_to_an_analyst(
    demo_sidecar: Sidecar, raw_person: dict[str, Any]
) -> None:
    analyst = token_for(("analyst",), "investigation", sub="ana")
    before = demo_sidecar.query(SSN_QUERY, analyst)
    assert before.json["data"]["person"]["ssn"] is None
    assert codes(before.json) == ["REDACTED"]

    reply = admin(demo_sidecar, SET_RULE, ADMIN, {"field": "Person.ssn", "tier": "low"})
    assert reply.json == {"data": {"setRedactionRule": True}}
    after = demo_sidecar.query(SSN_QUERY, analyst)
    assert after.status == 200
    assert after.json == {
        "data": {"person": {"name": raw_person["name"], "ssn": raw_person["ssn"]}}
    }
    # Raising it back to high hides it again at once.
    admin(demo_sidecar, SET_RULE, ADMIN, {"field": "Person.ssn", "tier": "high"})
    assert demo_sidecar.query(SSN_QUERY, analyst).json["data"]["person"]["ssn"] is None
    assert policy_version(demo_sidecar).endswith("+r2")
    chain_ok(demo_sidecar)


@pytest.mark.parametrize(
    ("field", "tier"),
    [
        ("Person.nope", "high"),
        ("Nope.x", "high"),
        ("Person.city", "secret"),
        ("Person.city", "HIGH"),
        ("Person", "high"),
        ("__Schema.types", "low"),
        ("", "low"),
    ],
)
def test_bad_rules_are_refused_with_nothing_stored(
    demo_sidecar: Sidecar, field: str, tier: str
) -> None:
    store = store_of(demo_sidecar)
    before = snapshot(store)
    version = policy_version(demo_sidecar)
    reply = admin(demo_sidecar, SET_RULE, ADMIN, {"field": field, "tier": tier})
    assert reply.status == 200, reply.raw
    assert reply.json["data"] == {"setRedactionRule": None}
    assert codes(reply.json) == ["BAD_USER_INPUT"]
    assert snapshot(store) == before
    assert policy_version(demo_sidecar) == version
    names = [e.record.operation_name for e in audit_entries(demo_sidecar)]
    assert "admin:setRedactionRule" not in names  # nothing changed, so no change was recorded


def test_approve_cost_shape_records_cap_tenant_and_approver(demo_sidecar: Sidecar) -> None:
    reply = admin(demo_sidecar, APPROVE, ADMIN, {"op": "Dossier", "cap": 12.5})
    assert reply.status == 200, reply.raw
    assert reply.json == {"data": {"approveCostShape": True}}
    admin(demo_sidecar, APPROVE, ADMIN, {"op": "Cohort", "cap": 1_000_000})
    with store_of(demo_sidecar).read() as connection:
        rows = connection.execute(select(cost_shapes).order_by(cost_shapes.c.id)).all()
    assert [(r.op_id, r.tenant, r.cap_usd, r.approved_by, r.status) for r in rows] == [
        ("Dossier", "demo", 12.5, "demo/adam", "approved"),
        ("Cohort", "demo", 1_000_000.0, "demo/adam", "approved"),
    ]
    approvals = [
        e.record
        for e in audit_entries(demo_sidecar)
        if e.record.operation_name == "admin:approveCostShape"
    ]
    assert [(a.status, a.detail) for a in approvals] == [
        (200, "Dossier cap 12.50 USD"),
        (200, "Cohort cap 1000000.00 USD"),
    ]
    chain_ok(demo_sidecar)


@pytest.mark.parametrize("cap", [0, 0.0, -1, -0.01, 1e12, 1_000_000.01])
def test_approve_cost_shape_refuses_bad_caps(demo_sidecar: Sidecar, cap: float) -> None:
    store = store_of(demo_sidecar)
    before = snapshot(store)
    reply = admin(demo_sidecar, APPROVE, ADMIN, {"op": "Dossier", "cap": cap})
    assert reply.json["data"] == {"approveCostShape": None}
    assert codes(reply.json) == ["BAD_USER_INPUT"]
    assert snapshot(store) == before


def test_approve_cost_shape_refuses_infinity_and_empty_op(demo_sidecar: Sidecar) -> None:
    store = store_of(demo_sidecar)
    before = snapshot(store)
    # 1e400 overflows to infinity in a float literal: never stored.
    infinite = admin(demo_sidecar, 'mutation { approveCostShape(opId: "x", capUSD: 1e400) }', ADMIN)
    assert infinite.json["data"] == {"approveCostShape": None}
    assert codes(infinite.json) == ["BAD_USER_INPUT"]
    empty = admin(demo_sidecar, APPROVE, ADMIN, {"op": "  ", "cap": 5})
    assert codes(empty.json) == ["BAD_USER_INPUT"]
    assert snapshot(store) == before


def test_request_rtbf_creates_one_pending_job(demo_sidecar: Sidecar) -> None:
    subject = "P-00042"
    first = admin(demo_sidecar, RTBF, OFFICER, {"subject": subject, "scope": "tenant:demo"})
    assert first.status == 200, first.raw
    job_id = first.json["data"]["requestRTBF"]
    assert UUID_RE.fullmatch(job_id) and str(uuid.UUID(job_id)) == job_id
    with store_of(demo_sidecar).read() as connection:
        rows = connection.execute(select(rtbf_jobs)).all()
    # The store names the subject by its keyed hash, never by its id.
    reference = "hmac-sha256:" + subject_hash(DEMO_PSEUDONYM_KEY, subject)
    assert [(r.id, r.subject_id, r.scope, r.tenant, r.status, r.requested_by) for r in rows] == [
        (job_id, reference, "tenant:demo", "demo", "pending", "demo/pia")
    ]
    # Asking again (an admin this time) while the job is open returns the same job.
    again = admin(demo_sidecar, RTBF, ADMIN, {"subject": subject, "scope": "tenant:demo"})
    assert again.json == {"data": {"requestRTBF": job_id}}
    other = admin(demo_sidecar, RTBF, ADMIN, {"subject": "P-00043", "scope": "tenant:demo"})
    assert other.json["data"]["requestRTBF"] not in (None, job_id)
    with store_of(demo_sidecar).read() as connection:
        assert len(connection.execute(select(rtbf_jobs)).all()) == 2

    entries = audit_entries(demo_sidecar)
    requests = [e.record for e in entries if e.record.operation_name == "admin:requestRTBF"]
    assert [(r.status, r.sub, r.detail) for r in requests] == [
        (200, "pia", "scope tenant:demo"),
        (200, "adam", "scope tenant:demo"),
        (200, "adam", "scope tenant:demo"),
    ]
    # The log outlives the erasure: no column of any stored audit row names the subject.
    with store_of(demo_sidecar).read() as connection:
        stored = [tuple(map(str, row)) for row in connection.execute(select(audit_log))]
    assert stored and not any(subject in value for row in stored for value in row)
    chain_ok(demo_sidecar)


@pytest.mark.parametrize("scope", ["tenant:acme", "tenant:demo2", "tenant:DEMO"])
def test_request_rtbf_in_another_tenant_is_forbidden(demo_sidecar: Sidecar, scope: str) -> None:
    store = store_of(demo_sidecar)
    before = snapshot(store)
    reply = admin(demo_sidecar, RTBF, ADMIN, {"subject": "P-00042", "scope": scope})
    assert codes(reply.json) == ["FORBIDDEN"]
    assert reply.json.get("data") is None
    assert snapshot(store) == before


@pytest.mark.parametrize(
    "scope", ["demo", "tenant:", "tenant:demo extra", "tenant:-x", "tenants:demo", ""]
)
def test_request_rtbf_with_a_malformed_scope_is_bad_input(
    demo_sidecar: Sidecar, scope: str
) -> None:
    store = store_of(demo_sidecar)
    before = snapshot(store)
    reply = admin(demo_sidecar, RTBF, ADMIN, {"subject": "P-00042", "scope": scope})
    assert codes(reply.json) == ["BAD_USER_INPUT"]
    assert reply.json.get("data") is None
    assert snapshot(store) == before


def test_access_review_open_counts_the_tenants_open_reviews(demo_sidecar: Sidecar) -> None:
    now = datetime.now(UTC)
    rows = [
        ("demo", "open"),
        ("demo", "open"),
        ("demo", "open"),
        ("demo", "closed"),
        ("acme", "open"),
        ("acme", "open"),
    ]
    query = "query OpenReviews { accessReviewOpen }"
    assert admin(demo_sidecar, query, ADMIN).json == {"data": {"accessReviewOpen": 0}}
    with store_of(demo_sidecar).begin() as connection:
        connection.execute(
            insert(access_reviews),
            [
                {
                    "id": str(uuid.uuid4()),
                    "tenant": tenant,
                    "status": status,
                    "opened_at": now,
                    "due_at": now + timedelta(days=30),
                    "closed_at": now if status == "closed" else None,
                }
                for tenant, status in rows
            ],
        )
    reply = admin(demo_sidecar, query, ADMIN)
    assert reply.status == 200
    assert reply.json == {"data": {"accessReviewOpen": 3}}
    # An admin of another tenant counts only that tenant's.
    acme = demo_token("root", ("admin",), "administration", tenant="acme")
    assert admin(demo_sidecar, query, acme).json == {"data": {"accessReviewOpen": 2}}
    reads = [
        e.record
        for e in audit_entries(demo_sidecar)
        if e.record.operation_name == "admin:OpenReviews"
    ]
    assert [(r.status, r.operation_type, r.tenant) for r in reads] == [
        (200, "query", "demo"),
        (200, "query", "demo"),
        (200, "query", "acme"),
    ]
    chain_ok(demo_sidecar)


@pytest.mark.parametrize(
    ("roles", "purpose"),
    [(("analyst",), "analytics"), (("analyst",), "investigation"), (("admin",), "support")],
)
def test_analytics_packs_lists_the_analytics_operations(
    demo_sidecar: Sidecar, roles: tuple[str, ...], purpose: str
) -> None:
    reply = admin(demo_sidecar, "query Packs { analyticsPacks }", token_for(roles, purpose))
    assert reply.status == 200, reply.raw
    assert reply.json == {"data": {"analyticsPacks": ["Query.cohort"]}}
    [read] = [
        e.record for e in audit_entries(demo_sidecar) if e.record.operation_name == "admin:Packs"
    ]
    assert (read.status, read.purpose) == (200, purpose)


def test_revoked_token_is_refused_on_the_next_request(demo_sidecar: Sidecar) -> None:
    victim = token_for(("investigator",), "investigation", sub="ivan")
    bystander = token_for(("investigator",), "investigation", sub="ivan")
    assert demo_sidecar.query(CITY_QUERY, victim).status == 200
    jti = jti_of(victim)
    reply = admin(demo_sidecar, REVOKE, ADMIN, {"jti": jti})
    assert reply.json == {"data": {"revokeToken": True}}
    refused = demo_sidecar.query(CITY_QUERY, victim)
    assert refused.status == 401
    assert codes(refused.json) == ["UNAUTHENTICATED"]
    assert "data" not in refused.json
    assert admin(demo_sidecar, "{ analyticsPacks }", victim).status == 401
    assert demo_sidecar.query(CITY_QUERY, bystander).status == 200
    # Revoking again is idempotent: False, and the counter does not move.
    assert admin(demo_sidecar, REVOKE, ADMIN, {"jti": jti}).json == {"data": {"revokeToken": False}}
    with store_of(demo_sidecar).read() as connection:
        rows = connection.execute(select(revoked_tokens)).all()
        versions = {name: version for name, version in connection.execute(select(state_versions))}
    assert [(r.jti, r.revoked_by, r.reason) for r in rows] == [(jti, "demo/adam", "test")]
    assert versions == {"revocations": 1}
    revocations = [
        e.record
        for e in audit_entries(demo_sidecar)
        if e.record.operation_name == "admin:revokeToken"
    ]
    assert [(r.status, r.detail) for r in revocations] == [(200, f"jti {jti}")] * 2
    chain_ok(demo_sidecar)


def test_an_admin_revoking_their_own_token_loses_it(demo_sidecar: Sidecar) -> None:
    own = token_for(("admin",), "administration", sub="self")
    assert admin(demo_sidecar, REVOKE, own, {"jti": jti_of(own)}).json == {
        "data": {"revokeToken": True}
    }
    assert admin(demo_sidecar, "{ policyVersion }", own).status == 401


@pytest.mark.parametrize("jti", ["", "j" * 256], ids=["empty", "too-long"])
def test_revoke_token_with_a_bad_jti_is_bad_input(demo_sidecar: Sidecar, jti: str) -> None:
    store = store_of(demo_sidecar)
    before = snapshot(store)
    reply = admin(demo_sidecar, REVOKE, ADMIN, {"jti": jti})
    assert reply.status == 200, reply.raw
    assert reply.json["data"] == {"revokeToken": None}
    assert codes(reply.json) == ["BAD_USER_INPUT"]
    assert snapshot(store) == before


@pytest.mark.parametrize(
    ("query", "variables", "name", "code"),
    [
        (RTBF, {"subject": "P-00042", "scope": "tenant:acme"}, "admin:Forget", "FORBIDDEN"),
        (RTBF, {"subject": "P-00042", "scope": "acme"}, "admin:Forget", "BAD_USER_INPUT"),
        (SET_RULE, {"field": "Person.nope", "tier": "high"}, "admin:SetRule", "BAD_USER_INPUT"),
        (APPROVE, {"op": "Dossier", "cap": -1}, "admin:Approve", "BAD_USER_INPUT"),
    ],
    ids=["rtbf-other-tenant", "rtbf-bad-scope", "unknown-coordinate", "negative-cap"],
)
def test_a_refused_mutation_is_still_audited(
    demo_sidecar: Sidecar, query: str, variables: dict[str, Any], name: str, code: str
) -> None:
    # docs/admin-api.md: every request gets one audit record; a mutation whose field fails is
    # recorded after it runs, under its operation name, status 200, the error codes as detail.
    before = audit_entries(demo_sidecar)
    reply = admin(demo_sidecar, query, ADMIN, variables)
    assert codes(reply.json) == [code]
    after = audit_entries(demo_sidecar)
    new = [e.record for e in after if e not in before]
    assert [(r.operation_name, r.status, r.detail, r.sub) for r in new] == [
        (name, 200, code, "adam")
    ]
    # Refused or not, the subject id never reaches the log.
    assert all("P-00042" not in str(value) for r in new for value in r.values().values())
    chain_ok(demo_sidecar)


@pytest.mark.parametrize(
    "variables",
    [{}, {"op": "Dossier"}, {"op": "Dossier", "cap": "cheap"}],
    ids=["none", "missing", "wrong-type"],
)
def test_bad_variables_are_a_client_error(demo_sidecar: Sidecar, variables: dict[str, Any]) -> None:
    store = store_of(demo_sidecar)
    before = snapshot(store)
    reply = admin(demo_sidecar, APPROVE, ADMIN, variables)
    assert snapshot(store) == before  # holds today: nothing runs
    assert reply.status == 400, reply.raw
    assert codes(reply.json) == ["GRAPHQL_VALIDATION_FAILED"]


# -- FORBIDDEN: the ABAC rule of the spec --------------------------------------------------------

ROLES = ("admin", "privacy-officer", "analyst", "investigator", "auditor")
PURPOSES = tuple(sorted(load_purposes(ROOT / "presets" / "purposes.yaml")))

#: Which roles hold which attribute, and which attributes also need the purpose administration
#: (the spec's words, written out here independently of rego/abac.rego).
SPEC_HOLDERS = {
    "admin.write": {"admin"},
    "privacy.write": {"admin", "privacy-officer"},
    "analytics.read": {"analyst", "admin"},
}
SPEC_NEEDS_ADMINISTRATION = {"admin.write", "privacy.write"}

#: Each operation: (document, variables, the attribute PRODUCT.md's SDL names for it).
OPERATIONS: dict[str, tuple[str, dict[str, Any], str]] = {
    "setRedactionRule": (SET_RULE, {"field": "Person.age", "tier": "medium"}, "admin.write"),
    "clearRedactionRule": (CLEAR_RULE, {"field": "Person.age"}, "admin.write"),
    "approveCostShape": (APPROVE, {"op": "Dossier", "cap": 3.0}, "admin.write"),
    "requestRTBF": (RTBF, {"subject": "P-00007", "scope": "tenant:demo"}, "privacy.write"),
    "revokeToken": (REVOKE, {"jti": "someone-elses-token"}, "admin.write"),
    "accessReviewOpen": ("query Q { accessReviewOpen }", {}, "admin.write"),
    "analyticsPacks": ("query Q { analyticsPacks }", {}, "analytics.read"),
    "redactionRules": ("query Q { redactionRules { field tier } }", {}, "admin.write"),
    "policyVersion": ("query Q { policyVersion }", {}, "admin.write"),
}


def spec_grants(attribute: str, roles: frozenset[str], purpose: str) -> bool:
    """Whether the spec's ABAC rule grants `attribute`."""
    if not roles & SPEC_HOLDERS[attribute]:
        return False
    return attribute not in SPEC_NEEDS_ADMINISTRATION or purpose == "administration"


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    roles=st.frozensets(st.sampled_from(ROLES)),
    purpose=st.sampled_from(PURPOSES),
    operation=st.sampled_from(sorted(OPERATIONS)),
)
# Random draws rarely hit admin + administration; every operation is run granted at least once.
@example(roles=frozenset({"admin"}), purpose="administration", operation="setRedactionRule")
@example(roles=frozenset({"admin"}), purpose="administration", operation="clearRedactionRule")
@example(
    roles=frozenset({"admin", "auditor"}), purpose="administration", operation="approveCostShape"
)
@example(roles=frozenset({"privacy-officer"}), purpose="administration", operation="requestRTBF")
@example(roles=frozenset({"admin"}), purpose="administration", operation="revokeToken")
@example(roles=frozenset({"admin"}), purpose="administration", operation="accessReviewOpen")
@example(roles=frozenset({"analyst"}), purpose="support", operation="analyticsPacks")
@example(roles=frozenset({"admin"}), purpose="investigation", operation="analyticsPacks")
@example(roles=frozenset({"admin"}), purpose="administration", operation="requestRTBF")
@example(roles=frozenset({"admin"}), purpose="administration", operation="redactionRules")
@example(roles=frozenset({"admin"}), purpose="administration", operation="policyVersion")
# And the near misses: the right role with another purpose, the right purpose with no role.
@example(roles=frozenset({"admin"}), purpose="investigation", operation="setRedactionRule")
@example(roles=frozenset({"privacy-officer"}), purpose="audit", operation="requestRTBF")
@example(roles=frozenset({"privacy-officer"}), purpose="administration", operation="revokeToken")
@example(roles=frozenset(), purpose="administration", operation="analyticsPacks")
@example(
    roles=frozenset({"analyst", "auditor"}), purpose="administration", operation="policyVersion"
)
@example(roles=frozenset({"investigator"}), purpose="administration", operation="requestRTBF")
def test_forbidden_exactly_when_the_spec_denies(
    demo_sidecar: Sidecar, roles: frozenset[str], purpose: str, operation: str
) -> None:
    query, variables, attribute = OPERATIONS[operation]
    store = store_of(demo_sidecar)
    before = snapshot(store)
    token = token_for(tuple(sorted(roles)), purpose, sub="prop")
    reply = admin(demo_sidecar, query, token, variables)
    if spec_grants(attribute, roles, purpose):
        assert reply.status == 200, (roles, purpose, operation, reply.raw)
        assert "errors" not in reply.json, reply.json
        assert reply.json["data"][operation] is not None
    else:
        assert reply.status == 403, (roles, purpose, operation, reply.raw)
        assert codes(reply.json) == ["FORBIDDEN"]
        assert reply.json.get("data") is None
        assert snapshot(store) == before


def test_the_spec_table_agrees_on_the_named_principals() -> None:
    # Guards the oracle above: the spec's sentences, case by case.
    admins = frozenset({"admin"})
    assert spec_grants("admin.write", admins, "administration")
    assert not spec_grants("admin.write", admins, "investigation")
    assert spec_grants("privacy.write", frozenset({"privacy-officer"}), "administration")
    assert not spec_grants("admin.write", frozenset({"privacy-officer"}), "administration")
    assert spec_grants("analytics.read", frozenset({"analyst"}), "support")
    assert not spec_grants("analytics.read", frozenset({"auditor", "investigator"}), "analytics")


def test_forbidden_refusals_are_audited(demo_sidecar: Sidecar) -> None:
    analyst = token_for(("analyst",), "analytics", sub="ana")
    reply = admin(demo_sidecar, APPROVE, analyst, {"op": "Dossier", "cap": 1.0})
    assert reply.status == 403
    [refusal] = [e.record for e in audit_entries(demo_sidecar) if e.record.status == 403]
    assert (refusal.operation_name, refusal.sub, refusal.detail, refusal.operation_type) == (
        "admin:Approve",
        "ana",
        "FORBIDDEN",
        "mutation",
    )
    chain_ok(demo_sidecar)


def test_an_admin_without_the_administration_purpose_cannot_write(demo_sidecar: Sidecar) -> None:
    store = store_of(demo_sidecar)
    before = snapshot(store)
    investigating = token_for(("admin", "privacy-officer"), "investigation")
    for query, variables, _ in OPERATIONS.values():
        if "mutation" in query:
            reply = admin(demo_sidecar, query, investigating, variables)
            assert (reply.status, codes(reply.json)) == (403, ["FORBIDDEN"])
    # analytics.read needs no purpose: the same token reads the packs.
    assert admin(demo_sidecar, "{ analyticsPacks }", investigating).status == 200
    assert snapshot(store) == before


MIXED_MUTATION = """mutation Mixed($subject: ID!) {
  requestRTBF(subjectId: $subject, scope: "tenant:demo")
  approveCostShape(opId: "Dossier", capUSD: 9.5)
}"""


def test_one_allowed_and_one_forbidden_field_runs_neither(demo_sidecar: Sidecar) -> None:
    store = store_of(demo_sidecar)
    before = snapshot(store)
    # The privacy officer holds privacy.write (requestRTBF) but not admin.write.
    reply = admin(demo_sidecar, MIXED_MUTATION, OFFICER, {"subject": "P-00009"})
    assert reply.status == 403
    assert codes(reply.json) == ["FORBIDDEN"]
    assert "approveCostShape" in reply.json["errors"][0]["message"]
    assert reply.json.get("data") is None
    assert snapshot(store) == before
    # The forbidden field second or first: same answer.
    flipped = MIXED_MUTATION.replace("Mixed", "Flipped").splitlines()
    flipped[1], flipped[2] = flipped[2], flipped[1]
    assert admin(demo_sidecar, "\n".join(flipped), OFFICER, {"subject": "P-00009"}).status == 403
    # Queries likewise: the analyst may read the packs but not the review count.
    analyst = token_for(("analyst",), "analytics", sub="ana")
    mixed_query = admin(demo_sidecar, "{ analyticsPacks accessReviewOpen }", analyst)
    assert (mixed_query.status, codes(mixed_query.json)) == (403, ["FORBIDDEN"])
    assert snapshot(store) == before
    # The admin holds both: both run.
    both = admin(demo_sidecar, MIXED_MUTATION, ADMIN, {"subject": "P-00009"})
    assert both.status == 200, both.raw
    assert both.json["data"]["approveCostShape"] is True
    assert UUID_RE.fullmatch(both.json["data"]["requestRTBF"])


#: Documents hiding approveCostShape/setRedactionRule (admin.write) from a quick look.
SMUGGLED = {
    "named fragment": (
        'mutation M { ...F } fragment F on Mutation { approveCostShape(opId: "x", capUSD: 1) }'
    ),
    "nested fragments": (
        'mutation M { requestRTBF(subjectId: "P-1", scope: "tenant:demo") ...A }\n'
        "fragment A on Mutation { ...B }\n"
        'fragment B on Mutation { ... on Mutation { approveCostShape(opId: "x", capUSD: 1) } }'
    ),
    "inline fragment": (
        "mutation M { ... on Mutation { "
        'setRedactionRule(rule: {field: "Person.age", tier: "low"}) } }'
    ),
    "alias named like an allowed field": (
        'mutation M { requestRTBF: approveCostShape(opId: "x", capUSD: 1) }'
    ),
    "alias on a fragment field": (
        "mutation M { ...F } fragment F on Mutation { "
        'ok: setRedactionRule(rule: {field: "Person.age", tier: "low"}) }'
    ),
    "skipped field": (
        'mutation M { requestRTBF(subjectId: "P-1", scope: "tenant:demo") '
        'approveCostShape(opId: "x", capUSD: 1) @skip(if: true) }'
    ),
    "included by variable": (
        "mutation M($no: Boolean = false) { "
        'requestRTBF(subjectId: "P-1", scope: "tenant:demo") '
        'approveCostShape(opId: "x", capUSD: 1) @include(if: $no) }'
    ),
    "query alias": "query M { analyticsPacks: accessReviewOpen }",
    "query fragment": "query M { ...Q } fragment Q on Query { rules: redactionRules { field } }",
}


@pytest.mark.parametrize("name", sorted(SMUGGLED))
def test_fragments_and_aliases_cannot_smuggle_a_forbidden_field(
    demo_sidecar: Sidecar, name: str
) -> None:
    store = store_of(demo_sidecar)
    before = snapshot(store)
    # The officer holds privacy.write and analytics.read is not theirs; the analyst holds
    # analytics.read only. Neither holds admin.write, which every smuggled field needs.
    token = (
        OFFICER if SMUGGLED[name].startswith("mutation") else token_for(("analyst",), "analytics")
    )
    reply = admin(demo_sidecar, SMUGGLED[name], token)
    assert reply.status == 403, reply.raw
    assert codes(reply.json) == ["FORBIDDEN"]
    assert reply.json.get("data") is None
    assert snapshot(store) == before


def test_operation_name_decides_which_operation_is_checked(demo_sidecar: Sidecar) -> None:
    document = (
        'mutation Allowed { requestRTBF(subjectId: "P-00011", scope: "tenant:demo") }\n'
        'mutation Forbidden { approveCostShape(opId: "x", capUSD: 1) }'
    )
    store = store_of(demo_sidecar)
    before = snapshot(store)
    denied = admin(demo_sidecar, document, OFFICER, operation_name="Forbidden")
    assert (denied.status, codes(denied.json)) == (403, ["FORBIDDEN"])
    assert snapshot(store) == before
    # Without a name the sidecar cannot tell which to run: refused, nothing runs.
    unnamed = admin(demo_sidecar, document, OFFICER)
    assert unnamed.status == 400
    assert snapshot(store) == before
    allowed = admin(demo_sidecar, document, OFFICER, operation_name="Allowed")
    assert allowed.status == 200, allowed.raw
    with store_of(demo_sidecar).read() as connection:
        assert [r.subject_id for r in connection.execute(select(rtbf_jobs))] == [
            "hmac-sha256:" + subject_hash(DEMO_PSEUDONYM_KEY, "P-00011")
        ]
        assert connection.execute(select(cost_shapes)).all() == []


def test_every_request_gets_exactly_one_audit_record(demo_sidecar: Sidecar) -> None:
    analyst = token_for(("analyst",), "analytics", sub="ana")
    cases: list[tuple[str, str, str | None, dict[str, Any] | None, int, str | None, str]] = [
        # (request id, query, token, variables, status, detail, operation name)
        ("read", "query Packs { analyticsPacks }", analyst, None, 200, None, "admin:Packs"),
        ("anon-read", "{ policyVersion }", ADMIN, None, 200, None, "admin"),
        (
            "change",
            SET_RULE,
            ADMIN,
            {"field": "Person.age", "tier": "high"},
            200,
            "Person.age=high",
            "admin:setRedactionRule",
        ),
        (
            "failed-change",
            SET_RULE,
            ADMIN,
            {"field": "Person.x", "tier": "high"},
            200,
            "BAD_USER_INPUT",
            "admin:SetRule",
        ),
        ("no-token", "{ policyVersion }", None, None, 401, "UNAUTHENTICATED", "admin"),
        ("forbidden", "query Pv { policyVersion }", analyst, None, 403, "FORBIDDEN", "admin:Pv"),
        ("syntax", "{ policyVersion", ADMIN, None, 400, "GRAPHQL_PARSE_FAILED", "admin"),
        ("invalid", "{ nope }", ADMIN, None, 400, "GRAPHQL_VALIDATION_FAILED", "admin"),
    ]
    for request_id, query, token, variables, status, _, _ in cases:
        reply = admin(demo_sidecar, query, token, variables, request_id=request_id)
        assert reply.status == status, (request_id, reply.raw)
        assert reply.headers.get("X-Request-Id") == request_id
    not_json = http(
        "POST",
        admin_url(demo_sidecar),
        body=b"query=1",
        headers={
            "Authorization": f"Bearer {ADMIN}",
            "Content-Type": "text/plain",
            "X-Request-Id": "media",
        },
    )
    assert not_json.status == 415
    by_id: dict[str, list[Any]] = {}
    for entry in audit_entries(demo_sidecar):
        by_id.setdefault(entry.record.request_id, []).append(entry.record)
    assert set(by_id) == {case[0] for case in cases} | {"media"}
    for request_id, _, _, _, status, detail, name in cases:
        [record] = by_id[request_id]
        assert (record.status, record.detail, record.operation_name) == (status, detail, name)
    [media] = by_id["media"]
    assert (media.status, media.detail, media.sub) == (415, "UNSUPPORTED_MEDIA_TYPE", "adam")
    chain_ok(demo_sidecar)


# -- HTTP edges ----------------------------------------------------------------------------------


def test_unauthenticated_requests_get_401(demo_sidecar: Sidecar) -> None:
    store = store_of(demo_sidecar)
    before = snapshot(store)
    anonymous = admin(demo_sidecar, APPROVE, None, {"op": "x", "cap": 1.0})
    assert anonymous.status == 401
    assert codes(anonymous.json) == ["UNAUTHENTICATED"]
    assert anonymous.headers.get("WWW-Authenticate", "").startswith("Bearer")
    forged = admin(demo_sidecar, APPROVE, ADMIN[:-4] + "AAAA", {"op": "x", "cap": 1.0})
    assert forged.status == 401
    # A token with a purpose outside the vocabulary never reaches the ABAC policy.
    unknown = token_for(("admin",), "marketing")
    assert admin(demo_sidecar, "{ policyVersion }", unknown).status == 401
    assert snapshot(store) == before
    refusals = [e.record for e in audit_entries(demo_sidecar) if e.record.status == 401]
    assert len(refusals) == 3 and all(r.detail == "UNAUTHENTICATED" for r in refusals)


def test_only_post_is_accepted(demo_sidecar: Sidecar) -> None:
    url = admin_url(demo_sidecar) + "?query=%7BpolicyVersion%7D"
    reply = http("GET", url, headers={"Authorization": f"Bearer {ADMIN}"})
    assert reply.status == 405
    assert reply.headers["Allow"] == "POST"
    assert reply.json["errors"][0]["extensions"]["code"] == "METHOD_NOT_ALLOWED"
    assert demo_sidecar.state.policy.version.encode() not in reply.raw
    put = http(
        "PUT",
        admin_url(demo_sidecar),
        body=b'{"query": "{ policyVersion }"}',
        headers={"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"},
    )
    assert put.status == 405


@pytest.mark.parametrize(
    ("content_type", "body", "status", "code"),
    [
        ("text/plain", b'{"query": "{ policyVersion }"}', 415, "UNSUPPORTED_MEDIA_TYPE"),
        ("application/graphql", b"{ policyVersion }", 415, "UNSUPPORTED_MEDIA_TYPE"),
        ("application/x-www-form-urlencoded", b"query=%7B%7D", 415, "UNSUPPORTED_MEDIA_TYPE"),
        ("application/json", b"{not json", 400, "BAD_REQUEST"),
        ("application/json", b'["{ policyVersion }"]', 400, "BAD_REQUEST"),
        ("application/json", b'{"query": 5}', 400, "BAD_REQUEST"),
        (
            "application/json",
            b'{"query": "{ policyVersion }", "variables": [1]}',
            400,
            "BAD_REQUEST",
        ),
        (
            "application/json",
            b'{"query": "{ policyVersion }", "operationName": 3}',
            400,
            "BAD_REQUEST",
        ),
    ],
)
def test_malformed_bodies_are_refused(
    demo_sidecar: Sidecar, content_type: str, body: bytes, status: int, code: str
) -> None:
    reply = http(
        "POST",
        admin_url(demo_sidecar),
        body=body,
        headers={"Authorization": f"Bearer {ADMIN}", "Content-Type": content_type},
    )
    assert reply.status == status, reply.raw
    assert codes(reply.json) == [code]
    assert "data" not in reply.json


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("{ policyVersion", "GRAPHQL_PARSE_FAILED"),
        ("mutation { setRedactionRule(rule: {field: }) }", "GRAPHQL_PARSE_FAILED"),
        ("{ nope }", "GRAPHQL_VALIDATION_FAILED"),
        ('mutation { setRedactionRule(rule: {field: "Person.age"}) }', "GRAPHQL_VALIDATION_FAILED"),
        ("subscription { policyVersion }", "GRAPHQL_VALIDATION_FAILED"),
        ("{ " + "policyVersion " * 2100 + "}", "GRAPHQL_PARSE_FAILED"),
    ],
)
def test_syntax_and_validation_errors_are_400(demo_sidecar: Sidecar, query: str, code: str) -> None:
    store = store_of(demo_sidecar)
    before = snapshot(store)
    reply = admin(demo_sidecar, query, ADMIN)
    assert reply.status == 400, reply.raw
    assert codes(reply.json) == [code]
    assert "data" not in reply.json
    assert snapshot(store) == before


def test_depth_and_alias_limits_apply(demo_sidecar: Sidecar) -> None:
    limits = demo_sidecar.state.config.limits
    nested = "name"
    for _ in range(limits.max_depth):
        nested = f"ofType {{ {nested} }}"
    deep = f"{{ __schema {{ types {{ fields {{ type {{ {nested} }} }} }} }} }}"
    reply = admin(demo_sidecar, deep, ADMIN)
    assert (reply.status, codes(reply.json)) == (400, ["DEPTH_LIMIT"])
    # Just inside the limit, introspection of the admin schema is answered.
    shallow = "{ __schema { mutationType { fields { name } } } }"
    fields = admin(demo_sidecar, shallow, ADMIN).json["data"]["__schema"]["mutationType"]["fields"]
    assert {f["name"] for f in fields} >= {"setRedactionRule", "approveCostShape", "requestRTBF"}

    aliased = " ".join(f"a{i}: policyVersion" for i in range(limits.max_aliases + 1))
    over = admin(demo_sidecar, f"{{ {aliased} }}", ADMIN)
    assert (over.status, codes(over.json)) == (400, ["ALIAS_LIMIT"])
    within = " ".join(f"a{i}: policyVersion" for i in range(limits.max_aliases))
    assert admin(demo_sidecar, f"{{ {within} }}", ADMIN).status == 200
    # Limits also hold in mutations: no rule is set by an over-aliased request.
    rules = " ".join(
        f'r{i}: setRedactionRule(rule: {{field: "Person.age", tier: "low"}})'
        for i in range(limits.max_aliases + 1)
    )
    before = snapshot(store_of(demo_sidecar))
    assert admin(demo_sidecar, f"mutation {{ {rules} }}", ADMIN).status == 400
    assert snapshot(store_of(demo_sidecar)) == before


def test_admin_requests_never_reach_the_upstream(
    demo_sidecar: Sidecar, upstream: RecordingUpstream
) -> None:
    seen = upstream.count()
    admin(demo_sidecar, SET_RULE, ADMIN, {"field": "Person.age", "tier": "high"})
    admin(demo_sidecar, "{ analyticsPacks policyVersion accessReviewOpen }", ADMIN)
    admin(demo_sidecar, APPROVE, OFFICER, {"op": "x", "cap": 1.0})
    assert upstream.count() == seen


def test_concurrent_admin_mutations_keep_one_chain(demo_sidecar: Sidecar) -> None:
    many_requests = 12

    def call(i: int) -> int:
        if i % 3 == 0:
            return admin(demo_sidecar, APPROVE, ADMIN, {"op": f"Op{i}", "cap": 1.0 + i}).status
        if i % 3 == 1:
            tier = ("low", "medium", "high", "restricted")[i % 4]
            return admin(
                demo_sidecar, SET_RULE, ADMIN, {"field": "Person.age", "tier": tier}
            ).status
        return demo_sidecar.query(CITY_QUERY, token_for(("investigator",), "investigation")).status

    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = list(pool.map(call, range(many_requests)))
    assert statuses == [200] * many_requests
    names = [e.record.operation_name for e in audit_entries(demo_sidecar)]
    assert names.count("admin:approveCostShape") == 4
    assert names.count("admin:setRedactionRule") == 4
    assert policy_version(demo_sidecar).endswith("+r4")
    chain_ok(demo_sidecar)
