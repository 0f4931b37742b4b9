"""`intelgraph-privacy budget show | releases`: a tenant's privacy budget, read from the store.

The releases are made by `intelgraph-privacy export` on a real SQLite store (and, with
`--config`, on the store and budget a sidecar configuration names), so what `budget` reports
is checked against what the ledger really charged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from intelgraph_privacy.cli import main
from intelgraph_privacy.store import open_store


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A directory holding a migrated SQLite store, as the demo leaves it."""
    folder = tmp_path / "demo-data"
    with open_store(None, data_dir=folder):
        pass
    return folder


@pytest.fixture
def people(tmp_path: Path) -> Path:
    path = tmp_path / "people.csv"
    path.write_text("id,age\n" + "".join(f"p{i},{20 + i % 50}\n" for i in range(200)))
    return path


def cli(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, Any, str]:
    code = main([*map(str, args)])
    captured = capsys.readouterr()
    return code, json.loads(captured.out) if captured.out else None, captured.err


def test_show_reports_the_full_budget_before_any_release(
    capsys: pytest.CaptureFixture[str], data_dir: Path
) -> None:
    code, report, err = cli(capsys, "budget", "show", "--tenant", "acme", "--data-dir", data_dir)
    assert code == 0, err
    assert report["budget"] == {"epsilon": 10.0, "delta": 1e-05}
    assert (report["epsilon_left"], report["delta_left"], report["releases"]) == (10.0, 1e-05, 0)
    assert (report["tenant"], report["purpose"], report["window_seconds"]) == (
        "acme",
        "export",
        86400,
    )


def test_show_and_releases_follow_what_export_charged(
    capsys: pytest.CaptureFixture[str], data_dir: Path, people: Path
) -> None:
    charged = []
    for preset in ("strict", "relaxed"):
        code, released, err = cli(
            capsys, "export", people, "--aggregate", "count", "--preset", preset,
            "--tenant", "acme", "--data-dir", data_dir,
        )  # fmt: skip
        assert code == 0, err
        charged.append(released["proof"])
    # Another tenant's and another purpose's releases are not this budget's.
    for extra in (("--tenant", "other"), ("--tenant", "acme", "--purpose", "research")):
        code, _, err = cli(
            capsys, "export", people, "--aggregate", "count", *extra, "--data-dir", data_dir
        )
        assert code == 0, err

    code, report, err = cli(capsys, "budget", "show", "--tenant", "acme", "--data-dir", data_dir)
    assert code == 0, err
    assert (report["epsilon_left"], report["releases"]) == (5.0, 2)
    assert report["epsilon_left"] == charged[-1]["budget_left"]
    assert report["window_start"] == charged[-1]["window_start"]

    code, listing, err = cli(
        capsys, "budget", "releases", "--tenant", "acme", "--purpose", "export",
        "--data-dir", data_dir,
    )  # fmt: skip
    assert code == 0, err
    assert [r["release_id"] for r in listing] == [p["release_id"] for p in reversed(charged)]
    assert [(r["preset"], r["epsilon"]) for r in listing] == [("relaxed", 4.0), ("strict", 1.0)]
    code, everything, _ = cli(
        capsys, "budget", "releases", "--tenant", "acme", "--data-dir", data_dir
    )
    assert {r["purpose"] for r in everything} == {"export", "research"} and len(everything) == 3
    code, newest, _ = cli(
        capsys, "budget", "releases", "--tenant", "acme", "--limit", "1", "--data-dir", data_dir
    )
    assert len(newest) == 1


def test_config_gives_the_sidecars_budget_and_store(
    capsys: pytest.CaptureFixture[str], data_dir: Path, people: Path, tmp_path: Path
) -> None:
    key = tmp_path / "pseudonym.key"
    key.write_bytes(b"k" * 32)
    config = tmp_path / "sidecar.yaml"
    config.write_text(
        "upstream: {url: 'http://127.0.0.1:9/graphql'}\n"
        f"policy: {{pseudonym_key_file: '{key}'}}\n"
        "auth: {jwks: jwks.json, issuer: https://idp.example.test, audience: api}\n"
        f"store: {{data_dir: '{data_dir}'}}\n"
        "dp: {budget_epsilon: 3, budget_delta: 1.0e-6, window_seconds: 3600}\n"
    )
    code, released, err = cli(
        capsys, "export", people, "--aggregate", "count", "--preset", "standard",
        "--tenant", "acme", "--config", config,
    )  # fmt: skip
    assert code == 0, err
    assert released["proof"]["budget_left"] == 1.0
    code, report, err = cli(capsys, "budget", "show", "--tenant", "acme", "--config", config)
    assert code == 0, err
    assert report["budget"] == {"epsilon": 3.0, "delta": 1e-06}
    assert (report["epsilon_left"], report["window_seconds"]) == (1.0, 3600)
    # The configuration names the same store as --data-dir: the release is recorded there.
    code, listing, _ = cli(capsys, "budget", "releases", "--tenant", "acme", "--data-dir", data_dir)
    assert [r["release_id"] for r in listing] == [released["proof"]["release_id"]]


def test_errors_exit_1_and_create_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    code, out, err = cli(capsys, "budget", "show", "--tenant", "acme", "--data-dir", empty)
    assert (code, out) == (1, None) and "no store" in err
    assert list(empty.iterdir()) == []
    with pytest.raises(SystemExit) as refused:
        main(["budget", "releases", "--tenant", "acme", "--limit", "0"])
    assert refused.value.code == 2
    assert "at least 1" in capsys.readouterr().err
