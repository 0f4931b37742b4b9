"""The k-anonymity module's error type."""

from __future__ import annotations

from intelgraph_privacy.errors import PrivacyError


class KAnonError(PrivacyError):
    """Bad input to k-anonymisation (a missing or unknown column, k < 2, a value missing from its
    hierarchy, mixed types, an invalid hierarchy file...) or a table that cannot be anonymised
    as asked (fewer than k individuals, fewer than l distinct sensitive values).

    The message names the column (and the file, for hierarchies) and the problem.
    """
