"""Approved cost shapes: a cap in USD per operation id and tenant, recorded with who approved it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, insert, select

from intelgraph_privacy.errors import PrivacyError
from intelgraph_privacy.store import Store
from intelgraph_privacy.store.schema import cost_shapes

MAX_OP_ID_LENGTH = 255
#: A cap above this is a typo, not a cap.
MAX_CAP_USD = 1_000_000.0


class CostShapeError(PrivacyError):
    """A cost shape that cannot be approved."""


@dataclass(frozen=True, slots=True)
class CostShape:
    """One approved cap."""

    id: int
    op_id: str
    tenant: str
    cap_usd: float
    approved_by: str
    approved_at: datetime
    status: str


def approve_cost_shape(
    connection: Connection,
    op_id: str,
    cap_usd: float,
    *,
    tenant: str,
    approved_by: str,
    now: datetime | None = None,
) -> int:
    """Record an approved cap in the caller's transaction; its id. CostShapeError on bad input."""
    if not isinstance(op_id, str) or not op_id.strip() or len(op_id) > MAX_OP_ID_LENGTH:
        raise CostShapeError(f"opId must be a non-empty string of at most {MAX_OP_ID_LENGTH}")
    if not isinstance(cap_usd, int | float) or not math.isfinite(cap_usd):
        raise CostShapeError("capUSD must be a finite number")
    if not 0 < cap_usd <= MAX_CAP_USD:
        raise CostShapeError(f"capUSD must be above 0 and at most {MAX_CAP_USD:,.0f}")
    result = connection.execute(
        insert(cost_shapes)
        .values(
            op_id=op_id,
            tenant=tenant,
            cap_usd=float(cap_usd),
            approved_by=approved_by,
            approved_at=now or datetime.now(UTC),
            status="approved",
        )
        .returning(cost_shapes.c.id)
    )
    return int(result.scalar_one())


def approved_shapes(store: Store, *, tenant: str | None = None) -> tuple[CostShape, ...]:
    """Approved caps, oldest first (of one tenant when given)."""
    query = select(cost_shapes).order_by(cost_shapes.c.id)
    if tenant is not None:
        query = query.where(cost_shapes.c.tenant == tenant)
    with store.read() as connection:
        return tuple(
            CostShape(r.id, r.op_id, r.tenant, r.cap_usd, r.approved_by, r.approved_at, r.status)
            for r in connection.execute(query)
        )
