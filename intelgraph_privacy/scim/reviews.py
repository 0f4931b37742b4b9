"""Access reviews: how many are open for a tenant (the admin API's `accessReviewOpen`)."""

from __future__ import annotations

from sqlalchemy import func, select

from intelgraph_privacy.store import Store
from intelgraph_privacy.store.schema import access_reviews


def count_open_reviews(store: Store, *, tenant: str) -> int:
    """The number of the tenant's access reviews with status `open`."""
    with store.read() as connection:
        count = connection.scalar(
            select(func.count())
            .select_from(access_reviews)
            .where(access_reviews.c.tenant == tenant, access_reviews.c.status == "open")
        )
    return int(count or 0)
