"""Derived datasets: which are affected by a change to others, and rebuilding one.

A derived dataset (registry `derived: {sources, query}`) is emptied and refilled by its query in
one transaction of its datastore, after its sources changed: after an erasure (the plan's
`recompute` steps) and after retention removed rows.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, text

from intelgraph_privacy.rtbf.datastores import DatastorePool, SqlDialect
from intelgraph_privacy.rtbf.planner import derived_affected
from intelgraph_privacy.rtbf.registry import Dataset, DatasetRegistry

__all__ = ["rebuild", "rebuild_derived"]


def rebuild(connection: Connection, dialect: SqlDialect, dataset: Dataset) -> int:
    """Empty `dataset` and refill it with its query, in the caller's transaction; rows written."""
    if dataset.derived is None:
        raise ValueError(f"{dataset.name} is not a derived dataset")
    table = dialect.q(dataset.table)
    connection.execute(text(f"DELETE FROM {table}"))
    inserted = connection.execute(text(f"INSERT INTO {table} {dataset.derived.query}"))
    return max(inserted.rowcount, 0)


def rebuild_derived(
    registry: DatasetRegistry, pool: DatastorePool, changed: Iterable[str]
) -> list[tuple[str, int]]:
    """Rebuild every derived dataset built (transitively) from `changed`, sources first.

    Each in its own transaction; returns (dataset, rows written) in the order rebuilt.
    """
    rebuilt = []
    for name in derived_affected(registry, set(changed)):
        dataset = registry.dataset(name)
        with pool.engine(dataset.datastore).begin() as connection:
            rows = rebuild(connection, pool.dialect(dataset.datastore), dataset)
        rebuilt.append((name, rows))
    return rebuilt
