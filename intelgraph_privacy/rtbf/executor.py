"""A region's executor: erase a batch of subjects from that region's datasets, step by step.

For each step of the region's plan, in order:

1. **Find** the subjects' rows. A dataset with a subject key is scanned for the values whose
   keyed hash is one of the batch's (only hashes reach the region; the ids found stay in this
   process's memory). A dataset with references matches the rows pointing at the matched rows of
   the referenced datasets (found the same way, on demand: parents are erased after their
   children, so they are still there).
2. **Record** the rows found per job (the step is `running`), before touching anything.
3. **Erase** in one transaction of the dataset's datastore: delete the rows, or anonymise them
   (null the registered columns and the subject key), and null the references that are
   `on_erase: null`. A derived dataset is rebuilt instead: emptied and refilled by its query.
4. **Verify** by finding again, subject keys re-scanned by hash: what remains is recorded with
   the step (`done`), and must be nothing.

Every step is idempotent: erasing what is already erased changes nothing, so a crash at any
point is repaired by running the job again; steps recorded `done` are skipped, and a step left
`running` keeps the rows it found the first time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import Connection, text

from intelgraph_privacy.errors import PrivacyError
from intelgraph_privacy.rtbf.datastores import DatastorePool, SqlDialect
from intelgraph_privacy.rtbf.derived import rebuild
from intelgraph_privacy.rtbf.planner import PlanStep
from intelgraph_privacy.rtbf.registry import Dataset, DatasetRegistry
from intelgraph_privacy.rtbf.tombstones import SubjectHasher

__all__ = [
    "BatchSubject",
    "ErasureError",
    "RegionExecutor",
    "StepOutcome",
    "StepRecorder",
]

#: Rows fetched per round trip while scanning a subject-key column.
SCAN_BATCH = 10_000


class ErasureError(PrivacyError):
    """A step could not be completed (its datastore failed, or rows remained after it)."""

    def __init__(self, message: str, step: PlanStep | None = None) -> None:
        super().__init__(message)
        self.step = step


@dataclass(frozen=True, slots=True)
class BatchSubject:
    """One job's subject in a batch: the job, and the subject's keyed hash."""

    job_id: str
    subject_hash: str


@dataclass
class StepOutcome:
    """What one step did, per job of the batch."""

    step: PlanStep
    op: str
    rows_found: Counter[str] = field(default_factory=Counter)
    rows_affected: int = 0
    remaining: Counter[str] = field(default_factory=Counter)


class StepRecorder(Protocol):
    """Where the executor records its progress (the store's `rtbf_steps`)."""

    def pending(self, step: PlanStep, job_ids: Sequence[str]) -> list[str]:
        """The jobs among `job_ids` for which `step` is not recorded done."""
        ...

    def started(self, outcome: StepOutcome, seq: int, job_ids: Sequence[str]) -> None:
        """The step starts for these jobs, having found `outcome.rows_found`."""
        ...

    def finished(self, outcome: StepOutcome, job_ids: Sequence[str]) -> None:
        """The step is done for these jobs, and verified (`outcome.remaining`)."""
        ...


#: Test and operations hook: called with ("before_erase" | "before_commit" | "after_commit",
#: step); "before_commit" runs inside the step's transaction. The orchestrator adds
#: ("region_reported", None) after a region's sub-manifests are stored and ("before_finalize",
#: None) before a manifest is signed.
StepHook = Callable[[str, PlanStep | None], None]


@dataclass
class _Match:
    """The rows of one dataset that belong to the batch's subjects."""

    rows: Counter[str] = field(default_factory=Counter)  # job -> rows to delete/anonymise
    unlink: Counter[str] = field(default_factory=Counter)  # job -> references to null
    keys: dict[Any, set[str]] = field(default_factory=dict)  # row key -> jobs (for children)
    params: dict[str, Any] = field(default_factory=dict)
    predicates: list[str] = field(default_factory=list)  # rows to delete/anonymise
    deletes: list[tuple[str, str]] = field(default_factory=list)  # delete-refs: (column, param)
    unlinks: list[tuple[str, str]] = field(default_factory=list)  # null-refs: (column, param)


class RegionExecutor:
    """Runs a region's plan steps for a batch of subjects of one tenant."""

    def __init__(
        self,
        registry: DatasetRegistry,
        pool: DatastorePool,
        hash_key: bytes,
        *,
        hook: StepHook | None = None,
    ) -> None:
        self.registry = registry
        self.pool = pool
        self.hash_key = hash_key
        self.hook = hook

    def run(
        self,
        steps: Sequence[PlanStep],
        tenant: str,
        subjects: Sequence[BatchSubject],
        recorder: StepRecorder,
    ) -> list[StepOutcome]:
        """Run `steps` (one region's, in plan order) for `subjects`; ErasureError on failure."""
        run = _Run(self, tenant, subjects)
        outcomes = []
        all_jobs = [s.job_id for s in subjects]
        for seq, step in enumerate(steps):
            jobs = recorder.pending(step, all_jobs)
            if not jobs:
                continue
            outcome = run.step(step, jobs, seq, recorder)
            outcomes.append(outcome)
        return outcomes


class _Run:
    """One run of a batch: the subjects' ids found so far, and the matched keys per dataset."""

    def __init__(self, executor: RegionExecutor, tenant: str, subjects: Sequence[BatchSubject]):
        self.executor = executor
        self.registry = executor.registry
        self.pool = executor.pool
        self.tenant = tenant
        self.jobs_by_hash: dict[str, set[str]] = {}
        for subject in subjects:
            self.jobs_by_hash.setdefault(subject.subject_hash, set()).add(subject.job_id)
        self._keys: dict[str, dict[Any, set[str]]] = {}
        self._hasher = SubjectHasher(executor.hash_key)
        self._hashes: dict[Any, str] = {}

    # -- one step ------------------------------------------------------------------------

    def step(
        self, step: PlanStep, jobs: Sequence[str], seq: int, recorder: StepRecorder
    ) -> StepOutcome:
        dataset = self.registry.dataset(step.dataset)
        hook = self.executor.hook
        try:
            if step.kind == "recompute":
                return self._recompute(step, dataset, jobs, seq, recorder)
            dialect = self.pool.dialect(dataset.datastore)
            engine = self.pool.engine(dataset.datastore)
            with engine.connect() as connection:
                match = self._match(connection, dialect, dataset, jobs)
            outcome = StepOutcome(step, _op(dataset))
            outcome.rows_found.update(match.rows)
            outcome.rows_found.update(match.unlink)
            recorder.started(outcome, seq, jobs)
            if hook:
                hook("before_erase", step)
            with engine.begin() as connection:
                outcome.rows_affected = self._erase(connection, dialect, dataset, match)
                if hook:
                    hook("before_commit", step)
            if hook:
                hook("after_commit", step)
            with engine.connect() as connection:
                after = self._match(connection, dialect, dataset, jobs)
            outcome.remaining.update(after.rows)
            outcome.remaining.update(after.unlink)
        except ErasureError:
            raise
        except Exception as exc:  # the datastore failed: the job stops here, resumable
            message = f"{step.dataset} ({step.region}): {_describe(exc)}"
            raise ErasureError(message, step) from exc
        recorder.finished(outcome, jobs)
        if +outcome.remaining:
            raise ErasureError(
                f"{step.dataset} ({step.region}): {sum(outcome.remaining.values())} rows of the "
                "subject remain after erasing (written again meanwhile?); run the job again",
                step,
            )
        return outcome

    def _recompute(
        self,
        step: PlanStep,
        dataset: Dataset,
        jobs: Sequence[str],
        seq: int,
        recorder: StepRecorder,
    ) -> StepOutcome:
        assert dataset.derived is not None
        dialect = self.pool.dialect(dataset.datastore)
        outcome = StepOutcome(step, "recompute")
        recorder.started(outcome, seq, jobs)
        hook = self.executor.hook
        if hook:
            hook("before_erase", step)
        with self.pool.engine(dataset.datastore).begin() as connection:
            outcome.rows_affected = rebuild(connection, dialect, dataset)
        if hook:
            hook("after_commit", step)
        recorder.finished(outcome, jobs)
        return outcome

    # -- finding rows --------------------------------------------------------------------

    def _own_ids(
        self, connection: Connection, dialect: SqlDialect, dataset: Dataset
    ) -> dict[Any, set[str]]:
        """Subject-key values of `dataset` whose keyed hash is a batch subject's -> their jobs."""
        assert dataset.subject_key is not None
        column = dialect.q(dataset.subject_key)
        table = dialect.q(dataset.table)
        sql = f"SELECT DISTINCT {column} FROM {table} WHERE {column} IS NOT NULL"
        params: dict[str, Any] = {}
        if dataset.tenant_column:
            sql += f" AND {dialect.q(dataset.tenant_column)} = :tenant"
            params["tenant"] = self.tenant
        found: dict[Any, set[str]] = {}
        wanted = self.jobs_by_hash
        hashes = self._hashes  # one hash per value per run: the verification re-scan is free
        hasher = self._hasher
        result = connection.execution_options(stream_results=True, yield_per=SCAN_BATCH).execute(
            text(sql), params
        )
        for (value,) in result:
            hashed = hashes.get(value)
            if hashed is None:
                hashed = hashes[value] = hasher(value)
            jobs = wanted.get(hashed)
            if jobs is not None:
                found[value] = jobs
        return found

    def _parent_keys(self, name: str) -> dict[Any, set[str]]:
        """The keys of the rows of dataset `name` that belong to the batch -> their jobs."""
        if name not in self._keys:
            dataset = self.registry.dataset(name)
            with self.pool.engine(dataset.datastore).connect() as connection:
                dialect = self.pool.dialect(dataset.datastore)
                match = self._match(connection, dialect, dataset, None)
            self._keys[name] = match.keys
        return self._keys[name]

    def _match(
        self,
        connection: Connection,
        dialect: SqlDialect,
        dataset: Dataset,
        jobs: Sequence[str] | None,
    ) -> _Match:
        """The rows of `dataset` belonging to the batch (to the `jobs` among it, when given).

        One query over every predicate: a row is counted once per job, as erased when its
        subject key or a delete-reference matches, otherwise as unlinked (null-references).
        """
        match = _Match()
        erasing: list[tuple[int, dict[Any, set[str]]]] = []  # (column index, value -> jobs)
        linking: list[tuple[int, dict[Any, set[str]]]] = []
        columns: list[str] = []
        if dataset.subject_key is not None:
            own = self._own_ids(connection, dialect, dataset)
            if own:
                match.predicates.append(dialect.member_of(dataset.subject_key, "own"))
                match.params["own"] = dialect.values(own)
                erasing.append((len(columns), own))
                columns.append(dataset.subject_key)
        for index, reference in enumerate(dataset.references):
            parent = self.registry.dataset(reference.dataset)
            if not parent.holds_tenant(self.tenant):
                continue  # not this tenant's data: its rows are someone else's
            keys = self._parent_keys(reference.dataset)
            if not keys:
                continue
            parameter = f"ref{index}"
            match.params[parameter] = dialect.values(keys)
            if reference.on_erase == "null":
                match.unlinks.append((reference.column, parameter))
                linking.append((len(columns), keys))
            else:
                match.predicates.append(dialect.member_of(reference.column, parameter))
                match.deletes.append((reference.column, parameter))
                erasing.append((len(columns), keys))
            columns.append(reference.column)
        everything = match.predicates + [dialect.member_of(c, p) for c, p in match.unlinks]
        if not everything:
            return _restrict(match, jobs)
        key_index = None
        if dataset.key is not None and self.registry.referrers.get(dataset.name):
            key_index = len(columns)
            columns.append(dataset.key)
        selected = ", ".join(dialect.q(c) for c in columns)
        where = self._where(dialect, dataset, everything)
        sql = f"SELECT {selected} FROM {dialect.q(dataset.table)} WHERE {where}"
        for row in connection.execute(text(sql), self._params(dataset, match.params)):
            erased: set[str] = set()
            for column_index, values in erasing:
                erased |= values.get(row[column_index], set())
            linked: set[str] = set()
            for column_index, values in linking:
                linked |= values.get(row[column_index], set())
            for job in erased:
                match.rows[job] += 1
            for job in linked - erased:
                match.unlink[job] += 1
            if key_index is not None and erased:
                match.keys.setdefault(row[key_index], set()).update(erased)
        return _restrict(match, jobs)

    def _where(self, dialect: SqlDialect, dataset: Dataset, predicates: Sequence[str]) -> str:
        where = "(" + " OR ".join(predicates) + ")"
        if dataset.tenant_column:
            where += f" AND {dialect.q(dataset.tenant_column)} = :tenant"
        return where

    def _params(self, dataset: Dataset, params: Mapping[str, Any]) -> dict[str, Any]:
        bound = dict(params)
        if dataset.tenant_column:
            bound["tenant"] = self.tenant
        return bound

    # -- erasing -------------------------------------------------------------------------

    def _erase(
        self, connection: Connection, dialect: SqlDialect, dataset: Dataset, match: _Match
    ) -> int:
        """Delete or anonymise the matched rows and null the matched links; rows changed."""
        table = dialect.q(dataset.table)
        changed = 0
        for column, parameter in match.unlinks:
            where = self._where(dialect, dataset, [dialect.member_of(column, parameter)])
            result = connection.execute(
                text(f"UPDATE {table} SET {dialect.q(column)} = NULL WHERE {where}"),
                self._params(dataset, {parameter: match.params[parameter]}),
            )
            changed += max(result.rowcount, 0)
        if match.predicates:
            where = self._where(dialect, dataset, match.predicates)
            params = self._params(
                dataset, {k: v for k, v in match.params.items() if f":{k}" in where}
            )
            if dataset.erase == "anonymise":
                assert dataset.subject_key is not None
                nulled = dict.fromkeys([*dataset.anonymise, dataset.subject_key])
                assignments = [f"{dialect.q(c)} = NULL" for c in nulled]
                # A row kept (anonymised) loses its links to erased rows too, or it would
                # still point at the subject (and block deleting the parent row).
                assignments += [
                    f"{dialect.q(column)} = CASE WHEN {dialect.member_of(column, parameter)} "
                    f"THEN NULL ELSE {dialect.q(column)} END"
                    for column, parameter in match.deletes
                    if column not in nulled
                ]
                sql = f"UPDATE {table} SET {', '.join(assignments)} WHERE {where}"
            else:
                sql = f"DELETE FROM {table} WHERE {where}"
            changed += max(connection.execute(text(sql), params).rowcount, 0)
        return changed


def _restrict(match: _Match, jobs: Sequence[str] | None) -> _Match:
    """Keep only the counts of `jobs` (all when None)."""
    if jobs is not None:
        wanted = set(jobs)
        match.rows = Counter({j: n for j, n in match.rows.items() if j in wanted})
        match.unlink = Counter({j: n for j, n in match.unlink.items() if j in wanted})
    return match


def _op(dataset: Dataset) -> str:
    """The manifest's name for what a step does to a dataset."""
    if (
        dataset.subject_key is None
        and dataset.references
        and all(r.on_erase == "null" for r in dataset.references)
    ):
        return "unlink"
    return "anonymise" if dataset.erase == "anonymise" else "delete"


def _describe(exc: Exception) -> str:
    """A datastore failure, described without its message: a driver's message can quote a bound
    value (a subject id), and this text is stored with the job and crosses regions. The error's
    class and code (PostgreSQL SQLSTATE, SQLite error name) say what kind of failure it was."""
    original = getattr(exc, "orig", None) or exc
    code = getattr(original, "sqlstate", None) or getattr(original, "sqlite_errorname", None)
    return (
        f"{type(original).__name__}"
        + (f" ({code})" if code else "")
        + ("; the datastore's own log has the details")
    )
