"""`intelgraph-privacy budget`: read a tenant's privacy budget and its releases from the store.

```sh
intelgraph-privacy budget show --tenant demo --purpose export --data-dir .demo-data
intelgraph-privacy budget releases --tenant demo --limit 5 --data-dir .demo-data
```

The budget (epsilon and delta per window) is the sidecar's `dp` section with `--config`, the
sidecar's defaults otherwise (epsilon 10, delta 1e-5, a day), so that what `show` reports is
what the sidecar and `export` enforce.
"""

from __future__ import annotations

import argparse
import json
from datetime import timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from intelgraph_privacy.dp.ledger import BudgetLedger

__all__ = ["add_budget_commands", "ledger_from_args"]


def add_budget_commands(commands: argparse._SubParsersAction[Any]) -> None:
    """Add `budget show` and `budget releases` to a parser's sub-parsers."""
    from intelgraph_privacy.cli import add_store_arguments

    budget = commands.add_parser("budget", help="a tenant's privacy budget and its DP releases")
    actions = budget.add_subparsers(dest="budget_command", required=True, metavar="ACTION")

    show = actions.add_parser(
        "show",
        help="what a tenant may still spend in the current window",
        description="Print a tenant's remaining epsilon and delta for one purpose, as JSON.",
    )
    show.add_argument("--tenant", required=True)
    show.add_argument("--purpose", default="export", help="the budget's purpose (export)")
    add_store_arguments(show)
    show.set_defaults(run=_show)

    releases = actions.add_parser(
        "releases",
        help="a tenant's recent DP releases, newest first",
        description="Print a tenant's recent releases with their proof records, as JSON.",
    )
    releases.add_argument("--tenant", required=True)
    releases.add_argument("--purpose", help="only releases charged to this purpose")
    releases.add_argument("--limit", type=_positive, default=20, help="at most this many (20)")
    add_store_arguments(releases)
    releases.set_defaults(run=_releases)


def ledger_from_args(args: argparse.Namespace) -> BudgetLedger:
    """The budget ledger of the store that `--data-dir`, `--config` or `--store` names."""
    from intelgraph_privacy.cli import open_store_from_args
    from intelgraph_privacy.config import DpConfig
    from intelgraph_privacy.dp.ledger import Budget, BudgetLedger

    settings = DpConfig()
    if args.config:
        from intelgraph_privacy.config import load_config

        settings = load_config(args.config).dp
    store = open_store_from_args(args)
    return BudgetLedger(
        store,
        budgets=Budget(epsilon=settings.budget_epsilon, delta=settings.budget_delta),
        window=timedelta(seconds=settings.window_seconds),
    )


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _show(args: argparse.Namespace) -> int:
    ledger = ledger_from_args(args)
    try:
        left = ledger.remaining(args.tenant, args.purpose)
        budget = ledger.budget_for(args.tenant, args.purpose)
    finally:
        ledger.store.close()
    report = {
        "tenant": args.tenant,
        "purpose": args.purpose,
        "window_start": left.window_start.isoformat(),
        "window_seconds": int(ledger.window.total_seconds()),
        "budget": {"epsilon": budget.epsilon, "delta": budget.delta} if budget else None,
        "epsilon_left": left.epsilon_left,
        "delta_left": left.delta_left,
        "releases": left.releases,
    }
    print(json.dumps(report, indent=2))
    return 0


def _releases(args: argparse.Namespace) -> int:
    ledger = ledger_from_args(args)
    try:
        records = ledger.releases(args.tenant, purpose=args.purpose, limit=args.limit)
    finally:
        ledger.store.close()
    listing = [
        {
            "release_id": r.release_id,
            "ts": r.ts.isoformat(),
            "purpose": r.purpose,
            "aggregate": r.aggregate,
            "mechanism": r.mechanism,
            "preset": r.preset,
            "epsilon": r.epsilon,
            "delta": r.delta,
        }
        for r in records
    ]
    print(json.dumps(listing, indent=2))
    return 0
