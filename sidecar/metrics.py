"""Prometheus metrics of one sidecar (its own registry, so several apps can share a process)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from intelgraph_privacy.redact import RedactionReport

#: Operation names become label values; past this many distinct names, the rest are "other".
MAX_OPERATION_LABELS = 200
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class CacheCounters(Collector):
    """Reads the decision and plan cache counters when scraped (they live in the library)."""

    def __init__(self, read: Callable[[], dict[str, tuple[int, int]]]) -> None:
        self._read = read

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(
            "intelgraph_cache_lookups",
            "Cache lookups by cache and result",
            labels=["cache", "result"],
        )
        for cache, (hits, misses) in sorted(self._read().items()):
            family.add_metric([cache, "hit"], hits)
            family.add_metric([cache, "miss"], misses)
        yield family


class SidecarMetrics:
    """Every metric the sidecar exports."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "intelgraph_requests", "Operations served", ["operation", "status"], registry=r
        )
        self.latency = Histogram(
            "intelgraph_request_seconds",
            "Time to serve one operation, upstream included",
            ["operation", "status"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.redacted = Counter(
            "intelgraph_redacted_fields",
            "Values redacted, by schema coordinate and action",
            ["coordinate", "action"],
            registry=r,
        )
        self.previewed = Counter(
            "intelgraph_preview_redactions",
            "Values preview mode would have redacted",
            ["coordinate", "action"],
            registry=r,
        )
        self.policy_reloads = Counter(
            "intelgraph_policy_reloads", "Policy bundle reloads", ["result"], registry=r
        )
        self.schema_refreshes = Counter(
            "intelgraph_schema_refreshes", "Upstream schema refreshes", ["result"], registry=r
        )
        self.upstream_errors = Counter(
            "intelgraph_upstream_errors", "Upstream failures by kind", ["code"], registry=r
        )
        self.refusals = Counter(
            "intelgraph_refusals", "Requests refused by the sidecar itself", ["code"], registry=r
        )
        self.audit_queue = Gauge(
            "intelgraph_audit_queue_depth", "Audit records waiting to be written", registry=r
        )
        self.audit_failures = Counter(
            "intelgraph_audit_write_failures", "Failed audit batch writes", registry=r
        )
        self.kanon_violations = Counter(
            "intelgraph_kanon_violations",
            "Groups smaller than k in analytics results, fixed before they left",
            ["operation"],
            registry=r,
        )
        self.kanon_suppressed = Counter(
            "intelgraph_kanon_suppressed",
            "People (counted) suppressed from analytics results to reach k",
            ["operation"],
            registry=r,
        )
        self.kanon_results = Counter(
            "intelgraph_kanon_results",
            "Analytics results by outcome (anonymised, exempt, unreachable)",
            ["operation", "outcome"],
            registry=r,
        )
        self.dp_releases = Counter(
            "intelgraph_dp_releases",
            "DP export releases by aggregate and preset (refused: budget or paused)",
            ["aggregate", "preset", "outcome"],
            registry=r,
        )
        self.erased_withheld = Counter(
            "intelgraph_erased_withheld",
            "Objects of erased subjects (tombstones) withheld from responses",
            registry=r,
        )
        self.rtbf_jobs = Counter(
            "intelgraph_rtbf_jobs",
            "Erasure jobs that ended, by outcome (done, failed: resumable)",
            ["outcome"],
            registry=r,
        )
        self.rtbf_job_seconds = Histogram(
            "intelgraph_rtbf_job_seconds",
            "Time an erasure job's run took, every region and the manifest included",
            ["outcome"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry=r,
        )
        self._operations: set[str] = set()
        # Labelled children, looked up once: `labels()` takes a lock and builds a tuple each call.
        self._request_children: dict[tuple[str | None, int], tuple[Counter, Histogram]] = {}
        self._redaction_children: dict[tuple[str, str, bool], Counter] = {}

    def add_cache_counters(self, read: Callable[[], dict[str, tuple[int, int]]]) -> None:
        """Export cache hit/miss counters read from the library at scrape time."""
        self.registry.register(CacheCounters(read))

    def operation_label(self, name: str | None) -> str:
        """A bounded label value for an operation name."""
        label = (name or "anonymous")[:64]
        if label not in self._operations:
            if len(self._operations) >= MAX_OPERATION_LABELS:
                return "other"
            self._operations.add(label)
        return label

    def observe(self, operation: str | None, status: int, seconds: float) -> None:
        """Count one served operation."""
        key = (operation, status)
        children = self._request_children.get(key)
        if children is None:
            label = self.operation_label(operation)
            children = (
                self.requests.labels(label, str(status)),
                self.latency.labels(label, str(status)),
            )
            if len(self._request_children) < 4 * MAX_OPERATION_LABELS:
                self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def count_report(self, report: RedactionReport, *, preview: bool) -> None:
        """Add one response's redactions."""
        counter = self.previewed if preview else self.redacted
        for (coordinate, action), n in report.counts.items():
            key = (coordinate, action.value, preview)
            child = self._redaction_children.get(key)
            if child is None:
                # Coordinates come from the schema, so this stays bounded.
                child = self._redaction_children[key] = counter.labels(coordinate, action.value)
            child.inc(n)

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
