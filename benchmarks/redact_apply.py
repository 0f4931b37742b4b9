"""Benchmark: redaction plan time and apply time next to the JSON round-trip floor.

Plan time is measured cold (a fresh Redactor and a fresh PolicyEngine, so the document is parsed,
validated and shaped and the decision is evaluated on regorus), for a new principal on a warm
Redactor (document and shape cached, decision evaluated), cached (plan cache hit) and for the
decision lookup alone on a warm cache.

Apply time is `orjson.loads` -> `Redactor.apply` -> `orjson.dumps` of a synthetic upstream
response of about 1 KB, 20 KB and 1 MB, measured interleaved with the floor
`orjson.dumps(orjson.loads(raw))` of the same bytes, so the ratio of the two is measured side by
side on the same (noisy) machine.

Targets: apply (decode and encode included) <= 2x the floor at 20 KB and 1 MB; cached plan and
decision lookup <= 50 us.

    RUST_BACKTRACE=0 .venv/bin/python benchmarks/redact_apply.py            # print the tables
    RUST_BACKTRACE=0 .venv/bin/python benchmarks/redact_apply.py --write    # and update README
    RUST_BACKTRACE=0 .venv/bin/python benchmarks/redact_apply.py --quick    # smoke test
    RUST_BACKTRACE=0 .venv/bin/python benchmarks/redact_apply.py --profile  # cProfile of apply
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import os
import platform
import pstats
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from _report import command_line, write_section

from intelgraph_privacy import (
    Catalog,
    PolicyEngine,
    Principal,
    Redactor,
    load_catalog,
    load_schema,
)
from intelgraph_privacy.redact import Plan
from intelgraph_privacy.redact.native import native_walker

REPO = Path(__file__).resolve().parents[1]
SCHEMA_PATH = REPO / "presets" / "demo.graphql"
CATALOG_PATH = REPO / "presets" / "catalog.yaml"
POLICY_PATH = REPO / "rego"
README_PATH = REPO / "benchmarks" / "README.md"
BEGIN_MARKER = "<!-- redact_apply:begin -->"
END_MARKER = "<!-- redact_apply:end -->"

#: BENCHMARK ONLY: a fixed pseudonym key so runs are comparable. Never use it for real data.
PSEUDONYM_KEY = b"intelgraph-benchmark-pseudonym-key"

APPLY_TARGET_RATIO = 2.0
APPLY_TARGET_SIZES = ("20 KB", "1 MB")
LOOKUP_TARGET_US = 50.0

PRINCIPALS: dict[str, Principal] = {
    "analyst": Principal(sub="ana", tenant="bench", roles=("analyst",), purpose="investigation"),
    "investigator": Principal(
        sub="ivan", tenant="bench", roles=("investigator",), purpose="investigation"
    ),
    "high-clearance+investigator": Principal(
        sub="hana",
        tenant="bench",
        roles=("high-clearance", "investigator"),
        purpose="investigation",
    ),
}

QUERY_TEMPLATE = """query Dossier {
  people(first: %d) {
    id name ssn email phone dob age city country riskScore aliases
    employer { id name registrationNumber }
  }
  search(text: "Harbor") {
    ... on Person { id name }
    ... on Organization { id name country }
    ... on Case { id reference title status openedOn }
  }
}"""


@dataclass(frozen=True, slots=True)
class Size:
    """One response size to measure, with its repetitions (full run, quick run)."""

    label: str
    target_bytes: int
    reps: int
    quick_reps: int


SIZES = (
    Size("1 KB", 1_024, 4_000, 50),
    Size("20 KB", 20 * 1_024, 1_500, 20),
    Size("1 MB", 1_024 * 1_024, 60, 3),
)


@dataclass(frozen=True, slots=True)
class Stats:
    """Median and 90th percentile of a sample, in nanoseconds."""

    median: float
    p90: float

    @classmethod
    def of(cls, samples: list[int] | list[float]) -> Stats:
        ordered = sorted(samples)
        p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
        return cls(statistics.median(ordered), p90)


@dataclass(frozen=True, slots=True)
class Workload:
    """A query and a synthetic upstream response of about one size."""

    size: Size
    query: str
    raw: bytes
    people: int
    search_items: int
    typename_key: str

    def expected_unchanged(self) -> Any:
        """The response a reader who may see everything gets: upstream minus the injected key."""
        response = orjson.loads(self.raw)
        for item in response["data"]["search"]:
            del item[self.typename_key]
        return response


@dataclass(frozen=True, slots=True)
class PlanRow:
    principal: str
    cold: Stats
    new_principal: Stats
    cached: Stats
    decision: Stats


@dataclass(frozen=True, slots=True)
class ApplyRow:
    size: str
    principal: str
    bytes_in: int
    bytes_out: int
    reps: int
    floor: Stats
    apply: Stats
    summary: str

    @property
    def ratio(self) -> float:
        return self.apply.median / self.floor.median


# --- synthetic data ---------------------------------------------------------------------------

_FIRST = ("Maria", "Tomas", "Aiko", "Jonas", "Lena", "Omar", "Priya", "Kofi", "Elena", "Rafael")
_LAST = ("Keller", "Berg", "Tanaka", "Novak", "Haddad", "Okafor", "Silva", "Larsen", "Moreau")
_CITIES = ("Hamburg", "Rotterdam", "Gdansk", "Antwerp", "Valencia", "Genoa", "Piraeus", "Oslo")
_COUNTRIES = ("DE", "NL", "PL", "BE", "ES", "IT", "GR", "NO")
_DOMAINS = ("example.org", "example.net", "example.com")
_COMPANIES = ("Harbor Logistics", "Northwind Freight", "Blue Quay Shipping", "Delta Holdings")
_STATUSES = ("OPEN", "CLOSED", "ARCHIVED")


def _ssn(rng: random.Random) -> str:
    return f"{rng.randrange(1, 900):03d}-{rng.randrange(1, 100):02d}-{rng.randrange(10_000):04d}"


def _phone(rng: random.Random) -> str:
    return f"+1-{rng.randint(201, 989)}-555-{rng.randrange(10_000):04d}"


def make_person(rng: random.Random, i: int) -> dict[str, Any]:
    """One `Person` of the people selection, in query order, with realistic nulls."""
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    year = rng.randint(1950, 2004)
    org = rng.randrange(500)
    employer = (
        None
        if rng.random() < 0.25
        else {
            "id": f"O-{org:05d}",
            "name": rng.choice(_COMPANIES),
            "registrationNumber": f"HRB-{org:05d}",
        }
    )
    return {
        "id": f"P-{i:06d}",
        "name": f"{first} {last}",
        "ssn": _ssn(rng),
        "email": f"{first}.{last}{i}@{rng.choice(_DOMAINS)}".lower(),
        "phone": None if rng.random() < 0.1 else _phone(rng),
        "dob": f"{year}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        "age": 2024 - year,
        "city": rng.choice(_CITIES),
        "country": rng.choice(_COUNTRIES),
        "riskScore": round(rng.uniform(0, 100), 1),
        "aliases": [f"{rng.choice(_FIRST)} {rng.choice(_LAST)}" for _ in range(rng.randrange(3))],
        "employer": employer,
    }


def make_search_item(rng: random.Random, i: int, typename_key: str) -> dict[str, Any]:
    """One `SearchResult`, carrying the sidecar's `__typename` alias first, as upstream sends it."""
    kind = ("Person", "Organization", "Case")[i % 3]
    if kind == "Person":
        return {typename_key: kind, "id": f"P-{i:06d}", "name": f"{rng.choice(_FIRST)} Harbor"}
    if kind == "Organization":
        return {
            typename_key: kind,
            "id": f"O-{i:05d}",
            "name": rng.choice(_COMPANIES),
            "country": rng.choice(_COUNTRIES),
        }
    return {
        typename_key: kind,
        "id": f"C-{i:05d}",
        "reference": f"CASE-{rng.randint(2015, 2024)}-{i:04d}",
        "title": f"Harbor shipments {i}",
        "status": rng.choice(_STATUSES),
        "openedOn": f"{rng.randint(2015, 2024)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
    }


def make_workload(size: Size, seed: int, typename_key: str) -> Workload:
    """Grow a response (one search item per five people) up to the target size."""
    rng = random.Random(f"{seed}:{size.label}")
    people: list[dict[str, Any]] = []
    search: list[dict[str, Any]] = []
    total = len(b'{"data":{"people":[],"search":[]}}')
    while True:
        person = make_person(rng, len(people))
        item = make_search_item(rng, len(search), typename_key) if len(people) % 5 == 0 else None
        grown = total + len(orjson.dumps(person)) + 1
        grown += len(orjson.dumps(item)) + 1 if item is not None else 0
        if people and grown > size.target_bytes:
            break
        people.append(person)
        if item is not None:
            search.append(item)
        total = grown
    raw = orjson.dumps({"data": {"people": people, "search": search}})
    return Workload(size, QUERY_TEMPLATE % len(people), raw, len(people), len(search), typename_key)


# --- measurement ------------------------------------------------------------------------------


@contextmanager
def gc_paused() -> Iterator[None]:
    """Collect, then keep the cyclic collector out of the timed section."""
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def floor_once(raw: bytes) -> int:
    t0 = time.perf_counter_ns()
    orjson.dumps(orjson.loads(raw))
    return time.perf_counter_ns() - t0


def apply_once(redactor: Redactor, plan: Plan, raw: bytes) -> int:
    t0 = time.perf_counter_ns()
    orjson.dumps(redactor.apply(plan, orjson.loads(raw)).response)
    return time.perf_counter_ns() - t0


def time_apply(redactor: Redactor, plan: Plan, raw: bytes, reps: int) -> tuple[Stats, Stats]:
    """Floor and apply, interleaved; the order alternates each repetition."""
    floor_ns: list[int] = []
    apply_ns: list[int] = []
    warmup = max(2, reps // 20)
    with gc_paused():
        for i in range(warmup + reps):
            if i % 2:
                f = floor_once(raw)
                a = apply_once(redactor, plan, raw)
            else:
                a = apply_once(redactor, plan, raw)
                f = floor_once(raw)
            if i >= warmup:
                floor_ns.append(f)
                apply_ns.append(a)
    return Stats.of(floor_ns), Stats.of(apply_ns)


def time_batched(call: Callable[[], object], batches: int, batch: int = 200) -> Stats:
    """Per-call time of a fast call: the mean of each batch, then median and p90 over batches."""
    per_call: list[float] = []
    call()
    with gc_paused():
        for _ in range(batches):
            t0 = time.perf_counter_ns()
            for _ in range(batch):
                call()
            per_call.append((time.perf_counter_ns() - t0) / batch)
    return Stats.of(per_call)


def redactor_for(schema: Any, catalog: Catalog, engine: PolicyEngine) -> Redactor:
    return Redactor(schema, catalog, engine, pseudonym_key=PSEUDONYM_KEY)


def time_plan_cold(schema: Any, catalog: Catalog, query: str, who: Principal, reps: int) -> Stats:
    """A fresh PolicyEngine (empty decision cache) and Redactor each run; only plan() is timed."""
    samples: list[int] = []
    for _ in range(reps):
        engine = PolicyEngine(POLICY_PATH)
        redactor = redactor_for(schema, catalog, engine)
        with gc_paused():
            t0 = time.perf_counter_ns()
            redactor.plan(query, None, who)
            samples.append(time.perf_counter_ns() - t0)
        assert engine.stats.misses == 1 and redactor.plan_misses == 1
    return Stats.of(samples)


def time_plan_new_principal(redactor: Redactor, query: str, who: Principal, reps: int) -> Stats:
    """Document and shape cached, plan and decision missed: a principal not seen before."""
    redactor.plan(query, None, who)
    samples: list[int] = []
    with gc_paused():
        for i in range(reps):
            fresh = who.model_copy(update={"sub": f"{who.sub}-{i}"})
            t0 = time.perf_counter_ns()
            redactor.plan(query, None, fresh)
            samples.append(time.perf_counter_ns() - t0)
    return Stats.of(samples)


def measure_plans(
    schema: Any, catalog: Catalog, query: str, quick: bool
) -> tuple[list[PlanRow], str]:
    engine = PolicyEngine(POLICY_PATH)
    redactor = redactor_for(schema, catalog, engine)
    coordinates = redactor.shape(query).coordinates
    cold_reps, warm_reps, batches = (3, 20, 5) if quick else (60, 300, 200)
    rows = []
    for label, who in PRINCIPALS.items():
        hits = engine.stats.hits
        rows.append(
            PlanRow(
                principal=label,
                cold=time_plan_cold(schema, catalog, query, who, cold_reps),
                new_principal=time_plan_new_principal(redactor, query, who, warm_reps),
                cached=time_batched(lambda w=who: redactor.plan(query, None, w), batches),
                decision=time_batched(
                    lambda w=who: engine.decide(w, coordinates, catalog), batches
                ),
            )
        )
        assert engine.stats.hits > hits, "the decision lookup did not hit the cache"
    return rows, engine.version


def summarise(redactor: Redactor, plan: Plan, work: Workload) -> tuple[int, str]:
    """Apply once, check nothing unexpected happened, and describe the result."""
    result = redactor.apply(plan, orjson.loads(work.raw))
    report = result.report
    assert report.unknown_keys == 0 and not report.denied, report.as_dict()
    errors = len(result.response.get("errors", ()))
    if report.total() == 0:
        assert result.response == work.expected_unchanged(), (
            "nothing redacted, yet the response changed"
        )
    actions: dict[str, list[str]] = {}
    for coordinate, done in report.by_coordinate().items():
        for action in done:
            actions.setdefault(action, []).append(coordinate.split(".")[1])
    parts = [f"{a}: {', '.join(sorted(set(fs)))}" for a, fs in sorted(actions.items())]
    text = "; ".join(parts) or "unchanged"
    return len(orjson.dumps(result.response)), f"{text} ({errors} errors[])"


def measure_apply(
    schema: Any, catalog: Catalog, workloads: list[Workload], quick: bool
) -> list[ApplyRow]:
    engine = PolicyEngine(POLICY_PATH)
    redactor = redactor_for(schema, catalog, engine)
    rows = []
    for work in workloads:
        reps = work.size.quick_reps if quick else work.size.reps
        for label, who in PRINCIPALS.items():
            plan = redactor.plan(work.query, None, who)
            bytes_out, summary = summarise(redactor, plan, work)
            floor, applied = time_apply(redactor, plan, work.raw, reps)
            rows.append(
                ApplyRow(
                    work.size.label, label, len(work.raw), bytes_out, reps, floor, applied, summary
                )
            )
    return rows


def profile_apply(schema: Any, catalog: Catalog, work: Workload, reps: int) -> None:
    """cProfile of loads -> apply -> dumps for the analyst at one size, top functions by tottime."""
    redactor = redactor_for(schema, catalog, PolicyEngine(POLICY_PATH))
    plan = redactor.plan(work.query, None, PRINCIPALS["analyst"])
    profiler = cProfile.Profile()
    with gc_paused():
        profiler.enable()
        for _ in range(reps):
            orjson.dumps(redactor.apply(plan, orjson.loads(work.raw)).response)
        profiler.disable()
    print(f"\ncProfile: analyst, {work.size.label} ({len(work.raw):,} B), {reps} runs")
    pstats.Stats(profiler).strip_dirs().sort_stats("tottime").print_stats(15)


# --- reporting --------------------------------------------------------------------------------


def us(ns: float) -> str:
    return f"{ns / 1_000:,.1f}"


def met(ok: bool) -> str:
    return "met" if ok else "**not met**"


def plan_table(rows: list[PlanRow]) -> str:
    lines = [
        "| principal | cold plan median (p90) µs | new principal median (p90) µs "
        "| cached plan median (p90) µs | decision lookup median (p90) µs |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        cells = [r.cold, r.new_principal, r.cached, r.decision]
        lines.append(
            f"| {r.principal} | "
            + " | ".join(f"{us(s.median)} ({us(s.p90)})" for s in cells)
            + " |"
        )
    return "\n".join(lines)


def apply_table(rows: list[ApplyRow]) -> str:
    lines = [
        "| size | principal | bytes in → out | runs | floor median (p90) µs "
        "| apply median (p90) µs | apply/floor |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.size} | {r.principal} | {r.bytes_in:,} → {r.bytes_out:,} | {r.reps:,} "
            f"| {us(r.floor.median)} ({us(r.floor.p90)}) "
            f"| {us(r.apply.median)} ({us(r.apply.p90)}) | {r.ratio:.2f}x |"
        )
    return "\n".join(lines)


def what_table(rows: list[ApplyRow]) -> str:
    seen: dict[str, str] = {}
    for r in rows:
        if r.size == SIZES[1].label:
            seen[r.principal] = r.summary
    lines = ["| principal | what apply did (20 KB response) |", "|---|---|"]
    lines += [f"| {who} | {summary} |" for who, summary in seen.items()]
    return "\n".join(lines)


def targets_table(plans: list[PlanRow], applies: list[ApplyRow]) -> tuple[str, bool]:
    lines = ["| target | measured (worst principal) | status |", "|---|---:|---|"]
    all_met = True
    for size in APPLY_TARGET_SIZES:
        worst = max((r for r in applies if r.size == size), key=lambda r: r.ratio)
        ok = worst.ratio <= APPLY_TARGET_RATIO
        all_met &= ok
        lines.append(
            f"| apply <= {APPLY_TARGET_RATIO:g}x floor at {size} "
            f"| {worst.ratio:.2f}x ({worst.principal}) | {met(ok)} |"
        )
    for name, pick in (("cached plan", "cached"), ("decision lookup", "decision")):
        worst_plan = max(plans, key=lambda r, p=pick: getattr(r, p).median)
        value = getattr(worst_plan, pick).median / 1_000
        ok = value <= LOOKUP_TARGET_US
        all_met &= ok
        lines.append(
            f"| {name} <= {LOOKUP_TARGET_US:g} µs (median) "
            f"| {value:,.1f} µs ({worst_plan.principal}) | {met(ok)} |"
        )
    return "\n".join(lines), all_met


def machine_note() -> str:
    walker = (
        "the C walk (`intelgraph_privacy.redact._walk`)"
        if native_walker() is not None
        else "the pure-Python walk"
    )
    return (
        f"{os.cpu_count()} CPUs, shared and noisy ({platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}, orjson {orjson.__version__}); responses rewritten "
        f"by {walker}. Absolute times drift between runs on this machine; quote the apply/floor "
        "ratios, which are measured side by side (floor and apply interleaved, alternating "
        "order, in the same loop)."
    )


def render(
    plans: list[PlanRow],
    applies: list[ApplyRow],
    workloads: list[Workload],
    policy_version: str,
) -> str:
    targets, all_met = targets_table(plans, applies)
    sizes = ", ".join(
        f"{w.size.label}: {len(w.raw):,} B ({w.people:,} people, {w.search_items:,} search items)"
        for w in workloads
    )
    return "\n".join(
        [
            "### Redaction plan and apply (`benchmarks/redact_apply.py`)",
            "",
            "```sh",
            command_line(__file__, prefix="RUST_BACKTRACE=0"),
            "```",
            "",
            f"Machine: {machine_note()}",
            "",
            f"Policy bundle `{policy_version}` (`rego/`), `presets/demo.graphql`, "
            f"`presets/catalog.yaml`. Responses: {sizes}.",
            "",
            "Apply = `orjson.loads` → `Redactor.apply` → `orjson.dumps`; "
            "floor = `orjson.dumps(orjson.loads(raw))` of the same bytes.",
            "",
            apply_table(applies),
            "",
            "Plan: cold = fresh `Redactor` and fresh `PolicyEngine` (parse, validate, shape, "
            "one regorus evaluation, compile); new principal = document and shape cached, "
            "decision and plan missed; cached = plan cache hit; decision lookup = "
            "`PolicyEngine.decide` on a warm cache.",
            "",
            plan_table(plans),
            "",
            what_table(applies),
            "",
            "Targets:",
            "",
            targets,
            "",
            f"All targets met: {'yes' if all_met else 'no'}.",
        ]
    )


def write_readme(path: Path, section: str) -> None:
    write_section(path, BEGIN_MARKER, END_MARKER, section)


# --- main -------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few repetitions (smoke test)")
    parser.add_argument("--write", action="store_true", help=f"update {README_PATH.name}")
    parser.add_argument("--readme", type=Path, default=README_PATH, help="README to update")
    parser.add_argument("--seed", type=int, default=20240611, help="synthetic data seed")
    parser.add_argument(
        "--profile", action="store_true", help="also cProfile apply for the analyst at 1 MB"
    )
    args = parser.parse_args(argv)
    if args.quick and args.write:
        parser.error("--quick numbers are not representative; run without --quick to --write")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    schema = load_schema(SCHEMA_PATH)
    catalog = load_catalog(CATALOG_PATH, schema)
    typename_key = (
        redactor_for(schema, catalog, PolicyEngine(POLICY_PATH))
        .shape(QUERY_TEMPLATE % 1)
        .typename_alias
    )
    workloads = [make_workload(size, args.seed, typename_key) for size in SIZES]
    for w in workloads:
        print(f"{w.size.label}: {len(w.raw):,} bytes, {w.people:,} people", file=sys.stderr)
    plans, policy_version = measure_plans(schema, catalog, workloads[1].query, args.quick)
    applies = measure_apply(schema, catalog, workloads, args.quick)
    section = render(plans, applies, workloads, policy_version)
    print(section)
    if args.write:
        write_readme(args.readme, section)
        print(f"\nwrote {args.readme}", file=sys.stderr)
    if args.profile:
        profile_apply(schema, catalog, workloads[-1], 3 if args.quick else 20)
    print(f"\n({time.perf_counter() - started:.1f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
