"""Redaction rules set at run time (the admin API's `setRedactionRule`): a sensitivity tier per
schema coordinate, stored in the store, overriding the catalog file for every replica.

Each change bumps the `redaction_rules` counter in its own transaction; replicas rebuild their
catalog when the counter moves (see `apply_rules`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from graphql import GraphQLInterfaceType, GraphQLObjectType, GraphQLSchema
from sqlalchemy import Connection, delete, select
from sqlalchemy.dialects import postgresql, sqlite

from intelgraph_privacy.catalog import SENSITIVITY_ORDER, Catalog, FieldEntry
from intelgraph_privacy.errors import PrivacyError
from intelgraph_privacy.store import Store
from intelgraph_privacy.store.schema import redaction_rules
from intelgraph_privacy.store.versions import REDACTION_RULES, bump_version


class RuleError(PrivacyError):
    """A redaction rule that cannot be set (unknown coordinate or tier)."""


@dataclass(frozen=True, slots=True)
class RedactionRule:
    """One stored rule: `coordinate` is read at `tier`."""

    coordinate: str
    tier: str
    updated_at: datetime
    updated_by: str


def check_rule(schema: GraphQLSchema, coordinate: str, tier: str) -> None:
    """RuleError unless `coordinate` is a field of an object or interface type and `tier` a tier."""
    if tier not in SENSITIVITY_ORDER:
        raise RuleError(f"tier must be one of {', '.join(SENSITIVITY_ORDER)}, got {tier!r}")
    type_name, dot, field_name = coordinate.partition(".")
    gtype = schema.type_map.get(type_name) if dot else None
    if (
        not isinstance(gtype, GraphQLObjectType | GraphQLInterfaceType)
        or type_name.startswith("__")
        or field_name not in gtype.fields
    ):
        # No list of valid fields: the caller may not be entitled to learn the schema's shape.
        raise RuleError(f"{coordinate!r} is not a field of the schema (expected Type.field)")


def set_redaction_rule(
    connection: Connection,
    coordinate: str,
    tier: str,
    *,
    updated_by: str,
    now: datetime | None = None,
) -> int:
    """Store the rule in the caller's transaction (replacing any rule for the coordinate).

    Returns the new rules version. Check the rule first with `check_rule`.
    """
    now = now or datetime.now(UTC)
    insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
    statement = insert(redaction_rules).values(
        coordinate=coordinate, tier=tier, updated_at=now, updated_by=updated_by
    )
    connection.execute(
        statement.on_conflict_do_update(
            index_elements=[redaction_rules.c.coordinate],
            set_={"tier": tier, "updated_at": now, "updated_by": updated_by},
        )
    )
    return bump_version(connection, REDACTION_RULES)


def clear_redaction_rule(connection: Connection, coordinate: str) -> int | None:
    """Remove the rule for `coordinate`; the new rules version, or None when there was none."""
    removed = connection.execute(
        delete(redaction_rules)
        .where(redaction_rules.c.coordinate == coordinate)
        .returning(redaction_rules.c.coordinate)
    ).first()
    return bump_version(connection, REDACTION_RULES) if removed is not None else None


def load_rules(store: Store) -> tuple[RedactionRule, ...]:
    """Every stored rule, by coordinate."""
    with store.read() as connection:
        rows = connection.execute(select(redaction_rules).order_by(redaction_rules.c.coordinate))
        return tuple(RedactionRule(r.coordinate, r.tier, r.updated_at, r.updated_by) for r in rows)


def apply_rules(
    catalog: Catalog, rules: Iterable[RedactionRule]
) -> tuple[Catalog, Sequence[RedactionRule]]:
    """The catalog with each rule's tier in place of the file's sensitivity.

    A rule on an interface field also reaches implementations that inherit it. Rules naming a
    coordinate the schema no longer has cannot apply: they come back in the second value, for
    the logs.
    """
    entries: dict[str, FieldEntry] = dict(catalog.declared)
    skipped: list[RedactionRule] = []
    for rule in rules:
        try:
            check_rule(catalog.schema, rule.coordinate, rule.tier)
        except RuleError:
            skipped.append(rule)
            continue
        base = entries.get(rule.coordinate) or catalog.entry(rule.coordinate)
        entries[rule.coordinate] = base.model_copy(update={"sensitivity": rule.tier})
    applied = Catalog(
        catalog.schema,
        entries,
        default_sensitivity=catalog.default_sensitivity,
        source=f"{catalog.source} + {len(entries) - len(catalog.declared)} new rules",
    )
    return applied, skipped
