"""Retention: remove data older than its retention class allows, per dataset and per field.

The registry's `retention_classes` give a maximum age and an action; a dataset's `retention`
class applies to whole rows (`delete` them, or `anonymise` them: null the `anonymise` columns and
the subject key), a field's class to that column (its value is nulled, whatever the action: a
field class governs the field, not the row). Age is measured from the dataset's
`timestamp_column`; rows whose `legal_hold_column` is true (on SQLite: anything but NULL or 0) are
never touched. Retention is tenant-agnostic: it applies to every row of a table, whoever owns it.

- `compile_retention(registry, now=...)` (pure): the rules, one per dataset class and one per
  field class of a dataset (its fields grouped), each with its cutoff `now - max_age`. Order:
  children before the datasets they reference, and within a dataset the row rule first.
- `plan_retention(registry, pool, now=...)`: a dry run, in read-only transactions: per rule the
  rows it would change, per field the values it would null, the rows it leaves because of a
  legal hold or a reference, and the rows without a usable timestamp (never touched).
- `apply_retention(registry, pool, now=..., audit=...)`: each rule in one transaction of its
  datastore; `audit` is called with each rule's count once it is committed. Idempotent: a rule
  only matches rows that still have something to remove, so a second run changes nothing.

The plan's counts are what `apply` changes (with no concurrent writes): each rule's condition
also says "not already removed by an earlier rule", redundant when applying in order, and exactly
what lets the dry run account for earlier rules without running them.

**References.** A rule that removes rows (or nulls the key) of a dataset that others reference
keeps any row still referenced by a row that survives the referrers' own rules (`NOT EXISTS`),
so foreign keys hold and erasure can still trace children to their subject. Such a dataset's
referrers must be in the same datastore, and must have a rule as short (deleting their rows, or
nulling the referencing column) so that referenced rows do go eventually; `RetentionError`
otherwise, at compile time.

**Timestamps.** PostgreSQL: `column < cutoff`, the cutoff bound as an aware datetime, in a
transaction whose time zone is UTC (`timestamp`, `timestamptz` and `date` columns compare as UTC).
SQLite: the column holds ISO-8601 text (`T` or space, optional `Z` or offset; no offset means
UTC) or a number of Unix seconds (integer or real storage); both go through `julianday()`,
so the comparison is exact to the millisecond (SQLite's resolution). A NULL or unreadable
timestamp is "undated": counted, never touched.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Connection, text
from sqlalchemy.exc import SQLAlchemyError

from intelgraph_privacy.errors import PrivacyError
from intelgraph_privacy.rtbf.datastores import DatastorePool, SqlDialect
from intelgraph_privacy.rtbf.registry import Dataset, DatasetRegistry

__all__ = [
    "RetentionCount",
    "RetentionError",
    "RetentionPlan",
    "RetentionRule",
    "apply_retention",
    "compile_retention",
    "plan_retention",
]

RuleAction = Literal["delete", "anonymise", "null"]


class RetentionError(PrivacyError):
    """Retention cannot be compiled for a registry, or a datastore failed planning or applying."""


@dataclass(frozen=True, slots=True)
class RetentionRule:
    """One retention action on one dataset: what it removes, from which rows."""

    dataset: str
    datastore: str
    region: str
    table: str
    class_name: str
    max_age: str
    #: `delete` rows, `anonymise` rows (null `columns`), or `null` a field class's `columns`.
    action: RuleAction
    #: The columns set to NULL (empty for `delete`).
    columns: tuple[str, ...]
    #: Rows written before this instant are affected.
    cutoff: datetime
    timestamp_column: str
    legal_hold_column: str | None
    #: The dataset's row key (what referrers point at).
    key: str | None
    #: (dataset, column) referencing this dataset's rows: a row still referenced is kept.
    referenced_by: tuple[tuple[str, str], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {
            "dataset": self.dataset,
            "datastore": self.datastore,
            "region": self.region,
            "table": self.table,
            "class": self.class_name,
            "max_age": self.max_age,
            "action": self.action,
            "columns": list(self.columns),
            "cutoff": iso(self.cutoff),
        }


@dataclass(frozen=True, slots=True)
class RetentionPlan:
    """The rules of a registry at an instant, in the order they run."""

    now: datetime
    rules: tuple[RetentionRule, ...]


@dataclass(frozen=True, slots=True)
class RetentionCount:
    """What one rule would change (a plan) or changed (`applied`)."""

    rule: RetentionRule
    #: Rows deleted or updated.
    rows: int
    #: Column -> values set to NULL (null and anonymise rules).
    fields: Mapping[str, int]
    #: Rows old enough, with something to remove, left alone because of a legal hold.
    held: int
    #: Rows old enough left alone because rows of referencing datasets still point at them.
    referenced: int
    #: Rows of the table with a NULL or unreadable timestamp (never touched by retention).
    undated: int
    applied: bool

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready description (counts only: never row values)."""
        return {
            **self.rule.as_dict(),
            "rows": self.rows,
            "fields": dict(self.fields),
            "held": self.held,
            "referenced": self.referenced,
            "undated": self.undated,
            "applied": self.applied,
        }


def iso(instant: datetime) -> str:
    """`instant` in UTC as ISO-8601 with `Z`."""
    return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")


# -- compiling ---------------------------------------------------------------------------------


def compile_retention(registry: DatasetRegistry, *, now: datetime) -> RetentionPlan:
    """The retention rules of `registry` at `now` (timezone-aware), in run order.

    Raises RetentionError when a rule would remove rows that other datasets reference and those
    are not covered (see the module's docstring).
    """
    if now.utcoffset() is None:
        raise RetentionError("retention needs a timezone-aware 'now'")
    now = now.astimezone(UTC)
    by_dataset = {
        name: _dataset_rules(registry, registry.datasets[name], now)
        for name in _children_first(registry)
    }
    for rules in by_dataset.values():
        for rule in rules:
            _check_covered(registry, rule, by_dataset)
    return RetentionPlan(now, tuple(rule for rules in by_dataset.values() for rule in rules))


def _dataset_rules(
    registry: DatasetRegistry, dataset: Dataset, now: datetime
) -> list[RetentionRule]:
    """The dataset's row rule (if any), then one rule per field class, by class name."""
    wanted: list[tuple[str, RuleAction, tuple[str, ...]]] = []
    if dataset.retention is not None:
        action = registry.retention_classes[dataset.retention].action
        if action == "delete":
            wanted.append((dataset.retention, "delete", ()))
        else:  # anonymise (a row class cannot be `null`: the registry refuses it)
            assert dataset.subject_key is not None
            columns = tuple(dict.fromkeys([*dataset.anonymise, dataset.subject_key]))
            wanted.append((dataset.retention, "anonymise", columns))
    grouped: dict[str, list[str]] = {}
    for column, spec in dataset.fields.items():
        if spec.retention is not None:
            grouped.setdefault(spec.retention, []).append(column)
    wanted += [(name, "null", tuple(grouped[name])) for name in sorted(grouped)]
    rules = []
    for class_name, action, columns in wanted:
        retention = registry.retention_classes[class_name]
        assert dataset.timestamp_column is not None  # the registry checks it
        breaks = action == "delete" or (dataset.key is not None and dataset.key in columns)
        referenced_by = tuple(
            (child, reference.column)
            for child in registry.referrers.get(dataset.name, ())
            for reference in registry.datasets[child].references
            if reference.dataset == dataset.name
        )
        rules.append(
            RetentionRule(
                dataset=dataset.name,
                datastore=dataset.datastore,
                region=dataset.region,
                table=dataset.table,
                class_name=class_name,
                max_age=retention.max_age,
                action=action,
                columns=columns,
                cutoff=now - timedelta(seconds=retention.max_age_seconds),
                timestamp_column=dataset.timestamp_column,
                legal_hold_column=dataset.legal_hold_column,
                key=dataset.key,
                referenced_by=referenced_by if breaks else (),
            )
        )
    return rules


def _children_first(registry: DatasetRegistry) -> list[str]:
    """Dataset names, each after every dataset referencing it (then by name)."""
    waiting = {name: set(registry.referrers.get(name, ())) for name in registry.datasets}
    order: list[str] = []
    while waiting:
        ready = sorted(name for name, referrers in waiting.items() if not referrers)
        if not ready:  # the registry refuses cycles on load
            raise RetentionError(f"{registry.source}: references form a cycle")
        for name in ready:
            del waiting[name]
        for referrers in waiting.values():
            referrers.difference_update(ready)
        order += ready
    return order


def _check_covered(
    registry: DatasetRegistry, rule: RetentionRule, by_dataset: Mapping[str, list[RetentionRule]]
) -> None:
    """Referrers of rows `rule` removes are in its datastore and lose their links as soon."""
    where = f"{registry.source}: datasets.{rule.dataset}: retention class {rule.class_name!r}"
    for child, column in rule.referenced_by:
        child_store = registry.datasets[child].datastore
        if child_store != rule.datastore:
            raise RetentionError(
                f"{where} removes rows that {child}.{column} references from datastore "
                f"{child_store!r}: referenced rows can only be kept safe within one datastore "
                f"({rule.datastore!r}); remove the class or move the datasets together"
            )
        covering = [
            r
            for r in by_dataset[child]
            if (r.action == "delete" or column in r.columns) and r.cutoff >= rule.cutoff
        ]
        if not covering:
            raise RetentionError(
                f"{where} ({rule.action} after {rule.max_age}) removes rows that "
                f"{child}.{column} references: give {child} a retention class that deletes its "
                f"rows (or nulls {column}) within {rule.max_age}, otherwise referenced rows "
                "would be kept for ever"
            )


# -- SQL -----------------------------------------------------------------------------------------


class _Sql:
    """The SQL of a plan's rules for one backend; collects the bound cutoffs it uses."""

    def __init__(self, plan: RetentionPlan, registry: DatasetRegistry, dialect: SqlDialect):
        self.rules = plan.rules
        self.registry = registry
        self.d = dialect
        self.sqlite = dialect.name == "sqlite"
        self.by_dataset: dict[str, list[int]] = {}
        for index, rule in enumerate(plan.rules):
            self.by_dataset.setdefault(rule.dataset, []).append(index)
        self.params: dict[str, Any] = {}
        self._aliases = itertools.count()

    def col(self, where: str, column: str) -> str:
        return f"{where}.{self.d.q(column)}"

    def cutoff(self, index: int) -> str:
        cutoff = self.rules[index].cutoff
        # SQLite: text for julianday() (UTC); PostgreSQL: an aware datetime (timestamptz).
        self.params[f"c{index}"] = (
            cutoff.strftime("%Y-%m-%d %H:%M:%S.%f") if self.sqlite else cutoff
        )
        return f":c{index}"

    def timestamp(self, rule: RetentionRule, where: str) -> str:
        column = self.col(where, rule.timestamp_column)
        if not self.sqlite:
            return column
        return (
            f"(CASE WHEN typeof({column}) IN ('integer', 'real') "
            f"THEN julianday({column}, 'unixepoch') ELSE julianday({column}) END)"
        )

    def older(self, index: int, where: str) -> str:
        ts = self.timestamp(self.rules[index], where)
        if self.sqlite:
            return f"{ts} < julianday({self.cutoff(index)})"
        return f"{ts} < {self.cutoff(index)}"

    def undated(self, rule: RetentionRule, where: str) -> str:
        return f"{self.timestamp(rule, where)} IS NULL"

    def free(self, rule: RetentionRule, where: str) -> str:
        """Not on legal hold (never NULL)."""
        if rule.legal_hold_column is None:
            return "1 = 1"
        hold = self.col(where, rule.legal_hold_column)
        return f"({hold} IS NULL OR {hold} = 0)" if self.sqlite else f"{hold} IS NOT TRUE"

    def removes(self, index: int, where: str) -> str:
        """True for a row (of rule `index`'s table, at `where`) whose data that rule removes."""
        rule = self.rules[index]
        parts = [self.older(index, where), self.free(rule, where), *self.guards(index, where)]
        return "(" + " AND ".join(parts) + ")"

    def guards(self, index: int, where: str) -> list[str]:
        """One NOT EXISTS per referencing column: no surviving row points at this one."""
        rule = self.rules[index]
        guards = []
        for child, column in rule.referenced_by:
            assert rule.key is not None
            alias = self.d.q(f"r{next(self._aliases)}")
            parts = [f"{self.col(alias, column)} = {self.col(where, rule.key)}"]
            parts += [
                f"{self.removes(j, alias)} IS NOT TRUE"
                for j in self.by_dataset.get(child, ())
                if self.rules[j].action == "delete" or column in self.rules[j].columns
            ]
            table = self.d.q(self.registry.datasets[child].table)
            guards.append(
                f"NOT EXISTS (SELECT 1 FROM {table} AS {alias} WHERE {' AND '.join(parts)})"
            )
        return guards

    def earlier(self, index: int) -> list[int]:
        """The rules of the same dataset that run before rule `index`."""
        return [j for j in self.by_dataset[self.rules[index].dataset] if j < index]

    def has_value(self, index: int, column: str, where: str) -> str:
        """`column` holds a value that no earlier rule of the dataset nulls.

        (Rows deleted by earlier rules are excluded by `pending`, which this is part of.)
        """
        parts = [f"{self.col(where, column)} IS NOT NULL"]
        parts += [
            f"{self.removes(j, where)} IS NOT TRUE"
            for j in self.earlier(index)
            if column in self.rules[j].columns
        ]
        return "(" + " AND ".join(parts) + ")"

    def pending(self, index: int, where: str) -> list[str]:
        """The row is still there, and (null/anonymise) has a value to remove."""
        parts = [
            f"{self.removes(j, where)} IS NOT TRUE"
            for j in self.earlier(index)
            if self.rules[j].action == "delete"
        ]
        columns = self.rules[index].columns
        if columns:
            parts.append("(" + " OR ".join(self.has_value(index, c, where) for c in columns) + ")")
        return parts

    def statements(self, index: int) -> tuple[str, str]:
        """(the counting SELECT, the DELETE or UPDATE) of rule `index`."""
        rule = self.rules[index]
        table = self.d.q(rule.table)
        older = self.older(index, table)
        free = self.free(rule, table)
        pending = self.pending(index, table)
        guards = self.guards(index, table)
        target = " AND ".join([older, free, *pending, *guards])
        held = " AND ".join([older, f"NOT ({free})", *pending])
        kept = " AND ".join(
            [older, free, *pending, f"NOT ({' AND '.join(guards) if guards else '1 = 1'})"]
        )
        sums = [target]
        sums += [f"{target} AND {self.has_value(index, c, table)}" for c in rule.columns]
        sums += [held, kept, self.undated(rule, table)]
        selected = ", ".join(f"SUM(CASE WHEN {s} THEN 1 ELSE 0 END)" for s in sums)
        count = f"SELECT {selected} FROM {table} WHERE {older} OR {self.undated(rule, table)}"
        if rule.action == "delete":
            change = f"DELETE FROM {table} WHERE {target}"
        else:
            nulls = ", ".join(f"{self.d.q(c)} = NULL" for c in rule.columns)
            change = f"UPDATE {table} SET {nulls} WHERE {target}"
        return count, change


# -- running -------------------------------------------------------------------------------------


def plan_retention(
    registry: DatasetRegistry, pool: DatastorePool, *, now: datetime
) -> list[RetentionCount]:
    """Dry run: what each rule would change now, in read-only transactions (one per datastore)."""
    plan = compile_retention(registry, now=now)
    counts = []
    with _read_only(pool) as connection_for:
        for index, rule in enumerate(plan.rules):
            with _failures(rule):
                connection = connection_for(rule.datastore)
                sql = _Sql(plan, registry, pool.dialect(rule.datastore))
                select, _ = sql.statements(index)
                counts.append(_count(rule, connection, select, sql.params, applied=False))
    return counts


def apply_retention(
    registry: DatasetRegistry,
    pool: DatastorePool,
    *,
    now: datetime,
    audit: Callable[[RetentionCount], None] | None = None,
) -> list[RetentionCount]:
    """Apply every rule, each in one transaction of its datastore; what each changed.

    `audit` is called with each rule's count right after its transaction commits (an exception
    from it stops the run: the rules done stay done, and running again is safe). `rows` is what
    the database reports changed; the other counts are measured just before, on the same
    connection (the same transaction on PostgreSQL).
    """
    plan = compile_retention(registry, now=now)
    counts = []
    for index, rule in enumerate(plan.rules):
        with _failures(rule):
            sql = _Sql(plan, registry, pool.dialect(rule.datastore))
            select, change = sql.statements(index)
            with pool.engine(rule.datastore).begin() as connection:
                _utc(connection)
                before = _count(rule, connection, select, sql.params, applied=True)
                changed = connection.execute(text(change), sql.params).rowcount
            counts.append(
                RetentionCount(
                    rule,
                    max(changed, 0),
                    before.fields,
                    before.held,
                    before.referenced,
                    before.undated,
                    applied=True,
                )
            )
        if audit is not None:
            audit(counts[-1])
    return counts


def _count(
    rule: RetentionRule,
    connection: Connection,
    select: str,
    params: Mapping[str, Any],
    *,
    applied: bool,
) -> RetentionCount:
    row = connection.execute(text(select), dict(params)).one()
    values = [int(v or 0) for v in row]
    fields = dict(zip(rule.columns, values[1 : 1 + len(rule.columns)], strict=True))
    held, referenced, undated = values[-3:]
    return RetentionCount(rule, values[0], fields, held, referenced, undated, applied)


def _utc(connection: Connection) -> None:
    """PostgreSQL: compare `timestamp` and `date` columns as UTC in this transaction."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SET LOCAL TIME ZONE 'UTC'"))


@contextmanager
def _read_only(pool: DatastorePool) -> Iterator[Callable[[str], Connection]]:
    """Per datastore, one connection that cannot write (rolled back and closed at the end)."""
    opened: dict[str, Connection] = {}

    def connection_for(datastore: str) -> Connection:
        if datastore not in opened:
            connection = pool.connect(datastore)
            opened[datastore] = connection
            if connection.dialect.name == "postgresql":
                # One snapshot for all of the datastore's counts, and no writes possible.
                connection.execute(
                    text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                )
                _utc(connection)
            else:
                connection.exec_driver_sql("PRAGMA query_only = 1")
        return opened[datastore]

    try:
        yield connection_for
    finally:
        for connection in opened.values():
            try:
                connection.rollback()
                if connection.dialect.name == "sqlite":
                    connection.exec_driver_sql("PRAGMA query_only = 0")
            except SQLAlchemyError:  # best effort: never mask the error that got us here
                connection.invalidate()  # and never pool a read-only or broken connection
            finally:
                connection.close()


@contextmanager
def _failures(rule: RetentionRule) -> Iterator[None]:
    """A datastore failure as RetentionError naming the rule (no SQL parameters, no values)."""
    try:
        yield
    except SQLAlchemyError as exc:
        original = getattr(exc, "orig", None)
        lines = str(original if original is not None else exc).strip().splitlines()
        reason = f"{type(original or exc).__name__}: {lines[0] if lines else ''}"
        raise RetentionError(
            f"retention {rule.dataset} ({rule.datastore}, class {rule.class_name}): {reason}"
        ) from exc
