"""The load generator of `sidecar_overhead.py`: an aiohttp client in its own process.

It reads one JSON command per line on stdin and answers one JSON line on stdout:

    {"op": "closed", "url": U, "body": B, "headers": H, "expect": FILE,
     "concurrency": 8, "duration": 3.0, "warmup": 0.3}
    {"op": "open", "url": U, "body": B, "headers": H, "expect": FILE,
     "rate": 200, "duration": 4.0, "warmup": 0.3}
    {"op": "quit"}

An optional `"cpu_pids": {name: pid}` reports the CPU seconds each of those processes (all its
threads, from /proc; `name:main`: its main thread) and this one spent during the measured
section (not the warm-up); `"gc_files": {name: path}` the garbage collections each counted
(`_sidecar_gcprobe`) in that section.

- closed: `concurrency` workers send back to back for `duration` seconds (throughput);
- open: sends on a fixed clock, `rate` per second, whatever the answers do, and measures each
  latency from the request's scheduled time, so queueing behind a slow answer is counted
  (no coordinated omission).

Every response is checked: status 200 and a body byte-identical to the file `expect` (which the
orchestrator verified once). The first mismatch ends the command with `ok: false`.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from _sidecar_gcprobe import read as read_gc

from intelgraph_privacy import codec

#: Open-loop runs may need many connections at once when a target queues.
POOL_SIZE = 512
REQUEST_TIMEOUT_SECONDS = 30.0


@dataclass(slots=True)
class Target:
    """One request to repeat and the response it must get back."""

    url: str
    body: bytes
    headers: dict[str, str]
    expect: bytes
    error: str | None = None


@dataclass(slots=True)
class Run:
    """What one command measured."""

    latencies_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0
    sent: int = 0
    max_send_lag_ms: float = 0.0


def cpu_seconds(stat_path: str) -> float:
    """User + system CPU time from a /proc stat file (a process: all its threads)."""
    # The command name may hold spaces or parentheses: split after its closing parenthesis.
    fields = Path(stat_path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_snapshot(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds of each named process and of its main thread (`name:main`); this one: `load`."""
    snapshot: dict[str, float] = {}
    for name, pid in pids.items():
        snapshot[name] = cpu_seconds(f"/proc/{pid}/stat")
        snapshot[f"{name}:main"] = cpu_seconds(f"/proc/{pid}/task/{pid}/stat")
    snapshot["load"] = time.process_time()
    return snapshot


async def send(session: aiohttp.ClientSession, target: Target) -> bool:
    """One request; False (and `target.error` set) when the response is not the expected one."""
    try:
        async with session.post(target.url, data=target.body, headers=target.headers) as reply:
            payload = await reply.read()
            status = reply.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        target.error = target.error or f"request failed: {type(exc).__name__}: {exc}"
        return False
    if status != 200 or payload != target.expect:
        target.error = target.error or (
            f"unexpected response: HTTP {status}, {len(payload)} bytes "
            f"(expected 200, {len(target.expect)} bytes): {payload[:300]!r}"
        )
        return False
    return True


async def closed_loop(
    session: aiohttp.ClientSession, target: Target, concurrency: int, duration: float
) -> Run:
    """`concurrency` workers, each sending as soon as its previous answer arrived."""
    run = Run()
    start = time.perf_counter()
    deadline = start + duration

    async def worker() -> None:
        while target.error is None and time.perf_counter() < deadline:
            t0 = time.perf_counter()
            ok = await send(session, target)
            run.sent += 1
            if ok:
                run.latencies_ms.append((time.perf_counter() - t0) * 1e3)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    run.seconds = time.perf_counter() - start
    return run


async def open_loop(
    session: aiohttp.ClientSession, target: Target, rate: float, duration: float
) -> Run:
    """Send on a fixed schedule; latency = answer time - scheduled send time."""
    run = Run()
    count = max(1, round(rate * duration))
    tasks: list[asyncio.Task[None]] = []

    async def one(scheduled: float) -> None:
        if await send(session, target):
            run.latencies_ms.append((time.perf_counter() - scheduled) * 1e3)

    start = time.perf_counter() + 0.01
    for i in range(count):
        if target.error is not None:
            break
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        run.max_send_lag_ms = max(run.max_send_lag_ms, (time.perf_counter() - scheduled) * 1e3)
        tasks.append(asyncio.create_task(one(scheduled)))
        run.sent += 1
    await asyncio.gather(*tasks)
    run.seconds = time.perf_counter() - start
    return run


async def execute(session: aiohttp.ClientSession, command: dict[str, Any]) -> dict[str, Any]:
    """Run one command: warm up, measure, and summarise."""
    target = Target(
        url=command["url"],
        body=command["body"].encode(),
        headers={"Content-Type": "application/json", **command.get("headers", {})},
        expect=Path(command["expect"]).read_bytes(),
    )
    measure: Callable[[float], Awaitable[Run]]
    if command["op"] == "closed":
        concurrency = int(command["concurrency"])

        def measure(duration: float) -> Awaitable[Run]:
            return closed_loop(session, target, concurrency, duration)
    else:
        rate = float(command["rate"])

        def measure(duration: float) -> Awaitable[Run]:
            return open_loop(session, target, rate, duration)

    # Warm up with the same pattern (connections, caches, the sidecar's plan) and discard it.
    await measure(float(command.get("warmup", 0.0)))
    pids = {name: int(pid) for name, pid in command.get("cpu_pids", {}).items()}
    gc_files = {name: Path(path) for name, path in command.get("gc_files", {}).items()}
    gc.collect()
    gc.disable()  # no collector pauses inside the timed section of this process
    try:
        before = cpu_snapshot(pids)
        gc_before = {name: read_gc(path) for name, path in gc_files.items()}
        run = await measure(float(command["duration"]))
        after = cpu_snapshot(pids)
        gc_after = {name: read_gc(path) for name, path in gc_files.items()}
    finally:
        gc.enable()
    return {
        "ok": target.error is None,
        "error": target.error,
        "sent": run.sent,
        "seconds": run.seconds,
        "max_send_lag_ms": run.max_send_lag_ms,
        "latencies_ms": run.latencies_ms,
        "cpu_seconds": {name: after[name] - before[name] for name in after},
        "gc": {
            name: {k: gc_after[name][k] - gc_before[name][k] for k in gc_after[name]}
            for name in gc_after
        },
    }


async def serve() -> None:
    """Answer commands from stdin until `quit` or end of input."""
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)
    connector = aiohttp.TCPConnector(limit=POOL_SIZE)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, trust_env=False
    ) as session:
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line.strip():
                break
            command = codec.loads(line)
            if command["op"] == "quit":
                break
            result = await execute(session, command)
            sys.stdout.write(codec.dumps(result).decode() + "\n")
            sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(serve())
