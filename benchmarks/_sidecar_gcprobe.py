"""Probes for the benchmark's server processes.

Garbage collections: counted into a small shared file another process can read.

`install(path)` appends a `gc.callbacks` hook (it runs only when a collection runs, so it does
not change the process's behaviour) that keeps, per generation, the number of collections and
the seconds they took in an mmap'd file; `read(path)` returns them. The load generator reads it
before and after a measured run, like it reads CPU times from /proc.

`exit_with_parent()`: a server stops (SIGTERM, handled gracefully by aiohttp) when the process
that started it is gone, so an interrupted benchmark leaves no server running.
"""

from __future__ import annotations

import gc
import mmap
import os
import signal
import struct
import threading
import time
from pathlib import Path
from typing import Any

_FORMAT = "6d"  # collections of gen 0, 1, 2, then seconds of gen 0, 1, 2
_SIZE = struct.calcsize(_FORMAT)
_keep: list[Any] = []  # the mmap and the callback live as long as the process


def install(path: Path) -> None:
    """Start counting this process's collections into `path`."""
    path.write_bytes(b"\0" * _SIZE)
    with path.open("r+b") as handle:
        shared = mmap.mmap(handle.fileno(), _SIZE)
    totals = [0.0] * 6
    started = [0.0]

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
            return
        generation = info["generation"]
        totals[generation] += 1
        totals[3 + generation] += time.perf_counter() - started[0]
        struct.pack_into(_FORMAT, shared, 0, *totals)

    gc.callbacks.append(callback)
    _keep.extend((shared, callback))


def read(path: Path) -> dict[str, float]:
    """`full` (gen-2 collections), `full_seconds`, `seconds` (all generations) so far."""
    values = struct.unpack(_FORMAT, path.read_bytes()[:_SIZE])
    return {"full": values[2], "full_seconds": values[5], "seconds": sum(values[3:])}


def exit_with_parent(poll_seconds: float = 0.5) -> None:
    """SIGTERM this process once its parent has exited (a daemon thread polls the parent id)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_seconds)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
