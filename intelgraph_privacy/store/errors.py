"""The error the store raises when the database fails a statement or a transaction."""

from __future__ import annotations

from intelgraph_privacy.errors import PrivacyError


class StoreError(PrivacyError):
    """A database operation failed (connection lost, lock timeout, constraint violated, ...).

    The driver's exception is chained as `__cause__`. On the request path this is a store error
    like any other: fail closed.
    """
