"""k-anonymity of analytics results, end to end through the demo sidecar (real HTTP, real Rego).

The demo's `Query.cohort(groupBy: [String!]!): [CohortRow!]!` returns counted groups
`{city, ageBand, count}`. Whatever the client selects (aliases, the same field twice,
`__typename`, fragments), what leaves must be k-anonymous. Every check here is independent of
`intelgraph_privacy.kanon`: the test groups the rows itself, parses presets/anon-hierarchies.yaml
itself and compares with the upstream's raw answer (asked directly, bypassing the sidecar).

- every released group holds >= k people, and no small raw cell leaves verbatim;
- the people released are the upstream's total minus those suppressed (<= the suppression
  limit), and every released value is an upstream value or one of its ancestors;
- rows without `count` are refused before anything is forwarded (400 ANALYTICS_SHAPE);
- preview (the documented backout switch) serves the raw rows;
- metrics and audit records say what was done; exemptions come from the policy (rego/anon.rego);
- a population too small for k is refused (403 K_ANONYMITY), never served.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from intelgraph_privacy.audit import AuditEntry, AuditLog
from intelgraph_privacy.policy import load_bundle, run_rego_tests
from samplegraph import generate_database
from sidecar.app import create_app
from sidecar.demo import DemoOptions, demo_config
from tests.servers import AppThread, post_json
from tests.sidecar_env import (
    ROOT,
    TEST_PEOPLE,
    RecordingUpstream,
    Sidecar,
    demo_token,
    recording_app,
    start_demo_sidecar,
)

ANON_PRESET = yaml.safe_load((ROOT / "presets" / "anon.yaml").read_text(encoding="utf-8"))
K: int = int(ANON_PRESET["k"])
SUPPRESSION_LIMIT: float = float(ANON_PRESET["suppression_limit"])
QIS: tuple[str, ...] = tuple(ANON_PRESET["quasi_identifiers"])
COUNT_FIELD: str = str(ANON_PRESET["count"])
HIERARCHY_FILE = ROOT / "presets" / str(ANON_PRESET["hierarchies"])
ANY = "*"  # the implicit root of every hierarchy
OPERATION = "Query.cohort"
ROW_TYPE = "CohortRow"
ANALYST = demo_token("ana", ["analyst"], "analytics")


# -- the hierarchies, parsed here (not with intelgraph_privacy.kanon) -------------------------


def _parents(tree: Any, parent: str, out: dict[str, str]) -> None:
    """Record `child -> parent` for every label of a YAML hierarchy (mapping, list or leaf)."""
    if isinstance(tree, dict):
        for label, subtree in tree.items():
            out[str(label)] = parent
            if subtree is not None:
                _parents(subtree, str(label), out)
    elif isinstance(tree, list):
        for item in tree:
            _parents(item, parent, out)
    else:
        out[str(tree)] = parent


def load_parents() -> dict[str, dict[str, str]]:
    """Field -> (label -> parent label), the root being `*`."""
    raw = yaml.safe_load(HIERARCHY_FILE.read_text(encoding="utf-8"))["hierarchies"]
    parents: dict[str, dict[str, str]] = {}
    for name, tree in raw.items():
        parents[str(name)] = {}
        _parents(tree, ANY, parents[str(name)])
    return parents


PARENTS = load_parents()


def generalisations(field: str, value: str) -> set[str]:
    """`value` and all its ancestors up to `*` (a value outside the hierarchy: itself and `*`)."""
    found = {value, ANY}
    up = PARENTS.get(field, {})
    while value in up:
        value = up[value]
        found.add(value)
    return found


def covers(field: str, released: Any, raw: Any) -> bool:
    """Whether a released value may stand for a raw one (equal, or an ancestor of it)."""
    if raw is None:
        return released is None
    return released is not None and released in generalisations(field, str(raw))


def test_the_hierarchies_cover_the_sample_graph_values(upstream: RecordingUpstream) -> None:
    # Guards the checks below: a raw value outside the YAML would make `covers` trivially `*`.
    assert set(PARENTS) == set(QIS)
    rows = raw_cohort(upstream, ["city", "ageBand"])
    for field in QIS:
        values = {str(r[field]) for r in rows}
        assert values and values <= set(PARENTS[field]), values - set(PARENTS[field])
    assert generalisations("city", "Dallas") == {"Dallas", "United States", "North America", ANY}
    assert generalisations("ageBand", "30-39") == {"30-39", "20-39", "0-39", ANY}


# -- queries: a selection of row fields, under aliases and in fragments ------------------------


@dataclass(frozen=True)
class Pick:
    """One selected row field: its schema name, an alias, and how it is written."""

    field: str  # city, ageBand, count or __typename
    alias: str | None = None
    wrap: str = "plain"  # plain, inline (`... on CohortRow`) or named (a fragment spread)

    @property
    def key(self) -> str:
        return self.alias or self.field

    def text(self) -> str:
        return f"{self.alias}: {self.field}" if self.alias else self.field


def cohort_query(group_by: Sequence[str], picks: Sequence[Pick], *, name: str = "") -> str:
    """`query { cohort(groupBy: ...) { ... } }` with the picks as written."""
    groups = ", ".join(f'"{g}"' for g in group_by)
    plain = [p.text() for p in picks if p.wrap == "plain"]
    inline = [p.text() for p in picks if p.wrap == "inline"]
    named = [p.text() for p in picks if p.wrap == "named"]
    parts = list(plain)
    if inline:
        parts.append(f"... on {ROW_TYPE} {{ {' '.join(inline)} }}")
    if named:
        parts.append("...RowFields")
    query = f"query {name} {{ cohort(groupBy: [{groups}]) {{ {' '.join(parts)} }} }}"
    if named:
        query += f" fragment RowFields on {ROW_TYPE} {{ {' '.join(named)} }}"
    return query


def raw_cohort(upstream: RecordingUpstream, group_by: Sequence[str]) -> list[dict[str, Any]]:
    """The upstream's own answer (no sidecar): every raw group with its count."""
    groups = ", ".join(f'"{g}"' for g in group_by)
    reply = post_json(
        upstream.graphql_url,
        {"query": f"{{ cohort(groupBy: [{groups}]) {{ city ageBand count }} }}"},
    )
    assert reply.status == 200, reply.raw
    rows: list[dict[str, Any]] = reply.json["data"]["cohort"]
    assert sum(r["count"] for r in rows) == TEST_PEOPLE
    return rows


# -- the independent check ---------------------------------------------------------------------


def check_k_anonymous(
    rows: list[dict[str, Any]],
    picks: Sequence[Pick],
    group_by: Sequence[str],
    raw: list[dict[str, Any]],
    suppressed: int,
) -> None:
    """Assert every invariant of a released analytics answer against the raw one."""
    keys = {p.key: p.field for p in picks}
    qi_fields = list(dict.fromkeys(p.field for p in picks if p.field in QIS))
    first_key = {f: next(p.key for p in picks if p.field == f) for f in qi_fields}
    count_keys = [k for k, f in keys.items() if f == COUNT_FIELD]
    assert count_keys, "a released answer always carries its counts"

    # Raw groups projected on the selected QIs (a field selected but not grouped on is null).
    raw_groups: dict[tuple[Any, ...], int] = {}
    for r in raw:
        group = tuple(r[f] for f in qi_fields)
        raw_groups[group] = raw_groups.get(group, 0) + r["count"]
    small_cells = {group for group, size in raw_groups.items() if size < K}

    released: dict[tuple[Any, ...], int] = {}
    for row in rows:
        assert set(row) == set(keys), f"unexpected keys in {row}"
        for key, field in keys.items():
            if field == "__typename":
                assert row[key] == ROW_TYPE
            elif field in QIS:
                # One field under two aliases carries one value.
                assert row[key] == row[first_key[field]], row
        counts = {row[k] for k in count_keys}
        assert len(counts) == 1, f"aliases of count disagree: {row}"
        count = counts.pop()
        assert type(count) is int and count >= K, f"a group smaller than k={K}: {row}"
        qi_tuple = tuple(row[first_key[f]] for f in qi_fields)
        assert qi_tuple not in released, f"a group released twice: {qi_tuple}"
        assert qi_tuple not in small_cells, f"a small raw cell left verbatim: {row}"
        released[qi_tuple] = count
        for field, value in zip(qi_fields, qi_tuple, strict=True):
            if field not in group_by:
                assert value is None, row
    assert 0 <= suppressed <= SUPPRESSION_LIMIT * TEST_PEOPLE
    assert sum(released.values()) == TEST_PEOPLE - suppressed
    # The released rows are a coarsening of the raw groups: the people of the raw groups can be
    # sent to released rows that stand for them (equal values or ancestors) filling every row
    # exactly, the rest being the suppressed ones (a max-flow, as groups could be split).
    raw_keys = list(raw_groups)
    out_keys = list(released)
    edges = {
        i: [
            j
            for j, out_key in enumerate(out_keys)
            if all(covers(f, v, rv) for f, v, rv in zip(qi_fields, out_key, raw_key, strict=True))
        ]
        for i, raw_key in enumerate(raw_keys)
    }
    flow = max_flow([raw_groups[k] for k in raw_keys], [released[k] for k in out_keys], edges)
    assert flow == sum(released.values()), "released rows cannot come from the raw groups"


def max_flow(sources: list[int], sinks: list[int], edges: dict[int, list[int]]) -> int:
    """Max flow from supplies `sources` through `edges` (unbounded) into demands `sinks`.

    Edmonds-Karp on a bipartite graph: node 0 the source, 1..n the raw groups, n+1..n+m the
    released rows, n+m+1 the sink.
    """
    n, m = len(sources), len(sinks)
    source, sink = 0, n + m + 1
    capacity: dict[int, dict[int, int]] = {v: {} for v in range(sink + 1)}

    def add(u: int, v: int, c: int) -> None:
        capacity[u][v] = capacity[u].get(v, 0) + c
        capacity[v].setdefault(u, 0)

    for i, supply in enumerate(sources):
        add(source, 1 + i, supply)
        for j in edges[i]:
            add(1 + i, 1 + n + j, supply)
    for j, demand in enumerate(sinks):
        add(1 + n + j, sink, demand)
    total = 0
    while True:
        parent = {source: source}
        queue = [source]
        for u in queue:  # breadth first: the list grows while it is walked
            for v, c in capacity[u].items():
                if c > 0 and v not in parent:
                    parent[v] = u
                    queue.append(v)
        if sink not in parent:
            return total
        path, v = [], sink
        while v != source:
            path.append((parent[v], v))
            v = parent[v]
        push = min(capacity[u][v] for u, v in path)
        for u, v in path:
            capacity[u][v] -= push
            capacity[v][u] += push
        total += push


# -- metrics and audit -------------------------------------------------------------------------


def metric(sidecar: Sidecar, sample: str, **labels: str) -> float:
    """One sample of /metrics (0 when absent)."""
    text = sidecar.get("/metrics").raw.decode()
    total = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


def suppressed_total(sidecar: Sidecar) -> int:
    return int(metric(sidecar, "intelgraph_kanon_suppressed_total", operation=OPERATION))


def audit_entries(sidecar: Sidecar, operation_name: str) -> list[AuditEntry]:
    sidecar.flush_audit()
    assert sidecar.state.store is not None
    return [
        e
        for e in AuditLog(sidecar.state.store).tail(200)
        if e.record.operation_name == operation_name
    ]


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kanon_sidecar(
    upstream: RecordingUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Sidecar]:
    """One demo sidecar for the module (its metrics accumulate: tests compare deltas)."""
    running = start_demo_sidecar(upstream.graphql_url, tmp_path_factory.mktemp("kanon"))
    yield running
    running.server.stop()


def ask(
    sidecar: Sidecar, upstream: RecordingUpstream, group_by: Sequence[str], picks: Sequence[Pick]
) -> tuple[int, dict[str, Any], int]:
    """Status, body and people suppressed (the metric's growth) of one cohort query."""
    before = suppressed_total(sidecar)
    reply = sidecar.query(cohort_query(group_by, picks), ANALYST)
    return reply.status, reply.json, suppressed_total(sidecar) - before


P = Pick
SHAPES: dict[str, tuple[list[str], list[Pick]]] = {
    "none": ([], [P("city"), P("ageBand"), P("count")]),
    "none-count-only": ([], [P("count")]),
    "city": (["city"], [P("city"), P("count")]),
    "ageBand": (["ageBand"], [P("ageBand"), P("count")]),
    "both": (["city", "ageBand"], [P("city"), P("ageBand"), P("count")]),
    "both-reversed": (["ageBand", "city"], [P("ageBand"), P("city"), P("count")]),
    "both-select-city": (["city", "ageBand"], [P("city"), P("count")]),
    "city-select-count": (["city"], [P("count")]),
    "city-select-ageBand": (["city"], [P("ageBand"), P("count")]),
    "aliases": (["city", "ageBand"], [P("city", "place"), P("ageBand", "band"), P("count", "n")]),
    "two-aliases": (
        ["city", "ageBand"],
        [P("city", "c1"), P("city", "c2"), P("ageBand"), P("count", "n"), P("count", "m")],
    ),
    "typename": (["city"], [P("__typename"), P("city"), P("count"), P("__typename", "t")]),
    "inline-fragment": (
        ["city", "ageBand"],
        [P("city", wrap="inline"), P("ageBand", wrap="inline"), P("count")],
    ),
    "named-fragment": (
        ["city", "ageBand"],
        [P("city", "where", "named"), P("ageBand", wrap="named"), P("count", wrap="named")],
    ),
    "mixed": (
        ["ageBand", "city", "city"],
        [P("city", "x", "inline"), P("city", wrap="named"), P("ageBand"), P("count", "k", "named")],
    ),
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_every_cohort_answer_is_k_anonymous(
    kanon_sidecar: Sidecar, upstream: RecordingUpstream, shape: str
) -> None:
    group_by, picks = SHAPES[shape]
    status, body, suppressed = ask(kanon_sidecar, upstream, group_by, picks)
    assert status == 200, body
    assert "errors" not in body, body
    check_k_anonymous(
        body["data"]["cohort"], picks, group_by, raw_cohort(upstream, group_by), suppressed
    )


def test_grouping_on_both_really_generalises_small_cells(
    kanon_sidecar: Sidecar, upstream: RecordingUpstream
) -> None:
    # The sample graph has many small (city, ageBand) cells: the answer is not the raw one.
    raw = raw_cohort(upstream, ["city", "ageBand"])
    assert sum(1 for r in raw if r["count"] < K) > 10
    group_by, picks = SHAPES["both"]
    status, body, _ = ask(kanon_sidecar, upstream, group_by, picks)
    assert status == 200, body
    rows = body["data"]["cohort"]
    assert len(rows) < len(raw)
    generalised = {r["city"] for r in rows} - {str(r["city"]) for r in raw}
    assert generalised, "no city was generalised"
    assert generalised <= {label for label in PARENTS["city"].values()} | {ANY}


def test_two_analytics_fields_in_one_operation_are_both_anonymised(
    kanon_sidecar: Sidecar, upstream: RecordingUpstream
) -> None:
    before = suppressed_total(kanon_sidecar)
    reply = kanon_sidecar.query(
        '{ a: cohort(groupBy: ["city", "ageBand"]) { city ageBand count } '
        'b: cohort(groupBy: ["city"]) { city n: count } }',
        ANALYST,
    )
    suppressed = suppressed_total(kanon_sidecar) - before
    assert reply.status == 200, reply.raw
    a, b = reply.json["data"]["a"], reply.json["data"]["b"]
    assert all(r["count"] >= K for r in a) and all(r["n"] >= K for r in b)
    assert sum(r["count"] for r in a) + sum(r["n"] for r in b) == 2 * TEST_PEOPLE - suppressed
    raw = raw_cohort(upstream, ["city"])
    small = {r["city"] for r in raw if r["count"] < K}
    assert small and not small & {r["city"] for r in b}


@pytest.mark.parametrize(
    ("group_by", "picks"),
    [
        (["city"], [P("city"), P("ageBand"), P("count")]),
        (["ageBand"], [P("city"), P("ageBand"), P("count")]),
        (["city"], [P("city", "c1"), P("city", "c2"), P("ageBand", "a"), P("count")]),
    ],
)
def test_a_selected_qi_not_grouped_on_does_not_block_the_answer(
    kanon_sidecar: Sidecar, upstream: RecordingUpstream, group_by: list[str], picks: list[Pick]
) -> None:
    status, body, suppressed = ask(kanon_sidecar, upstream, group_by, picks)
    assert status == 200, body
    check_k_anonymous(
        body["data"]["cohort"], picks, group_by, raw_cohort(upstream, group_by), suppressed
    )


# -- the property ------------------------------------------------------------------------------

_FIELDS = ("city", "ageBand", COUNT_FIELD, "__typename")


@st.composite
def shapes(draw: st.DrawFn) -> tuple[list[str], list[Pick]]:
    """A random groupBy (duplicates allowed) and selection (aliases, fragments, repeats)."""
    group_by = draw(st.lists(st.sampled_from(QIS), max_size=3))
    others = draw(st.lists(st.sampled_from((*QIS, "__typename")), max_size=5))
    # Mostly with count (else refused before forwarding), sometimes twice.
    counts = draw(st.sampled_from((1, 2, 1, 0, 1))) * [COUNT_FIELD]
    fields = draw(st.permutations(others + counts))
    assume(fields)
    picks = [
        # Aliases are unique names: two different fields never share a response key.
        Pick(
            field,
            f"{field.strip('_').lower()}_{i}" if draw(st.booleans()) else None,
            draw(st.sampled_from(("plain", "plain", "inline", "named"))),
        )
        for i, field in enumerate(fields)
    ]
    return group_by, picks


@settings(max_examples=30, deadline=None)
@given(shape=shapes())
def test_property_random_selections_never_leak_a_small_cell(
    kanon_sidecar: Sidecar, upstream: RecordingUpstream, shape: tuple[list[str], list[Pick]]
) -> None:
    group_by, picks = shape
    before_upstream = upstream.count()
    status, body, suppressed = ask(kanon_sidecar, upstream, group_by, picks)
    event(f"status {status}")
    assert status < 500, body
    if not any(p.field == COUNT_FIELD for p in picks):
        assert status == 400 and body["errors"][0]["extensions"]["code"] == "ANALYTICS_SHAPE"
        assert upstream.count() == before_upstream  # refused before anything was forwarded
        return
    assert status == 200, body
    check_k_anonymous(
        body["data"]["cohort"], picks, group_by, raw_cohort(upstream, group_by), suppressed
    )


# -- refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        '{ cohort(groupBy: ["city"]) { city } }',
        '{ cohort(groupBy: ["city", "ageBand"]) { city ageBand } }',
        "{ cohort(groupBy: []) { __typename } }",
        '{ cohort(groupBy: ["city"]) { ... on CohortRow { c: city } } }',
        'query Q { cohort(groupBy: ["ageBand"]) { ...F } } fragment F on CohortRow { ageBand }',
    ],
)
def test_rows_without_count_are_refused_before_forwarding(
    kanon_sidecar: Sidecar, upstream: RecordingUpstream, query: str
) -> None:
    refused = metric(kanon_sidecar, "intelgraph_refusals_total", code="ANALYTICS_SHAPE")
    before = upstream.count()
    reply = kanon_sidecar.query(query, ANALYST)
    assert reply.status == 400, reply.raw
    assert reply.json.get("data") is None
    error = reply.json["errors"][0]
    assert error["extensions"]["code"] == "ANALYTICS_SHAPE"
    assert COUNT_FIELD in error["message"]
    assert upstream.count() == before
    assert metric(kanon_sidecar, "intelgraph_refusals_total", code="ANALYTICS_SHAPE") == refused + 1


# -- metrics and audit -------------------------------------------------------------------------


def test_metrics_and_audit_record_what_was_done(
    kanon_sidecar: Sidecar, upstream: RecordingUpstream
) -> None:
    raw = raw_cohort(upstream, ["city", "ageBand"])
    small_cells = sum(1 for r in raw if r["count"] < K)
    assert small_cells > 0
    labels = {"operation": OPERATION}
    for attempt in (1, 2):
        violations = metric(kanon_sidecar, "intelgraph_kanon_violations_total", **labels)
        suppressed = metric(kanon_sidecar, "intelgraph_kanon_suppressed_total", **labels)
        anonymised = metric(
            kanon_sidecar, "intelgraph_kanon_results_total", outcome="anonymised", **labels
        )
        name = f"KAnonMetrics{attempt}"
        reply = kanon_sidecar.query(
            cohort_query(["city", "ageBand"], [P("city"), P("ageBand"), P("count")], name=name),
            ANALYST,
        )
        assert reply.status == 200, reply.raw
        after = metric(kanon_sidecar, "intelgraph_kanon_violations_total", **labels)
        assert after - violations == small_cells  # every small raw cell counted once
        grew = metric(kanon_sidecar, "intelgraph_kanon_suppressed_total", **labels) - suppressed
        assert 0 <= grew <= SUPPRESSION_LIMIT * TEST_PEOPLE
        assert sum(r["count"] for r in reply.json["data"]["cohort"]) == TEST_PEOPLE - grew
        assert (
            metric(kanon_sidecar, "intelgraph_kanon_results_total", outcome="anonymised", **labels)
            == anonymised + 1
        )
        (entry,) = audit_entries(kanon_sidecar, name)
        assert entry.record.status == 200
        assert entry.record.purpose == "analytics"
        detail = entry.record.detail or ""
        assert detail.startswith(f"K_ANON k={K}"), detail
        assert re.fullmatch(
            rf"K_ANON k={K} small_cells={small_cells} suppressed={int(grew)}", detail
        )
    text = kanon_sidecar.get("/metrics").raw.decode()
    for name in (
        "intelgraph_kanon_violations_total",
        "intelgraph_kanon_suppressed_total",
        'intelgraph_kanon_results_total{operation="Query.cohort",outcome="anonymised"}',
    ):
        assert name in text


# -- preview: the documented backout switch ----------------------------------------------------


def test_preview_serves_the_raw_rows(upstream: RecordingUpstream, tmp_path: Path) -> None:
    preview = start_demo_sidecar(upstream.graphql_url, tmp_path / "preview", preview__enabled=True)
    try:
        for group_by, picks in (SHAPES["both"], SHAPES["aliases"], SHAPES["city"]):
            query = cohort_query(group_by, picks)
            reply = preview.query(query, ANALYST)
            assert reply.status == 200, reply.raw
            direct = post_json(upstream.graphql_url, {"query": query})
            assert reply.json == direct.json  # exactly the upstream's answer
            counts = [
                r[next(p.key for p in picks if p.field == COUNT_FIELD)]
                for r in reply.json["data"]["cohort"]
            ]
            assert min(counts) < K  # small cells included: really not anonymised
        assert metric(preview, "intelgraph_kanon_results_total", outcome="anonymised") == 0
    finally:
        preview.server.stop()


# -- exemptions by policy ----------------------------------------------------------------------

EXEMPTION = '{"Query.cohort": {"investigation"}}'
EXEMPTION_TEST = """
test_cohort_is_exempt_for_investigation_only if {
	exempt("investigation") == {"Query.cohort"}
	exempt("analytics") == set()
}
"""


def exempting_bundle(tmp_path: Path) -> Path:
    """A copy of rego/ exempting Query.cohort from k-anonymity for the investigation purpose."""
    bundle = tmp_path / "rego"
    shutil.copytree(ROOT / "rego", bundle)
    anon = bundle / "anon.rego"
    text = anon.read_text(encoding="utf-8")
    assert "exempt_operations := {}" in text
    anon.write_text(text.replace("exempt_operations := {}", f"exempt_operations := {EXEMPTION}"))
    tests = bundle / "anon_test.rego"
    tests.write_text(tests.read_text(encoding="utf-8") + EXEMPTION_TEST, encoding="utf-8")
    return bundle


def start_demo_with_policies(
    upstream: RecordingUpstream, data_dir: Path, policies: Path
) -> Sidecar:
    """A demo sidecar with its own bundle.

    `start_demo_sidecar(..., policy__policies=...)` cannot do it: `demo_config` sets
    `policy.policies` from DemoOptions after the extra settings, so the override is dropped.
    """
    where = urlsplit(upstream.graphql_url)
    options = DemoOptions(
        host="127.0.0.1",
        port=0,
        upstream_port=where.port or 80,
        data_dir=data_dir,
        catalog=ROOT / "presets" / "catalog.yaml",
        policies=policies,
        purposes=ROOT / "presets" / "purposes.yaml",
    )
    config = demo_config(
        options, extra={"audit.flush_interval_seconds": 0.05, "log_level": "WARNING"}
    )
    return Sidecar(AppThread(lambda: create_app(config)).start())


def test_an_exemption_in_the_policy_serves_raw_rows_for_its_purpose_only(
    upstream: RecordingUpstream, tmp_path: Path
) -> None:
    bundle = exempting_bundle(tmp_path)
    results = run_rego_tests(load_bundle(str(bundle)))
    assert results and all(r.outcome == "pass" for r in results), results
    assert any(r.rule.endswith("test_cohort_is_exempt_for_investigation_only") for r in results)
    running = start_demo_with_policies(upstream, tmp_path / "data", bundle)
    try:
        group_by, picks = SHAPES["both"]
        query = cohort_query(group_by, picks, name="Exempted")
        direct = post_json(upstream.graphql_url, {"query": query}).json
        investigator = demo_token("ivan", ["investigator"], "investigation")
        exempt = running.query(query, investigator)
        assert exempt.status == 200, exempt.raw
        assert exempt.json == direct
        assert min(r["count"] for r in exempt.json["data"]["cohort"]) < K

        anonymised = running.query(query, ANALYST)
        assert anonymised.status == 200, anonymised.raw
        assert anonymised.json != direct
        check_k_anonymous(
            anonymised.json["data"]["cohort"],
            picks,
            group_by,
            raw_cohort(upstream, group_by),
            int(metric(running, "intelgraph_kanon_suppressed_total")),
        )

        labels = {"operation": OPERATION}
        assert metric(running, "intelgraph_kanon_results_total", outcome="exempt", **labels) == 1
        assert (
            metric(running, "intelgraph_kanon_results_total", outcome="anonymised", **labels) == 1
        )
        details = {e.record.purpose: e.record.detail for e in audit_entries(running, "Exempted")}
        assert details["investigation"] == f"K_ANON_EXEMPT {OPERATION}"
        assert (details["analytics"] or "").startswith(f"K_ANON k={K} ")
    finally:
        running.server.stop()


def test_the_shipped_bundle_exempts_nothing(
    kanon_sidecar: Sidecar, upstream: RecordingUpstream
) -> None:
    group_by, picks = SHAPES["both"]
    query = cohort_query(group_by, picks)
    direct = post_json(upstream.graphql_url, {"query": query}).json
    for purpose in ("investigation", "analytics", "export"):
        reply = kanon_sidecar.query(query, demo_token("ivan", ["investigator"], purpose))
        assert reply.status == 200, reply.raw
        assert reply.json != direct
        assert min(r["count"] for r in reply.json["data"]["cohort"]) >= K


# -- k unreachable -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RecordingUpstream]:
    """The sample graph with 3 people: fewer than k in all."""
    database = generate_database(
        tmp_path_factory.mktemp("tiny") / "graph.sqlite3", people=3, seed=11
    )
    log: list[dict[str, Any]] = []
    server = AppThread(lambda: recording_app(database, log)).start()
    yield RecordingUpstream(server, log)
    server.stop()


def raw_cohort_of(upstream: RecordingUpstream, group_by: Sequence[str]) -> list[dict[str, Any]]:
    groups = ", ".join(f'"{g}"' for g in group_by)
    query = f"{{ cohort(groupBy: [{groups}]) {{ city ageBand count }} }}"
    return list(post_json(upstream.graphql_url, {"query": query}).json["data"]["cohort"])


@pytest.mark.parametrize(
    "query",
    [
        "query Tiny { cohort(groupBy: []) { count } }",
        "query Tiny { cohort(groupBy: []) { city ageBand count } }",
        'query Tiny { cohort(groupBy: ["city", "ageBand"]) { city ageBand count } }',
        'query Tiny { cohort(groupBy: ["city"]) { city n: count } }',
    ],
)
def test_a_population_smaller_than_k_is_refused(
    tiny_upstream: RecordingUpstream, tmp_path: Path, query: str
) -> None:
    running = start_demo_sidecar(tiny_upstream.graphql_url, tmp_path / "tiny")
    try:
        raw = post_json(tiny_upstream.graphql_url, {"query": query}).json["data"]["cohort"]
        assert sum(r.get("count", r.get("n", 0)) for r in raw) == 3
        before = tiny_upstream.count()
        reply = running.query(query, ANALYST)
        assert reply.status == 403, reply.raw
        assert reply.json.get("data") is None
        assert reply.json["errors"][0]["extensions"]["code"] == "K_ANONYMITY"
        assert tiny_upstream.count() == before + 1  # asked, then refused to pass it on
        cities = {r["city"] for r in raw_cohort_of(tiny_upstream, ["city"])}
        assert cities and not any(c.encode() in reply.raw for c in cities)  # no row leaked
        labels = {"operation": OPERATION, "outcome": "unreachable"}
        assert metric(running, "intelgraph_kanon_results_total", **labels) == 1
        assert metric(running, "intelgraph_refusals_total", code="K_ANONYMITY") == 1
        (entry,) = audit_entries(running, "Tiny")
        assert (entry.record.status, entry.record.detail) == (403, "K_ANONYMITY")
    finally:
        running.server.stop()
