"""Revoked token ids: recorded in the store, checked by every verifier that shares it.

A revocation row lives as long as the token could (the maximum token age): after that the token
is refused as too old anyway, and the row may be pruned.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, delete, select
from sqlalchemy.dialects import postgresql, sqlite

from intelgraph_privacy.errors import ConfigError
from intelgraph_privacy.store import Store
from intelgraph_privacy.store.schema import revoked_tokens
from intelgraph_privacy.store.versions import REVOCATIONS, bump_version
from intelgraph_privacy.tokens.verify import DEFAULT_MAX_TOKEN_AGE, MAX_LEEWAY_SECONDS

MAX_JTI_LENGTH = 255


def revoke_token(
    store: Store,
    jti: str,
    *,
    revoked_by: str,
    reason: str | None = None,
    max_token_age: int = DEFAULT_MAX_TOKEN_AGE,
    now: datetime | None = None,
) -> bool:
    """Revoke the token with this `jti`; False when it was already revoked (idempotent)."""
    with store.begin() as connection:
        return record_revocation(
            connection,
            jti,
            revoked_by=revoked_by,
            reason=reason,
            max_token_age=max_token_age,
            now=now,
        )


def record_revocation(
    connection: Connection,
    jti: str,
    *,
    revoked_by: str,
    reason: str | None = None,
    max_token_age: int = DEFAULT_MAX_TOKEN_AGE,
    now: datetime | None = None,
) -> bool:
    """`revoke_token` inside the caller's write transaction (to commit with an audit record)."""
    if not isinstance(jti, str) or not jti or len(jti) > MAX_JTI_LENGTH:
        raise ConfigError(f"a token id (jti) is a non-empty string of at most {MAX_JTI_LENGTH}")
    now = now or datetime.now(UTC)
    # Kept until no token carrying this jti can still be accepted.
    expires = now + timedelta(seconds=max_token_age + MAX_LEEWAY_SECONDS)
    insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
    # RETURNING, not rowcount: psycopg reports -1 for INSERT ... ON CONFLICT through SQLAlchemy.
    inserted = connection.execute(
        insert(revoked_tokens)
        .values(jti=jti, revoked_at=now, expires_at=expires, revoked_by=revoked_by, reason=reason)
        .on_conflict_do_nothing(index_elements=[revoked_tokens.c.jti])
        .returning(revoked_tokens.c.jti)
    ).first()
    if inserted is not None:
        bump_version(connection, REVOCATIONS)
    return inserted is not None


def revoked_token_ids(store: Store, *, now: datetime | None = None) -> frozenset[str]:
    """The ids of every revoked token that could still be presented."""
    now = now or datetime.now(UTC)
    with store.read() as connection:
        rows = connection.scalars(
            select(revoked_tokens.c.jti).where(revoked_tokens.c.expires_at > now)
        )
        return frozenset(rows)


def prune_revocations(store: Store, *, now: datetime | None = None) -> int:
    """Delete revocations of tokens that can no longer be accepted; how many went."""
    now = now or datetime.now(UTC)
    with store.begin() as connection:
        return int(
            connection.execute(
                delete(revoked_tokens).where(revoked_tokens.c.expires_at <= now)
            ).rowcount
        )


class RevocationList:
    """An in-memory snapshot of the revoked ids, used as a verifier's `revoked` check.

    `replace` swaps in a freshly loaded snapshot atomically; `add` records a revocation made by
    this process at once, before the next reload.
    """

    def __init__(self, jtis: frozenset[str] = frozenset()) -> None:
        self._jtis = jtis

    def __call__(self, jti: str) -> bool:
        return jti in self._jtis

    def __len__(self) -> int:
        return len(self._jtis)

    def replace(self, jtis: frozenset[str]) -> None:
        """Serve this snapshot from now on."""
        self._jtis = frozenset(jtis)

    def add(self, jti: str) -> None:
        """Refuse `jti` from now on (until a reload that no longer lists it)."""
        self._jtis = self._jtis | {jti}
