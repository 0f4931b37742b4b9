"""The `intelgraph-privacy` command."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from intelgraph_privacy.errors import PrivacyError

#: Where `presets/` and `rego/` live: the current directory, else the source checkout.
_SEARCH_ROOTS = (Path.cwd(), Path(__file__).resolve().parents[1])


def _default(relative: str) -> str:
    for root in _SEARCH_ROOTS:
        candidate = root / relative
        if candidate.exists():
            return str(candidate)
    return relative


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    # regorus prints Rust backtraces into error messages when this is set; ours are enough.
    os.environ.setdefault("RUST_BACKTRACE", "0")
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    try:
        return int(args.run(args))
    except PrivacyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="intelgraph-privacy", description="Policy-as-code privacy for GraphQL graph APIs."
    )
    commands = parser.add_subparsers(title="commands")

    policy = commands.add_parser("policy", help="work with Rego policy bundles")
    policy_commands = policy.add_subparsers(title="policy commands")
    test = policy_commands.add_parser("test", help="run a bundle's test_* rules")
    test.add_argument("directory", help="directory of .rego files (or one file)")
    test.add_argument("-v", "--verbose", action="store_true", help="list every test")
    test.set_defaults(run=_policy_test)

    catalog = commands.add_parser("catalog", help="work with the field catalog")
    catalog_commands = catalog.add_subparsers(title="catalog commands")
    check = catalog_commands.add_parser("check", help="validate a catalog against a schema")
    check.add_argument("--schema", default=_default("presets/demo.graphql"))
    check.add_argument("--catalog", default=_default("presets/catalog.yaml"))
    check.set_defaults(run=_catalog_check)

    demo = commands.add_parser(
        "demo", help="show what the shipped policies do to a sample response, per principal"
    )
    demo.add_argument("--schema", default=_default("presets/demo.graphql"))
    demo.add_argument("--catalog", default=_default("presets/catalog.yaml"))
    demo.add_argument("--policies", default=_default("rego"))
    demo.add_argument("--purpose", help="token purpose for every demo principal")
    demo.set_defaults(run=_demo)
    return parser


def _policy_test(args: argparse.Namespace) -> int:
    from intelgraph_privacy.policy import load_bundle, run_rego_tests

    bundle = load_bundle(args.directory)
    results = run_rego_tests(bundle)
    failed = [r for r in results if r.outcome != "pass"]
    for r in results:
        if args.verbose or r.outcome != "pass":
            detail = f": {r.detail}" if r.detail else ""
            print(f"{r.outcome.upper():5} {r.rule} ({r.seconds * 1e3:.2f} ms){detail}")
    print(
        f"{len(results) - len(failed)} passed, {len(failed)} failed "
        f"(bundle {bundle.version}, Rego {bundle.syntax}, {len(bundle.files)} files)"
    )
    if not results:
        print("error: the bundle has no test_* rules", file=sys.stderr)
        return 1
    return 1 if failed else 0


def _catalog_check(args: argparse.Namespace) -> int:
    from intelgraph_privacy.catalog import load_catalog
    from intelgraph_privacy.schema import load_schema

    catalog = load_catalog(args.catalog, load_schema(args.schema))
    print(f"{args.catalog}: {len(catalog.declared)} entries, valid against {args.schema}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from intelgraph_privacy.demo import run_demo

    run_demo(
        Path(args.schema),
        Path(args.catalog),
        Path(args.policies),
        purpose=args.purpose,
        out=sys.stdout,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
