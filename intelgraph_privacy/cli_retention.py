"""`intelgraph-privacy retention plan | apply`: enforce the registry's retention classes.

```sh
intelgraph-privacy retention plan --registry datasets.yaml            # dry run, a table
intelgraph-privacy retention plan --registry datasets.yaml --json     # the same, as JSON
intelgraph-privacy retention apply --registry datasets.yaml --data-dir .demo-data
```

Made for cron: no prompts, output in rule order, exit status 0 when done and 1 on any error
(a registry that does not load, a datastore that cannot be reached). `apply` is idempotent, and
appends one audit record per rule to the store's audit log (`retention:<dataset>`, the action,
the counts, the class and the cutoff; never row values) as soon as the rule is committed.
`--now` (ISO-8601; UTC unless it has an offset) measures ages from another instant than now.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from intelgraph_privacy.audit import AuditRecord
    from intelgraph_privacy.rtbf.retention import RetentionCount

__all__ = ["add_retention_commands", "audit_record", "render_table"]


def add_retention_commands(commands: argparse._SubParsersAction[Any]) -> None:
    """Add `retention plan` and `retention apply` to a parser's sub-parsers."""
    from intelgraph_privacy.cli import add_store_arguments

    retention = commands.add_parser("retention", help="delete, null or anonymise expired data")
    actions = retention.add_subparsers(dest="retention_command", required=True, metavar="ACTION")
    plan = actions.add_parser(
        "plan",
        help="dry run: what retention would change, per dataset and field",
        description="Count, per retention rule, the rows it would delete or update and the values "
        "it would null, and the rows it leaves (legal hold, still referenced, no timestamp). "
        "Writes nothing.",
    )
    _common_arguments(plan)
    plan.set_defaults(run=_plan)
    apply = actions.add_parser(
        "apply",
        help="apply retention, and audit what it changed",
        description="Apply every retention rule, each in one transaction of its datastore, and "
        "append one audit record per rule to the store's audit log. Running it again changes "
        "nothing.",
    )
    _common_arguments(apply)
    add_store_arguments(apply)
    apply.set_defaults(run=_apply)


def _common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--registry", required=True, type=Path, metavar="FILE", help="the dataset registry (YAML)"
    )
    parser.add_argument(
        "--now",
        type=_instant,
        metavar="ISO",
        help="measure ages from this instant (ISO-8601, UTC unless it has an offset; default: now)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _instant(value: str) -> datetime:
    try:
        instant = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an ISO-8601 date and time") from None
    return instant if instant.utcoffset() is not None else instant.replace(tzinfo=UTC)


def _plan(args: argparse.Namespace) -> int:
    from intelgraph_privacy.rtbf.datastores import DatastorePool
    from intelgraph_privacy.rtbf.registry import load_registry
    from intelgraph_privacy.rtbf.retention import plan_retention

    registry = load_registry(args.registry)
    now: datetime = args.now or datetime.now(UTC)
    pool = DatastorePool(registry)
    try:
        counts = plan_retention(registry, pool, now=now)
    finally:
        pool.close()
    _report(counts, now, applied=False, as_json=args.json)
    return 0


def _apply(args: argparse.Namespace) -> int:
    from intelgraph_privacy.audit import AuditLog
    from intelgraph_privacy.cli import open_store_from_args
    from intelgraph_privacy.rtbf.datastores import DatastorePool
    from intelgraph_privacy.rtbf.derived import rebuild_derived
    from intelgraph_privacy.rtbf.registry import load_registry
    from intelgraph_privacy.rtbf.retention import apply_retention, compile_retention

    registry = load_registry(args.registry)
    now: datetime = args.now or datetime.now(UTC)
    compile_retention(registry, now=now)  # refuse a bad registry before opening anything
    run_id = f"retention-{uuid.uuid4().hex}"
    with open_store_from_args(args) as store:
        log = AuditLog(store)

        def audit(count: RetentionCount) -> None:
            log.append([audit_record(count, run_id)])

        pool = DatastorePool(registry)
        try:
            counts = apply_retention(registry, pool, now=now, audit=audit)
            # Derived datasets built from retention's datasets would still hold what it removed:
            # rebuild them, every run (a run stopped before this point leaves nothing stale).
            rebuilt = rebuild_derived(registry, pool, {c.rule.dataset for c in counts})
            for name, rows in rebuilt:
                log.append([rebuild_record(name, rows, run_id)])
        finally:
            pool.close()
    _report(counts, now, applied=True, as_json=args.json, rebuilt=rebuilt)
    return 0


def audit_record(count: RetentionCount, run_id: str) -> AuditRecord:
    """The audit record of one applied rule: counts, class and cutoff, never row values."""
    from intelgraph_privacy.rtbf.retention import iso

    rule = count.rule
    if rule.action == "delete":
        what = f"delete {count.rows} rows"
    else:
        nulled = ", ".join(f"{column}={n}" for column, n in count.fields.items())
        what = f"{rule.action} {count.rows} rows: {nulled}"
    detail = (
        f"{what} (class {rule.class_name}, max_age {rule.max_age}, cutoff {iso(rule.cutoff)}; "
        f"kept: {count.held} on legal hold, {count.referenced} referenced, "
        f"{count.undated} undated)"
    )
    return _record(rule.dataset, detail, run_id)


def rebuild_record(dataset: str, rows: int, run_id: str) -> AuditRecord:
    """The audit record of a derived dataset rebuilt after retention changed its sources."""
    return _record(dataset, f"rebuilt derived dataset: {rows} rows", run_id)


def _record(dataset: str, detail: str, run_id: str) -> AuditRecord:
    from intelgraph_privacy.audit import AuditRecord

    return AuditRecord(
        ts=datetime.now(UTC),
        request_id=run_id,
        sub=None,
        tenant=None,  # retention applies to every tenant's rows
        purpose="retention",
        operation_name=f"retention:{dataset}",
        operation_type=None,
        document_hash=None,
        redacted={},
        policy_version=None,
        catalog_version=None,
        status=200,
        mode="enforce",
        detail=detail,
    )


def _report(
    counts: Sequence[RetentionCount],
    now: datetime,
    *,
    applied: bool,
    as_json: bool,
    rebuilt: Sequence[tuple[str, int]] = (),
) -> None:
    from intelgraph_privacy import codec
    from intelgraph_privacy.rtbf.retention import iso

    if as_json:
        report = {
            "now": iso(now),
            "applied": applied,
            "rows": sum(c.rows for c in counts),
            "rules": [c.as_dict() for c in counts],
        }
        if applied:
            report["rebuilt"] = [{"dataset": name, "rows": rows} for name, rows in rebuilt]
        sys.stdout.write(codec.dumps(report).decode("utf-8") + "\n")
        return
    total = sum(c.rows for c in counts)
    if applied:
        print(f"retention applied at {iso(now)}: {len(counts)} rules, {total} rows changed")
    else:
        print(
            f"retention plan at {iso(now)} (dry run): {len(counts)} rules, {total} rows to change"
        )
    if counts:
        print(render_table(counts))
    for name, rows in rebuilt:
        print(f"rebuilt derived dataset {name}: {rows} rows")


def render_table(counts: Sequence[RetentionCount]) -> str:
    """The counts as a fixed-width text table, one line per rule, in rule order."""
    from intelgraph_privacy.rtbf.retention import iso

    header = ("DATASET", "CLASS", "ACTION", "CUTOFF", "ROWS", "HELD", "REFERENCED", "UNDATED")
    lines: list[tuple[str, ...]] = [(*header, "FIELDS")]
    for c in counts:
        fields = ", ".join(f"{column}={n}" for column, n in c.fields.items()) or "-"
        rule = c.rule
        cells = (rule.dataset, rule.class_name, rule.action, iso(rule.cutoff))
        numbers = (c.rows, c.held, c.referenced, c.undated)
        lines.append((*cells, *map(str, numbers), fields))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for line in lines:
        padded = [
            cell.rjust(widths[i]) if i >= 4 else cell.ljust(widths[i])
            for i, cell in enumerate(line[:-1])
        ]
        out.append("  ".join([*padded, line[-1]]))
    return "\n".join(out)
