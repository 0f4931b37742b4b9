"""Run `intelgraph-privacy` (`sidecar.cli.main`) with the benchmark's probes.

    python benchmarks/_sidecar_launch.py sidecar --config FILE

The same as `intelgraph-privacy sidecar --config FILE`, except that it stops when the process
that started it is gone (`exit_with_parent`), plus, from the environment:
`SIDECAR_BENCH_GC_FILE` counts garbage collections into that file (`_sidecar_gcprobe`), and
`SIDECAR_BENCH_PROFILE` writes a cProfile of the main thread to that file when the sidecar stops
(SIGTERM stops it gracefully).
"""

from __future__ import annotations

import cProfile
import os
import sys
from pathlib import Path

from _sidecar_gcprobe import exit_with_parent, install

from sidecar.cli import main


def launch(argv: list[str]) -> int:
    """Install the probes asked for, then run the console script's main."""
    exit_with_parent()
    gc_file = os.environ.get("SIDECAR_BENCH_GC_FILE")
    if gc_file:
        install(Path(gc_file))
    profile_out = os.environ.get("SIDECAR_BENCH_PROFILE")
    if not profile_out:
        return main(argv)
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        return main(argv)
    finally:
        profiler.disable()
        profiler.dump_stats(profile_out)


if __name__ == "__main__":
    sys.exit(launch(sys.argv[1:]))
