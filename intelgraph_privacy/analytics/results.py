"""k-anonymity for the results of analytics operations, inside a GraphQL response.

An analytics operation (a root field the catalog marks `analytics: true`, such as the demo's
`Query.cohort`) returns rows of counted groups: quasi-identifiers and a count
(`{city, ageBand, count}`). Before such a response leaves, every group must hold at least k
people: small cells are generalised along the hierarchies (`30-39` -> `30-49`) or, within the
suppression limit, removed (`intelgraph_privacy.kanon`). Rows that end up alike are merged and
their counts added.

The rows may carry only the preset's quasi-identifiers and its count field (under any aliases):
anything else would leave without being anonymised, so such an operation is refused before it is
forwarded (`check_analytics`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from intelgraph_privacy.catalog import Catalog
from intelgraph_privacy.errors import ConfigError, PrivacyError
from intelgraph_privacy.redact.plan import FieldPlan, Plan, SelectionPlan

_NULL = "\u2205"  # how a null quasi-identifier is grouped (a value of its own)


class AnalyticsError(PrivacyError):
    """An analytics operation whose rows cannot be anonymised as asked (refused, 400)."""


class AnonPreset(BaseModel):
    """`presets/anon.yaml`: k, the quasi-identifiers of analytics rows, their count field."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    k: int = Field(default=5, ge=2)
    #: Field names (schema names, aliases resolved) of the rows' quasi-identifiers.
    quasi_identifiers: tuple[str, ...] = ("city", "age_band")
    #: The field holding each row's number of people.
    count: str = "count"
    #: At most this share of the people may be suppressed (removed) to reach k.
    suppression_limit: float = Field(default=0.02, ge=0, le=1)
    #: Hierarchies of the categorical quasi-identifiers (YAML, `intelgraph_privacy.kanon`).
    hierarchies: Path | None = None


def load_anon_preset(path: str | Path) -> AnonPreset:
    """Read `anon.yaml`; a relative `hierarchies` path is relative to the file."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the anonymity preset: {exc.strerror}") from exc
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the anonymity preset must be a mapping")
    if isinstance(raw.get("hierarchies"), str):
        raw["hierarchies"] = str(path.parent / raw["hierarchies"])
    try:
        return AnonPreset.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"{path}: {problems}") from None


@dataclass(frozen=True, slots=True)
class AnalyticsField:
    """One analytics root field of a plan, and where its rows keep what."""

    key: str
    coordinate: str
    #: Response key -> schema field name, for the quasi-identifier keys.
    quasi_identifiers: Mapping[str, str]
    #: The response keys of the count (a field may be selected under several aliases).
    count_keys: tuple[str, ...]
    #: Response keys carrying the client's own `__typename`, and the rows' type.
    typename_keys: tuple[str, ...]
    row_type: str


@dataclass(slots=True)
class AnonReport:
    """What anonymising one response did (metrics and audit)."""

    operations: int = 0
    #: Groups smaller than k in the upstream's answer (each one a k-anonymity violation fixed).
    small_cells: int = 0
    #: People (counted) removed by suppression.
    suppressed: int = 0
    #: Rows after generalisation and merging.
    rows_out: int = 0
    exempt: list[str] = field(default_factory=list)


def check_analytics(plan: Plan, catalog: Catalog, preset: AnonPreset) -> list[AnalyticsField]:
    """The plan's analytics root fields; AnalyticsError when their rows cannot be anonymised."""
    found: list[AnalyticsField] = []
    root = plan.root.only
    if root is None:
        return found
    for field_plan in root.plain_fields.values():
        _not_analytics(field_plan, catalog)
    for field_plan in root.work:
        if not catalog.entry(field_plan.coordinate).analytics or not catalog.is_operation(
            field_plan.coordinate
        ):
            continue
        if field_plan.child is None:
            continue  # denied or nulled by the policy: no rows will leave
        found.append(_analytics_field(field_plan, preset))
    return found


def _not_analytics(field_plan: FieldPlan, catalog: Catalog) -> None:
    # A scalar analytics root field has no rows to anonymise: refuse rather than pass it.
    if catalog.entry(field_plan.coordinate).analytics:
        raise AnalyticsError(f"{field_plan.coordinate} returns no rows that can be anonymised")


def _analytics_field(field_plan: FieldPlan, preset: AnonPreset) -> AnalyticsField:
    child: SelectionPlan | None = field_plan.child
    rows = child.only if child is not None else None
    if rows is None:
        raise AnalyticsError(f"{field_plan.coordinate}: analytics rows must be one object type")
    qis: dict[str, str] = {}
    counts: list[str] = []
    typenames: list[str] = []
    for key, row_field in _row_fields(rows).items():
        name = row_field.coordinate.partition(".")[2]
        if row_field.injected:
            continue  # the sidecar's own __typename: removed by the redaction already
        if name == "__typename":
            typenames.append(key)
        elif name in preset.quasi_identifiers:
            qis[key] = name
        elif name == preset.count:
            counts.append(key)
        else:
            raise AnalyticsError(
                f"{field_plan.coordinate}: the rows may select only the quasi-identifiers "
                f"({', '.join(preset.quasi_identifiers)}) and {preset.count}, not {name}"
            )
    if not counts:
        raise AnalyticsError(
            f"{field_plan.coordinate}: select {preset.count} in the rows: without it the "
            "size of each group is unknown and k-anonymity cannot be checked"
        )
    assert child is not None
    row_type = next(iter(child.by_type))
    return AnalyticsField(
        field_plan.key, field_plan.coordinate, qis, tuple(counts), tuple(typenames), row_type
    )


def _row_fields(rows: Any) -> dict[str, FieldPlan]:
    fields: dict[str, FieldPlan] = dict(rows.plain_fields)
    for work in rows.work:
        if work.child is not None:
            raise AnalyticsError(f"{work.coordinate}: analytics rows cannot nest objects")
        fields[work.key] = work
    return fields


def anonymize_response(
    response: dict[str, Any],
    fields: Sequence[AnalyticsField],
    preset: AnonPreset,
    *,
    hierarchies: Mapping[str, Any] | None = None,
    exempt: frozenset[str] = frozenset(),
) -> AnonReport:
    """Make every analytics field of a (redacted) response k-anonymous, in place.

    Raises AnalyticsError (fail closed: the caller must not serve the response) when the rows
    are not what the plan says, or k cannot be reached within the suppression limit.
    """
    from intelgraph_privacy.kanon import KAnonError, kanonize

    report = AnonReport()
    data = response.get("data")
    if not isinstance(data, dict):
        return report
    for spec in fields:
        if spec.coordinate in exempt:
            report.exempt.append(spec.coordinate)
            continue
        rows = data.get(spec.key)
        if rows is None:
            continue
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise AnalyticsError(f"{spec.coordinate}: the upstream rows are not a list of objects")
        report.operations += 1
        table, total = _table(rows, spec)
        report.small_cells += _small_cells(table, spec, preset.k)
        if total == 0:
            data[spec.key] = []
            continue
        # A column that is null in every row (not grouped on) says nothing: not a QI here.
        qi_keys = [q for q in spec.quasi_identifiers if any(r[q] != _NULL for r in table)]
        if not qi_keys:
            if total < preset.k:
                raise AnalyticsError(f"{spec.coordinate}: {total} people in all, fewer than k")
            data[spec.key] = _merge(table, spec)
            report.rows_out += len(data[spec.key])
            continue
        try:
            result = kanonize(
                table,
                qi_keys,
                k=preset.k,
                hierarchies=_by_key(hierarchies or {}, spec, qi_keys),
                suppression_limit=preset.suppression_limit,
                count="__count",
            )
        except KAnonError as exc:
            raise AnalyticsError(f"{spec.coordinate}: {exc}") from exc
        merged = _merge(result.rows, spec)
        report.suppressed += int(result.metrics.suppressed)
        report.rows_out += len(merged)
        data[spec.key] = merged
    return report


def _table(rows: list[dict[str, Any]], spec: AnalyticsField) -> tuple[list[dict[str, Any]], int]:
    table: list[dict[str, Any]] = []
    total = 0
    for row in rows:
        count = row.get(spec.count_keys[0])
        if type(count) is not int or count < 0:
            raise AnalyticsError(f"{spec.coordinate}: a row's count is not a whole number")
        if count == 0:
            continue
        entry: dict[str, Any] = {
            key: _NULL if row.get(key) is None else str(row[key]) for key in spec.quasi_identifiers
        }
        entry["__count"] = count
        table.append(entry)
        total += count
    return table, total


def _small_cells(table: list[dict[str, Any]], spec: AnalyticsField, k: int) -> int:
    sizes: dict[tuple[Any, ...], int] = {}
    for row in table:
        key = tuple(row[q] for q in spec.quasi_identifiers)
        sizes[key] = sizes.get(key, 0) + row["__count"]
    return sum(1 for size in sizes.values() if size < k)


def _by_key(
    hierarchies: Mapping[str, Any], spec: AnalyticsField, keys: Sequence[str]
) -> dict[str, Any]:
    # Hierarchies are named by schema field; the table's columns are response keys (only those
    # used as quasi-identifiers here: kanonize refuses a hierarchy for any other column).
    names = spec.quasi_identifiers
    return {key: hierarchies[names[key]] for key in keys if names[key] in hierarchies}


def _merge(rows: Any, spec: AnalyticsField) -> list[dict[str, Any]]:
    merged: dict[tuple[Any, ...], int] = {}
    for source in rows:
        key = tuple(source[q] for q in spec.quasi_identifiers)
        merged[key] = merged.get(key, 0) + int(source["__count"])
    out: list[dict[str, Any]] = []
    for key, count in sorted(merged.items(), key=lambda item: tuple(map(str, item[0]))):
        row: dict[str, Any] = {}
        for column, value in zip(spec.quasi_identifiers, key, strict=True):
            row[column] = None if value == _NULL else value
        for count_key in spec.count_keys:
            row[count_key] = count
        for typename_key in spec.typename_keys:
            row[typename_key] = spec.row_type
        out.append(row)
    return out
