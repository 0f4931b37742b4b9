"""POST /export end to end, through the demo sidecar (real HTTP, real store, real diffprivlib).

An export runs one analytics query as /graphql does (its rows k-anonymous), releases a count or
a histogram of them with differential privacy per a named preset, charges the tenant's budget
for the purpose `export` before any noise, records the release and answers `{value, proof}`.

- releases: the value's shape and accuracy (bands with a computed failure probability < 1e-9),
  the proof without exact row counts, over the k-anonymised rows (not the raw ones);
- the ledger: debits in units of 1e-9 epsilon, refusal at the budget with nothing released,
  `dp_releases` rows with the full proof, one window per tenant and purpose;
- refusals: purpose, preset, the backout switch, the shape of the query, histogram bins;
- audit records `export:<aggregate>` with the release id;
- PostgreSQL: two sidecars on one store share one budget and never overspend it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from intelgraph_privacy.audit import AuditEntry, AuditLog
from intelgraph_privacy.codec import loads
from intelgraph_privacy.store.schema import dp_releases, privacy_budget
from samplegraph import generate_database
from tests.servers import AppThread, Reply, http, post_json
from tests.sidecar_env import (
    TEST_PEOPLE,
    RecordingUpstream,
    Sidecar,
    demo_token,
    recording_app,
    start_demo_sidecar,
)

EXPORTER = demo_token("exa", ["analyst"], "export")
BY_CITY = '{ cohort(groupBy: ["city"]) { city count } }'
BY_CITY_AND_AGE = '{ cohort(groupBy: ["city", "ageBand"]) { city ageBand count } }'
EPSILON_UNITS = 10**9  # privacy_budget stores epsilon in units of 1e-9
DELTA_UNITS = 10**12  # and delta in units of 1e-12
PRESETS = {"strict": 1.0, "standard": 2.0, "relaxed": 4.0}
PROOF_KEYS = {"mechanism", "epsilon", "delta", "preset", "budget_left", "release_id"}
#: Each noisy value is off by this much or more with probability at most PER_VALUE_FAILURE.
PER_VALUE_FAILURE = 1e-11


def geometric_band(epsilon: float, sensitivity: float) -> int:
    """The smallest t with P(|noise| >= t) <= PER_VALUE_FAILURE for two-sided geometric noise.

    P(X = x) = (1 - a) / (1 + a) * a^|x| with a = exp(-epsilon / sensitivity), so
    P(|X| >= t) = 2 a^t / (1 + a). Clamping at 0 (counts are never negative) only shrinks it.
    """
    a = math.exp(-epsilon / sensitivity)
    t = math.ceil(math.log(PER_VALUE_FAILURE * (1 + a) / 2) / math.log(a))
    assert 2 * a**t / (1 + a) <= PER_VALUE_FAILURE
    return t


def export(sidecar: Sidecar, body: Any, token: str | None = EXPORTER) -> Reply:
    """POST `body` (any JSON) to the sidecar's /export with a bearer token."""
    return post_json(f"{sidecar.server.url}/export", body, token=token)


def anonymised_rows(sidecar: Sidecar, query: str, token: str = EXPORTER) -> list[dict[str, Any]]:
    """The k-anonymised rows /graphql serves for `query` (what an export aggregates)."""
    reply = sidecar.query(query, token)
    assert reply.status == 200, reply.raw
    rows: list[dict[str, Any]] = reply.json["data"]["cohort"]
    return rows


def budget_rows(sidecar: Sidecar) -> list[dict[str, Any]]:
    store = sidecar.state.store
    assert store is not None
    with store.read() as connection:
        return [dict(r._mapping) for r in connection.execute(select(privacy_budget)).all()]


def release_rows(sidecar: Sidecar) -> list[dict[str, Any]]:
    store = sidecar.state.store
    assert store is not None
    with store.read() as connection:
        return [dict(r._mapping) for r in connection.execute(select(dp_releases)).all()]


def spent(sidecar: Sidecar) -> int:
    """Epsilon units spent in every window of every tenant (0 when nothing was charged)."""
    return sum(int(r["epsilon_spent"]) for r in budget_rows(sidecar))


def audit_of(sidecar: Sidecar, prefix: str = "export") -> list[AuditEntry]:
    sidecar.flush_audit()
    assert sidecar.state.store is not None
    entries = AuditLog(sidecar.state.store).tail(200)
    return [e for e in entries if (e.record.operation_name or "").startswith(prefix)]


def metric(sidecar: Sidecar, sample: str, **labels: str) -> float:
    text = sidecar.get("/metrics").raw.decode()
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())
    )


def error_code(reply: Reply) -> str:
    code: str = reply.json["errors"][0]["extensions"]["code"]
    return code


@pytest.fixture
def small_budget(upstream: RecordingUpstream, tmp_path: Path) -> Iterator[Sidecar]:
    """A demo sidecar whose budget is 5 epsilon per tenant and purpose per day."""
    running = start_demo_sidecar(upstream.graphql_url, tmp_path / "data", dp__budget_epsilon=5)
    yield running
    running.server.stop()


# -- releases ----------------------------------------------------------------------------------


def check_proof(proof: dict[str, Any], preset: str, aggregate: str) -> None:
    assert set(proof) >= PROOF_KEYS, proof
    assert "rows_used" not in proof  # the exact number of rows is for the audit log only
    assert proof["aggregate"] == aggregate
    assert proof["preset"] == preset
    assert proof["epsilon"] == PRESETS[preset]
    assert proof["delta"] == 1e-6
    assert proof["mechanism"] == "geometric"
    assert (proof["tenant"], proof["purpose"]) == ("demo", "export")
    assert re.fullmatch(r"[0-9a-f-]{36}", proof["release_id"])


def test_a_count_release_is_near_the_anonymised_total(demo_sidecar: Sidecar) -> None:
    truth = sum(r["count"] for r in anonymised_rows(demo_sidecar, BY_CITY))
    assert TEST_PEOPLE * 0.98 <= truth <= TEST_PEOPLE
    reply = export(demo_sidecar, {"query": BY_CITY, "aggregate": "count", "preset": "strict"})
    assert reply.status == 200, reply.raw
    assert reply.headers.get("Cache-Control") == "no-store"
    assert set(reply.json) == {"value", "proof"}
    value, proof = reply.json["value"], reply.json["proof"]
    check_proof(proof, "strict", "count")
    assert proof["budget_left"] == 10.0 - 1.0  # the default budget, less strict's epsilon
    assert type(value) is int
    assert abs(value - truth) < geometric_band(proof["epsilon"], proof["sensitivity"])
    (stored,) = release_rows(demo_sidecar)
    assert stored["id"] == proof["release_id"]
    assert loads(stored["proof"])["rows_used"] == truth  # the confidential count is kept


def test_a_histogram_release_counts_the_named_bins_of_the_anonymised_rows(
    demo_sidecar: Sidecar, upstream: RecordingUpstream
) -> None:
    rows = anonymised_rows(demo_sidecar, BY_CITY)
    by_city = {r["city"]: r["count"] for r in rows}
    raw = post_json(upstream.graphql_url, {"query": BY_CITY}).json["data"]["cohort"]
    raw_by_city = {r["city"]: r["count"] for r in raw}
    # A small raw city is generalised away, a group label appears, a bin matches nothing.
    small = sorted(c for c, n in raw_by_city.items() if n < 5)
    assert small and not set(small) & set(by_city)
    groups = sorted(set(by_city) - set(raw_by_city))
    assert groups
    bins = ["Chicago", small[0], groups[0], "Atlantis"]
    truth = [by_city.get(b, 0) for b in bins]
    body = {"query": BY_CITY, "aggregate": "histogram", "field": "city", "bins": bins}
    reply = export(demo_sidecar, {**body, "preset": "strict"})
    assert reply.status == 200, reply.raw
    value, proof = reply.json["value"], reply.json["proof"]
    check_proof(proof, "strict", "histogram")
    assert proof["params"]["categories"] == bins
    assert isinstance(value, list) and len(value) == len(bins)
    assert all(type(v) is int and v >= 0 for v in value)
    band = geometric_band(proof["epsilon"], proof["sensitivity"])
    assert len(bins) * PER_VALUE_FAILURE < 1e-9  # the union bound over the bins
    for noisy, true in zip(value, truth, strict=True):
        assert abs(noisy - true) < band, (value, truth)
    (stored,) = release_rows(demo_sidecar)
    # Over the k-anonymised rows: the small raw city counts 0, not its raw size.
    assert loads(stored["proof"])["rows_used"] == sum(truth)
    assert sum(truth) != sum(raw_by_city.get(b, 0) for b in bins)


def test_the_default_preset_is_standard(demo_sidecar: Sidecar) -> None:
    reply = export(demo_sidecar, {"query": BY_CITY_AND_AGE, "aggregate": "count"})
    assert reply.status == 200, reply.raw
    check_proof(reply.json["proof"], "standard", "count")
    truth = sum(r["count"] for r in anonymised_rows(demo_sidecar, BY_CITY_AND_AGE))
    proof = reply.json["proof"]
    assert abs(reply.json["value"] - truth) < geometric_band(proof["epsilon"], 1.0)


@pytest.mark.parametrize(
    "query",
    [
        "{ cohort(groupBy: []) { count } }",
        '{ __typename cohort(groupBy: ["ageBand"]) { ageBand count } }',
        '{ people: cohort(groupBy: ["ageBand"]) { ... on CohortRow { ageBand count } } }',
    ],
)
def test_any_single_analytics_field_can_be_exported(demo_sidecar: Sidecar, query: str) -> None:
    reply = export(demo_sidecar, {"query": query, "aggregate": "count", "preset": "relaxed"})
    assert reply.status == 200, reply.raw
    band = geometric_band(PRESETS["relaxed"], 1.0)
    assert abs(reply.json["value"] - TEST_PEOPLE) < band + 0.02 * TEST_PEOPLE


@pytest.mark.parametrize("aggregate", ["count", "histogram"])
def test_an_aliased_count_is_still_the_count(demo_sidecar: Sidecar, aggregate: str) -> None:
    query = '{ cohort(groupBy: ["city"]) { city n: count } }'
    truth = {r["city"]: r["n"] for r in anonymised_rows(demo_sidecar, query)}
    body: dict[str, Any] = {"query": query, "aggregate": aggregate, "preset": "relaxed"}
    if aggregate == "histogram":
        body |= {"field": "city", "bins": ["Chicago"]}
    reply = export(demo_sidecar, body)
    assert reply.status == 200, reply.raw
    expected = sum(truth.values()) if aggregate == "count" else truth["Chicago"]
    value = reply.json["value"] if aggregate == "count" else reply.json["value"][0]
    assert abs(value - expected) < geometric_band(PRESETS["relaxed"], 1.0)


# -- the ledger --------------------------------------------------------------------------------


def test_the_budget_stops_releases_and_nothing_is_released_beyond_it(
    small_budget: Sidecar, upstream: RecordingUpstream
) -> None:
    body = {"query": BY_CITY, "aggregate": "count", "preset": "standard"}
    first, second = export(small_budget, body), export(small_budget, body)
    assert (first.status, second.status) == (200, 200), (first.raw, second.raw)
    assert [first.json["proof"]["budget_left"], second.json["proof"]["budget_left"]] == [3.0, 1.0]

    refused = export(small_budget, body)
    assert refused.status == 403, refused.raw
    assert error_code(refused) == "BUDGET_EXCEEDED"
    assert "value" not in refused.json and "proof" not in refused.json
    message = refused.json["errors"][0]["message"]
    assert "left epsilon=1" in message and "requested epsilon=2" in message

    (row,) = budget_rows(small_budget)
    assert (row["tenant"], row["purpose"]) == ("demo", "export")
    assert row["epsilon_budget"] == 5 * EPSILON_UNITS
    assert row["epsilon_spent"] == 4 * EPSILON_UNITS  # the refusal spent nothing
    assert row["delta_spent"] == round(2 * 1e-6 * DELTA_UNITS)
    assert row["releases"] == 2

    stored = {r["id"]: r for r in release_rows(small_budget)}
    assert set(stored) == {first.json["proof"]["release_id"], second.json["proof"]["release_id"]}
    truth = sum(r["count"] for r in anonymised_rows(small_budget, BY_CITY))
    for reply in (first, second):
        record = stored[reply.json["proof"]["release_id"]]
        assert (record["tenant"], record["purpose"], record["aggregate"]) == (
            "demo",
            "export",
            "count",
        )
        assert (record["epsilon"], record["delta"], record["preset"]) == (2.0, 1e-6, "standard")
        proof = loads(record["proof"])
        assert {k: v for k, v in proof.items() if k != "rows_used"} == reply.json["proof"]
        assert proof["rows_used"] == truth

    # What is left still serves a release that fits it: the refusal charged nothing.
    strict = export(small_budget, {**body, "preset": "strict"})
    assert strict.status == 200, strict.raw
    assert strict.json["proof"]["budget_left"] == 0.0
    assert export(small_budget, {**body, "preset": "strict"}).status == 403
    assert spent(small_budget) == 5 * EPSILON_UNITS

    # The window is per tenant (and purpose): another tenant still has all of its budget.
    other = demo_token("olga", ["analyst"], "export", tenant="other")
    theirs = export(small_budget, body, token=other)
    assert theirs.status == 200, theirs.raw
    assert theirs.json["proof"]["budget_left"] == 3.0
    assert theirs.json["proof"]["tenant"] == "other"
    budgets = {(r["tenant"], r["purpose"]): r["epsilon_spent"] for r in budget_rows(small_budget)}
    assert budgets == {
        ("demo", "export"): 5 * EPSILON_UNITS,
        ("other", "export"): 2 * EPSILON_UNITS,
    }
    assert len(release_rows(small_budget)) == 4

    assert metric(small_budget, "intelgraph_dp_releases_total", outcome="over_budget") == 2
    assert metric(small_budget, "intelgraph_dp_releases_total", outcome="released") == 4
    assert metric(small_budget, "intelgraph_refusals_total", code="BUDGET_EXCEEDED") == 2


def test_exports_are_audited_with_their_release_id(small_budget: Sidecar) -> None:
    released = export(small_budget, {"query": BY_CITY, "aggregate": "count", "preset": "relaxed"})
    assert released.status == 200, released.raw
    histogram = {
        "query": BY_CITY,
        "aggregate": "histogram",
        "field": "city",
        "bins": ["Chicago"],
        "preset": "standard",
    }
    refused = export(small_budget, histogram)
    assert refused.status == 403 and error_code(refused) == "BUDGET_EXCEEDED"
    entries = audit_of(small_budget, "export:")
    assert [e.record.operation_name for e in entries] == ["export:count", "export:histogram"]
    ok, over = (e.record for e in entries)
    release_id = released.json["proof"]["release_id"]
    assert ok.status == 200
    assert ok.detail == f"DP {release_id} epsilon=4.0"
    assert (ok.sub, ok.tenant, ok.purpose) == ("exa", "demo", "export")
    assert (over.status, over.detail) == (403, "BUDGET_EXCEEDED")
    assert small_budget.state.store is not None
    assert AuditLog(small_budget.state.store).verify().ok


# -- refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize("purpose", ["analytics", "investigation", "audit"])
def test_a_token_not_bound_to_export_is_refused(
    demo_sidecar: Sidecar, upstream: RecordingUpstream, purpose: str
) -> None:
    before = upstream.count()
    token = demo_token("ana", ["analyst"], purpose)
    reply = export(demo_sidecar, {"query": BY_CITY, "aggregate": "count"}, token=token)
    assert reply.status == 403, reply.raw
    assert error_code(reply) == "FORBIDDEN"
    assert upstream.count() == before
    assert spent(demo_sidecar) == 0 and release_rows(demo_sidecar) == []


def test_an_unauthenticated_export_is_refused(demo_sidecar: Sidecar) -> None:
    reply = export(demo_sidecar, {"query": BY_CITY, "aggregate": "count"}, token=None)
    assert reply.status == 401, reply.raw
    assert spent(demo_sidecar) == 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"aggregate": "count", "preset": "bogus"}, "bogus"),
        ({"aggregate": "count", "preset": 2}, "preset"),
        ({"aggregate": "mean"}, "aggregate"),
        ({"aggregate": "histogram"}, "field"),
        ({"aggregate": "histogram", "field": "city"}, "bins"),
        ({"aggregate": "histogram", "field": "city", "bins": []}, "bins"),
        ({"aggregate": "histogram", "field": "city", "bins": [1, 2]}, "bins"),
        ({"aggregate": "histogram", "field": "nope", "bins": ["Chicago"]}, "field"),
        ({"aggregate": "histogram", "field": "city", "bins": ["A", "A"]}, "unique"),
    ],
)
def test_a_bad_release_request_is_refused_and_charges_nothing(
    demo_sidecar: Sidecar, extra: dict[str, Any], message: str
) -> None:
    reply = export(demo_sidecar, {"query": BY_CITY, **extra})
    assert reply.status == 400, reply.raw
    assert error_code(reply) == "BAD_REQUEST"
    assert message in reply.json["errors"][0]["message"]
    assert spent(demo_sidecar) == 0 and release_rows(demo_sidecar) == []


def test_a_malformed_body_is_refused(demo_sidecar: Sidecar) -> None:
    url = f"{demo_sidecar.server.url}/export"
    auth = {"Authorization": f"Bearer {EXPORTER}"}
    as_text = http("POST", url, body=b"{}", headers={**auth, "Content-Type": "text/plain"})
    assert as_text.status == 415
    not_json = http("POST", url, body=b"{", headers={**auth, "Content-Type": "application/json"})
    assert not_json.status == 400 and error_code(not_json) == "BAD_REQUEST"
    bodies: list[Any] = [[], {"aggregate": "count"}, {"query": " ", "aggregate": "count"}]
    for body in bodies:
        reply = export(demo_sidecar, body)
        assert reply.status == 400 and error_code(reply) == "BAD_REQUEST", reply.raw
    assert spent(demo_sidecar) == 0


@pytest.mark.parametrize(
    "query",
    [
        "{ people { name } }",
        '{ person(id: "P-00001") { name } }',
        '{ cohort(groupBy: ["city"]) { city count } people { name } }',
        '{ a: cohort(groupBy: ["city"]) { city count } b: cohort(groupBy: []) { count } }',
        '{ cohort(groupBy: ["city"]) { city } }',
        "{ __typename }",
    ],
)
def test_an_export_runs_exactly_one_analytics_field(
    demo_sidecar: Sidecar, upstream: RecordingUpstream, query: str
) -> None:
    before = upstream.count()
    reply = export(demo_sidecar, {"query": query, "aggregate": "count"})
    assert reply.status == 400, reply.raw
    assert error_code(reply) == "EXPORT_NOT_ANALYTICS"
    assert reply.json.get("data") is None
    assert upstream.count() == before  # refused before anything was forwarded
    assert spent(demo_sidecar) == 0


def test_the_backout_switch_pauses_exports(upstream: RecordingUpstream, tmp_path: Path) -> None:
    running = start_demo_sidecar(upstream.graphql_url, tmp_path / "d", dp__exports_enabled=False)
    try:
        before = upstream.count()
        reply = export(running, {"query": BY_CITY, "aggregate": "count"})
        assert reply.status == 503, reply.raw
        assert error_code(reply) == "EXPORTS_PAUSED"
        assert upstream.count() == before
        assert spent(running) == 0 and release_rows(running) == []
        # /graphql is unaffected: only the DP releases are paused.
        assert running.query(BY_CITY, EXPORTER).status == 200
        (entry,) = audit_of(running)
        assert (entry.record.status, entry.record.detail) == (503, "EXPORTS_PAUSED")
    finally:
        running.server.stop()


def test_k_anonymity_still_applies_to_exports(tmp_path: Path) -> None:
    # A population smaller than k: the analytics query itself is refused, nothing is charged.
    database = generate_database(tmp_path / "tiny.sqlite3", people=3, seed=5)
    log: list[dict[str, Any]] = []
    tiny = AppThread(lambda: recording_app(database, log)).start()
    running = start_demo_sidecar(f"{tiny.url}/graphql", tmp_path / "d")
    try:
        reply = export(
            running, {"query": "{ cohort(groupBy: []) { count } }", "aggregate": "count"}
        )
        assert reply.status == 403, reply.raw
        assert error_code(reply) == "K_ANONYMITY"
        assert "value" not in reply.json
        assert spent(running) == 0 and release_rows(running) == []
    finally:
        running.server.stop()
        tiny.stop()


# -- PostgreSQL: one budget for every sidecar --------------------------------------------------


@pytest.mark.postgres
def test_two_sidecars_on_one_postgres_store_share_the_budget(
    upstream: RecordingUpstream, fresh_pg_url: str, tmp_path: Path
) -> None:
    budget = 10  # strict releases of epsilon 1: exactly ten fit
    sidecars = [
        start_demo_sidecar(
            upstream.graphql_url,
            tmp_path / name,
            store__url=fresh_pg_url,
            dp__budget_epsilon=budget,
        )
        for name in ("a", "b")
    ]
    try:
        body = {"query": BY_CITY, "aggregate": "count", "preset": "strict"}
        # One after the other first: the second sidecar sees the first one's debit.
        first, second = export(sidecars[0], body), export(sidecars[1], body)
        assert first.json["proof"]["budget_left"] == budget - 1, first.raw
        assert second.json["proof"]["budget_left"] == budget - 2, second.raw
        # Then threads firing at both at once: exactly what is left is served.
        attempts = 3 * budget
        with ThreadPoolExecutor(max_workers=12) as pool:
            replies = list(pool.map(lambda i: export(sidecars[i % 2], body), range(attempts)))
        statuses = [r.status for r in replies]
        served = [r for r in replies if r.status == 200]
        assert len(served) == budget - 2, statuses
        assert statuses.count(403) == attempts - (budget - 2), statuses
        assert all(error_code(r) == "BUDGET_EXCEEDED" for r in replies if r.status == 403)
        # Serialised debits: each release saw a different remainder, down to zero.
        left = sorted(r.json["proof"]["budget_left"] for r in served)
        assert left == [float(n) for n in range(budget - 2)]
        served += [first, second]
        for running in sidecars:  # each served its own share of the one budget
            released = metric(running, "intelgraph_dp_releases_total", outcome="released")
            assert 1 <= released < budget
        (row,) = budget_rows(sidecars[0])
        assert row["epsilon_spent"] == budget * EPSILON_UNITS
        assert row["releases"] == budget
        ids = {r["id"] for r in release_rows(sidecars[1])}
        assert ids == {r.json["proof"]["release_id"] for r in served}
    finally:
        for running in sidecars:
            running.server.stop()
