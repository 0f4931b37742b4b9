"""Subject hashes and tombstones: what remains of an erased subject, and how it is recognised.

A subject is known outside its data only by a keyed hash of its id: HMAC-SHA256 under the
deployment's secret key, so that nobody without the key can test whether some id was erased,
and nobody with the store alone can recover it. A tombstone is that hash with the tenant and
the job that erased it. Writers ask `refuse_if_erased` before ingesting a subject again, and
the sidecar withholds responses about a tombstoned subject.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import Connection, insert, select

from intelgraph_privacy.errors import PrivacyError
from intelgraph_privacy.store import Store
from intelgraph_privacy.store.schema import tombstones

__all__ = [
    "HASH_SCHEME",
    "ErasedSubjectError",
    "SubjectHasher",
    "add_tombstones",
    "is_erased",
    "refuse_if_erased",
    "subject_hash",
    "tombstoned_hashes",
]

#: How a manifest names the subject: this prefix, then the hex hash.
HASH_SCHEME = "hmac-sha256:"
# Domain separation: the same key also keys the pseudonyms of `hash` redactions.
_DOMAIN = b"intelgraph-rtbf-subject\x00"
MIN_KEY_BYTES = 16


class ErasedSubjectError(PrivacyError):
    """A write about a subject who was erased (a tombstone exists)."""


def subject_hash(key: bytes, subject_id: object) -> str:
    """The keyed hash (hex) of a subject id; ids are compared as text (`str()`)."""
    return SubjectHasher(key)(subject_id)


class SubjectHasher:
    """`subject_hash` under one key, for many ids: the key and domain are absorbed once."""

    __slots__ = ("_prefix",)

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"the subject hash key must be at least {MIN_KEY_BYTES} bytes")
        self._prefix = hmac.new(key, _DOMAIN, hashlib.sha256)

    def __call__(self, subject_id: object) -> str:
        """The keyed hash (hex) of one subject id."""
        mac = self._prefix.copy()
        mac.update(str(subject_id).encode("utf-8"))
        return mac.hexdigest()


def add_tombstones(
    connection: Connection, tenant: str, hashes: Iterable[tuple[str, str]], now: datetime
) -> int:
    """Record tombstones of (subject hash, job id) pairs in the caller's transaction.

    Idempotent: a subject already tombstoned keeps its first tombstone. Returns how many were new.
    """
    pairs = dict(hashes)
    if not pairs:
        return 0
    listed = list(pairs)
    existing: set[str] = set()
    for start in range(0, len(listed), 2_000):
        existing.update(
            connection.scalars(
                select(tombstones.c.subject_hash).where(
                    tombstones.c.tenant == tenant,
                    tombstones.c.subject_hash.in_(listed[start : start + 2_000]),
                )
            )
        )
    rows = [
        {"tenant": tenant, "subject_hash": h, "job_id": job, "created_at": now}
        for h, job in pairs.items()
        if h not in existing
    ]
    if rows:
        connection.execute(insert(tombstones), rows)
    return len(rows)


def is_erased(store: Store, tenant: str, hashed: str) -> bool:
    """Whether a tombstone exists for this subject hash in `tenant`."""
    with store.read() as connection:
        found = connection.scalar(
            select(tombstones.c.job_id).where(
                tombstones.c.tenant == tenant, tombstones.c.subject_hash == hashed
            )
        )
    return found is not None


def refuse_if_erased(store: Store, key: bytes, tenant: str, subject_id: object) -> None:
    """Raise ErasedSubjectError when `subject_id` of `tenant` was erased: for writers, before
    they ingest a subject (again)."""
    if is_erased(store, tenant, subject_hash(key, subject_id)):
        raise ErasedSubjectError(
            f"subject refused: it was erased from tenant {tenant!r} (right to be forgotten); "
            "ingesting it again would undo the erasure"
        )


def tombstoned_hashes(store: Store, tenant: str | None = None) -> set[tuple[str, str]]:
    """Every (tenant, subject hash) tombstone, or those of one tenant."""
    query = select(tombstones.c.tenant, tombstones.c.subject_hash)
    if tenant is not None:
        query = query.where(tombstones.c.tenant == tenant)
    with store.read() as connection:
        return {(str(t), str(h)) for t, h in connection.execute(query)}
