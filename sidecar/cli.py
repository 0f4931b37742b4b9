"""The `intelgraph-privacy` console script: the library's commands plus `sidecar` and `demo`."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from intelgraph_privacy.cli import _default, build_parser, run


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `intelgraph-privacy`."""
    parser, commands = build_parser()

    sidecar = commands.add_parser("sidecar", help="run the redacting GraphQL proxy")
    sidecar.add_argument(
        "--config",
        type=Path,
        help="YAML configuration (every setting also INTELGRAPH_<SECTION>__<KEY>)",
    )
    sidecar.set_defaults(run=_sidecar)

    demo = commands.add_parser(
        "demo", help="start the sample graph API and the sidecar in front of it, with demo keys"
    )
    demo.add_argument("--port", type=int, default=8080, help="sidecar port (default 8080)")
    demo.add_argument("--upstream-port", type=int, default=8081, help="sample graph port (8081)")
    demo.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    demo.add_argument("--data-dir", type=Path, default=Path(".demo-data"))
    demo.add_argument("--people", type=int, default=5000, help="people in the sample graph")
    demo.add_argument("--catalog", type=Path, default=Path(_default("presets/catalog.yaml")))
    demo.add_argument("--policies", type=Path, default=Path(_default("rego")))
    demo.add_argument("--purposes", type=Path, default=Path(_default("presets/purposes.yaml")))
    demo.set_defaults(run=_demo)
    return run(parser, argv)


def _sidecar(args: argparse.Namespace) -> int:
    from aiohttp import web

    from intelgraph_privacy.config import load_config
    from sidecar.app import create_app
    from sidecar.logs import configure_logging

    config = load_config(args.config)
    log = configure_logging(config.log_level)
    app = create_app(config)
    log.info(
        "sidecar starting", extra={"port": config.listen.port, "upstream": config.upstream.url}
    )
    web.run_app(app, host=config.listen.host, port=config.listen.port, print=None)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from sidecar.demo import DemoOptions, run_demo

    options = DemoOptions(
        host=args.host,
        port=args.port,
        upstream_port=args.upstream_port,
        data_dir=args.data_dir,
        people=args.people,
        catalog=args.catalog,
        policies=args.policies,
        purposes=args.purposes,
    )
    asyncio.run(run_demo(options, out=sys.stdout))
    return 0


if __name__ == "__main__":
    sys.exit(main())
