"""The benchmark scripts still run (a few repetitions), so their committed numbers can be redone."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

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


@pytest.mark.postgres
def test_rtbf_benchmark_runs_quickly(pg_server: object) -> None:
    """`pg_server` makes the test skip (or fail under CI=true) without PostgreSQL."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "rtbf.py"), "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "RUST_BACKTRACE": "0"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "### Erasure, right to be forgotten" in result.stdout
    assert "| PostgreSQL | 1,000 |" in result.stdout
    assert "| manifest verification <= 10 ms (p99) |" in result.stdout
