"""The admin API with two demo sidecar replicas sharing one PostgreSQL store.

A change made through one replica must be in force on the other's very next request (no sleep:
each request waits for a fresh read of the store's change counters), both replicas' audit records
must form one intact chain, and a replica that cannot read the store must refuse, never serve.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.engine import make_url

from intelgraph_privacy.audit import AuditLog
from intelgraph_privacy.store import open_store
from intelgraph_privacy.store.schema import cost_shapes, redaction_rules, revoked_tokens
from tests.db_fixtures import PG_BASE_URL
from tests.servers import Reply, post_json
from tests.sidecar_env import RecordingUpstream, Sidecar, demo_token, start_demo_sidecar
from tests.test_admin_api import (
    ADMIN,
    APPROVE,
    CITY_QUERY,
    CLEAR_RULE,
    REVOKE,
    SET_RULE,
    codes,
    jti_of,
    token_for,
)

pytestmark = pytest.mark.postgres

INVESTIGATOR = token_for(("investigator",), "investigation", sub="ivan")


def admin_on(
    replica: Sidecar, query: str, token: str, variables: dict[str, Any], request_id: str
) -> Reply:
    """One admin request to `replica`, tagged with a request id (to tell replicas apart later)."""
    payload = {"query": query, "variables": variables}
    url = f"{replica.server.url}/admin/graphql"
    return post_json(url, payload, token=token, headers={"X-Request-Id": request_id})


def policy_version_on(replica: Sidecar) -> str:
    """The policy version a replica reports."""
    reply = admin_on(replica, "{ policyVersion }", ADMIN, {}, secrets.token_hex(8))
    assert reply.status == 200, reply.raw
    return str(reply.json["data"]["policyVersion"])


@pytest.fixture
def replicas(
    fresh_pg_url: str, upstream: RecordingUpstream, tmp_path: Path
) -> Iterator[tuple[Sidecar, Sidecar]]:
    """Replicas A and B of the demo sidecar on one fresh PostgreSQL schema."""
    a = start_demo_sidecar(upstream.graphql_url, tmp_path / "a", store__url=fresh_pg_url)
    try:
        b = start_demo_sidecar(upstream.graphql_url, tmp_path / "b", store__url=fresh_pg_url)
    except BaseException:
        a.server.stop()
        raise
    yield a, b
    a.server.stop()
    b.server.stop()


def test_the_replicas_really_share_postgresql(
    replicas: tuple[Sidecar, Sidecar], fresh_pg_url: str
) -> None:
    # Guards the tests below: a replica that silently fell back to SQLite would pass them alone.
    with open_store(fresh_pg_url, migrate=False) as shared:
        for replica in replicas:
            store = replica.state.store
            assert store is not None and store.dialect == "postgresql"
            assert store.url == shared.url


def test_a_rule_set_on_a_is_in_force_on_b_at_once(replicas: tuple[Sidecar, Sidecar]) -> None:
    a, b = replicas
    before = b.query(CITY_QUERY, INVESTIGATOR)
    city = before.json["data"]["person"]["city"]
    assert before.status == 200 and city
    bundle = b.state.policy.version
    assert policy_version_on(b) == f"{bundle}+r0"

    variables = {"field": "Person.city", "tier": "restricted"}
    assert admin_on(a, SET_RULE, ADMIN, variables, "a-set").json == {
        "data": {"setRedactionRule": True}
    }
    # No sleep: B's very next request reads the counters afresh and applies the rule.
    after = b.query(CITY_QUERY, INVESTIGATOR)
    assert after.status == 200, after.raw
    assert after.json["data"]["person"]["city"] is None
    assert codes(after.json) == ["REDACTED"]
    assert city not in after.raw.decode()
    assert policy_version_on(b) == f"{bundle}+r1"

    # And back the other way: cleared on B, A serves the city again on its next request.
    cleared = admin_on(b, CLEAR_RULE, ADMIN, {"field": "Person.city"}, "b-clear")
    assert cleared.json == {"data": {"clearRedactionRule": True}}
    restored = a.query(CITY_QUERY, INVESTIGATOR)
    assert restored.json["data"]["person"]["city"] == city
    assert policy_version_on(a) == f"{bundle}+r2"
    store = a.state.store
    assert store is not None
    with store.read() as connection:
        assert connection.execute(select(redaction_rules)).all() == []


def test_a_token_revoked_on_a_is_refused_on_b_at_once(replicas: tuple[Sidecar, Sidecar]) -> None:
    a, b = replicas
    victim = token_for(("investigator",), "investigation", sub="ivan")
    assert b.query(CITY_QUERY, victim).status == 200
    reply = admin_on(a, REVOKE, ADMIN, {"jti": jti_of(victim)}, "a-revoke")
    assert reply.json == {"data": {"revokeToken": True}}
    refused = b.query(CITY_QUERY, victim)
    assert refused.status == 401
    assert codes(refused.json) == ["UNAUTHENTICATED"]
    assert b.query(CITY_QUERY, INVESTIGATOR).status == 200
    store = b.state.store
    assert store is not None
    with store.read() as connection:
        assert [r.jti for r in connection.execute(select(revoked_tokens))] == [jti_of(victim)]


def test_both_replicas_keep_one_intact_audit_chain(
    replicas: tuple[Sidecar, Sidecar], fresh_pg_url: str
) -> None:
    a, b = replicas
    calls = 40

    def call(i: int) -> int:
        replica, tag = (a, "a") if i % 2 == 0 else (b, "b")
        if i % 4 < 2:
            variables = {"op": f"Op{i}", "cap": 1.0 + i}
            return admin_on(replica, APPROVE, ADMIN, variables, f"{tag}-approve-{i}").status
        headers = {"X-Request-Id": f"{tag}-read-{i}"}
        return replica.query(CITY_QUERY, INVESTIGATOR, headers=headers).status

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(call, range(calls)))
    assert statuses == [200] * calls
    for replica in replicas:
        replica.flush_audit()
    with open_store(fresh_pg_url) as store:
        log = AuditLog(store)
        verification = log.verify()
        assert verification.ok, verification.reason
        assert verification.count == calls
        records = [e.record for e in log.tail(calls)]
        with store.read() as connection:
            approved = connection.execute(select(cost_shapes.c.op_id)).scalars().all()
    request_ids = {r.request_id for r in records}
    assert request_ids == {
        f"{'a' if i % 2 == 0 else 'b'}-{'approve' if i % 4 < 2 else 'read'}-{i}"
        for i in range(calls)
    }
    approvals = [r for r in records if r.operation_name == "admin:approveCostShape"]
    assert len(approvals) == calls // 2 and all(r.status == 200 for r in approvals)
    assert sorted(approved) == sorted(f"Op{i}" for i in range(calls) if i % 4 < 2)


@pytest.fixture
def doomed_database(pg_server: Engine) -> Iterator[tuple[str, str]]:
    """A database of its own (name, URL), for a test that drops it; dropped afterwards anyway."""
    name = f"igp_admin_{os.getpid()}_{secrets.token_hex(4)}"
    with pg_server.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = make_url(PG_BASE_URL).set(database=name).render_as_string(hide_password=False)
    yield name, url
    with pg_server.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_a_replica_that_loses_its_store_refuses_everything(
    doomed_database: tuple[str, str],
    pg_server: Engine,
    upstream: RecordingUpstream,
    tmp_path: Path,
) -> None:
    name, url = doomed_database
    replica = start_demo_sidecar(upstream.graphql_url, tmp_path / "doomed", store__url=url)
    try:
        assert replica.query(CITY_QUERY, INVESTIGATOR).status == 200
        variables = {"field": "Person.age", "tier": "high"}
        assert admin_on(replica, SET_RULE, ADMIN, variables, "before").status == 200

        with pg_server.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
        forwarded = upstream.count()
        replies = [
            replica.query(CITY_QUERY, INVESTIGATOR),
            admin_on(replica, SET_RULE, ADMIN, {"field": "Person.city", "tier": "low"}, "x1"),
            admin_on(replica, APPROVE, ADMIN, {"op": "Dossier", "cap": 1.0}, "x2"),
            admin_on(replica, "{ policyVersion analyticsPacks }", ADMIN, {}, "x3"),
            # Even a token that would be refused learns nothing more than "try again".
            replica.query(CITY_QUERY, demo_token("ivan", ("investigator",), "investigation")),
        ]
        for reply in replies:
            assert reply.status == 503, reply.raw
            assert codes(reply.json) == ["STORE_UNAVAILABLE"]
            assert "data" not in reply.json
            assert reply.headers.get("Retry-After") == "1"
        # Nothing was served: not one request reached the graph API.
        assert upstream.count() == forwarded
    finally:
        replica.server.stop()
