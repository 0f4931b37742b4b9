"""Benchmark: what the privacy sidecar costs over a plain proxy, end to end over HTTP.

Four targets, each behind real HTTP on loopback, each server in its own process:

    (a) the upstream directly         load -> upstream
    (b) a plain aiohttp proxy         load -> proxy -> upstream      (forwards the bytes)
    (c) the sidecar, redacting nothing  load -> sidecar -> upstream  (high-clearance investigator)
    (d) the sidecar, redacting          load -> sidecar -> upstream  (analyst)

The upstream replays responses recorded once from the sample graph API (for the client's query
and for the exact document the sidecar sends upstream, the plan's `upstream_document`), so it is
never the bottleneck; an unrecorded query gets a 500. The load generator is an aiohttp client in
its own process. Response sizes: about 1 KB, 20 KB and 200 KB.

Closed loop: `--concurrency` clients send back to back (throughput, p50, p99). Open loop: sends
on a fixed clock at `--rate` per second, latency measured from each request's scheduled time
(so queueing is not hidden by coordinated omission). The targets are interleaved in every round
(the order alternates) so machine noise hits them alike; throughput is the median over rounds,
percentiles are taken over the latencies of all rounds.

Every response is checked: status 200 and byte-identical to a response verified once before the
run (for (d): every `ssn` null, every `email` masked; for (c): the upstream data unchanged).

Targets at 20 KB: throughput c/b >= 0.9 and d/b >= 0.6; at 200 requests per second the p99 that
(d) adds over (b) <= 2 ms.

To show what dominates, each run also reports the CPU every process spent per request (from
/proc, read by the load generator around each measured run), the sidecar's garbage collection
(counted by a `gc.callbacks` hook that `_sidecar_launch.py` installs before it runs the
`intelgraph-privacy sidecar` entry point), and the in-process cost of each step of the sidecar's
request path (`_sidecar_steps.py`). `--profile` runs the sidecar's main thread under cProfile and
prints the top functions (those numbers are not representative, so they are never written).

    RUST_BACKTRACE=0 .venv/bin/python benchmarks/sidecar_overhead.py            # print the tables
    RUST_BACKTRACE=0 .venv/bin/python benchmarks/sidecar_overhead.py --write    # and update README
    RUST_BACKTRACE=0 .venv/bin/python benchmarks/sidecar_overhead.py --quick    # smoke test
    RUST_BACKTRACE=0 .venv/bin/python benchmarks/sidecar_overhead.py --profile  # cProfile sidecar
"""

from __future__ import annotations

import argparse
import os
import platform
import pstats
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import orjson
import yaml
from _report import code_version, command_line, write_section
from _sidecar_steps import StepInput, StepRow, step_costs
from jwcrypto import jwk

from intelgraph_privacy import PolicyEngine, Principal, Redactor, codec, load_catalog, load_schema
from intelgraph_privacy.actions import Action
from intelgraph_privacy.redact.native import native_walker
from intelgraph_privacy.tokens import TokenVerifier, issue_token, load_jwks, load_purposes
from samplegraph import MAX_FIRST, SampleGraph, build_executable_schema, generate_database
from samplegraph import execute_request as execute_sample_request

REPO = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
SCHEMA_PATH = REPO / "presets" / "demo.graphql"
CATALOG_PATH = REPO / "presets" / "catalog.yaml"
POLICY_PATH = REPO / "rego"
README_PATH = HERE / "README.md"
#: The sources whose changes the numbers depend on (named in the results).
SOURCES = ("sidecar", "intelgraph_privacy", "rego")
BEGIN_MARKER = "<!-- sidecar_overhead:begin -->"
END_MARKER = "<!-- sidecar_overhead:end -->"

ISSUER = "https://idp.bench.invalid"
AUDIENCE = "intelgraph-bench"
#: BENCHMARK ONLY: a fixed pseudonym key so runs are comparable. Never use it for real data.
PSEUDONYM_KEY = b"intelgraph-benchmark-pseudonym-key"
#: The sample graph's people; `people(first:)` accepts at most MAX_FIRST.
GRAPH_PEOPLE = MAX_FIRST

TARGET_SIZE = "20 KB"
TARGET_KEEP_RATIO = 0.9
TARGET_REDACT_RATIO = 0.6
TARGET_ADDED_P99_MS = 2.0

QUERY_TEMPLATE = """query People {
  people(first: %d) {
    id name ssn email phone riskScore city country age
    employer { id name }
  }
}"""
#: What the sidecar's readiness probe sends upstream (recorded like the rest).
PING_QUERY = "{__typename}"

#: Who (c) and (d) are: every field kept, and the analyst tier.
KEEP_ALL = Principal(
    sub="hana", tenant="bench", roles=("high-clearance", "investigator"), purpose="investigation"
)
ANALYST = Principal(sub="ana", tenant="bench", roles=("analyst",), purpose="investigation")


@dataclass(frozen=True, slots=True)
class Size:
    """One response size: its label and the target size of the upstream response."""

    label: str
    target_bytes: int


SIZES = (Size("1 KB", 1_024), Size("20 KB", 20 * 1_024), Size("200 KB", 200 * 1_024))


@dataclass(frozen=True, slots=True)
class TargetSpec:
    """One of the four things measured."""

    key: str
    label: str
    #: "upstream", "proxy" or "sidecar": which server the load generator calls.
    server: str
    principal: Principal | None


TARGETS = (
    TargetSpec("a", "(a) upstream direct", "upstream", None),
    TargetSpec("b", "(b) plain proxy", "proxy", None),
    TargetSpec("c", "(c) sidecar, nothing redacted", "sidecar", KEEP_ALL),
    TargetSpec("d", "(d) sidecar, redacting", "sidecar", ANALYST),
)


@dataclass(frozen=True, slots=True)
class Settings:
    """How long and how hard to measure."""

    rounds: int
    duration: float
    open_duration: float
    warmup: float
    concurrency: int
    rate: float

    @classmethod
    def of(cls, args: argparse.Namespace) -> Settings:
        if args.quick:
            return cls(1, 0.5, 0.5, 0.15, args.concurrency, args.rate)
        return cls(args.rounds, args.duration, args.open_duration, 0.3, args.concurrency, args.rate)


@dataclass(slots=True)
class Workload:
    """A query recorded at one size, and what each target must answer to it."""

    size: Size
    people: int
    query: str
    upstream_document: str
    upstream_bytes: int
    #: Target key -> the exact response body the load generator expects.
    expected: dict[str, bytes] = field(default_factory=dict)
    #: Target key -> file holding `expected[key]` (read by the load generator).
    expect_files: dict[str, Path] = field(default_factory=dict)


@dataclass(slots=True)
class Sample:
    """The runs of one (size, target, mode), one per round."""

    throughputs: list[float] = field(default_factory=list)
    latencies: list[list[float]] = field(default_factory=list)
    max_send_lag_ms: float = 0.0
    sent: int = 0
    #: Process name -> CPU seconds spent during the measured runs.
    cpu: dict[str, float] = field(default_factory=dict)
    #: Process name -> garbage collection totals during the measured runs.
    gc: dict[str, dict[str, float]] = field(default_factory=dict)

    def add(self, result: dict[str, Any]) -> None:
        lat = result["latencies_ms"]
        self.throughputs.append(len(lat) / result["seconds"])
        self.latencies.append(lat)
        self.max_send_lag_ms = max(self.max_send_lag_ms, result["max_send_lag_ms"])
        self.sent += result["sent"]
        for name, seconds in result["cpu_seconds"].items():
            self.cpu[name] = self.cpu.get(name, 0.0) + seconds
        for name, counts in result["gc"].items():
            totals = self.gc.setdefault(name, {})
            for key, value in counts.items():
                totals[key] = totals.get(key, 0.0) + value

    def cpu_us(self, name: str) -> float:
        """CPU microseconds one request cost the process `name` (all rounds together)."""
        return self.cpu.get(name, 0.0) / max(1, self.sent) * 1e6

    def gc_us(self, name: str) -> float:
        """Microseconds of garbage collection per request in the process `name`."""
        return self.gc.get(name, {}).get("seconds", 0.0) / max(1, self.sent) * 1e6

    def full_collections(self, name: str) -> tuple[int, float]:
        """Gen-2 collections in `name` during the runs, and their mean duration in ms."""
        totals = self.gc.get(name, {})
        count = int(totals.get("full", 0))
        return count, totals.get("full_seconds", 0.0) / max(1, count) * 1e3

    @property
    def throughput(self) -> float:
        return statistics.median(self.throughputs)

    def pct(self, q: float) -> float:
        return percentile([x for run in self.latencies for x in run], q)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of a sample."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


class BenchError(Exception):
    """The run cannot produce trustworthy numbers (a server failed, a response was wrong)."""


# --- recording --------------------------------------------------------------------------------


def pick_people(people: list[Any], target_bytes: int) -> int:
    """How many people make a `{"data":{"people":[...]}}` response closest to the target size."""
    size = len(b'{"data":{"people":[]}}') - 1
    best, best_gap = 1, None
    for n, person in enumerate(people, start=1):
        size += len(orjson.dumps(person)) + 1
        gap = abs(size - target_bytes)
        if best_gap is None or gap < best_gap:
            best, best_gap = n, gap
        if size > target_bytes:
            break
    return best


def record(work_dir: Path, redactor: Redactor) -> tuple[list[Workload], dict[str, str]]:
    """Record real sample-graph responses for every size: {query: response text}."""
    db = generate_database(work_dir / "graph.sqlite3", people=GRAPH_PEOPLE)
    graph = SampleGraph(db)
    try:
        schema = build_executable_schema(graph)

        def run(query: str) -> bytes:
            status, body = execute_sample_request(schema, {"query": query})
            if status != 200 or body.get("errors"):
                raise BenchError(f"the sample graph failed {query!r}: {status} {body}")
            return codec.dumps(body)

        everyone = orjson.loads(run(QUERY_TEMPLATE % GRAPH_PEOPLE))["data"]["people"]
        recordings = {PING_QUERY: run(PING_QUERY).decode()}
        workloads = []
        for size in SIZES:
            people = pick_people(everyone, size.target_bytes)
            query = QUERY_TEMPLATE % people
            # What the sidecar will send: the plan's upstream document (principal-independent).
            document = redactor.shape(query).upstream_document
            raw = run(query)
            recordings[query] = raw.decode()
            recordings[document] = run(document).decode()
            workloads.append(Workload(size, people, query, document, len(raw)))
    finally:
        graph.close()
    return workloads, recordings


# --- processes --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env() -> dict[str, str]:
    """This environment minus INTELGRAPH_* (the generated YAML alone configures the sidecar)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTELGRAPH_")}
    env["RUST_BACKTRACE"] = "0"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env


@dataclass
class Server:
    """A server process on loopback, its log file and its base URL."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    url: str
    gc_file: Path

    def log_tail(self, lines: int = 20) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_ready(self, path: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(
                    f"{self.name} exited ({self.process.returncode}):\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(self.url + path, timeout=2) as reply:
                    if reply.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        raise BenchError(f"{self.name} not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextmanager
def server(
    name: str, argv: list[str], port: int, work_dir: Path, env: dict[str, str] | None = None
) -> Iterator[Server]:
    """Start `argv` (a server listening on `port`), counting its garbage collections; stop it."""
    log_path = work_dir / f"{name}.log"
    gc_file = work_dir / f"{name}.gc"
    environment = {**child_env(), "SIDECAR_BENCH_GC_FILE": str(gc_file), **(env or {})}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=environment,
        )
    running = Server(name, process, log_path, f"http://127.0.0.1:{port}", gc_file)
    try:
        yield running
    finally:
        running.stop()


def write_sidecar_config(work_dir: Path, port: int, upstream: str, jwks: Path) -> Path:
    key_file = work_dir / "pseudonym.key"
    key_file.write_bytes(PSEUDONYM_KEY)
    config = {
        "listen": {"host": "127.0.0.1", "port": port},
        "upstream": {
            "url": upstream,
            # The SDL, so the replaying upstream needs no introspection recording.
            "schema_sdl": str(SCHEMA_PATH),
            "schema_refresh_seconds": 0,
        },
        "auth": {"jwks": str(jwks), "issuer": ISSUER, "audience": AUDIENCE},
        "policy": {
            "catalog": str(CATALOG_PATH),
            "policies": str(POLICY_PATH),
            "pseudonym_key_file": str(key_file),
            "reload_seconds": 0,
        },
        "store": {"data_dir": str(work_dir / "sidecar-data")},
        "log_level": "WARNING",
    }
    path = work_dir / "sidecar.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


class LoadGenerator:
    """The load generator process (`_sidecar_load.py`), driven one JSON line per command."""

    def __init__(self, work_dir: Path) -> None:
        self.log_path = work_dir / "load.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(HERE / "_sidecar_load.py")],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env=child_env(),
            )

    def run(self, command: dict[str, Any]) -> dict[str, Any]:
        stdin, stdout = self._pipes()
        stdin.write(codec.dumps(command) + b"\n")
        stdin.flush()
        line = stdout.readline()
        if not line:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise BenchError(f"the load generator exited:\n{tail}")
        result: dict[str, Any] = codec.loads(line)
        return result

    def close(self) -> None:
        if self.process.poll() is None:
            stdin, _ = self._pipes()
            stdin.write(b'{"op":"quit"}\n')
            stdin.flush()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def _pipes(self) -> tuple[IO[bytes], IO[bytes]]:
        assert self.process.stdin is not None and self.process.stdout is not None
        return self.process.stdin, self.process.stdout


# --- checking responses -----------------------------------------------------------------------


def post(url: str, body: bytes, token: str) -> tuple[int, bytes]:
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def check_response(
    spec: TargetSpec, work: Workload, recordings: dict[str, str], raw: bytes
) -> None:
    """What each target must answer; raises BenchError otherwise."""
    upstream_raw = recordings[work.query].encode()
    if spec.server != "sidecar":
        if raw != upstream_raw:
            raise BenchError(f"{spec.label} did not return the recorded bytes ({len(raw)} B)")
        return
    response = orjson.loads(raw)
    upstream = orjson.loads(recordings[work.upstream_document])
    if spec.key == "c":
        if response != upstream:
            raise BenchError(f"{spec.label}: the response differs from the upstream's")
        return
    people = response["data"]["people"]
    originals = upstream["data"]["people"]
    if len(people) != work.people:
        raise BenchError(f"{spec.label}: {len(people)} people, expected {work.people}")
    if any(p["ssn"] is not None for p in people):
        raise BenchError(f"{spec.label}: an ssn is not null")
    masked = all(
        p["email"] != o["email"] for p, o in zip(people, originals, strict=True) if o["email"]
    )
    if not masked:
        raise BenchError(f"{spec.label}: an email is not masked")
    nulled = sum(1 for o in originals if o["ssn"] is not None)
    if len(response.get("errors", ())) < nulled:
        raise BenchError(f"{spec.label}: fewer errors[] entries than nulled ssn values")


def check_plans(redactor: Redactor, query: str) -> None:
    """The library agrees: (c)'s plan keeps everything, (d)'s nulls ssn and masks email."""
    kept = redactor.plan(query, None, KEEP_ALL).actions()
    if any(action is not Action.KEEP for action in kept.values()):
        raise BenchError(f"the keep-all principal's plan redacts: {kept}")
    analyst = redactor.plan(query, None, ANALYST).actions()
    expected = {"Person.ssn": Action.NULL, "Person.email": Action.MASK}
    if any(analyst.get(coord) is not action for coord, action in expected.items()):
        raise BenchError(f"the analyst's plan is not the expected one: {analyst}")


# --- measuring --------------------------------------------------------------------------------


@dataclass
class Results:
    """Every sample, by (size label, target key, mode)."""

    samples: dict[tuple[str, str, str], Sample] = field(default_factory=dict)

    def get(self, size: str, key: str, mode: str) -> Sample:
        return self.samples.setdefault((size, key, mode), Sample())


def measure(
    load: LoadGenerator,
    urls: dict[str, str],
    servers: dict[str, Server],
    tokens: dict[str, str],
    workloads: list[Workload],
    settings: Settings,
) -> Results:
    results = Results()
    for round_no in range(settings.rounds):
        order = list(TARGETS) if round_no % 2 == 0 else list(reversed(TARGETS))
        for work in workloads:
            body = codec.dumps({"query": work.query}).decode()
            for mode in ("closed", "open"):
                for spec in order:
                    command: dict[str, Any] = {
                        "op": mode,
                        "url": urls[spec.server],
                        "body": body,
                        "headers": {"Authorization": f"Bearer {tokens[spec.key]}"},
                        "expect": str(work.expect_files[spec.key]),
                        "duration": settings.duration
                        if mode == "closed"
                        else settings.open_duration,
                        "warmup": settings.warmup,
                        "concurrency": settings.concurrency,
                        "rate": settings.rate,
                        "cpu_pids": {n: srv.process.pid for n, srv in servers.items()},
                        "gc_files": {n: str(srv.gc_file) for n, srv in servers.items()},
                    }
                    result = load.run(command)
                    if not result["ok"]:
                        raise BenchError(
                            f"{spec.label}, {work.size.label}, {mode}: {result['error']}"
                        )
                    results.get(work.size.label, spec.key, mode).add(result)
                    rate = len(result["latencies_ms"]) / result["seconds"]
                    print(
                        f"round {round_no + 1}/{settings.rounds} {work.size.label:>6} {mode:6} "
                        f"{spec.label:32} {rate:8.1f} req/s",
                        file=sys.stderr,
                    )
    return results


# --- reporting --------------------------------------------------------------------------------


def ms(value: float) -> str:
    return f"{value:,.2f}"


def met(ok: bool) -> str:
    return "met" if ok else "**not met**"


@dataclass(frozen=True, slots=True)
class Ratios:
    keep: float
    redact: float
    keep_range: tuple[float, float]
    redact_range: tuple[float, float]
    added_p99_redact: float
    added_p99_keep: float


def ratios(results: Results, size: str) -> Ratios:
    b, c, d = (results.get(size, k, "closed") for k in "bcd")
    per_round_c = [x / y for x, y in zip(c.throughputs, b.throughputs, strict=True)]
    per_round_d = [x / y for x, y in zip(d.throughputs, b.throughputs, strict=True)]
    ob, oc, od = (results.get(size, k, "open") for k in "bcd")
    return Ratios(
        keep=c.throughput / b.throughput,
        redact=d.throughput / b.throughput,
        keep_range=(min(per_round_c), max(per_round_c)),
        redact_range=(min(per_round_d), max(per_round_d)),
        added_p99_redact=od.pct(99) - ob.pct(99),
        added_p99_keep=oc.pct(99) - ob.pct(99),
    )


def size_table(results: Results, work: Workload, settings: Settings) -> str:
    rate = f"{settings.rate:g} rps"
    lines = [
        f"#### {work.size.label}: upstream response {work.upstream_bytes:,} B "
        f"({work.people:,} people)",
        "",
        f"| target | response B | req/s | p50 ms | p99 ms | req/s vs b | {rate} p50 ms "
        f"| {rate} p99 ms | CPU µs/req: hop (main thread) | hop GC µs/req (full collections) "
        "| upstream CPU | load CPU |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    base = results.get(work.size.label, "b", "closed").throughput
    for spec in TARGETS:
        closed = results.get(work.size.label, spec.key, "closed")
        opened = results.get(work.size.label, spec.key, "open")
        served = opened.throughput
        # A target that cannot keep up with the clock: say so next to its latencies.
        kept_up = "" if served >= 0.9 * settings.rate else f" (fell behind: {served:,.0f} rps)"
        hop, hop_gc = "-", "-"
        if spec.server != "upstream":
            hop = f"{closed.cpu_us(spec.server):,.0f} ({closed.cpu_us(spec.server + ':main'):,.0f})"
            full, full_ms = closed.full_collections(spec.server)
            detail = f"{full} full, {full_ms:,.0f} ms each" if full else "no full"
            hop_gc = f"{closed.gc_us(spec.server):,.0f} ({detail})"
        lines.append(
            f"| {spec.label} | {len(work.expected[spec.key]):,} | {closed.throughput:,.0f} "
            f"| {ms(closed.pct(50))} | {ms(closed.pct(99))} | {closed.throughput / base:.2f} "
            f"| {ms(opened.pct(50))} | {ms(opened.pct(99))}{kept_up} "
            f"| {hop} | {hop_gc} | {closed.cpu_us('upstream'):,.0f} "
            f"| {closed.cpu_us('load'):,.0f} |"
        )
    r = ratios(results, work.size.label)
    max_lag = max(results.get(work.size.label, k, "open").max_send_lag_ms for k in "abcd")
    lines += [
        "",
        f"c/b = **{r.keep:.2f}** (rounds {r.keep_range[0]:.2f}-{r.keep_range[1]:.2f}), "
        f"d/b = **{r.redact:.2f}** (rounds {r.redact_range[0]:.2f}-{r.redact_range[1]:.2f}); "
        f"p99 added over b at {rate}: d **{r.added_p99_redact:+.2f} ms**, "
        f"c {r.added_p99_keep:+.2f} ms (the open-loop clock sent at most "
        f"{max_lag:,.1f} ms late).",
    ]
    return "\n".join(lines)


def targets_table(results: Results, settings: Settings) -> tuple[str, bool]:
    r = ratios(results, TARGET_SIZE)
    checks = [
        (
            f"throughput c/b >= {TARGET_KEEP_RATIO:g} at {TARGET_SIZE}",
            f"{r.keep:.2f}",
            r.keep >= TARGET_KEEP_RATIO,
        ),
        (
            f"throughput d/b >= {TARGET_REDACT_RATIO:g} at {TARGET_SIZE}",
            f"{r.redact:.2f}",
            r.redact >= TARGET_REDACT_RATIO,
        ),
        (
            f"p99 added by d over b <= {TARGET_ADDED_P99_MS:g} ms at {settings.rate:g} rps, "
            f"{TARGET_SIZE}",
            f"{r.added_p99_redact:+.2f} ms",
            r.added_p99_redact <= TARGET_ADDED_P99_MS,
        ),
    ]
    lines = ["| target | measured | status |", "|---|---:|---|"]
    lines += [f"| {name} | {value} | {met(ok)} |" for name, value, ok in checks]
    return "\n".join(lines), all(ok for _, _, ok in checks)


def machine_note() -> str:
    walker = "the C walk" if native_walker() is not None else "the pure-Python walk"
    return (
        f"{os.cpu_count()} CPUs, shared and noisy ({platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}, aiohttp {aiohttp_version()}, orjson "
        f"{orjson.__version__}; redaction by {walker}). The load generator, the proxy or "
        "sidecar and the upstream share these CPUs, so absolute numbers are those of the whole "
        "chain and drift between runs; quote the ratios, measured side by side in one run."
    )


def aiohttp_version() -> str:
    import aiohttp

    return aiohttp.__version__


def counted(key: str, step: str) -> bool:
    """Whether a step is part of target `key`'s request (the others are marked "(c)"/"(d)")."""
    other = "(d)" if key == "c" else "(c)"
    return other not in step


def steps_table(results: Results, workloads: list[Workload], steps: list[StepRow]) -> str:
    """The in-process step costs next to the CPU each process spent per request."""
    labels = [w.size.label for w in workloads]
    lines = [
        "| per request, µs | " + " | ".join(labels) + " |",
        "|---|" + "---:|" * len(labels),
    ]

    def row(name: str, values: list[float]) -> None:
        lines.append(f"| {name} | " + " | ".join(f"{v:,.0f}" for v in values) + " |")

    for step in steps:
        row(step.step, [step.us[label] for label in labels])
    for key in "cd":
        row(
            f"**sum of the steps, ({key})**",
            [sum(s.us[label] for s in steps if counted(key, s.step)) for label in labels],
        )
    for key in "cd":
        row(
            f"**measured: sidecar CPU, main thread, ({key})**",
            [results.get(label, key, "closed").cpu_us("sidecar:main") for label in labels],
        )
        row(
            f"measured: sidecar garbage collection, ({key})",
            [results.get(label, key, "closed").gc_us("sidecar") for label in labels],
        )
    row(
        "**measured: plain proxy CPU, (b)**",
        [results.get(label, "b", "closed").cpu_us("proxy") for label in labels],
    )
    return "\n".join(lines)


def chain_cpu_us(sample: Sample, hop: str) -> float:
    """CPU per request of the whole chain: load generator, hop (if any) and upstream."""
    return sample.cpu_us("load") + sample.cpu_us("upstream") + (sample.cpu_us(hop) if hop else 0)


def cost_summary(results: Results, steps: list[StepRow]) -> str:
    """One paragraph on what dominates the sidecar's cost at the target size."""
    size = TARGET_SIZE
    closed = {k: results.get(size, k, "closed") for k in "bcd"}
    proxy = closed["b"].cpu_us("proxy")
    sidecar = {k: closed[k].cpu_us("sidecar") for k in "cd"}
    gc_us = {k: closed[k].gc_us("sidecar") for k in "cd"}
    chain_b = chain_cpu_us(closed["b"], "proxy")
    chain = {k: chain_cpu_us(closed[k], "sidecar") for k in "cd"}
    # The sidecar budget that would give c/b = 0.9 with the same load generator and upstream.
    budget = chain_b / TARGET_KEEP_RATIO - (chain["c"] - sidecar["c"])
    ranked = sorted(steps, key=lambda s: -s.us[size])[:3]
    biggest = ", ".join(f"{s.step} {s.us[size]:,.0f} µs" for s in ranked)
    return (
        f"At {size} the sidecar process spends {sidecar['c']:,.0f} µs (c) and "
        f"{sidecar['d']:,.0f} µs (d) of CPU per request, the plain proxy {proxy:,.0f} µs. "
        "The load generator, the hop and the upstream share two CPUs, so throughput follows "
        f"the CPU of the whole chain: {chain_b:,.0f} µs per request through the proxy, "
        f"{chain['c']:,.0f} µs (c) and {chain['d']:,.0f} µs (d) through the sidecar "
        f"(ratios {chain_b / chain['c']:.2f} and {chain_b / chain['d']:.2f}). "
        f"c/b >= {TARGET_KEEP_RATIO:g} would need the sidecar to cost at most about "
        f"{budget:,.0f} µs per request (given what the load generator and the upstream spent "
        "per request in the (c) runs). The largest steps timed in-process at that size: "
        f"{biggest}; garbage collection in the sidecar costs {gc_us['c']:,.0f} µs (c) and "
        f"{gc_us['d']:,.0f} µs (d) per request. The rest is aiohttp's server and client work "
        "for the two HTTP exchanges, the event loop and the audit writer thread; the proxy "
        "pays the HTTP work as well."
    )


def render(
    results: Results,
    workloads: list[Workload],
    settings: Settings,
    policy_version: str,
    steps: list[StepRow],
) -> str:
    targets, all_met = targets_table(results, settings)
    verdict = "yes" if all_met else "**no** (see the table above)"
    return "\n".join(
        [
            "### Sidecar overhead over HTTP (`benchmarks/sidecar_overhead.py`)",
            "",
            "```sh",
            command_line(__file__, prefix="RUST_BACKTRACE=0"),
            "```",
            "",
            f"Run on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {code_version(REPO, SOURCES)}. "
            f"Machine: {machine_note()}",
            "",
            "Each server in its own process on 127.0.0.1: an upstream replaying responses "
            "recorded from the sample graph (keyed by the query text, so it is never the "
            "bottleneck), a plain aiohttp pass-through proxy, the sidecar "
            "(`intelgraph-privacy sidecar --config`, through `_sidecar_launch.py`, which only "
            "adds a GC counter; policy bundle "
            f"`{policy_version}`, SQLite audit log, log level WARNING), and an aiohttp load "
            "generator. (c) is a high-clearance investigator (every field kept); (d) an "
            "analyst (ssn nulled with an `errors[]` entry each, email and phone masked, "
            "riskScore generalised). Query: `people(first: N) { id name ssn email phone "
            "riskScore city country age employer { id name } }`.",
            "",
            f"req/s, p50, p99: closed loop, {settings.concurrency} concurrent clients, "
            f"{settings.rounds} rounds of {settings.duration:g} s per target (median req/s over "
            f"the rounds; percentiles over all requests). {settings.rate:g} rps: open loop, "
            f"sends on a fixed clock, {settings.rounds} rounds of {settings.open_duration:g} s, "
            "latency measured from each request's scheduled send time. Targets interleaved in "
            "every round (order alternating), each warmed up before it is measured; every "
            "response checked (status 200, bytes identical to a verified response).",
            "",
            *[part for w in workloads for part in (size_table(results, w, settings), "")],
            "Targets:",
            "",
            targets,
            "",
            f"All targets met: {verdict}.",
            "",
            "Where the sidecar's time goes: each step of `sidecar/proxy.py` for one request, "
            "timed alone in-process (median, collector paused; `benchmarks/_sidecar_steps.py`), "
            "next to what the processes spent per request in the closed-loop runs above "
            "(CPU from /proc, garbage collection counted in the sidecar by a `gc.callbacks` "
            "hook).",
            "",
            steps_table(results, workloads, steps),
            "",
            cost_summary(results, steps),
        ]
    )


def write_readme(path: Path, section: str) -> None:
    write_section(path, BEGIN_MARKER, END_MARKER, section)


def print_profile(path: Path) -> None:
    if not path.exists():
        print(f"no profile written to {path}", file=sys.stderr)
        return
    print("\ncProfile of the sidecar process (whole run), top 30 by tottime:")
    pstats.Stats(str(path)).strip_dirs().sort_stats("tottime").print_stats(30)
    print("top 30 by cumulative time:")
    pstats.Stats(str(path)).strip_dirs().sort_stats("cumulative").print_stats(30)


# --- main -------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one short round (smoke test)")
    parser.add_argument("--write", action="store_true", help=f"update {README_PATH.name}")
    parser.add_argument("--readme", type=Path, default=README_PATH, help="README to update")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over all targets (3)")
    parser.add_argument("--duration", type=float, default=2.5, help="closed-loop seconds (2.5)")
    parser.add_argument("--open-duration", type=float, default=3.5, help="open-loop seconds (3.5)")
    parser.add_argument("--concurrency", type=int, default=8, help="closed-loop clients (8)")
    parser.add_argument("--rate", type=float, default=200.0, help="open-loop requests/s (200)")
    parser.add_argument(
        "--profile", action="store_true", help="run the sidecar under cProfile and print it"
    )
    args = parser.parse_args(argv)
    if args.write and (args.quick or args.profile):
        parser.error("--quick and --profile numbers are not representative; do not --write them")
    return args


def make_tokens(work_dir: Path) -> tuple[Path, dict[str, str]]:
    """A fresh Ed25519 key, its JWKS file, and a signed token per target."""
    key = jwk.JWK.generate(kty="OKP", crv="Ed25519", kid="bench-key-1")
    jwks = work_dir / "jwks.json"
    jwks.write_bytes(codec.dumps({"keys": [key.export_public(as_dict=True)]}))
    tokens: dict[str, str] = {}
    for spec in TARGETS:
        # (a) and (b) ignore it, but get the analyst's token: every target receives the same
        # request bytes.
        who = spec.principal or ANALYST
        tokens[spec.key] = issue_token(
            key,
            sub=who.sub,
            tenant=who.tenant,
            roles=list(who.roles),
            purpose=who.purpose,
            issuer=ISSUER,
            audience=AUDIENCE,
            ttl=3600,
        )
    return jwks, tokens


def expect(
    urls: dict[str, str],
    tokens: dict[str, str],
    workloads: list[Workload],
    recordings: dict[str, str],
    work_dir: Path,
) -> None:
    """Ask every target once per size, check the answer, and keep it as the expected bytes."""
    for work in workloads:
        body = codec.dumps({"query": work.query})
        for spec in TARGETS:
            url = urls[spec.server]
            answers = [post(url, body, tokens[spec.key]) for _ in range(2)]
            for status, raw in answers:
                if status != 200:
                    raise BenchError(
                        f"{spec.label}, {work.size.label}: HTTP {status}: {raw[:300]!r}"
                    )
                check_response(spec, work, recordings, raw)
            if answers[0][1] != answers[1][1]:
                raise BenchError(f"{spec.label}, {work.size.label}: two answers differ")
            raw = answers[0][1]
            work.expected[spec.key] = raw
            path = work_dir / f"expect-{work.size.target_bytes}-{spec.key}.json"
            path.write_bytes(raw)
            work.expect_files[spec.key] = path


def run(args: argparse.Namespace, work_dir: Path) -> tuple[str, bool]:
    """Record, start the processes, check, measure; the rendered section and whether all met."""
    settings = Settings.of(args)
    schema = load_schema(SCHEMA_PATH)
    catalog = load_catalog(CATALOG_PATH, schema)
    engine = PolicyEngine(POLICY_PATH)
    redactor = Redactor(schema, catalog, engine, pseudonym_key=PSEUDONYM_KEY)
    workloads, recordings = record(work_dir, redactor)
    for work in workloads:
        check_plans(redactor, work.query)
        print(
            f"{work.size.label}: {work.upstream_bytes:,} B, {work.people} people", file=sys.stderr
        )
    recordings_path = work_dir / "recordings.json"
    recordings_path.write_bytes(codec.dumps(recordings))
    jwks, tokens = make_tokens(work_dir)

    py, helpers = sys.executable, str(HERE / "_sidecar_servers.py")
    up_port, proxy_port, sidecar_port = free_port(), free_port(), free_port()
    profile_out = work_dir / "sidecar.prof" if args.profile else None
    with ExitStack() as stack:
        upstream = stack.enter_context(
            server(
                "upstream",
                [
                    py,
                    helpers,
                    "replay",
                    "--port",
                    str(up_port),
                    "--recordings",
                    str(recordings_path),
                ],
                up_port,
                work_dir,
            )
        )
        upstream_url = f"{upstream.url}/graphql"
        proxy = stack.enter_context(
            server(
                "proxy",
                [py, helpers, "proxy", "--port", str(proxy_port), "--upstream", upstream_url],
                proxy_port,
                work_dir,
            )
        )
        config = write_sidecar_config(work_dir, sidecar_port, upstream_url, jwks)
        sidecar = stack.enter_context(
            server(
                "sidecar",
                # `intelgraph-privacy sidecar --config` (sidecar.cli.main), plus the GC counter.
                [py, str(HERE / "_sidecar_launch.py"), "sidecar", "--config", str(config)],
                sidecar_port,
                work_dir,
                {"SIDECAR_BENCH_PROFILE": str(profile_out)} if profile_out else None,
            )
        )
        load = LoadGenerator(work_dir)
        stack.callback(load.close)
        upstream.wait_ready("/healthz")
        proxy.wait_ready("/healthz")
        sidecar.wait_ready("/readyz")
        urls = {
            "upstream": upstream_url,
            "proxy": f"{proxy.url}/graphql",
            "sidecar": f"{sidecar.url}/graphql",
        }
        expect(urls, tokens, workloads, recordings, work_dir)
        servers = {"upstream": upstream, "proxy": proxy, "sidecar": sidecar}
        results = measure(load, urls, servers, tokens, workloads, settings)
        for name, proc in (("upstream", upstream), ("proxy", proxy), ("sidecar", sidecar)):
            if proc.process.poll() is not None:
                raise BenchError(f"{name} exited during the run:\n{proc.log_tail()}")
    if profile_out is not None:
        print_profile(profile_out)
    # The in-process step costs, measured with the servers stopped.
    verifier = TokenVerifier(
        load_jwks(str(jwks)),
        issuer=ISSUER,
        audience=AUDIENCE,
        purposes=load_purposes(REPO / "presets" / "purposes.yaml"),
    )
    steps = step_costs(
        redactor,
        verifier,
        [
            StepInput(
                w.size.label,
                codec.dumps({"query": w.query}),
                recordings[w.upstream_document].encode(),
                tokens["c"],
                tokens["d"],
            )
            for w in workloads
        ],
        reps=20 if args.quick else 300,
    )
    section = render(results, workloads, settings, engine.version, steps)
    _, all_met = targets_table(results, settings)
    return section, all_met


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sidecar-bench-") as tmp:
        try:
            section, _ = run(args, Path(tmp))
        except BenchError as exc:
            print(f"sidecar_overhead: {exc}", file=sys.stderr)
            return 1
    print(section)
    if args.write:
        write_readme(args.readme, section)
        print(f"\nwrote {args.readme}", file=sys.stderr)
    print(f"\n({time.perf_counter() - started:.1f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
