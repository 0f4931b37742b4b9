"""The sidecar overhead benchmark still runs end to end (one short round), so its numbers can be
redone: four real server processes, the load generator, every response checked."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.conftest import ROOT

SCRIPT = ROOT / "benchmarks" / "sidecar_overhead.py"
README = ROOT / "benchmarks" / "README.md"
TARGET_ROWS = (
    "(a) upstream direct",
    "(b) plain proxy",
    "(c) sidecar, nothing redacted",
    "(d) sidecar, redacting",
)
SIZES = ("1 KB", "20 KB", "200 KB")


def test_sidecar_overhead_benchmark_runs_quickly() -> None:
    readme_before = README.read_bytes() if README.exists() else None
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "RUST_BACKTRACE": "0"},
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout

    # One table per size, each with the four targets and the ratios to the plain proxy.
    for size in SIZES:
        assert re.search(rf"^#### {size}: upstream response [\d,]+ B", out, re.MULTILINE), size
    for row in TARGET_ROWS:
        assert out.count(f"| {row} |") == len(SIZES), row
    ratios = re.findall(r"c/b = \*\*([\d.]+)\*\*.*d/b = \*\*([\d.]+)\*\*", out)
    assert len(ratios) == len(SIZES)
    assert all(0 < float(c) < 10 and 0 < float(d) < 10 for c, d in ratios)
    assert out.count("p99 added over b at 200 rps: d **") == len(SIZES)

    # Redacting adds an errors[] entry per nulled ssn: (d) answers more bytes than (c).
    sizes = dict(re.findall(r"^\| \((c|d)\) [^|]+\| ([\d,]+) \|", out, re.MULTILINE))
    assert int(sizes["d"].replace(",", "")) > int(sizes["c"].replace(",", ""))

    # The three targets are judged, and where the sidecar's time goes is shown.
    assert "throughput c/b >= 0.9 at 20 KB" in out
    assert "throughput d/b >= 0.6 at 20 KB" in out
    assert "p99 added by d over b <= 2 ms at 200 rps, 20 KB" in out
    assert re.search(r"^All targets met: ", out, re.MULTILINE)
    assert "verify the bearer token" in out

    # Without --write the README is left alone.
    assert (README.read_bytes() if README.exists() else None) == readme_before
