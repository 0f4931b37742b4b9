"""`python -m samplegraph`: generate the sample graph if needed and serve it over HTTP."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from aiohttp import web

from samplegraph.data import DEFAULT_PEOPLE, DEFAULT_SEED, generate_database
from samplegraph.server import GRAPH_KEY, create_app

DB_NAME = "samplegraph.sqlite"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m samplegraph", description="Serve the sample graph API (GraphQL)."
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8081, help="port (default 8081; 0 = any)")
    parser.add_argument(
        "--data-dir", type=Path, required=True, help=f"directory of {DB_NAME} (created if needed)"
    )
    parser.add_argument("--people", type=int, default=DEFAULT_PEOPLE, help="number of people")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="generator seed")
    parser.add_argument("--sdl", type=Path, default=None, help="SDL file (default: the demo's)")
    return parser


async def _serve(db_path: Path, host: str, port: int, sdl: Path | None) -> None:
    app = create_app(db_path, sdl_path=sdl)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][1]  # the real port when asked for 0
        people = app[GRAPH_KEY].count("person")
        print(f"samplegraph: {people} people at http://{host}:{bound}/graphql", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.people < 1:
        print("samplegraph: --people must be >= 1", file=sys.stderr)
        return 2
    db_path = generate_database(args.data_dir / DB_NAME, people=args.people, seed=args.seed)
    asyncio.run(_serve(db_path, args.host, args.port, args.sdl))
    return 0


if __name__ == "__main__":
    sys.exit(main())
