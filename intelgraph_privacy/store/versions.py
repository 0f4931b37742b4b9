"""Change counters for state that sidecar replicas share (redaction rules, revocations).

Every change bumps its counter inside the change's own transaction; a replica reads all counters
with one small query and reloads only what moved.
"""

from __future__ import annotations

from sqlalchemy import Connection, select
from sqlalchemy.dialects import postgresql, sqlite

from intelgraph_privacy.store.engine import Store
from intelgraph_privacy.store.schema import state_versions

#: The counters the product keeps.
REDACTION_RULES = "redaction_rules"
REVOCATIONS = "revocations"


def bump_version(connection: Connection, name: str) -> int:
    """Increment the counter `name` (created at 1) in the caller's transaction; its new value."""
    insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
    statement = (
        insert(state_versions)
        .values(name=name, version=1)
        .on_conflict_do_update(
            index_elements=[state_versions.c.name],
            set_={"version": state_versions.c.version + 1},
        )
        .returning(state_versions.c.version)
    )
    return int(connection.execute(statement).scalar_one())


def read_versions(store: Store) -> dict[str, int]:
    """Every counter's current value (a counter never bumped is absent, i.e. version 0)."""
    with store.read() as connection:
        rows = connection.execute(select(state_versions.c.name, state_versions.c.version))
        return {name: int(version) for name, version in rows}
