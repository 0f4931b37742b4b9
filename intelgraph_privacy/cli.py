"""The `intelgraph-privacy` command."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from intelgraph_privacy.errors import ConfigError, PrivacyError

if TYPE_CHECKING:
    from intelgraph_privacy.store import Store

#: Where `presets/` and `rego/` live: the current directory, else the source checkout.
_SEARCH_ROOTS = (Path.cwd(), Path(__file__).resolve().parents[1])


def _default(relative: str) -> str:
    for root in _SEARCH_ROOTS:
        candidate = root / relative
        if candidate.exists():
            return str(candidate)
    return relative


def main(argv: Sequence[str] | None = None) -> int:
    """Run the library's commands (the console script adds the sidecar's: see `sidecar.cli`)."""
    return run(build_parser()[0], argv)


def run(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """Parse `argv` and run the chosen command; a PrivacyError is printed, exit status 1."""
    # regorus prints Rust backtraces into error messages when this is set; ours are enough.
    os.environ.setdefault("RUST_BACKTRACE", "0")
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    try:
        return int(args.run(args))
    except PrivacyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def build_parser() -> tuple[argparse.ArgumentParser, argparse._SubParsersAction[Any]]:
    """The parser with the library's commands, and its sub-parsers for callers to extend."""
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

    explain = commands.add_parser(
        "explain",
        help="offline: show what the policies do to a sample response, per principal",
    )
    explain.add_argument("--schema", default=_default("presets/demo.graphql"))
    explain.add_argument("--catalog", default=_default("presets/catalog.yaml"))
    explain.add_argument("--policies", default=_default("rego"))
    explain.add_argument("--purpose", help="token purpose for every sample principal")
    explain.set_defaults(run=_explain)

    audit = commands.add_parser("audit", help="the hash-chained audit log")
    audit_commands = audit.add_subparsers(title="audit commands")
    verify = audit_commands.add_parser("verify", help="check the audit log's hash chain")
    add_store_arguments(verify)
    verify.add_argument(
        "--anchor",
        metavar="SEQ:HASH",
        help="an entry recorded earlier: also detects deleted newest records",
    )
    verify.set_defaults(run=_audit_verify)

    from intelgraph_privacy.cli_budget import add_budget_commands
    from intelgraph_privacy.cli_export import add_export_command
    from intelgraph_privacy.cli_manifest import add_manifest_commands
    from intelgraph_privacy.cli_retention import add_retention_commands
    from intelgraph_privacy.cli_rtbf import add_rtbf_commands
    from intelgraph_privacy.cli_tokens import add_token_commands

    add_token_commands(commands)
    add_export_command(commands)
    add_budget_commands(commands)
    add_rtbf_commands(commands)
    add_manifest_commands(commands)
    add_retention_commands(commands)
    return parser, commands


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    """`--data-dir`, `--config` and `--store`: where a command finds the store."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--data-dir", type=Path, help="the demo's data directory (SQLite store)")
    where.add_argument("--config", type=Path, help="the sidecar's configuration file")
    where.add_argument("--store", help="a store URL (postgresql://... or sqlite:///...)")


def open_store_from_args(args: argparse.Namespace) -> Store:
    """Open the existing store that `--data-dir`, `--config` or `--store` names (no migration).

    The default is the demo's `.demo-data`. A SQLite file that does not exist is an error, not a
    new empty store: reading commands never create anything.
    """
    from intelgraph_privacy.store import open_store
    from intelgraph_privacy.store.urls import SQLITE_FILE_NAME

    url: str | None = args.store
    data_dir: Path = args.data_dir or Path(".demo-data")
    if args.config:
        from intelgraph_privacy.config import load_store_config

        settings = load_store_config(args.config)
        url, data_dir = settings.url, settings.data_dir
    if url is None and not (data_dir / SQLITE_FILE_NAME).is_file():
        raise ConfigError(f"no store in {data_dir} (expected {data_dir / SQLITE_FILE_NAME})")
    if url is not None and url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///").split("?")[0])
        if not path.is_file():
            raise ConfigError(f"no store at {path}")
    return open_store(url, data_dir=data_dir, migrate=False)


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


def _audit_verify(args: argparse.Namespace) -> int:
    from intelgraph_privacy.audit import AuditLog

    anchor = None
    if args.anchor:
        seq, _, digest = args.anchor.partition(":")
        if not seq.isdigit() or len(digest) != 64:
            raise ConfigError("--anchor takes SEQ:HASH, e.g. 42:3f5a... (64 hex digits)")
        anchor = (int(seq), digest)
    store = open_store_from_args(args)
    try:
        result = AuditLog(store).verify(anchor=anchor)
    finally:
        store.close()
    if result.ok:
        print(f"audit log intact: {result.count} records, hash chain verified ({store.url})")
        return 0
    print(f"audit log TAMPERED at seq {result.first_bad_seq}: {result.reason}", file=sys.stderr)
    return 1


def _explain(args: argparse.Namespace) -> int:
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
