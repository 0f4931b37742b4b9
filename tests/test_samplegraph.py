"""The sample graph API: deterministic data, GraphQL semantics, and HTTP behaviour.

Everything runs against real SQLite files and a real aiohttp server on loopback
(`BackgroundServer`), spoken to with urllib.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import select
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from graphql import (
    build_client_schema,
    build_schema,
    get_introspection_query,
    print_schema,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import from_schema

from intelgraph_privacy.errors import ConfigError
from samplegraph import (
    MAX_FIRST,
    REFERENCE_DATE,
    SEARCH_LIMIT,
    BackgroundServer,
    SampleGraph,
    build_executable_schema,
    create_app,
    database_digest,
    default_sdl_path,
    execute_request,
    generate_database,
    read_metadata,
)

ROOT = Path(__file__).resolve().parents[1]
SDL = ROOT / "presets" / "demo.graphql"
SMALL_PEOPLE = 300

Json = Any


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def default_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """The default database (5,000 people), generated once, with its generation time."""
    path = tmp_path_factory.mktemp("samplegraph-default") / "graph.sqlite"
    started = time.perf_counter()
    generate_database(path)
    return path, time.perf_counter() - started


@pytest.fixture(scope="session")
def small_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_database(
        tmp_path_factory.mktemp("samplegraph-small") / "graph.sqlite", people=SMALL_PEOPLE
    )


@pytest.fixture(scope="session")
def graph(default_db: tuple[Path, float]) -> Iterator[SampleGraph]:
    with SampleGraph(default_db[0]) as g:
        yield g


@pytest.fixture(scope="session")
def small_graph(small_db: Path) -> Iterator[SampleGraph]:
    with SampleGraph(small_db) as g:
        yield g


@pytest.fixture(scope="session")
def url(default_db: tuple[Path, float]) -> Iterator[str]:
    with BackgroundServer(default_db[0]) as server:
        yield server.url


@pytest.fixture(scope="session")
def small_url(small_db: Path) -> Iterator[str]:
    with BackgroundServer(small_db) as server:
        yield server.url


# -- HTTP helpers --------------------------------------------------------------------------


def http(
    method: str, url: str, body: bytes | None = None, content_type: str = "application/json"
) -> tuple[int, dict[str, str], Json]:
    """One real HTTP exchange; returns (status, headers, decoded JSON body)."""
    request = urllib.request.Request(url, data=body, method=method)
    if body is not None:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read())


def post(base: str, query: str, variables: Json = None, **extra: Json) -> tuple[int, Json]:
    payload = {"query": query, "variables": variables, **extra}
    status, headers, body = http("POST", f"{base}/graphql", json.dumps(payload).encode())
    assert headers["Content-Type"].startswith("application/json")
    return status, body


def data_of(base: str, query: str, variables: Json = None) -> Json:
    """POST a query that must succeed and return its `data`."""
    status, body = post(base, query, variables)
    assert status == 200, body
    assert "errors" not in body, body
    return body["data"]


def get(base: str, **params: str) -> tuple[int, dict[str, str], Json]:
    return http("GET", f"{base}/graphql?{urllib.parse.urlencode(params)}")


def assert_spec_shaped(body: Json) -> None:
    """A GraphQL response per the spec: data and/or errors, errors with message/locations/path."""
    assert isinstance(body, dict)
    assert set(body) <= {"data", "errors", "extensions"}
    assert "data" in body or body.get("errors")
    for error in body.get("errors", []):
        assert isinstance(error["message"], str) and error["message"]
        for location in error.get("locations", []):
            assert set(location) == {"line", "column"}
            assert location["line"] >= 1 and location["column"] >= 1
        assert all(isinstance(part, str | int) for part in error.get("path", []))


PERSON_SCALARS = "id name ssn email phone dob age city country riskScore aliases"


def raw_person(graph: SampleGraph, person_id: str) -> dict[str, Any]:
    row = graph.person(person_id)
    assert row is not None
    return {k: v for k, v in row.items() if k != "employerId"}


# -- data ----------------------------------------------------------------------------------


def test_generation_is_deterministic(tmp_path: Path) -> None:
    first = generate_database(tmp_path / "a" / "g.sqlite", people=150, seed=7)
    second = generate_database(tmp_path / "b" / "g.sqlite", people=150, seed=7)
    other = generate_database(tmp_path / "c" / "g.sqlite", people=150, seed=8)
    assert database_digest(first) == database_digest(second)
    assert first.read_bytes() == second.read_bytes()
    assert database_digest(first) != database_digest(other)
    with SampleGraph(first) as a, SampleGraph(second) as b:
        assert a.people(150) == b.people(150)
        assert a.metadata == b.metadata
        assert a.metadata["seed"] == "7" and a.metadata["people"] == "150"


def test_defaults_are_5000_people_and_the_agreed_seed() -> None:
    params = inspect.signature(generate_database).parameters
    assert params["people"].default == 5000
    assert params["seed"].default == 20261126


def test_existing_database_is_reused_and_a_different_one_replaced(tmp_path: Path) -> None:
    path = generate_database(tmp_path / "g.sqlite", people=60)
    stamp = path.stat().st_mtime_ns, path.stat().st_ino
    assert generate_database(path, people=60) == path
    assert (path.stat().st_mtime_ns, path.stat().st_ino) == stamp
    generate_database(path, people=70)
    meta = read_metadata(path)
    assert meta is not None and meta["people"] == "70"
    with SampleGraph(path) as g:
        assert g.count("person") == 70
    # A file that is not a sample graph is replaced, not trusted.
    path.write_bytes(b"not a database")
    assert read_metadata(path) is None
    generate_database(path, people=60)
    meta = read_metadata(path)
    assert meta is not None and meta["people"] == "60"
    assert [p.name for p in tmp_path.iterdir()] == ["g.sqlite"]  # no temporary files left


def test_bad_inputs_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        generate_database(tmp_path / "g.sqlite", people=0)
    with pytest.raises(ConfigError):
        SampleGraph(tmp_path / "missing.sqlite")
    (tmp_path / "junk.sqlite").write_bytes(b"junk" * 100)
    with pytest.raises(ConfigError):
        SampleGraph(tmp_path / "junk.sqlite")


def test_default_database_counts_and_generation_time(
    default_db: tuple[Path, float], graph: SampleGraph
) -> None:
    _, seconds = default_db
    assert seconds < 30, f"generating 5,000 people took {seconds:.1f} s"
    assert graph.count("person") == 5000
    assert graph.count("organization") == 800
    assert graph.count("case_file") == 1500
    assert graph.metadata["people"] == "5000"


def _age_at(dob: date, on: date) -> int:
    return on.year - dob.year - ((on.month, on.day) < (dob.month, dob.day))


def test_people_rows_are_realistic_and_consistent(graph: SampleGraph) -> None:
    people = graph.people(MAX_FIRST) + graph.people(MAX_FIRST, after="P-01000")
    assert len(people) == 2000
    assert len({p["name"] for p in people}) > 1500  # realistic, varied names
    for p in people:
        assert re.fullmatch(r"P-\d{5}", p["id"])
        assert re.fullmatch(r"[A-Z][\w'-]+ [A-Z][\w'-]+", p["name"]), p["name"]
        assert re.fullmatch(r"\d{3}-\d{2}-\d{4}", p["ssn"])
        assert re.fullmatch(r"[a-z0-9.]+@[a-z0-9.-]+\.[a-z]+", p["email"]), p["email"]
        assert re.search(r"\d{3}.*\d{4}", p["phone"])
        assert p["age"] == _age_at(date.fromisoformat(p["dob"]), REFERENCE_DATE)
        assert 18 <= p["age"] <= 85
        assert isinstance(p["riskScore"], float) and 0.0 <= p["riskScore"] <= 100.0
        assert 0 <= len(p["aliases"]) <= 3
        assert all(isinstance(a, str) and a for a in p["aliases"])
        assert p["city"] and p["country"]
        assert p["employerId"] is None or re.fullmatch(r"O-\d{4}", p["employerId"])
    # Employment is nullable, and present for most people.
    employed = sum(p["employerId"] is not None for p in people)
    assert 0.6 * len(people) < employed < len(people)
    assert any(p["aliases"] for p in people) and any(not p["aliases"] for p in people)


def test_links_are_consistent(default_db: tuple[Path, float]) -> None:
    conn = sqlite3.connect(default_db[0])
    try:
        one = conn.execute
        # knows is symmetric, irreflexive, at most 8 per person.
        assert one(
            "SELECT COUNT(*) FROM knows k WHERE NOT EXISTS "
            "(SELECT 1 FROM knows r WHERE r.person_id = k.other_id AND r.other_id = k.person_id)"
        ).fetchone() == (0,)
        assert one("SELECT COUNT(*) FROM knows WHERE person_id = other_id").fetchone() == (0,)
        max_degree, linked = one(
            "SELECT MAX(n), COUNT(*) FROM (SELECT COUNT(*) n FROM knows GROUP BY person_id)"
        ).fetchone()
        assert max_degree <= 8 and linked > 4000
        # Each case has 1 to 5 existing subjects; every employer exists.
        low, high = one(
            "SELECT MIN(n), MAX(n) FROM (SELECT COUNT(*) n FROM case_subject GROUP BY case_id)"
        ).fetchone()
        assert (low, high) == (1, 5)
        assert one("SELECT COUNT(DISTINCT case_id) FROM case_subject").fetchone() == (1500,)
        assert one(
            "SELECT COUNT(*) FROM case_subject s LEFT JOIN person p ON p.id = s.person_id "
            "WHERE p.id IS NULL"
        ).fetchone() == (0,)
        assert one(
            "SELECT COUNT(*) FROM person p LEFT JOIN organization o ON o.id = p.employer_id "
            "WHERE p.employer_id IS NOT NULL AND o.id IS NULL"
        ).fetchone() == (0,)
        cases = one("SELECT reference, status, opened_on, informant FROM case_file").fetchall()
    finally:
        conn.close()
    for reference, status, opened_on, _ in cases:
        assert re.fullmatch(r"CASE-\d{4}-\d{6}", reference)
        assert reference[5:9] == opened_on[:4]
        assert status in {"OPEN", "CLOSED", "ARCHIVED"}
        assert date.fromisoformat(opened_on) <= REFERENCE_DATE
    with_informant = sum(informant is not None for *_, informant in cases)
    assert 0 < with_informant < len(cases)
    assert {status for _, status, _, _ in cases} == {"OPEN", "CLOSED", "ARCHIVED"}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first=st.integers(0, 40), start=st.integers(0, SMALL_PEOPLE + 5))
def test_pagination_walks_ids_in_order(small_graph: SampleGraph, first: int, start: int) -> None:
    all_ids = [p["id"] for p in small_graph.people(SMALL_PEOPLE)]
    assert all_ids == sorted(all_ids) and len(all_ids) == SMALL_PEOPLE
    if start == 0:
        after, expected = None, all_ids[:first]
    elif start <= len(all_ids):
        after, expected = all_ids[start - 1], all_ids[start : start + first]
    else:
        after, expected = "P-99999", []  # past the end
    page = [p["id"] for p in small_graph.people(first, after)]
    assert page == expected


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text(alphabet="aeiou nrstlLC%_\\'", max_size=4))
def test_search_is_a_bounded_case_insensitive_substring_match(
    small_graph: SampleGraph, text: str
) -> None:
    results = small_graph.search(text)
    assert len(results) <= SEARCH_LIMIT
    needle = text.lower()
    for row in results:
        haystack = row.get("title") if row["id"].startswith("C-") else row["name"]
        assert needle in haystack.lower()
    # Nothing is missed when fewer than the limit match: compare with a scan of all people.
    if len(results) < SEARCH_LIMIT:
        people = [p["id"] for p in small_graph.people(SMALL_PEOPLE) if needle in p["name"].lower()]
        assert [r["id"] for r in results if r["id"].startswith("P-")] == people


# -- GraphQL semantics ---------------------------------------------------------------------


def test_people_default_page_cursor_and_cap(url: str, graph: SampleGraph) -> None:
    page = data_of(url, f"{{ people {{ {PERSON_SCALARS} }} }}")["people"]
    assert len(page) == 20
    assert page == [raw_person(graph, p["id"]) for p in graph.people(20)]
    after = data_of(url, '{ people(first: 3, after: "P-00020") { id } }')["people"]
    assert [p["id"] for p in after] == ["P-00021", "P-00022", "P-00023"]
    assert len(data_of(url, f"{{ people(first: {MAX_FIRST}) {{ id }} }}")["people"]) == MAX_FIRST
    status, body = post(url, "{ people(first: 1001) { id } }")
    assert status == 200
    assert_spec_shaped(body)
    assert body["data"] is None  # people is non-null, so the error nulls the root
    [error] = body["errors"]
    assert error["path"] == ["people"] and error["locations"] == [{"line": 1, "column": 3}]
    assert "1000" in error["message"]
    status, body = post(url, "{ people(first: -1) { id } }")
    assert status == 200 and body["errors"][0]["path"] == ["people"]


def test_person_with_all_links(url: str, graph: SampleGraph) -> None:
    query = f"""query One($id: ID!) {{
      person(id: $id) {{
        {PERSON_SCALARS}
        employer {{ id name registrationNumber country city }}
        knows {{ id name }}
        cases {{ id reference title status openedOn informant subjects {{ id }} }}
      }}
    }}"""
    # Someone with an employer, friends and cases.
    conn = sqlite3.connect(graph.path)
    [pid] = conn.execute(
        "SELECT p.id FROM person p JOIN case_subject s ON s.person_id = p.id "
        "WHERE p.employer_id IS NOT NULL "
        "AND EXISTS (SELECT 1 FROM knows k WHERE k.person_id = p.id) ORDER BY p.id LIMIT 1"
    ).fetchone()
    conn.close()
    person = data_of(url, query, {"id": pid})["person"]
    raw = graph.person(pid)
    assert raw is not None
    assert {k: person[k] for k in PERSON_SCALARS.split()} == raw_person(graph, pid)
    assert person["employer"] == graph.organization(raw["employerId"])
    assert person["knows"] and [k["id"] for k in person["knows"]] == sorted(
        k["id"] for k in person["knows"]
    )
    for friend in person["knows"]:
        back = data_of(url, "query($id: ID!) { person(id: $id) { knows { id } } }", friend)
        assert {"id": pid} in back["person"]["knows"]  # symmetric through the API too
    assert person["cases"]
    for case in person["cases"]:
        assert {"id": pid} in case["subjects"]
        assert 1 <= len(case["subjects"]) <= 5
        row = graph.case(case["id"])
        assert row == {k: v for k, v in case.items() if k != "subjects"}
    assert data_of(url, '{ person(id: "P-99999") { id } }') == {"person": None}
    assert data_of(url, '{ person(id: "O-0001") { id } }') == {"person": None}


def test_nested_list_arguments(url: str, graph: SampleGraph) -> None:
    data = data_of(
        url,
        """{ node(id: "O-0001") { ... on Organization {
                 id employees(first: 3) { id employer { id } } all: employees { id } } }
           person(id: "P-00001") { knows(first: 1) { id } } }""",
    )
    org = data["node"]
    assert len(org["employees"]) == 3
    assert all(e["employer"] == {"id": "O-0001"} for e in org["employees"])
    assert [e["id"] for e in org["all"]] == [p["id"] for p in graph.employees("O-0001")]
    assert len(org["all"]) > 3
    assert len(data["person"]["knows"]) <= 1
    # A bad `first` on a nested field nulls its nullable parent and says where.
    status, body = post(url, '{ person(id: "P-00001") { id knows(first: 1001) { id } } }')
    assert status == 200 and body["data"] == {"person": None}
    assert body["errors"][0]["path"] == ["person", "knows"]


def test_node_resolves_every_type(url: str) -> None:
    query = """query($p: ID!, $o: ID!, $c: ID!, $x: ID!) {
      p: node(id: $p) { __typename id ... on Person { name } }
      o: node(id: $o) { __typename id ... on Organization { name registrationNumber } }
      c: node(id: $c) { __typename id ... on Case { reference status subjects { id } } }
      x: node(id: $x) { id }
    }"""
    data = data_of(url, query, {"p": "P-00042", "o": "O-0042", "c": "C-00042", "x": "Z-1"})
    assert data["p"]["__typename"] == "Person" and data["p"]["id"] == "P-00042"
    assert data["o"]["__typename"] == "Organization" and data["o"]["name"]
    assert re.fullmatch(r"[A-Z]{2}-\d{8}", data["o"]["registrationNumber"])
    assert data["c"]["__typename"] == "Case" and data["c"]["status"] in {
        "OPEN",
        "CLOSED",
        "ARCHIVED",
    }
    assert data["c"]["reference"].endswith("000042")
    assert data["x"] is None


def test_search_returns_every_union_member(url: str, graph: SampleGraph) -> None:
    query = """query($t: String!) { search(text: $t) { __typename
      ... on Person { id name } ... on Organization { id name } ... on Case { id title } } }"""
    person_name = raw_person(graph, "P-00007")["name"]
    org = graph.organization("O-0007")
    case = graph.case("C-00007")
    assert org is not None and case is not None
    found = data_of(url, query, {"t": person_name.upper()})["search"]
    assert {"__typename": "Person", "id": "P-00007", "name": person_name} in found
    found = data_of(url, query, {"t": org["name"].lower()})["search"]
    assert {"__typename": "Organization", "id": "O-0007", "name": org["name"]} in found
    found = data_of(url, query, {"t": case["title"]})["search"]
    assert {"__typename": "Case", "id": "C-00007", "title": case["title"]} in found
    assert len(data_of(url, query, {"t": "a"})["search"]) == SEARCH_LIMIT
    assert data_of(url, query, {"t": "%no such thing%"})["search"] == []


def test_cohort_counts(url: str, graph: SampleGraph) -> None:
    by_city = data_of(url, '{ cohort(groupBy: ["city"]) { city ageBand count } }')["cohort"]
    assert sum(r["count"] for r in by_city) == 5000
    assert all(r["ageBand"] is None and r["city"] for r in by_city)
    assert len({r["city"] for r in by_city}) == len(by_city) > 10
    both = data_of(url, '{ cohort(groupBy: ["ageBand", "city"]) { city ageBand count } }')
    rows = both["cohort"]
    assert sum(r["count"] for r in rows) == 5000
    for row in rows:
        low, high = map(int, row["ageBand"].split("-"))
        assert low % 10 == 0 and high == low + 9
    # Cross-check one group against the raw rows.
    people = graph.people(MAX_FIRST) + graph.people(MAX_FIRST, "P-01000")
    people += graph.people(MAX_FIRST, "P-02000") + graph.people(MAX_FIRST, "P-03000")
    people += graph.people(MAX_FIRST, "P-04000")
    row = rows[0]
    low = int(row["ageBand"].split("-")[0])
    expected = sum(p["city"] == row["city"] and low <= p["age"] <= low + 9 for p in people)
    assert row["count"] == expected
    total = data_of(url, "{ cohort(groupBy: []) { city ageBand count } }")["cohort"]
    assert total == [{"city": None, "ageBand": None, "count": 5000}]
    status, body = post(url, '{ cohort(groupBy: ["city", "ssn"]) { count } }')
    assert status == 200 and body["data"] is None
    assert body["errors"][0]["path"] == ["cohort"] and "ssn" in body["errors"][0]["message"]


def test_fragments_aliases_and_variables(url: str, graph: SampleGraph) -> None:
    query = """
      fragment Who on Person { id fullName: name ...Where }
      fragment Where on Person { city country }
      query Pair($a: ID!, $b: ID!, $n: Int = 2, $cursor: String) {
        first: person(id: $a) { ...Who }
        second: person(id: $b) { ...Who knows(first: $n) { id } }
        page: people(first: $n, after: $cursor) { id }
      }
      query Other { people(first: 1) { id } }
    """
    variables = {"a": "P-00010", "b": "P-00011", "cursor": "P-00010"}
    status, body = post(url, query, variables, operationName="Pair")
    assert status == 200 and "errors" not in body
    data = body["data"]
    raw = raw_person(graph, "P-00010")
    assert data["first"] == {
        "id": "P-00010",
        "fullName": raw["name"],
        "city": raw["city"],
        "country": raw["country"],
    }
    assert len(data["second"]["knows"]) <= 2
    assert [p["id"] for p in data["page"]] == ["P-00011", "P-00012"]
    status, body = post(url, query, None, operationName="Other")
    assert status == 200 and body["data"] == {"people": [{"id": "P-00001"}]}


def test_introspection_matches_the_sdl(url: str) -> None:
    data = data_of(url, get_introspection_query())
    served = build_client_schema(data)
    assert print_schema(served) == print_schema(build_schema(SDL.read_text()))


def test_one_hundred_people_with_links_take_milliseconds(url: str) -> None:
    query = "{ people(first: 100) { id name employer { id name } cases { id reference } } }"
    assert len(data_of(url, query)["people"]) == 100
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        data_of(url, query)
        timings.append(time.perf_counter() - started)
    assert min(timings) < 0.25, timings


# -- HTTP ----------------------------------------------------------------------------------


def test_healthz(url: str) -> None:
    status, _, body = http("GET", f"{url}/healthz")
    assert (status, body) == (200, {"status": "ok"})


def test_get_queries(url: str) -> None:
    status, _, body = get(
        url,
        query="query($id: ID!) { person(id: $id) { id } }",
        variables=json.dumps({"id": "P-00003"}),
    )
    assert status == 200 and body == {"data": {"person": {"id": "P-00003"}}}
    status, _, body = get(url, query="{ people(first: 1) { id } }", operationName="")
    assert status == 200 and body == {"data": {"people": [{"id": "P-00001"}]}}
    status, headers, body = get(url, query="mutation { anything }")
    assert status == 405 and headers["Allow"] == "POST"
    assert_spec_shaped(body)
    status, _, body = get(url, query="{ people { id } }", variables="{not json")
    assert status == 400 and "variables" in body["errors"][0]["message"]
    status, _, body = get(url)
    assert status == 400 and "query" in body["errors"][0]["message"]


def test_batch(url: str) -> None:
    batch = [
        {"query": '{ person(id: "P-00001") { id } }'},
        {"query": "{ people(first: 1) { nope } }"},
        {"query": "query($n: Int!) { people(first: $n) { id } }", "variables": {"n": 2}},
    ]
    status, _, body = http("POST", f"{url}/graphql", json.dumps(batch).encode())
    assert status == 200 and isinstance(body, list) and len(body) == 3
    assert body[0] == {"data": {"person": {"id": "P-00001"}}}
    assert "data" not in body[1] and "nope" in body[1]["errors"][0]["message"]
    assert body[2] == {"data": {"people": [{"id": "P-00001"}, {"id": "P-00002"}]}}
    status, _, body = http("POST", f"{url}/graphql", b"[]")
    assert status == 400 and body["errors"]


@pytest.mark.parametrize(
    ("raw", "content_type", "status", "needle"),
    [
        (b"{not json", "application/json", 400, "JSON"),
        (b"42", "application/json", 400, "object"),
        (b'{"variables": {}}', "application/json", 400, "query"),
        (b'{"query": "{ people { id } }", "variables": [1]}', "application/json", 400, "variables"),
        (b'{"query": "{ people { id } }"}', "text/plain", 415, "Content-Type"),
        (b'{"query": "{ people( }"}', "application/json", 400, "Syntax Error"),
        (b'{"query": "{ people { nope } }"}', "application/json", 400, "nope"),
        (b'{"query": "query A { a: people { id } } query B { b: people { id } }"}',
         "application/json", 400, "operation name"),
        (b'{"query": "{ people { id } }", "operationName": "Nope"}',
         "application/json", 400, "Nope"),
        (b'{"query": "query($n: Int!) { people(first: $n) { id } }"}',
         "application/json", 400, "$n"),
    ],
)  # fmt: skip
def test_request_errors(url: str, raw: bytes, content_type: str, status: int, needle: str) -> None:
    got, headers, body = http("POST", f"{url}/graphql", raw, content_type)
    assert got == status, body
    assert headers["Content-Type"].startswith("application/json")
    assert_spec_shaped(body)
    assert "data" not in body
    assert needle in body["errors"][0]["message"]


def test_syntax_errors_carry_locations(url: str) -> None:
    status, body = post(url, "{\n  people(first: 1) {\n    id\n  ")
    assert status == 400
    [error] = body["errors"]
    assert error["locations"] == [{"line": 4, "column": 3}]


def test_custom_sdl_path(tmp_path: Path, small_db: Path) -> None:
    copy = tmp_path / "copy.graphql"
    copy.write_text(SDL.read_text())
    with SampleGraph(small_db) as g:
        schema = build_executable_schema(g, sdl_path=copy)
        status, body = execute_request(schema, {"query": '{ person(id: "P-00001") { id } }'})
        assert (status, body) == (200, {"data": {"person": {"id": "P-00001"}}})
        missing = tmp_path / "missing.graphql"
        missing.write_text(
            SDL.read_text().replace("cohort(groupBy: [String!]!): [CohortRow!]!", "")
        )
        with pytest.raises(ConfigError, match=r"Query\.cohort"):
            build_executable_schema(g, sdl_path=missing)
        with pytest.raises(ConfigError, match=r"Query\.cohort"):
            create_app(small_db, sdl_path=missing)
        with pytest.raises(ConfigError):
            build_executable_schema(g, sdl_path=tmp_path / "nowhere.graphql")
    assert default_sdl_path() == SDL


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(query=from_schema(SDL.read_text()))
def test_random_valid_queries_get_spec_shaped_answers(small_url: str, query: str) -> None:
    status, body = post(small_url, query)
    # Valid documents always execute: 200 with data (errors only for bad arguments).
    assert status == 200, body
    assert_spec_shaped(body)
    assert "data" in body


def test_standalone_command(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "samplegraph", "--port", "0", "--data-dir", str(tmp_path),
         "--people", "40"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        assert ready, "the server printed nothing within 60 s"
        line = proc.stdout.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+)/graphql", line)
        assert match, (line, proc.stderr.read() if proc.poll() is not None else "")
        assert "40 people" in line
        base = match.group(1)
        status, _, body = http("GET", f"{base}/healthz")
        assert (status, body) == (200, {"status": "ok"})
        assert len(data_of(base, "{ people(first: 100) { id } }")["people"]) == 40
        assert (tmp_path / "samplegraph.sqlite").is_file()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
