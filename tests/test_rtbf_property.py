"""Property tests of the right to be forgotten over random dataset dependency graphs.

- The planner (pure): children before the parents they reference, derived data after its
  sources, exactly the datasets that can hold a subject (and the derived data built from them)
  and nothing else, the same plan whatever order the registry lists its datasets in.
- The registry refuses reference and derivation cycles (and names a real one), and references
  across regions.
- End to end on real SQLite files with real foreign keys: erasing a random subject through
  `ErasureOrchestrator` leaves every table as an independent oracle (plain Python over the
  generated rows) says, foreign keys intact; the manifest verifies and counts the oracle's
  rows; running the job again, or a second job for the same subject, changes nothing.
- A crash anywhere (at a step: before its erase, inside its transaction, after its commit; or
  in the orchestrator: after a region reported, before the manifest is signed) stops the job,
  and a run without the crash resumes it to exactly the oracle's tables and rows.
- `test_bug_*`: library bugs these properties found (now fixed), one small example each.

The graphs are generated parents first: a dataset references (or is derived from) datasets
generated before it, so generation order is a topological order the oracles rely on.
"""

from __future__ import annotations

import random
import re
import sqlite3
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from intelgraph_privacy.rtbf import (
    DatasetRegistry,
    ErasureJob,
    ErasureOrchestrator,
    ErasurePlan,
    ErasureRequestError,
    PlanStep,
    RegistryError,
    plan_erasure,
    registry_from_mapping,
    verify_manifest,
)
from intelgraph_privacy.store import Store, open_store
from intelgraph_privacy.tokens import generate_signing_key, public_jwks

TENANT = "acme"
OTHER = "globex"
SCOPE = f"tenant:{TENANT}"
REGIONS = ("eu", "us")
HASH_KEY = b"rtbf-property-hash-key-0123456789"
KEYS = {name: generate_signing_key(kid=f"{name}-prop") for name in (*REGIONS, "manifest")}
JWKS = public_jwks(*KEYS.values())

PLANNER = settings(max_examples=60, deadline=None)
END_TO_END = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

#: A dataset's tenants (None: a tenant column names each row's tenant).
Tenancy = tuple[str, ...] | None
ANY_TENANCY: tuple[Tenancy, ...] = ((TENANT,), ("*",), (OTHER,), None, (TENANT, OTHER))
# With data, rows that reference a subject's rows are the subject's tenant's: a dataset with
# references holds the erased tenant (a globex row pointing at an acme row makes no sense, and
# its foreign key would stop the erasure); a derived dataset built from acme rows holds acme.
CHILD_TENANCY: tuple[Tenancy, ...] = ((TENANT,), ("*",), (TENANT, OTHER))
DERIVED_TENANCY: tuple[Tenancy, ...] = ((TENANT,), ("*",))

Row = dict[str, Any]
Model = dict[str, list[Row]]


# -- the generated graphs ------------------------------------------------------------------------


@dataclass(frozen=True)
class Ref:
    """A reference: `column` holds the key of a row of dataset `parent`."""

    column: str
    parent: str
    on_erase: str  # "delete" | "null"


@dataclass(frozen=True)
class Spec:
    """One generated dataset: its table is `t_<name>`."""

    name: str
    datastore: str
    region: str
    tenancy: Tenancy
    subject: bool = False  # a subject key column `sid`
    key: str | None = None  # "rid" (the row id), "sid" (the subject key, unique), None (derived)
    erase: str = "delete"
    anonymise: tuple[str, ...] = ()
    refs: tuple[Ref, ...] = ()
    sources: tuple[str, ...] = ()  # derived from these

    @property
    def table(self) -> str:
        return f"t_{self.name}"

    @property
    def derived(self) -> bool:
        return bool(self.sources)

    def holds(self, tenant: str) -> bool:
        return self.tenancy is None or "*" in self.tenancy or tenant in self.tenancy

    @property
    def columns(self) -> tuple[str, ...]:
        if self.derived:
            return ("bucket", "n")
        columns = ["rid"]
        if self.subject:
            columns.append("sid")
        if self.tenancy is None:
            columns.append("tenant")
        columns += [r.column for r in self.refs]
        return (*columns, "bucket", "note")


@dataclass(frozen=True)
class Graph:
    """Datastores (name -> region) and datasets, parents and sources first."""

    stores: Mapping[str, str]
    specs: tuple[Spec, ...]

    def spec(self, name: str) -> Spec:
        return next(s for s in self.specs if s.name == name)

    def replaced(self, spec: Spec) -> Graph:
        return Graph(self.stores, tuple(spec if s.name == spec.name else s for s in self.specs))


@st.composite
def graphs(draw: st.DrawFn, *, for_data: bool) -> Graph:
    """2-7 datasets over 1-2 regions of 1-2 datastores each; references stay in their region,
    derivations in their datastore, and point only at datasets drawn before (acyclic)."""
    stores: dict[str, str] = {}
    for region in REGIONS[: draw(st.integers(1, 2))]:
        for suffix in "ab"[: draw(st.integers(1, 2))]:
            stores[f"{region}-{suffix}"] = region
    count = draw(st.integers(2, 7))
    # Names in a random order, so that name order (the planner's tie-break) is not generation order.
    names = draw(st.permutations("abcdefg"))[:count]
    specs: list[Spec] = []
    for name in names:
        store = draw(st.sampled_from(sorted(stores)))
        region = stores[store]
        parents = [s.name for s in specs if s.region == region and not s.derived]
        sources = [s.name for s in specs if s.datastore == store]
        kinds = ["subject", "plain"]
        kinds += ["refs", "subject+refs"] if parents else []
        kinds += ["derived"] if sources else []
        # With data, the first dataset has the subject's rows: most worlds have some to erase.
        kind = "subject" if for_data and not specs else draw(st.sampled_from(kinds))
        if kind == "derived":
            tenancy = draw(st.sampled_from(DERIVED_TENANCY if for_data else ANY_TENANCY))
            picked = draw(st.lists(st.sampled_from(sources), min_size=1, max_size=2, unique=True))
            specs.append(Spec(name, store, region, tenancy, sources=tuple(picked)))
            continue
        refs: list[Ref] = []
        if kind in ("refs", "subject+refs"):
            count_refs = draw(st.integers(1, 2))
            for index in range(count_refs):
                parent = draw(st.sampled_from(parents))
                on_erase = draw(st.sampled_from(("delete", "null")))
                refs.append(Ref(f"ref{index}", parent, on_erase))
        subject = kind.startswith("subject")
        tenancy = draw(st.sampled_from(CHILD_TENANCY if for_data and refs else ANY_TENANCY))
        key = draw(st.sampled_from(("rid", "sid"))) if subject else "rid"
        erase = "delete"
        anonymise: tuple[str, ...] = ()
        if subject and draw(st.booleans()):
            erase = "anonymise"
            anonymise = draw(st.sampled_from((("note",), ("note", "bucket"))))
        specs.append(
            Spec(name, store, region, tenancy, subject, key, erase, anonymise, tuple(refs))
        )
    return Graph(stores, tuple(specs))


def graph_spec(specs: Sequence[Spec], name: str) -> Spec:
    return next(s for s in specs if s.name == name)


def derived_query(graph: Graph, spec: Spec) -> str:
    """Rows per bucket of the sources (a derived source contributes its counts)."""
    parts = [
        f"SELECT bucket, {'n' if graph.spec(s).derived else '1'} AS w FROM {graph.spec(s).table}"
        for s in spec.sources
    ]
    return f"SELECT bucket, SUM(w) FROM ({' UNION ALL '.join(parts)}) AS u GROUP BY bucket"


def registry_mapping(
    graph: Graph, urls: Mapping[str, str] | None = None, order: Sequence[str] | None = None
) -> dict[str, Any]:
    """The registry of `graph` as YAML would decode it (datasets listed in `order`, if given)."""
    urls = urls or {}
    datastores = {
        store: {"url": urls.get(store, f"sqlite:////nonexistent/{store}.db"), "region": region}
        for store, region in graph.stores.items()
    }
    datasets: dict[str, Any] = {}
    for name in order or [s.name for s in graph.specs]:
        spec = graph.spec(name)
        entry: dict[str, Any] = {"datastore": spec.datastore, "table": spec.table}
        if spec.tenancy is None:
            entry["tenant_column"] = "tenant"
        else:
            entry["tenants"] = list(spec.tenancy)
        if spec.derived:
            entry["derived"] = {"sources": list(spec.sources), "query": derived_query(graph, spec)}
        else:
            entry["key"] = spec.key
            if spec.subject:
                entry["subject_key"] = "sid"
            if spec.erase == "anonymise":
                entry["erase"] = "anonymise"
                entry["anonymise"] = list(spec.anonymise)
            if spec.refs:
                entry["references"] = [
                    {"column": r.column, "dataset": r.parent, "on_erase": r.on_erase}
                    for r in spec.refs
                ]
        datasets[name] = entry
    return {"datastores": datastores, "datasets": datasets}


# -- 1. the planner ------------------------------------------------------------------------------


def expected_scope(graph: Graph, tenant: str) -> tuple[set[str], set[str]]:
    """The oracle's (datasets to erase, derived datasets to rebuild) for a subject of `tenant`."""
    holding: set[str] = set()
    rebuilt: set[str] = set()
    for spec in graph.specs:  # parents and sources first: one pass is enough
        if not spec.holds(tenant):
            continue
        if spec.derived:
            if any(s in holding or s in rebuilt for s in spec.sources):
                rebuilt.add(spec.name)
        elif spec.subject or any(r.parent in holding for r in spec.refs):
            holding.add(spec.name)
    return holding, rebuilt


def plan_steps(plan: ErasurePlan) -> list[PlanStep]:
    """Every step of the plan, region by region (the order the orchestrator runs them in)."""
    return [step for region in sorted(plan.regions) for step in plan.regions[region]]


@PLANNER
@given(
    graph=graphs(for_data=False),
    tenant=st.sampled_from((TENANT, OTHER)),
    shuffler=st.randoms(use_true_random=False),
)
def test_the_plan_orders_and_covers_exactly_the_datasets_that_can_hold_the_subject(
    graph: Graph, tenant: str, shuffler: random.Random
) -> None:
    registry = registry_from_mapping(registry_mapping(graph))
    plan = plan_erasure(registry, tenant)
    holding, rebuilt = expected_scope(graph, tenant)
    steps = plan_steps(plan)
    assert plan.tenant == tenant
    assert plan.datasets == tuple(s.dataset for s in steps)
    # Exactly once each, and nothing else.
    assert sorted(s.dataset for s in steps if s.kind == "erase") == sorted(holding)
    assert sorted(s.dataset for s in steps if s.kind == "recompute") == sorted(rebuilt)
    for region, region_steps in plan.regions.items():
        assert region_steps, f"region {region} listed with no steps"
        position = {step.dataset: i for i, step in enumerate(region_steps)}
        for step in region_steps:
            spec = graph.spec(step.dataset)
            assert step.region == region == spec.region
            assert step.kind == ("recompute" if spec.derived else "erase")
            for ref in spec.refs:  # the referencing child before the referenced parent
                if ref.parent in position:
                    assert position[step.dataset] < position[ref.parent], (step, ref)
            for source in spec.sources:  # a derived dataset after its sources, erased or rebuilt
                if source in position:
                    assert position[source] < position[step.dataset], (step, source)
    # Deterministic: the same plan again, and from the same registry listed in another order.
    assert plan_erasure(registry, tenant) == plan
    order = [s.name for s in graph.specs]
    shuffler.shuffle(order)
    reordered = registry_from_mapping(registry_mapping(graph, order=order))
    assert plan_erasure(reordered, tenant) == plan


# -- 2. the registry's checks --------------------------------------------------------------------


def _reachable(edges: Mapping[str, Sequence[str]], start: str) -> list[str]:
    """`start` and every node reachable from it along `edges`, in a stable order."""
    seen = [start]
    for node in seen:
        seen.extend(n for n in edges.get(node, ()) if n not in seen)
    return seen


def _named_cycle(message: str) -> list[str]:
    match = re.search(r"form a cycle: (.+?) \(", message)
    assert match, message
    return match.group(1).split(" -> ")


@PLANNER
@given(graph=graphs(for_data=False), data=st.data())
def test_a_reference_cycle_is_refused_and_named(graph: Graph, data: st.DataObject) -> None:
    edges = {s.name: [r.parent for r in s.refs] for s in graph.specs}
    # A reference from any dataset the start reaches (itself included) back to the start.
    start = data.draw(st.sampled_from([s.name for s in graph.specs if not s.derived]))
    back = graph.spec(data.draw(st.sampled_from(_reachable(edges, start))))
    on_erase = data.draw(st.sampled_from(("delete", "null")))
    looped = replace(back, refs=(*back.refs, Ref(f"ref{len(back.refs)}", start, on_erase)))
    cyclic = graph.replaced(looped)
    with pytest.raises(RegistryError, match="cycle") as refused:
        registry_from_mapping(registry_mapping(cyclic))
    cycle = _named_cycle(str(refused.value))
    new_edges = {s.name: [r.parent for r in s.refs] for s in cyclic.specs}
    assert cycle[0] == cycle[-1] and len(cycle) >= 2
    assert all(b in new_edges[a] for a, b in pairwise(cycle)), cycle


@PLANNER
@given(graph=graphs(for_data=False), data=st.data())
def test_a_derivation_cycle_is_refused_and_named(graph: Graph, data: st.DataObject) -> None:
    derived = [s.name for s in graph.specs if s.derived]
    assume(derived)
    edges = {s.name: list(s.sources) for s in graph.specs}
    start = data.draw(st.sampled_from(derived))
    # Only derived datasets take sources: close the loop at one the start is built from.
    candidates = [n for n in _reachable(edges, start) if graph.spec(n).derived]
    back = graph.spec(data.draw(st.sampled_from(candidates)))
    cyclic = graph.replaced(replace(back, sources=(*back.sources, start)))
    with pytest.raises(RegistryError, match="cycle") as refused:
        registry_from_mapping(registry_mapping(cyclic))
    cycle = _named_cycle(str(refused.value))
    new_edges = {s.name: list(s.sources) for s in cyclic.specs}
    assert cycle[0] == cycle[-1]
    assert all(b in new_edges[a] for a, b in pairwise(cycle)), cycle


@PLANNER
@given(graph=graphs(for_data=False), data=st.data())
def test_a_reference_across_regions_is_refused(graph: Graph, data: st.DataObject) -> None:
    plain = [s for s in graph.specs if not s.derived]
    pairs = [(c.name, p.name) for c in plain for p in plain if c.region != p.region]
    assume(pairs)
    child_name, parent_name = data.draw(st.sampled_from(pairs))
    child = graph.spec(child_name)
    crossing = replace(
        child, refs=(*child.refs, Ref(f"ref{len(child.refs)}", parent_name, "delete"))
    )
    with pytest.raises(RegistryError, match="cannot cross regions") as refused:
        registry_from_mapping(registry_mapping(graph.replaced(crossing)))
    assert f"datasets.{child_name}" in str(refused.value)


# -- 3. and 4. end to end ------------------------------------------------------------------------


@dataclass(frozen=True)
class WorldCase:
    """A generated graph, its rows, and the subject to erase."""

    graph: Graph
    model: Model
    subject: str


def derive(graph: Graph, model: Model, spec: Spec) -> list[Row]:
    """What `derived_query` returns over the rows of `model` (rows per bucket, summed)."""
    sums: dict[Any, int] = {}
    for name in spec.sources:
        source = graph.spec(name)
        for row in model[name]:
            sums[row["bucket"]] = sums.get(row["bucket"], 0) + (row["n"] if source.derived else 1)
    return [{"bucket": bucket, "n": n} for bucket, n in sums.items()]


@st.composite
def worlds(draw: st.DrawFn) -> WorldCase:
    """A graph with rows: subject ids from a small pool (a subject appears in several datasets),
    references to random rows of their parents (or NULL)."""
    graph = draw(graphs(for_data=True))
    pool = [f"S-{i:02d}" for i in range(draw(st.integers(3, 15)))]
    model: Model = {}
    for spec in graph.specs:
        if spec.derived:
            model[spec.name] = derive(graph, model, spec)
            continue
        if spec.key == "sid":  # the subject key is the row key: one row per subject
            subjects: list[str | None] = list(
                draw(st.lists(st.sampled_from(pool), unique=True, max_size=6))
            )
        elif spec.subject:
            subjects = draw(st.lists(st.sampled_from([*pool, None]), max_size=6))
        else:
            subjects = [None] * draw(st.integers(0, 6))
        rows = []
        for index, sid in enumerate(subjects, start=1):
            row: Row = {"rid": index}
            if spec.subject:
                row["sid"] = sid
            if spec.tenancy is None:
                row["tenant"] = draw(st.sampled_from((TENANT, OTHER)))
            for ref in spec.refs:
                parent = graph.spec(ref.parent)
                keys = [r[str(parent.key)] for r in model[ref.parent]]
                row[ref.column] = draw(st.sampled_from([*keys, None]))
            row["bucket"] = draw(st.integers(0, 2))
            row["note"] = f"{spec.name}-{index}"
            rows.append(row)
        model[spec.name] = rows
    # Mostly a subject whose id is in some dataset of the tenant (the others are rows of 0).
    present = {
        row["sid"]
        for spec in graph.specs
        if spec.subject and spec.holds(TENANT)
        for row in model[spec.name]
        if row["sid"] is not None
    }
    return WorldCase(graph, model, draw(st.sampled_from(sorted(present) or pool)))


@dataclass
class Expected:
    """The oracle's tables after the erasure, and each dataset's rows of the subject."""

    tables: dict[str, list[tuple[Any, ...]]]
    rows: dict[str, int]


def erasure_oracle(case: WorldCase) -> Expected:
    """What every table holds once the subject (of TENANT) is erased, from the model alone.

    A row is the subject's when it holds the subject's id (in a row of the tenant), or when a
    delete-reference points at a row of the subject; such rows are deleted, or anonymised (the
    registered columns, the subject key and the links to the subject's rows nulled). Null-references
    to them are set NULL. Derived tables are computed again from what remains. A row counts once
    for its dataset however many of its columns pointed at the subject.
    """
    graph, model, subject = case.graph, case.model, case.subject
    final: Model = {}
    matched_keys: dict[str, set[Any]] = {}  # dataset -> the keys of the subject's rows
    counts: dict[str, int] = {}
    for spec in graph.specs:  # parents first: their keys are known when children need them
        if spec.derived:
            final[spec.name] = derive(graph, final, spec)
            continue
        matched_keys[spec.name] = set()
        if not spec.holds(TENANT):
            final[spec.name] = [dict(r) for r in model[spec.name]]
            continue
        kept, touched = [], 0
        for row in model[spec.name]:
            ours = spec.tenancy is not None or row["tenant"] == TENANT

            def points_at_subject(ref: Ref, row: Row = row) -> bool:
                value = row[ref.column]
                return value is not None and value in matched_keys[ref.parent]

            hit = ours and (
                (spec.subject and row["sid"] == subject)
                or any(points_at_subject(r) for r in spec.refs if r.on_erase == "delete")
            )
            links = [r.column for r in spec.refs if r.on_erase == "null" and points_at_subject(r)]
            links = links if ours else []
            touched += bool(hit or links)
            if hit:
                matched_keys[spec.name].add(row[str(spec.key)])
                if spec.erase == "delete":
                    continue
            after = dict(row)
            for column in links:
                after[column] = None
            if hit:  # anonymised: no longer the subject's, nor linked to the subject's rows
                cut = [
                    r.column for r in spec.refs if r.on_erase == "delete" and points_at_subject(r)
                ]
                for column in (*spec.anonymise, "sid", *cut):
                    after[column] = None
            kept.append(after)
        final[spec.name] = kept
        counts[spec.name] = touched
    tables = {
        s.name: _sorted([tuple(r[c] for c in s.columns) for r in final[s.name]])
        for s in graph.specs
    }
    return Expected(tables, counts)


def _sort_key(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple((value is not None, str(value)) for value in row)


def _sorted(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return sorted(rows, key=_sort_key)


def _ddl(graph: Graph, spec: Spec) -> str:
    """The table, with real foreign keys for references within its datastore."""
    if spec.derived:
        return f"CREATE TABLE {spec.table} (bucket INTEGER, n INTEGER NOT NULL)"
    columns = ["rid INTEGER PRIMARY KEY"]
    if spec.subject:
        columns.append("sid TEXT UNIQUE" if spec.key == "sid" else "sid TEXT")
    if spec.tenancy is None:
        columns.append("tenant TEXT NOT NULL")
    for ref in spec.refs:
        parent = graph.spec(ref.parent)
        kind = "TEXT" if parent.key == "sid" else "INTEGER"
        # SQLite cannot enforce a foreign key into another database file.
        same_file = parent.datastore == spec.datastore
        foreign = f" REFERENCES {parent.table}({parent.key})" if same_file else ""
        columns.append(f"{ref.column} {kind}{foreign}")
    columns += ["bucket INTEGER", "note TEXT"]
    return f"CREATE TABLE {spec.table} ({', '.join(columns)})"


def _connect(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA foreign_keys = ON")
    return connection


def create_world(case: WorldCase, directory: Path) -> dict[str, Path]:
    """A SQLite file per datastore with the tables and rows of `case`; datastore -> file."""
    files = {store: directory / f"{store}.sqlite3" for store in case.graph.stores}
    for store, path in files.items():
        connection = _connect(path)
        try:
            with connection:  # foreign keys on: the generated rows must satisfy them
                for spec in case.graph.specs:
                    if spec.datastore != store:
                        continue
                    connection.execute(_ddl(case.graph, spec))
                    marks = ", ".join("?" for _ in spec.columns)
                    connection.executemany(
                        f"INSERT INTO {spec.table} ({', '.join(spec.columns)}) VALUES ({marks})",
                        [tuple(r[c] for c in spec.columns) for r in case.model[spec.name]],
                    )
        finally:
            connection.close()
    return files


def snapshot(graph: Graph, files: Mapping[str, Path]) -> dict[str, list[tuple[Any, ...]]]:
    """Every table's rows, sorted; and every foreign key still holds."""
    tables = {}
    for store, path in files.items():
        connection = _connect(path)
        try:
            assert connection.execute("PRAGMA foreign_key_check").fetchall() == []
            for spec in graph.specs:
                if spec.datastore == store:
                    sql = f"SELECT {', '.join(spec.columns)} FROM {spec.table}"
                    tables[spec.name] = _sorted([tuple(r) for r in connection.execute(sql)])
        finally:
            connection.close()
    return {s.name: tables[s.name] for s in graph.specs}


def orchestrator(
    store: Store,
    registry: DatasetRegistry,
    hook: Callable[[str, PlanStep | None], None] | None = None,
) -> ErasureOrchestrator:
    return ErasureOrchestrator(
        store,
        registry,
        hash_key=HASH_KEY,
        region_keys={r: KEYS[r] for r in REGIONS},
        manifest_key=KEYS["manifest"],
        policy_version="prop+r0",
        hook=hook,
    )


def _op(spec: Spec) -> str:
    if not spec.subject and spec.refs and all(r.on_erase == "null" for r in spec.refs):
        return "unlink"
    return "anonymise" if spec.erase == "anonymise" else "delete"


def check_manifest(
    job: ErasureJob,
    graph: Graph,
    plan: ErasurePlan,
    expected: Expected,
    *,
    rows: Mapping[str, int] | None = None,
    attempts: Mapping[str, int] | None = None,
) -> None:
    """The job's manifest verifies, lists the plan's steps, and counts `rows` (the oracle's)."""
    assert job.status == "done", job.error
    assert job.manifest is not None
    check = verify_manifest(job.manifest.encode(), JWKS)
    assert check.kids == ("manifest-prop",)
    assert dict(check.regions) == {r: (f"{r}-prop",) for r in plan.regions}
    actions = check.manifest["actions"]
    assert [(a["region"], a["dataset"]) for a in actions] == [
        (s.region, s.dataset) for s in plan_steps(plan)
    ]
    counts = expected.rows if rows is None else rows
    for action in actions:
        name = action["dataset"]
        spec = graph.spec(name)
        assert action["verified"] is True and action["remaining"] == 0, action
        assert action["attempts"] == (attempts or {}).get(name, 1), action
        if spec.derived:
            assert action["op"] == "recompute"
            assert action["rows"] == len(expected.tables[name]), action
        else:
            assert action["op"] == _op(spec), action
            assert action["rows"] == counts.get(name, 0), action


@contextmanager
def world(case: WorldCase) -> Iterator[tuple[dict[str, Path], DatasetRegistry, Store]]:
    """The case's SQLite files, its registry over them, and a store, in a temporary directory."""
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        files = create_world(case, directory)
        urls = {store: f"sqlite:///{path}" for store, path in files.items()}
        registry = registry_from_mapping(registry_mapping(case.graph, urls))
        with open_store(f"sqlite:///{directory / 'store.sqlite3'}") as store:
            yield files, registry, store


def erase_and_replay(case: WorldCase) -> None:
    """Erase the case's subject; check the tables and the manifest; replay; check again."""
    expected = erasure_oracle(case)
    with world(case) as (files, registry, store):
        plan = plan_erasure(registry, TENANT)
        runner = orchestrator(store, registry)
        if not plan.regions:  # no dataset holds the tenant: nothing to erase, refused
            with pytest.raises(ErasureRequestError):
                runner.request(case.subject, SCOPE, requested_by="prop")
            return
        job, created = runner.request(case.subject, SCOPE, requested_by="prop")
        assert created and job.regions == tuple(sorted(plan.regions))
        done = runner.run(job.id)
        assert done.status == "done", done.error
        assert snapshot(case.graph, files) == expected.tables
        check_manifest(done, case.graph, plan, expected)

        # 4. Replays: the same job again, and a second job for the same subject.
        again = runner.run(job.id)
        assert again.status == "done" and again.manifest == done.manifest
        assert snapshot(case.graph, files) == expected.tables
        second, created = runner.request(case.subject, SCOPE, requested_by="prop")
        assert created and second.id != job.id
        redone = runner.run(second.id)
        assert snapshot(case.graph, files) == expected.tables
        check_manifest(redone, case.graph, plan, expected, rows={})


def _describe_case(case: WorldCase, plan: ErasurePlan, expected: Expected) -> None:
    """Hypothesis events (`--hypothesis-show-statistics`): what the examples exercised."""
    touched = sum(expected.rows.values())
    event(f"subject rows touched: {'0' if not touched else '1-5' if touched <= 5 else '6+'}")
    event(f"planned steps: {len(plan_steps(plan))}, regions: {len(plan.regions)}")
    if not plan.regions:
        event("no dataset holds the tenant")
        return
    specs = case.graph.specs
    stores = {s.name: s.datastore for s in specs}
    shapes = {
        "a rebuild": any(s.kind == "recompute" for s in plan_steps(plan)),
        "an anonymised dataset": any(s.erase == "anonymise" for s in specs),
        "a null reference": any(r.on_erase == "null" for s in specs for r in s.refs),
        "a tenant column": any(s.tenancy is None for s in specs),
        "a reference across datastores": any(
            stores[r.parent] != s.datastore for s in specs for r in s.refs
        ),
    }
    for shape, present in shapes.items():
        event(f"with {shape}: {present}")


@END_TO_END
@given(case=worlds())
def test_an_erasure_leaves_exactly_what_the_oracle_says_and_replays_change_nothing(
    case: WorldCase,
) -> None:
    plan = plan_erasure(registry_from_mapping(registry_mapping(case.graph)), TENANT)
    _describe_case(case, plan, erasure_oracle(case))
    erase_and_replay(case)


#: Where a crash can happen: at a step (the executor's hook events; a rebuild has no separate
#: commit event) or in the orchestrator (after a region reported, before the manifest is signed).
STEP_EVENTS = {
    "erase": ("before_erase", "before_commit", "after_commit"),
    "recompute": ("before_erase", "after_commit"),
}


@dataclass(frozen=True)
class CrashPoint:
    """Crash at the `occurrence`-th call of the hook with (event, step)."""

    event: str
    step: PlanStep | None
    occurrence: int = 1


def crash_points(plan: ErasurePlan) -> list[CrashPoint]:
    """Every place a crash can happen in a run of `plan`, in order."""
    points = [
        CrashPoint(event, step) for step in plan_steps(plan) for event in STEP_EVENTS[step.kind]
    ]
    points += [CrashPoint("region_reported", None, n + 1) for n in range(len(plan.regions))]
    return [*points, CrashPoint("before_finalize", None)]


def crash_and_resume(case: WorldCase, choose: Callable[[list[CrashPoint]], CrashPoint]) -> None:
    """Erase the case's subject with a crash at the point `choose` picks; the job stops (failed
    at a step; left running when the orchestrator itself dies); a run without the crash resumes
    it to the oracle's tables, and a manifest with the oracle's rows."""
    expected = erasure_oracle(case)
    with world(case) as (files, registry, store):
        plan = plan_erasure(registry, TENANT)
        assume(plan.regions)
        point = choose(crash_points(plan))
        calls: list[tuple[str, PlanStep | None]] = []

        def crash_once(event: str, step: PlanStep | None) -> None:
            calls.append((event, step))
            target = (point.event, point.step)
            if (event, step) == target and calls.count(target) == point.occurrence:
                raise RuntimeError("simulated crash")

        broken = orchestrator(store, registry, hook=crash_once)
        job, _ = broken.request(case.subject, SCOPE, requested_by="prop")
        if point.step is not None:
            failed = broken.run(job.id)
            assert failed.status == "failed", failed.status
            assert (point.event, point.step) in calls, f"failed before the crash: {failed.error}"
            assert f"{point.step.dataset} ({point.step.region})" in str(failed.error)
            assert case.subject not in str(failed.error)
        else:  # not a step's failure: the worker dies, the job is left running
            with pytest.raises(RuntimeError, match="simulated crash"):
                broken.run(job.id)

        resumed = orchestrator(store, registry).run(job.id)
        assert resumed.status == "done", resumed.error
        assert snapshot(case.graph, files) == expected.tables
        attempts = {point.step.dataset: 2} if point.step is not None else {}
        check_manifest(resumed, case.graph, plan, expected, attempts=attempts)


@END_TO_END
@given(case=worlds(), data=st.data())
def test_a_crash_anywhere_is_resumed_to_exactly_the_oracles_result(
    case: WorldCase, data: st.DataObject
) -> None:
    crash_and_resume(case, lambda points: data.draw(st.sampled_from(points), label="crash"))


# -- library bugs the properties found (fixed), one small example each ----------------------------


def _case(specs: Sequence[Spec], model: Model, subject: str) -> WorldCase:
    stores = {s.datastore: s.region for s in specs}
    return WorldCase(Graph(stores, tuple(specs)), model, subject)


def _rows(name: str, *rows: Row) -> list[Row]:
    """Rows with ids 1, 2, ..., a bucket and a note."""
    return [{"rid": i, **row, "bucket": 0, "note": f"{name}-{i}"} for i, row in enumerate(rows, 1)]


def test_bug_a_row_anonymised_through_a_delete_reference_is_erased() -> None:
    """Bug 1. A dataset that anonymises (`erase: anonymise`) and has a delete-reference whose
    column is not its subject key: its rows pointing at the subject's rows are anonymised, but
    the reference column is left pointing at them, so the step's verification finds them again
    ("1 rows of the subject remain after erasing ... run the job again"): the job fails, and
    every rerun fails the same way (and with a foreign key the parent's rows could not be
    deleted either). Either the registry refuses the combination, or the anonymised row loses
    the link too (what the oracle expects)."""
    person = Spec("person", "eu-a", "eu", (TENANT,), subject=True, key="sid")
    review = Spec(
        "review",
        "eu-a",
        "eu",
        (TENANT,),
        subject=True,
        key="rid",
        erase="anonymise",
        anonymise=("note",),
        refs=(Ref("ref0", "person", "delete"),),  # what the review is about
    )
    case = _case(
        [person, review],
        {
            "person": _rows("person", {"sid": "S-1"}, {"sid": "S-2"}),
            "review": _rows("review", {"sid": "S-2", "ref0": "S-1"}),  # S-2 wrote about S-1
        },
        "S-1",
    )
    try:
        registry_from_mapping(registry_mapping(case.graph))
    except RegistryError:
        return  # refusing the combination is a fix too
    erase_and_replay(case)


def test_bug_a_parent_that_does_not_hold_the_tenant_matches_no_rows() -> None:
    """Bug 2. The executor matches a dataset's rows through every referenced dataset, also one
    that does not hold the tenant (and that the plan therefore neither erases nor counts as
    holding the subject): it scans that dataset for the subject's id without regard to tenant,
    and deletes the rows pointing at another tenant's subject with the same id. The planner
    and the executor disagree; the executor should take no keys from a parent that does not
    hold the tenant (`RegionExecutor`'s `_match`: skip references whose dataset's
    `holds_tenant(tenant)` is false, as the planner does)."""
    customer = Spec("customer", "eu-a", "eu", (TENANT,), subject=True, key="rid")
    partner = Spec("partner", "eu-a", "eu", (OTHER,), subject=True, key="rid")
    orders = Spec(
        "orders",
        "eu-a",
        "eu",
        (TENANT,),
        key="rid",
        refs=(Ref("ref0", "customer", "delete"), Ref("ref1", "partner", "delete")),
    )
    case = _case(
        [customer, partner, orders],
        {
            "customer": _rows("customer", {"sid": "S-2"}),
            "partner": _rows("partner", {"sid": "S-1"}),  # globex's S-1, not acme's
            "orders": _rows("orders", {"ref0": 1, "ref1": 1}),
        },
        "S-1",  # acme's S-1 has no rows: nothing may change
    )
    erase_and_replay(case)


def test_bug_a_row_both_deleted_and_unlinked_counts_once_in_the_manifest() -> None:
    """Bug 3. A row matched by its subject key or a delete-reference and also by a
    null-reference (or by two null-references) is counted once per match: `rows_found` adds
    the deleted rows and the unlinked links (`_match`: `match.rows` + `match.unlink`, one count
    per reference column), so the manifest says more rows than the table held. Here 3 rows of
    `knows` are the subject's (2 deleted, 1 unlinked); the manifest says 4."""
    person = Spec("person", "eu-a", "eu", (TENANT,), subject=True, key="sid")
    knows = Spec(
        "knows",
        "eu-a",
        "eu",
        (TENANT,),
        key="rid",
        refs=(Ref("ref0", "person", "delete"), Ref("ref1", "person", "null")),
    )
    case = _case(
        [person, knows],
        {
            "person": _rows("person", {"sid": "S-1"}, {"sid": "S-2"}),
            "knows": _rows(
                "knows",
                {"ref0": "S-1", "ref1": "S-1"},  # deleted (and its link nulled first)
                {"ref0": "S-2", "ref1": "S-1"},  # unlinked
                {"ref0": "S-1", "ref1": "S-2"},  # deleted
            ),
        },
        "S-1",
    )
    assert erasure_oracle(case).rows["knows"] == 3
    erase_and_replay(case)
