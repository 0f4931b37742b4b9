"""Policy bundles: loading Rego v1 and v0, refusing bad bundles, versions and Rego tests."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from intelgraph_privacy import Action, FieldEntry, PolicyError
from intelgraph_privacy.policy import (
    compile_bundle,
    evaluate,
    load_bundle,
    run_rego_tests,
)
from intelgraph_privacy.policy.bundle import CONTRACT_PATH
from tests.conftest import REGO, principal

#: The rule of PRODUCT.md, exactly as written there (Rego v0).
PRODUCT_RULE = """\
package intelgraph.redact
redact[field] {
  input.field.sensitivity == "high"
  not input.user.roles[_] == "high-clearance"
  field := input.field.name
}
"""

#: A v1 file that may sit next to the v0 rule: it declares `import rego.v1`.
PRODUCT_TESTS_V1 = """\
package intelgraph.product_test

import rego.v1

ssn := {"name": "Person.ssn", "sensitivity": "high"}

city := {"name": "Person.city", "sensitivity": "low"}

act(roles, f) := a if {
\treq := {"user": {"roles": roles}, "fields": [f]}
\ta := data.intelgraph.decision.actions[f.name] with input as req
}

test_high_is_null_for_an_analyst if act(["analyst"], ssn) == "null"

test_high_is_kept_with_high_clearance if act(["high-clearance"], ssn) == "keep"

test_low_is_kept if act(["analyst"], city) == "keep"
"""

#: A v1 file without `import rego.v1`.
PLAIN_V1 = """\
package intelgraph.other

allow if input.user.sub == "u1"
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def high_and_low() -> dict[str, FieldEntry]:
    return {
        "Person.ssn": FieldEntry(sensitivity="high"),
        "Person.city": FieldEntry(sensitivity="low"),
    }


# --- the shipped bundle -----------------------------------------------------------------------


def test_shipped_bundle_loads_as_v1_and_its_tests_pass() -> None:
    bundle = load_bundle(REGO)
    assert bundle.syntax == "v1"
    paths = [f.path for f in bundle.files]
    assert paths[0] == CONTRACT_PATH
    assert str(REGO / "redact.rego") in paths
    assert str(REGO / "redact_test.rego") in paths
    assert all(f.syntax == "v1" for f in bundle.files)
    # Every test_* rule written in a test file (redact, abac, exchange) is found.
    written = {
        f"data.intelgraph.{path.stem}.{name}"
        for path in REGO.glob("*_test.rego")
        for name in re.findall(r"^(test_\w+)", path.read_text(), flags=re.MULTILINE)
    }
    assert {name.split(".")[2] for name in written} == {
        "redact_test",
        "abac_test",
        "exchange_test",
        "anon_test",
    }
    assert set(bundle.tests) == written
    results = run_rego_tests(bundle)
    assert [r.rule for r in results] == list(bundle.tests)
    assert [r for r in results if r.outcome != "pass"] == []
    assert all(r.detail == "" and r.seconds >= 0 for r in results)


def test_bundle_without_contract(tmp_path: Path) -> None:
    bundle = load_bundle(REGO, include_contract=False)
    assert CONTRACT_PATH not in [f.path for f in bundle.files]
    # The shipped tests query the contract, so without it they cannot pass.
    assert any(r.outcome != "pass" for r in run_rego_tests(bundle))


# --- the PRODUCT.md rule (Rego v0) ------------------------------------------------------------


def test_product_rule_alone_loads_as_v0(tmp_path: Path) -> None:
    path = write(tmp_path, "product.rego", PRODUCT_RULE)
    bundle = load_bundle(path)
    assert bundle.syntax == "v0"
    assert {f.path: f.syntax for f in bundle.files} == {CONTRACT_PATH: "v1", str(path): "v0"}
    assert bundle.tests == ()

    analyst = evaluate(bundle, principal("analyst"), high_and_low())
    assert analyst == {"Person.ssn": Action.NULL, "Person.city": Action.KEEP}
    cleared = evaluate(bundle, principal("high-clearance"), high_and_low())
    assert cleared == {"Person.ssn": Action.KEEP, "Person.city": Action.KEEP}


def test_product_rule_next_to_a_v1_file_with_import(tmp_path: Path) -> None:
    write(tmp_path, "product.rego", PRODUCT_RULE)
    write(tmp_path, "tests/product_test.rego", PRODUCT_TESTS_V1)
    bundle = load_bundle(tmp_path)
    assert bundle.syntax == "v0"
    assert {Path(f.path).name: f.syntax for f in bundle.files} == {
        "decision.rego": "v1",
        "product.rego": "v0",
        "product_test.rego": "v1",
    }
    assert bundle.tests == (
        "data.intelgraph.product_test.test_high_is_kept_with_high_clearance",
        "data.intelgraph.product_test.test_high_is_null_for_an_analyst",
        "data.intelgraph.product_test.test_low_is_kept",
    )
    assert {r.outcome for r in run_rego_tests(bundle)} == {"pass"}

    ssn = {"Person.ssn": FieldEntry(sensitivity="high")}
    assert evaluate(bundle, principal("investigator"), ssn) == {"Person.ssn": Action.NULL}
    assert evaluate(bundle, principal("high-clearance"), ssn) == {"Person.ssn": Action.KEEP}


@pytest.mark.parametrize(
    ("roles", "expected"),
    [
        pytest.param((), Action.NULL, id="no-roles-must-be-null"),
        pytest.param(("high-clearance", "investigator"), Action.KEEP, id="cleared-plus-other-role"),
    ],
)
def test_product_rule_means_no_role_is_high_clearance(
    tmp_path: Path, roles: tuple[str, ...], expected: Action
) -> None:
    bundle = load_bundle(write(tmp_path, "product.rego", PRODUCT_RULE))
    ssn = {"Person.ssn": FieldEntry(sensitivity="high")}
    assert evaluate(bundle, principal(*roles), ssn) == {"Person.ssn": expected}


def test_v1_file_without_import_next_to_v0_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "product.rego", PRODUCT_RULE)
    plain = write(tmp_path, "other.rego", PLAIN_V1)
    with pytest.raises(PolicyError) as info:
        load_bundle(tmp_path)
    message = str(info.value)
    assert message.startswith(f"{plain}: ")
    assert "mixes Rego v0 and v1" in message
    assert "import rego.v1" in message
    # Either file alone is fine.
    assert load_bundle(plain).syntax == "v1"


def test_import_rego_v1_with_trailing_comment_is_accepted() -> None:
    v1 = "package intelgraph.other\n\nimport rego.v1 # keep v1 meaning\n\nallow if input.x == 1\n"
    bundle = compile_bundle([("product.rego", PRODUCT_RULE), ("other.rego", v1)])
    assert bundle.syntax == "v0"


# --- errors -----------------------------------------------------------------------------------

BROKEN = """\
package intelgraph.redact

import rego.v1

redact contains input.field.name if {
\tinput.field.sensitivity ==
}
"""


def test_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    write(tmp_path, "ok.rego", "package ok\n\nimport rego.v1\n\nx := 1\n")
    broken = write(tmp_path, "broken.rego", BROKEN)
    with pytest.raises(PolicyError) as info:
        load_bundle(tmp_path)
    message = str(info.value)
    assert message.startswith(f"{broken}: ")
    assert f"{broken}:7:" in message  # the line of the closing brace
    assert "Stack backtrace" not in message


def test_syntax_error_has_no_backtrace_even_with_rust_backtrace_on(tmp_path: Path) -> None:
    broken = write(tmp_path, "broken.rego", BROKEN)
    script = (
        "import sys\n"
        "from intelgraph_privacy.policy import load_bundle\n"
        "from intelgraph_privacy.errors import PolicyError\n"
        "try:\n"
        "    load_bundle(sys.argv[1])\n"
        "except PolicyError as exc:\n"
        "    print(exc)\n"
    )
    env = {**os.environ, "RUST_BACKTRACE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", script, str(broken)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    assert f"{broken}:7:" in done.stdout
    assert "Stack backtrace" not in done.stdout
    assert "anyhow" not in done.stdout


def test_syntax_error_in_compile_bundle_names_the_path() -> None:
    with pytest.raises(PolicyError, match=r"^mine\.rego: .*mine\.rego:3:"):
        compile_bundle([("mine.rego", "package p\nimport rego.v1\nx := := 1\ny := 2\n")])


def test_empty_directory_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, "README.md", "no policies here")
    with pytest.raises(PolicyError, match=r"no \.rego files"):
        load_bundle(tmp_path)
    with pytest.raises(PolicyError, match=r"no \.rego files"):
        load_bundle([])


def test_missing_path_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(PolicyError, match="no such policy file or directory") as info:
        load_bundle(missing)
    assert str(missing) in str(info.value)
    with pytest.raises(PolicyError, match="cannot read policy"):
        load_bundle([missing / "x.rego"])


# --- version ----------------------------------------------------------------------------------


def test_version_changes_when_a_file_changes(tmp_path: Path) -> None:
    path = write(tmp_path, "p.rego", "package p\n\nimport rego.v1\n\nx := 1\n")
    first = load_bundle(tmp_path)
    assert load_bundle(tmp_path).version == first.version
    path.write_text("package p\n\nimport rego.v1\n\nx := 2\n", encoding="utf-8")
    second = load_bundle(tmp_path)
    assert second.version != first.version
    write(tmp_path, "q.rego", "package q\n\nimport rego.v1\n\ny := 1\n")
    assert load_bundle(tmp_path).version not in {first.version, second.version}


def test_version_covers_the_data_document() -> None:
    texts = [("p.rego", "package p\nimport rego.v1\nx := data.limits.k\n")]
    plain = compile_bundle(texts)
    with_data = compile_bundle(texts, data={"limits": {"k": 5}})
    other_data = compile_bundle(texts, data={"limits": {"k": 6}})
    assert len({plain.version, with_data.version, other_data.version}) == 3
    assert compile_bundle(texts, data={"limits": {"k": 5}}).version == with_data.version


# --- Rego tests -------------------------------------------------------------------------------

OUTCOMES = """\
package checks

import rego.v1

test_passes if 1 + 1 == 2

test_fails if 1 + 1 == 3

test_false := false

test_not_true := 1

test_reads_input if input.user.sub == "u1"

test_divides_by_zero if {
\tx := 1 / 0
\tx > 0
}

helper if true
"""


def test_rego_test_outcomes(tmp_path: Path) -> None:
    write(tmp_path, "checks_test.rego", OUTCOMES)
    write(
        tmp_path, "nested/deep_test.rego", "package a.b.c\n\nimport rego.v1\n\ntest_deep if true\n"
    )
    bundle = load_bundle(tmp_path)
    results = {r.rule: r for r in run_rego_tests(bundle)}
    assert set(results) == {
        "data.a.b.c.test_deep",
        "data.checks.test_passes",
        "data.checks.test_fails",
        "data.checks.test_false",
        "data.checks.test_not_true",
        "data.checks.test_reads_input",
        "data.checks.test_divides_by_zero",
    }
    outcome = {rule: r.outcome for rule, r in results.items()}
    assert outcome["data.a.b.c.test_deep"] == "pass"
    assert outcome["data.checks.test_passes"] == "pass"
    assert outcome["data.checks.test_fails"] == "fail"
    assert outcome["data.checks.test_false"] == "fail"
    assert outcome["data.checks.test_not_true"] == "fail"
    # Tests run with an empty input, whatever the engine was last given.
    assert outcome["data.checks.test_reads_input"] == "fail"
    assert outcome["data.checks.test_divides_by_zero"] == "error"
    error = results["data.checks.test_divides_by_zero"]
    assert "divide by zero" in error.detail
    assert "Stack backtrace" not in error.detail
    assert results["data.checks.test_false"].detail == "evaluated to False"


def test_rego_tests_do_not_see_the_last_request_input(tmp_path: Path) -> None:
    write(tmp_path, "checks_test.rego", OUTCOMES)
    bundle = load_bundle(tmp_path)
    bundle.thread_engine().set_input({"user": {"sub": "u1"}})
    results = {r.rule: r.outcome for r in run_rego_tests(bundle)}
    assert results["data.checks.test_reads_input"] == "fail"


def test_rego_tests_in_a_v0_file_are_found(tmp_path: Path) -> None:
    write(tmp_path, "product.rego", PRODUCT_RULE)
    write(tmp_path, "v0_test.rego", "package v0checks\n\ntest_ok { true }\n\ntest_bad { 1 == 2 }\n")
    bundle = load_bundle(tmp_path)
    assert bundle.syntax == "v0"
    outcomes = {r.rule: r.outcome for r in run_rego_tests(bundle)}
    assert outcomes == {"data.v0checks.test_ok": "pass", "data.v0checks.test_bad": "fail"}


def test_version_does_not_depend_on_how_the_directory_is_spelled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    relative = Path(os.path.relpath(REGO, tmp_path))
    assert load_bundle(relative).version == load_bundle(REGO.resolve()).version
