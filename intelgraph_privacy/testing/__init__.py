"""Property-based testing of privacy invariants, for this project and for its users.

Point the strategies at your own schema, catalog and policies:

```python
from hypothesis import given
from intelgraph_privacy.testing import Canaries, assert_no_leak, principals, queries, responses
```

Needs the `testing` extra (hypothesis, hypothesis-graphql). The DP audit harness
(`intelgraph_privacy.testing.dp_audit`: `audit`, `AuditResult`) needs only the core install.
"""

from intelgraph_privacy.testing.dp_audit import AuditResult, DPViolationError, audit
from intelgraph_privacy.testing.harness import PrivacyHarness, RedactionCase
from intelgraph_privacy.testing.invariants import (
    assert_no_leak,
    assert_spec_nulls,
    protected_values,
)
from intelgraph_privacy.testing.strategies import (
    DEFAULT_PURPOSES,
    DEFAULT_ROLES,
    Canaries,
    principals,
    queries,
    responses,
)

__all__ = [
    "DEFAULT_PURPOSES",
    "DEFAULT_ROLES",
    "AuditResult",
    "Canaries",
    "DPViolationError",
    "PrivacyHarness",
    "RedactionCase",
    "assert_no_leak",
    "assert_spec_nulls",
    "audit",
    "principals",
    "protected_values",
    "queries",
    "responses",
]
