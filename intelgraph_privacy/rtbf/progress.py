"""The record of an erasure's steps in the store (`rtbf_steps`): what makes a job resumable.

A step is written `running` with the rows it found before anything is erased, and `done` with
what remained after. A step found `running` by a later run was interrupted: it runs again
(erasing is idempotent) and keeps the rows found the first time, with one more attempt.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, and_, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite

from intelgraph_privacy.rtbf.executor import StepOutcome
from intelgraph_privacy.rtbf.planner import PlanStep
from intelgraph_privacy.store import Store
from intelgraph_privacy.store.schema import rtbf_steps

__all__ = ["StoreStepRecorder", "insert_new", "job_steps", "region_steps"]

#: Jobs per statement when reading or writing a batch's steps.
_CHUNK = 2_000


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


class StoreStepRecorder:
    """Records a batch's steps in the store; knows which (job, dataset) steps are done."""

    def __init__(self, store: Store, job_ids: Sequence[str], clock: Callable[[], datetime]):
        self.store = store
        self.clock = clock
        self._done: set[tuple[str, str]] = set()
        self._known: set[tuple[str, str]] = set()
        with store.read() as connection:
            for chunk in _chunks(list(job_ids)):
                query = select(rtbf_steps.c.job_id, rtbf_steps.c.dataset, rtbf_steps.c.status)
                for job, dataset, status in connection.execute(
                    query.where(rtbf_steps.c.job_id.in_(chunk))
                ):
                    self._known.add((job, dataset))
                    if status == "done":
                        self._done.add((job, dataset))

    def pending(self, step: PlanStep, job_ids: Sequence[str]) -> list[str]:
        """The jobs among `job_ids` for which `step` is not done."""
        return [j for j in job_ids if (j, step.dataset) not in self._done]

    def started(self, outcome: StepOutcome, seq: int, job_ids: Sequence[str]) -> None:
        """Write the step `running` for these jobs (rows found kept from a first attempt)."""
        step = outcome.step
        now = self.clock()
        fresh = [j for j in job_ids if (j, step.dataset) not in self._known]
        again = [j for j in job_ids if (j, step.dataset) in self._known]
        with self.store.begin() as connection:
            if fresh:
                rows = [
                    {
                        "job_id": job,
                        "dataset": step.dataset,
                        "region": step.region,
                        "seq": seq,
                        "kind": step.kind,
                        "op": outcome.op,
                        "status": "running",
                        "rows_found": int(outcome.rows_found.get(job, 0)),
                        "attempts": 1,
                        "started_at": now,
                    }
                    for job in fresh
                ]
                # Another worker may have started the same step: its row stands (no error).
                connection.execute(insert_new(connection, rtbf_steps), rows)
            for chunk in _chunks(again):
                connection.execute(
                    update(rtbf_steps)
                    .where(rtbf_steps.c.job_id.in_(chunk), rtbf_steps.c.dataset == step.dataset)
                    .values(status="running", attempts=rtbf_steps.c.attempts + 1, error=None)
                )
        self._known.update((j, step.dataset) for j in job_ids)

    def finished(self, outcome: StepOutcome, job_ids: Sequence[str]) -> None:
        """Write the step `done` (or `failed` where rows remained) with what it left."""
        step = outcome.step
        now = self.clock()
        rows = [
            {
                "j": job,
                "d": step.dataset,
                "s": "done" if not outcome.remaining.get(job) else "failed",
                "a": outcome.rows_affected,
                "r": int(outcome.remaining.get(job, 0)),
                "t": now,
            }
            for job in job_ids
        ]
        statement = (
            update(rtbf_steps)
            .where(
                and_(rtbf_steps.c.job_id == bindparam("j"), rtbf_steps.c.dataset == bindparam("d"))
            )
            .values(
                status=bindparam("s"),
                rows_affected=bindparam("a"),
                remaining=bindparam("r"),
                finished_at=bindparam("t"),
            )
        )
        with self.store.begin() as connection:
            connection.execute(statement, rows)
        self._done.update(
            (j, step.dataset) for j, r in zip(job_ids, rows, strict=True) if r["s"] == "done"
        )

    def failed(self, step: PlanStep, job_ids: Sequence[str], error: str) -> None:
        """Note why a step failed, on the jobs' step rows that exist."""
        with self.store.begin() as connection:
            for chunk in _chunks(list(job_ids)):
                connection.execute(
                    update(rtbf_steps)
                    .where(
                        rtbf_steps.c.job_id.in_(chunk),
                        rtbf_steps.c.dataset == step.dataset,
                        rtbf_steps.c.status != "done",
                    )
                    .values(status="failed", error=error[:2000])
                )


def insert_new(connection: Connection, table: Table) -> Any:
    """An INSERT of `table` that skips rows whose primary key exists (both backends)."""
    dialect_insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
    return dialect_insert(table).on_conflict_do_nothing()


def job_steps(store: Store, job_id: str, region: str | None = None) -> list[dict[str, Any]]:
    """A job's recorded steps (of one region, when given), in plan order."""
    query = select(rtbf_steps).where(rtbf_steps.c.job_id == job_id)
    if region is not None:
        query = query.where(rtbf_steps.c.region == region)
    with store.read() as connection:
        rows = connection.execute(query.order_by(rtbf_steps.c.region, rtbf_steps.c.seq)).all()
    return [dict(row._mapping) for row in rows]


def region_steps(
    store: Store, job_ids: Sequence[str], region: str
) -> dict[str, list[dict[str, Any]]]:
    """The recorded steps of many jobs in one region: job id -> steps in plan order."""
    steps: dict[str, list[dict[str, Any]]] = {}
    with store.read() as connection:
        for chunk in _chunks(list(job_ids)):
            query = (
                select(rtbf_steps)
                .where(rtbf_steps.c.job_id.in_(chunk), rtbf_steps.c.region == region)
                .order_by(rtbf_steps.c.job_id, rtbf_steps.c.seq)
            )
            for row in connection.execute(query):
                steps.setdefault(str(row.job_id), []).append(dict(row._mapping))
    return steps
