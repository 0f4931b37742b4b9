"""Differential privacy for aggregate exports: presets, float-safe mechanisms, budget ledger.

```python
from intelgraph_privacy.dp import release

r = release("sum", [12.5, 40.0, 33.1], preset="standard", bounds=(0, 100))
r.value, r.proof.as_dict()["mechanism"]   # (a noisy sum, 'snapping')
```

- `release(aggregate, data, ...)` -> `Release(value, proof)` for count, sum, mean, histogram and
  quantile (`intelgraph_privacy.dp.release`);
- `load_presets` / `DEFAULT_PRESETS`: the presets of presets/dp.yaml (strict, standard,
  relaxed) (`intelgraph_privacy.dp.presets`);
- the diffprivlib mechanisms and why they are safe under floating point
  (`intelgraph_privacy.dp.mechanisms`);
- `BudgetLedger`, `Budget`, `Debit`, `BudgetExceededError`: the per-tenant budget in the store
  (`intelgraph_privacy.dp.ledger`), imported on first use so that releasing without a ledger
  does not load the store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from intelgraph_privacy.dp.mechanisms import EXPONENTIAL, GEOMETRIC, SNAPPING, Component
from intelgraph_privacy.dp.presets import (
    CUSTOM_PRESET,
    DEFAULT_PRESETS,
    CustomEpsilon,
    DPError,
    DPPresets,
    Preset,
    PresetError,
    ReleaseError,
    Resolved,
    load_presets,
    presets_from_mapping,
)
from intelgraph_privacy.dp.release import (
    AGGREGATES,
    BudgetDebit,
    BudgetDebiter,
    Release,
    ReleaseProof,
    release,
)

if TYPE_CHECKING:
    from intelgraph_privacy.dp.ledger import Budget, BudgetExceededError, BudgetLedger, Debit

__all__ = [
    "AGGREGATES",
    "CUSTOM_PRESET",
    "DEFAULT_PRESETS",
    "EXPONENTIAL",
    "GEOMETRIC",
    "SNAPPING",
    "Budget",
    "BudgetDebit",
    "BudgetDebiter",
    "BudgetExceededError",
    "BudgetLedger",
    "Component",
    "CustomEpsilon",
    "DPError",
    "DPPresets",
    "Debit",
    "Preset",
    "PresetError",
    "Release",
    "ReleaseError",
    "ReleaseProof",
    "Resolved",
    "load_presets",
    "presets_from_mapping",
    "release",
]

#: The ledger's names, imported from intelgraph_privacy.dp.ledger when first asked for.
_LEDGER_NAMES = frozenset({"Budget", "BudgetExceededError", "BudgetLedger", "Debit"})


def __getattr__(name: str) -> Any:
    if name in _LEDGER_NAMES:
        from intelgraph_privacy.dp import ledger

        value = getattr(ledger, name)
        globals()[name] = value  # later lookups skip __getattr__
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
