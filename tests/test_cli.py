"""The `intelgraph-privacy` command, run as a real subprocess."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PRESETS, REGO

DEMO_ARGS = [
    "--schema",
    str(PRESETS / "demo.graphql"),
    "--catalog",
    str(PRESETS / "catalog.yaml"),
]


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # RUST_BACKTRACE=1 makes regorus append Rust backtraces: the CLI must not show them.
    env = {**os.environ, "RUST_BACKTRACE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "sidecar.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
        check=False,
    )


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def assert_clean_error(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 1, done
    assert done.stderr.startswith("error: "), done.stderr
    assert "Traceback" not in done.stderr
    assert "Stack backtrace" not in done.stderr


# --- policy test ------------------------------------------------------------------------------


def test_policy_test_on_shipped_policies(tmp_path: Path) -> None:
    done = run_cli("policy", "test", str(REGO), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    summary = re.search(
        r"^(\d+) passed, 0 failed \(bundle [0-9a-f]{16}, Rego v1, ", done.stdout, re.M
    )
    assert summary, done.stdout
    assert int(summary.group(1)) > 0
    assert "FAIL" not in done.stdout
    assert done.stderr == ""


def test_policy_test_verbose_lists_every_test(tmp_path: Path) -> None:
    done = run_cli("policy", "test", "-v", str(REGO), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    passed = int(re.search(r"^(\d+) passed", done.stdout, re.M).group(1))  # type: ignore[union-attr]
    lines = re.findall(r"^PASS  data\.intelgraph\.\w+_test\.test_\w+ \(", done.stdout, re.M)
    assert len(lines) == passed


def test_policy_test_reports_failing_and_erroring_tests(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    write(
        policies / "checks_test.rego",
        "package checks\n\nimport rego.v1\n\n"
        "test_ok if true\n\n"
        "test_wrong_answer if 1 + 1 == 3\n\n"
        "test_blows_up if {\n\tx := 1 / 0\n\tx > 0\n}\n",
    )
    done = run_cli("policy", "test", str(policies), cwd=tmp_path)
    assert done.returncode == 1
    assert re.search(r"^FAIL  data\.checks\.test_wrong_answer \(", done.stdout, re.M), done.stdout
    assert re.search(r"^ERROR data\.checks\.test_blows_up \(", done.stdout, re.M), done.stdout
    assert "divide by zero" in done.stdout
    assert "data.checks.test_ok" not in done.stdout  # passing tests only with -v
    assert "1 passed, 2 failed" in done.stdout
    assert "Stack backtrace" not in done.stdout


def test_policy_test_on_broken_file(tmp_path: Path) -> None:
    broken = write(
        tmp_path / "policies" / "broken.rego",
        "package broken\n\nimport rego.v1\n\nx if {\n\tinput.a ==\n}\n",
    )
    done = run_cli("policy", "test", str(broken.parent), cwd=tmp_path)
    assert_clean_error(done)
    assert f"{broken}:7:" in done.stderr
    assert done.stdout == ""


def test_policy_test_on_missing_directory(tmp_path: Path) -> None:
    done = run_cli("policy", "test", str(tmp_path / "nowhere"), cwd=tmp_path)
    assert_clean_error(done)
    assert "no such policy file or directory" in done.stderr


def test_policy_test_without_tests_fails(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    write(policies / "p.rego", "package p\n\nimport rego.v1\n\nx := 1\n")
    done = run_cli("policy", "test", str(policies), cwd=tmp_path)
    assert done.returncode == 1
    assert "0 passed, 0 failed" in done.stdout
    assert "no test_* rules" in done.stderr


# --- catalog check ----------------------------------------------------------------------------


def test_catalog_check_on_demo(tmp_path: Path) -> None:
    done = run_cli("catalog", "check", *DEMO_ARGS, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert re.search(r"catalog\.yaml: \d+ entries, valid against .*demo\.graphql", done.stdout)


def test_catalog_check_on_broken_catalog(tmp_path: Path) -> None:
    catalog = write(tmp_path / "catalog.yaml", "fields:\n  Person.ssnn: {sensitivity: high}\n")
    done = run_cli(
        "catalog",
        "check",
        "--schema",
        str(PRESETS / "demo.graphql"),
        "--catalog",
        str(catalog),
        cwd=tmp_path,
    )
    assert_clean_error(done)
    assert str(catalog) in done.stderr
    assert "Person.ssnn" in done.stderr
    assert "no field 'ssnn'" in done.stderr


def test_catalog_check_on_missing_schema(tmp_path: Path) -> None:
    missing = tmp_path / "nope.graphql"
    done = run_cli(
        "catalog",
        "check",
        "--schema",
        str(missing),
        "--catalog",
        str(PRESETS / "catalog.yaml"),
        cwd=tmp_path,
    )
    assert_clean_error(done)
    assert str(missing) in done.stderr


# --- demo -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_output(tmp_path_factory: pytest.TempPathFactory) -> str:
    done = run_cli(
        "explain",
        *DEMO_ARGS,
        "--policies",
        str(REGO),
        cwd=tmp_path_factory.mktemp("demo"),
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def sections(output: str) -> dict[str, str]:
    parts = re.split(r"^=== ([^:]+):.*===$", output, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_demo_redacts_per_principal(demo_output: str) -> None:
    assert "Policy bundle " in demo_output
    # ssn is nulled (never masked) for the analyst, and only the cleared reader sees it.
    assert "***-**-" not in demo_output
    assert "*****.******@*******.org" in demo_output  # the analyst's masked email
    assert "REDACTED" in demo_output
    by_reader = sections(demo_output)
    assert list(by_reader) == ["analyst", "investigator", "high-clearance investigator"]
    analyst = by_reader["analyst"]
    for secret in ("512-44-6789", "maria.keller@example.org", "1987-03-14", "J. Doe"):
        assert secret not in analyst, secret
    assert '"ssn": null' in analyst
    assert "maria.keller@example.org" in by_reader["investigator"]
    assert "512-44-6789" not in by_reader["investigator"]
    assert "512-44-6789" in by_reader["high-clearance investigator"]
    # The informant is restricted: nobody in the demo sees it.
    assert "J. Doe" not in demo_output.split("=== ", 1)[1]


def test_demo_with_broken_policies_fails_cleanly(tmp_path: Path) -> None:
    broken = write(tmp_path / "policies" / "broken.rego", "package b\n\nimport rego.v1\n\nx := \n")
    done = run_cli("explain", *DEMO_ARGS, "--policies", str(broken.parent), cwd=tmp_path)
    assert_clean_error(done)
    assert str(broken) in done.stderr
