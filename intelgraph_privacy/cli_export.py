"""`intelgraph-privacy export`: a differentially private aggregate of a CSV or JSON Lines file.

```sh
intelgraph-privacy export people.csv --aggregate mean --column age --bounds 0,120 \
    --preset standard --tenant acme --purpose export --data-dir .demo-data
```

The file is read as a stream (a progress bar on standard error for large files), the chosen
column is released with `intelgraph_privacy.dp.release`, and the value and its proof are
printed as JSON (or written to `--output`). With `--tenant`, the release is charged to the
tenant's budget in the store first (`--data-dir`, `--config` or `--store`), and refused without
any noise drawn when the budget would be exceeded.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from intelgraph_privacy.cli_budget import ledger_from_args
from intelgraph_privacy.errors import ConfigError

__all__ = ["add_export_command"]

#: Files larger than this get a progress bar (when standard error is a terminal or forced).
PROGRESS_BYTES = 8 * 1024 * 1024
_AGGREGATES = ("count", "sum", "mean", "histogram", "quantile")


def add_export_command(commands: argparse._SubParsersAction[Any]) -> None:
    """Add `export` to a parser's sub-parsers."""
    from intelgraph_privacy.cli import add_store_arguments

    export = commands.add_parser(
        "export",
        help="a differentially private aggregate of a CSV or JSON Lines file",
        description="Release one DP aggregate of a column of a file (CSV with a header row, or "
        "JSON Lines), with a named preset, charged to a tenant's budget when --tenant is given.",
    )
    export.add_argument("input", type=Path, help="a .csv or .jsonl file (- for standard input)")
    export.add_argument("--aggregate", choices=_AGGREGATES, required=True)
    export.add_argument("--column", help="the column to aggregate (not needed for count)")
    export.add_argument(
        "--bounds",
        help="LO,HI: public bounds values are clipped to (negative: --bounds=-5,5)",
    )
    export.add_argument(
        "--bins", help="histogram bins: a number, or comma-separated category labels"
    )
    export.add_argument("--quantile", type=float, help="the quantile in [0, 1] (default 0.5)")
    budget = export.add_mutually_exclusive_group()
    budget.add_argument("--preset", help="strict, standard or relaxed (default: standard)")
    budget.add_argument("--epsilon", type=float, help="an epsilon (a preset's, or custom)")
    export.add_argument("--presets", type=Path, help="the presets file (presets/dp.yaml)")
    export.add_argument("--ids", help="the column identifying individuals (contribution bound)")
    export.add_argument("--max-contributions", type=int, help="values kept per individual")
    export.add_argument(
        "--format", choices=("csv", "jsonl"), help="the input format (default: by extension)"
    )
    export.add_argument("--tenant", help="charge the release to this tenant's budget")
    export.add_argument("--purpose", default="export", help="the budget's purpose (export)")
    add_store_arguments(export)
    export.add_argument("--seed", type=int, help="seed the noise (tests only: not private)")
    export.add_argument("--output", type=Path, help="write the JSON here instead of stdout")
    export.add_argument(
        "--progress",
        choices=("auto", "always", "never"),
        default="auto",
        help="progress bar on stderr: auto = for files over 8 MiB on a terminal",
    )
    export.set_defaults(run=_export)


def _export(args: argparse.Namespace) -> int:
    import numpy as np

    from intelgraph_privacy.dp import load_presets, release

    presets_path = args.presets or Path(_default_presets())
    presets = load_presets(presets_path)
    if args.aggregate != "count" and not args.column:
        raise ConfigError(f"--column is required for {args.aggregate}")
    fmt = args.format or _format_of(args.input)
    values, ids, lines = _read_column(args, fmt)
    bounds = _bounds(args.bounds)
    bins = _bins(args.bins)
    data: Any = values
    if args.aggregate in ("sum", "mean", "quantile") or (
        args.aggregate == "histogram" and not isinstance(bins, list)
    ):
        data = _numbers(values, lines, f"{args.input}", args.column)
    ledger = ledger_from_args(args) if args.tenant else None
    try:
        result = release(
            args.aggregate,
            data,
            preset=args.preset,
            epsilon=args.epsilon,
            bounds=bounds,
            ledger=ledger,
            tenant=args.tenant,
            purpose=args.purpose if args.tenant else None,
            rng=np.random.default_rng(args.seed) if args.seed is not None else None,
            presets=presets,
            bins=bins,
            quantile=args.quantile,
            max_contributions=args.max_contributions,
            ids=ids,
        )
        if ledger is not None:
            proof = result.proof
            ledger.record_release(
                proof.release_id,
                args.tenant,
                args.purpose,
                proof.aggregate,
                proof.mechanism,
                proof.epsilon,
                proof.delta,
                proof.preset,
                proof.audit_dict(),
            )
    finally:
        if ledger is not None:
            ledger.store.close()
    text = json.dumps(result.as_dict(), indent=2, sort_keys=True, default=str)
    if args.output:
        args.output.write_text(text + "\n", encoding="utf-8")
        print(f"released {args.aggregate} to {args.output}", file=sys.stderr)
    else:
        print(text)
    return 0


def _default_presets() -> str:
    from intelgraph_privacy.cli import _default

    return _default("presets/dp.yaml")


def _format_of(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    raise ConfigError(f"{path}: give --format csv or jsonl (unknown extension {suffix!r})")


def _read_column(
    args: argparse.Namespace, fmt: str
) -> tuple[list[Any], list[Any] | None, list[int]]:
    """The column's values, the ids column and each value's line, streamed from the file."""
    values: list[Any] = []
    lines: list[int] = []
    ids: list[Any] | None = [] if args.ids else None
    rows = 0
    for line_no, row in _rows(args.input, fmt, args.progress):
        rows += 1
        lines.append(line_no)
        if args.column:
            if args.column not in row:
                raise ConfigError(f"{args.input}:{line_no}: no column {args.column!r}")
            values.append(row[args.column])
        else:
            values.append(1)
        if ids is not None:
            if args.ids not in row:
                raise ConfigError(f"{args.input}:{line_no}: no column {args.ids!r}")
            ids.append(row[args.ids])
    if rows == 0:
        raise ConfigError(f"{args.input}: no rows")
    return values, ids, lines


def _rows(path: Path, fmt: str, progress: str) -> Iterator[tuple[int, dict[str, Any]]]:
    from tqdm import tqdm

    from intelgraph_privacy import codec

    if str(path) == "-":
        stream: Any = sys.stdin.buffer
        size = 0
    else:
        try:
            stream = path.open("rb")
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
        size = path.stat().st_size
    show = progress == "always" or (
        progress == "auto" and size > PROGRESS_BYTES and sys.stderr.isatty()
    )
    bar = tqdm(
        total=size or None,
        unit="B",
        unit_scale=True,
        desc=f"reading {path.name}",
        disable=not show,
        file=sys.stderr,
    )
    try:
        if fmt == "jsonl":
            for line_no, raw in enumerate(stream, start=1):
                bar.update(len(raw))
                if not raw.strip():
                    continue
                try:
                    row = codec.loads(raw)
                except codec.JSONDecodeError:
                    raise ConfigError(f"{path}:{line_no}: not a JSON object line") from None
                if not isinstance(row, dict):
                    raise ConfigError(f"{path}:{line_no}: not a JSON object line")
                yield line_no, row
        else:
            text = io.TextIOWrapper(stream, encoding="utf-8", newline="")
            reader = csv.DictReader(text)
            position = 0
            for row in reader:
                # The wrapper reads ahead in chunks: report the underlying position.
                now = stream.tell() if stream.seekable() else position
                bar.update(max(0, now - position))
                position = now
                yield reader.line_num, row
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    finally:
        bar.close()
        if stream is not sys.stdin.buffer:
            stream.close()


def _numbers(values: list[Any], lines: list[int], source: str, column: str) -> list[float]:
    out: list[float] = []
    for value, line in zip(values, lines, strict=True):
        try:
            out.append(float(value))
        except (TypeError, ValueError):
            message = f"{source}:{line}: {column!r} is not a number: {value!r}"
            raise ConfigError(message) from None
    return out


def _bounds(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    parts = text.split(",")
    try:
        low, high = (float(p) for p in parts)
    except ValueError:
        raise ConfigError("--bounds takes LO,HI (two numbers)") from None
    return low, high


def _bins(text: str | None) -> int | list[str] | None:
    if text is None:
        return None
    if text.strip().isdigit():
        return int(text)
    labels = [label.strip() for label in text.split(",") if label.strip()]
    if not labels:
        raise ConfigError("--bins takes a number or comma-separated labels")
    return labels
