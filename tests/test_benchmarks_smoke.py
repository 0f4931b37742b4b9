"""The benchmark scripts still run (a few repetitions), so their committed numbers can be redone."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT


def test_redact_apply_benchmark_runs_quickly() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "redact_apply.py"), "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "RUST_BACKTRACE": "0"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "apply/floor" in result.stdout
    assert "| 1 MB | analyst |" in result.stdout
