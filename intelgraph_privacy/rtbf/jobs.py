"""Erasure jobs: a request to forget a data subject within a scope, recorded in the store.

A job starts `pending`; the orchestrator moves it on. Asking again for the same subject and scope
while a job is open returns that job instead of a second one.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, insert, select

from intelgraph_privacy.errors import PrivacyError
from intelgraph_privacy.store import Store
from intelgraph_privacy.store.schema import rtbf_jobs

OPEN_STATUSES = ("pending", "running")
MAX_SUBJECT_ID_LENGTH = 255
_SCOPE = re.compile(r"tenant:([A-Za-z0-9][A-Za-z0-9._-]{0,127})")


class ErasureRequestError(PrivacyError):
    """An erasure request that cannot be accepted."""


@dataclass(frozen=True, slots=True)
class ErasureJob:
    """One erasure job."""

    id: str
    subject_id: str
    scope: str
    tenant: str
    requested_by: str
    requested_at: datetime
    status: str
    updated_at: datetime


def parse_scope(scope: str) -> str:
    """The tenant a scope names (`tenant:<id>`); ErasureRequestError otherwise."""
    match = _SCOPE.fullmatch(scope) if isinstance(scope, str) else None
    if match is None:
        raise ErasureRequestError("scope must be tenant:<tenant id> (e.g. tenant:acme)")
    return match.group(1)


def request_erasure(
    connection: Connection,
    subject_id: str,
    scope: str,
    *,
    requested_by: str,
    now: datetime | None = None,
) -> tuple[str, bool]:
    """Create a pending job in the caller's transaction: (job id, True), or (the open job's id,
    False) when one exists for this subject and scope. ErasureRequestError on bad input."""
    if not isinstance(subject_id, str) or not subject_id.strip():
        raise ErasureRequestError("subjectId must be a non-empty string")
    if len(subject_id) > MAX_SUBJECT_ID_LENGTH:
        raise ErasureRequestError(f"subjectId is longer than {MAX_SUBJECT_ID_LENGTH} characters")
    tenant = parse_scope(scope)
    existing = connection.scalar(
        select(rtbf_jobs.c.id)
        .where(
            rtbf_jobs.c.subject_id == subject_id,
            rtbf_jobs.c.scope == scope,
            rtbf_jobs.c.status.in_(OPEN_STATUSES),
        )
        .limit(1)
    )
    if existing is not None:
        return str(existing), False
    now = now or datetime.now(UTC)
    job_id = str(uuid.uuid4())
    connection.execute(
        insert(rtbf_jobs).values(
            id=job_id,
            subject_id=subject_id,
            scope=scope,
            tenant=tenant,
            requested_by=requested_by,
            requested_at=now,
            status="pending",
            updated_at=now,
        )
    )
    return job_id, True


def get_job(store: Store, job_id: str) -> ErasureJob | None:
    """The job with this id, or None."""
    with store.read() as connection:
        row = connection.execute(select(rtbf_jobs).where(rtbf_jobs.c.id == job_id)).first()
    if row is None:
        return None
    return ErasureJob(
        row.id,
        row.subject_id,
        row.scope,
        row.tenant,
        row.requested_by,
        row.requested_at,
        row.status,
        row.updated_at,
    )
