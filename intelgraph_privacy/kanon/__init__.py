"""k-anonymity for analytics results: generalise quasi-identifiers, suppress a few rows.

```python
from intelgraph_privacy.kanon import kanonize, check_k, load_hierarchies

result = kanonize(rows, ["age", "city"], k=5, hierarchies=load_hierarchies("geo.yaml"))
result.rows       # same form as `rows`: generalised values, suppressed rows removed
result.metrics    # ncp, discernibility, average_class_size, suppressed, classes, runtime_seconds
assert check_k(result.rows, ["age", "city"], 5)
```

- `kanonize(rows, quasi_identifiers, k=5, *, hierarchies=None, suppression_limit=0.02,
  sensitive=None, l=None, count=None) -> KAnonResult`
- `check_k(rows, quasi_identifiers, k, *, count=None) -> bool`
- `load_hierarchies(path) -> dict[str, Hierarchy]`; `Hierarchy` (a categorical tree)
- `KAnonError` (a `PrivacyError`) for bad input and tables that cannot be anonymised.

The partitioning is described in `intelgraph_privacy.kanon.mondrian`, the metrics (NCP,
discernibility) in `intelgraph_privacy.kanon.metrics`, the YAML form of hierarchies in
`intelgraph_privacy.kanon.hierarchies`.
"""

from intelgraph_privacy.kanon.core import KAnonResult, check_k, kanonize
from intelgraph_privacy.kanon.errors import KAnonError
from intelgraph_privacy.kanon.hierarchies import (
    Hierarchy,
    hierarchies_from_mapping,
    load_hierarchies,
)
from intelgraph_privacy.kanon.metrics import KAnonMetrics

__all__ = [
    "Hierarchy",
    "KAnonError",
    "KAnonMetrics",
    "KAnonResult",
    "check_k",
    "hierarchies_from_mapping",
    "kanonize",
    "load_hierarchies",
]
