"""Erasure jobs: a request to forget a data subject within a scope, recorded in the store.

A job starts `pending`; the orchestrator moves it on (`running`, then `done` or `failed`; a
failed job is resumed by running it again). Asking again for the same subject and scope while a
job is open returns that job instead of a second one.

The store never holds the subject's id: a job names its subject by the keyed hash
(`intelgraph_privacy.rtbf.tombstones.subject_hash`), written `hmac-sha256:<hex>` in its
`subject_id` column, and every region finds the subject's rows by that hash.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, insert, select

from intelgraph_privacy.codec import dumps, loads
from intelgraph_privacy.errors import PrivacyError
from intelgraph_privacy.rtbf.tombstones import HASH_SCHEME
from intelgraph_privacy.store import Store
from intelgraph_privacy.store.schema import rtbf_jobs

OPEN_STATUSES = ("pending", "running")
#: Statuses a job can be run (or resumed) from.
RUNNABLE_STATUSES = ("pending", "running", "failed")
MAX_SUBJECT_ID_LENGTH = 255
_HEX64 = re.compile(r"[0-9a-f]{64}")
_SCOPE = re.compile(r"tenant:([A-Za-z0-9][A-Za-z0-9._-]{0,127})")


class ErasureRequestError(PrivacyError):
    """An erasure request that cannot be accepted."""


@dataclass(frozen=True, slots=True)
class ErasureJob:
    """One erasure job, as recorded."""

    id: str
    #: `hmac-sha256:<hex>`: the subject's keyed hash, never its id.
    subject_id: str
    scope: str
    tenant: str
    requested_by: str
    requested_at: datetime
    status: str
    updated_at: datetime
    subject_hash: str | None = None
    regions: tuple[str, ...] = ()
    policy_version: str | None = None
    completed_at: datetime | None = None
    error: str | None = None
    manifest: str | None = None


def parse_scope(scope: str) -> str:
    """The tenant a scope names (`tenant:<id>`); ErasureRequestError otherwise."""
    match = _SCOPE.fullmatch(scope) if isinstance(scope, str) else None
    if match is None:
        raise ErasureRequestError("scope must be tenant:<tenant id> (e.g. tenant:acme)")
    return match.group(1)


def check_subject_id(subject_id: object) -> str:
    """The subject id, checked (ErasureRequestError when empty or too long)."""
    if not isinstance(subject_id, str) or not subject_id.strip():
        raise ErasureRequestError("subjectId must be a non-empty string")
    if len(subject_id) > MAX_SUBJECT_ID_LENGTH:
        raise ErasureRequestError(f"subjectId is longer than {MAX_SUBJECT_ID_LENGTH} characters")
    if subject_id != subject_id.strip():
        # " P-1" would match nothing and still be reported erased: refuse, do not guess.
        raise ErasureRequestError("subjectId has leading or trailing whitespace")
    return subject_id


def request_erasure(
    connection: Connection,
    subject_hash: str,
    scope: str,
    *,
    requested_by: str,
    regions: Sequence[str] = (),
    policy_version: str | None = None,
    now: datetime | None = None,
) -> tuple[str, bool]:
    """Create a pending job for the subject with this keyed hash, in the caller's transaction.

    Returns (job id, True), or (the open job's id, False) when one exists for this subject and
    scope. `regions`: the regions whose executors must report (the plan's). ErasureRequestError
    on bad input.
    """
    [created] = request_erasures(
        connection,
        [subject_hash],
        scope,
        requested_by=requested_by,
        regions=regions,
        policy_version=policy_version,
        now=now,
    )
    return created


def request_erasures(
    connection: Connection,
    subject_hashes: Sequence[str],
    scope: str,
    *,
    requested_by: str,
    regions: Sequence[str] = (),
    policy_version: str | None = None,
    now: datetime | None = None,
) -> list[tuple[str, bool]]:
    """`request_erasure` for many subjects: one lookup of open jobs, one multi-row insert."""
    for subject_hash in subject_hashes:
        if not _HEX64.fullmatch(subject_hash):
            raise ErasureRequestError("the subject hash must be 64 hexadecimal digits")
    tenant = parse_scope(scope)
    references = [HASH_SCHEME + h for h in subject_hashes]
    open_jobs: dict[str, str] = {}
    for start in range(0, len(references), 2_000):
        chunk = references[start : start + 2_000]
        query = select(rtbf_jobs.c.subject_id, rtbf_jobs.c.id).where(
            rtbf_jobs.c.subject_id.in_(chunk),
            rtbf_jobs.c.scope == scope,
            rtbf_jobs.c.status.in_(OPEN_STATUSES),
        )
        for subject, job_id in connection.execute(query):
            open_jobs.setdefault(str(subject), str(job_id))
    now = now or datetime.now(UTC)
    created: list[tuple[str, bool]] = []
    rows = []
    for subject_hash, reference in zip(subject_hashes, references, strict=True):
        existing = open_jobs.get(reference)
        if existing is not None:
            created.append((existing, False))
            continue
        job_id = str(uuid.uuid4())
        open_jobs[reference] = job_id  # the same subject twice in one call: one job
        created.append((job_id, True))
        rows.append(
            {
                "id": job_id,
                "subject_id": reference,
                "subject_hash": subject_hash,
                "scope": scope,
                "tenant": tenant,
                "requested_by": requested_by,
                "requested_at": now,
                "status": "pending",
                "updated_at": now,
                "regions": dumps(list(regions)).decode(),
                "policy_version": policy_version,
            }
        )
    if rows:
        connection.execute(insert(rtbf_jobs), rows)
    return created


def get_job(store: Store, job_id: str) -> ErasureJob | None:
    """The job with this id, or None."""
    with store.read() as connection:
        row = connection.execute(select(rtbf_jobs).where(rtbf_jobs.c.id == job_id)).first()
    return None if row is None else job_from_row(row)


def job_from_row(row: Any) -> ErasureJob:
    """An ErasureJob from a `rtbf_jobs` row."""
    return ErasureJob(
        id=row.id,
        subject_id=row.subject_id,
        scope=row.scope,
        tenant=row.tenant,
        requested_by=row.requested_by,
        requested_at=row.requested_at,
        status=row.status,
        updated_at=row.updated_at,
        subject_hash=row.subject_hash,
        regions=tuple(loads(row.regions)) if row.regions else (),
        policy_version=row.policy_version,
        completed_at=row.completed_at,
        error=row.error,
        manifest=row.manifest,
    )
