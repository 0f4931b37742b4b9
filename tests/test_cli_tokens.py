"""`intelgraph-privacy keys ...` and `token ...`: real keys, real signed tokens, a real store.

Most tests run the commands in-process through `intelgraph_privacy.cli.run` on a parser that
holds only these groups; the subprocess tests run the installed console script and start running
once `intelgraph_privacy.cli` wires the groups in (until then its --help has no `keys`).
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import re
import stat
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from intelgraph_privacy.cli import run
from intelgraph_privacy.cli_tokens import add_token_commands
from intelgraph_privacy.store import open_store
from intelgraph_privacy.store.schema import revoked_tokens
from intelgraph_privacy.tokens import (
    DEMO_AUDIENCE,
    DEMO_EXCHANGE_AUDIENCE,
    DEMO_IDP_ISSUER,
    DEMO_ISSUER,
    DEMO_KID,
    demo_jwks,
    revoked_token_ids,
)

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / ".venv" / "bin" / "intelgraph-privacy"
ISS = "https://issuer.example.test"
AUD = "graph-api"
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi"}


@dataclass
class Result:
    code: int
    out: str
    err: str


Cli = Callable[..., Result]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    """Run `keys`/`token` commands in-process; `stdin=` feeds standard input."""
    parser = argparse.ArgumentParser(prog="intelgraph-privacy")
    add_token_commands(parser.add_subparsers())

    def invoke(*argv: str, stdin: str | None = None) -> Result:
        capsys.readouterr()  # drop anything earlier
        if stdin is not None:
            monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        code = run(parser, list(argv))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return invoke


def generate(cli: Cli, directory: Path, name: str, *extra: str) -> tuple[Path, Path, str]:
    """`keys generate` into `directory`; the private key file, the JWKS file and the kid."""
    out, jwks = directory / f"{name}.jwk.json", directory / "jwks.json"
    done = cli("keys", "generate", "--out", str(out), "--jwks", str(jwks), *extra)
    assert done.code == 0, done.err
    kid = done.out.splitlines()[0].removeprefix("kid: ")
    return out, jwks, kid


def issue(cli: Cli, key: Path, *extra: str, purpose: str = "investigation") -> str:
    done = cli(
        "token", "issue", "--key", str(key), "--sub", "alice", "--tenant", "t1",
        "--roles", "analyst, viewer", "--purpose", purpose, "--issuer", ISS, "--audience", AUD,
        *extra,
    )  # fmt: skip
    assert done.code == 0, done.err
    token = done.out.strip()
    assert token.count(".") == 2
    return token


def verify(cli: Cli, token: str, jwks: Path, *extra: str) -> Result:
    return cli(
        "token", "verify", token, "--jwks", str(jwks), "--issuer", ISS, "--audience", AUD, *extra
    )


def payload(token: str) -> dict[str, Any]:
    part = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded


def assert_refused(done: Result, *reasons: str) -> None:
    assert done.code == 1, done
    assert done.out == ""
    assert any(done.err.startswith(f"token refused ({r}): ") for r in reasons), done.err
    assert "Traceback" not in done.err


def assert_error(done: Result, *fragments: str) -> None:
    assert done.code == 1, done
    assert done.out == ""
    assert done.err.startswith("error: "), done.err
    for fragment in fragments:
        assert fragment in done.err, done.err


# --- keys generate -> token issue -> token verify ---------------------------------------------


@pytest.mark.parametrize("alg", ["EdDSA", "ES256", "RS256"])
def test_generate_issue_verify_round_trip(cli: Cli, tmp_path: Path, alg: str) -> None:
    key, jwks, kid = generate(cli, tmp_path, "k", "--alg", alg, "--kid", f"{alg}-1")
    assert kid == f"{alg}-1"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    private = json.loads(key.read_text())
    assert private["alg"] == alg and private["kid"] == kid and "d" in private
    public = json.loads(jwks.read_text())
    assert [k["kid"] for k in public["keys"]] == [kid]
    assert not PRIVATE_MEMBERS & set(public["keys"][0])

    token = issue(cli, key, "--region", "eu", "--clearance", "high", "--jti", "tok-1")
    done = verify(cli, token, jwks)
    assert done.code == 0, done.err
    claims = json.loads(done.out)
    assert done.out.startswith("{\n  ")  # indented
    assert list(claims) == sorted(claims)
    assert claims["sub"] == "alice" and claims["tenant"] == "t1"
    assert claims["roles"] == ["analyst", "viewer"]
    assert claims["purpose"] == "investigation"
    assert (claims["iss"], claims["aud"]) == (ISS, AUD)
    assert (claims["region"], claims["clearance"], claims["jti"]) == ("eu", "high", "tok-1")
    assert claims["exp"] - claims["iat"] == 3600


def test_generated_kid_defaults_to_thumbprint_and_ttl_is_used(cli: Cli, tmp_path: Path) -> None:
    key, _, kid = generate(cli, tmp_path, "k")
    assert json.loads(key.read_text())["alg"] == "EdDSA"
    assert len(kid) == 43  # base64url SHA-256 thumbprint
    token = issue(cli, key, "--ttl", "120")
    claims = payload(token)
    assert claims["exp"] - claims["iat"] == 120
    assert "region" not in claims and "clearance" not in claims and claims["jti"]


def test_verify_reads_the_token_from_stdin(cli: Cli, tmp_path: Path) -> None:
    key, jwks, _ = generate(cli, tmp_path, "k")
    token = issue(cli, key)
    for argv in (["-"], []):
        done = cli(
            "token", "verify", *argv, "--jwks", str(jwks), "--issuer", ISS, "--audience", AUD,
            stdin=token + "\n",
        )  # fmt: skip
        assert done.code == 0, done.err
        assert json.loads(done.out)["sub"] == "alice"
    assert_error(
        cli("token", "verify", "--jwks", str(jwks), "--issuer", ISS, "--audience", AUD, stdin=""),
        "no token",
    )


def test_rotation_keeps_both_keys_and_tokens_of_either_verify(cli: Cli, tmp_path: Path) -> None:
    old, jwks, old_kid = generate(cli, tmp_path, "old", "--kid", "2026-01")
    new, jwks_again, new_kid = generate(
        cli, tmp_path, "new", "--alg", "ES256", "--kid", "2026-07", "--add"
    )
    assert jwks_again == jwks
    document = json.loads(jwks.read_text())
    assert [k["kid"] for k in document["keys"]] == [old_kid, new_kid]
    assert [k["alg"] for k in document["keys"]] == ["EdDSA", "ES256"]
    for key in (old, new):
        done = verify(cli, issue(cli, key), jwks)
        assert done.code == 0, done.err

    # A second key with a kid already in the set is refused, and nothing is written.
    before = jwks.read_bytes()
    third = tmp_path / "third.jwk.json"
    done = cli(
        "keys", "generate", "--kid", "2026-07", "--out", str(third), "--jwks", str(jwks), "--add"
    )
    assert_error(done, "2026-07")
    assert jwks.read_bytes() == before
    assert not third.exists()

    # `token jwks` with both keys, in order, gives the same key set.
    done = cli("token", "jwks", "--key", str(old), "--key", str(new))
    assert done.code == 0, done.err
    printed = json.loads(done.out)
    assert [k["kid"] for k in printed["keys"]] == [old_kid, new_kid]
    assert not any(PRIVATE_MEMBERS & set(k) for k in printed["keys"])
    assert [k["x"] for k in printed["keys"]] == [k["x"] for k in document["keys"]]


def test_add_refuses_a_file_that_is_not_a_public_jwks(cli: Cli, tmp_path: Path) -> None:
    key, _, _ = generate(cli, tmp_path, "k")
    # A private key where a JWKS should be: refused, never merged into a published set.
    done = cli("keys", "generate", "--out", str(tmp_path / "k2.json"), "--jwks", str(key), "--add")
    assert_error(done)
    assert not (tmp_path / "k2.json").exists()
    assert_error(cli("keys", "generate", "--out", str(tmp_path / "k3.json"), "--add"), "--jwks")


def test_generate_refuses_to_overwrite_without_force(cli: Cli, tmp_path: Path) -> None:
    key, jwks, kid = generate(cli, tmp_path, "k")
    key_before, jwks_before = key.read_bytes(), jwks.read_bytes()

    assert_error(cli("keys", "generate", "--out", str(key)), "exists", "--force")
    assert key.read_bytes() == key_before
    # The JWKS exists too: refused before the (new) private key file is written.
    other = tmp_path / "other.json"
    assert_error(
        cli("keys", "generate", "--out", str(other), "--jwks", str(jwks)), "--add", "--force"
    )
    assert not other.exists()
    assert jwks.read_bytes() == jwks_before

    # --force replaces both; a looser mode of the old file is not inherited.
    key.chmod(0o644)
    done = cli("keys", "generate", "--out", str(key), "--jwks", str(jwks), "--force")
    assert done.code == 0, done.err
    assert key.read_bytes() != key_before
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    new_kid = json.loads(key.read_text())["kid"]
    assert new_kid != kid
    assert [k["kid"] for k in json.loads(jwks.read_text())["keys"]] == [new_kid]


# --- token verify refusals ----------------------------------------------------------------------


def test_verify_refusals_name_the_reason(cli: Cli, tmp_path: Path) -> None:
    key, jwks, _ = generate(cli, tmp_path, "k", "--kid", "main")
    token = issue(cli, key)

    done = cli("token", "verify", token, "--jwks", str(jwks), "--issuer", ISS, "--audience", "x")
    assert_refused(done, "audience")
    assert "'x'" in done.err

    # A changed payload, re-encoded canonically, under the original signature.
    header, _, signature = token.split(".")
    changed = {**payload(token), "roles": ["admin"]}
    body = base64.urlsafe_b64encode(json.dumps(changed).encode()).rstrip(b"=").decode()
    assert_refused(verify(cli, f"{header}.{body}.{signature}", jwks), "signature")

    # Signed by a key the set does not hold: by kid, then under the set's own kid.
    stranger_dir = tmp_path / "stranger"
    stranger_dir.mkdir()
    stranger, _, _ = generate(cli, stranger_dir, "s", "--kid", "stranger")
    assert_refused(verify(cli, issue(cli, stranger), jwks), "unknown_key")
    impostor_dir = tmp_path / "impostor"
    impostor_dir.mkdir()
    impostor, _, _ = generate(cli, impostor_dir, "i", "--kid", "main")
    assert_refused(verify(cli, issue(cli, impostor), jwks), "signature")

    assert_refused(verify(cli, "not-a-token", jwks), "malformed")


def test_verify_configuration_errors_are_errors(cli: Cli, tmp_path: Path) -> None:
    key, jwks, _ = generate(cli, tmp_path, "k")
    token = issue(cli, key)
    assert_error(cli("token", "verify", token, "--jwks", str(jwks)), "--issuer", "--audience")
    missing = tmp_path / "missing.json"
    assert_error(
        cli("token", "verify", token, "--jwks", str(missing), "--issuer", ISS, "--audience", AUD),
        str(missing),
    )
    # The public demo key in a real key set is refused outright.
    demo_set = tmp_path / "demo.json"
    demo_set.write_text(json.dumps(demo_jwks()))
    assert_error(
        cli("token", "verify", token, "--jwks", str(demo_set), "--issuer", ISS, "--audience", AUD),
        "demo key",
    )


# --- demo tokens --------------------------------------------------------------------------------


def test_demo_token_verifies_with_demo(cli: Cli) -> None:
    done = cli(
        "token", "issue", "--demo", "--sub", "bob", "--tenant", "t2", "--purpose", "analytics",
        "--region", "us",
    )  # fmt: skip
    assert done.code == 0, done.err
    token = done.out.strip()
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header["kid"] == DEMO_KID
    verified = cli("token", "verify", "--demo", stdin=token)
    assert verified.code == 0, verified.err
    claims = json.loads(verified.out)
    assert (claims["iss"], claims["aud"]) == (DEMO_ISSUER, DEMO_AUDIENCE)
    assert (claims["sub"], claims["purpose"], claims["region"]) == ("bob", "analytics", "us")
    assert claims["roles"] == []

    done = cli("token", "jwks", "--demo")
    assert done.code == 0 and json.loads(done.out) == demo_jwks()


def test_demo_broad_token_is_only_an_idp_token(cli: Cli) -> None:
    done = cli("token", "issue", "--demo", "--broad", "--sub", "bob", "--tenant", "t2")
    assert done.code == 0, done.err
    token = done.out.strip()
    assert "purpose" not in payload(token)

    broad = cli("token", "verify", token, "--demo", "--broad")
    assert broad.code == 0, broad.err
    claims = json.loads(broad.out)
    assert (claims["iss"], claims["aud"]) == (DEMO_IDP_ISSUER, DEMO_EXCHANGE_AUDIENCE)
    assert "purpose" not in claims

    # As an access token it is refused: wrong issuer/audience, and no purpose even when those fit.
    assert_refused(cli("token", "verify", token, "--demo"), "issuer", "audience", "purpose")
    idp = ["--issuer", DEMO_IDP_ISSUER, "--audience", DEMO_EXCHANGE_AUDIENCE]
    assert_refused(cli("token", "verify", token, "--demo", *idp), "purpose")
    # And a purpose-bound demo token is no IdP token.
    access = cli("token", "issue", "--demo", "--sub", "b", "--tenant", "t", "--purpose", "audit")
    assert_refused(cli("token", "verify", access.out.strip(), "--demo", "--broad"), "issuer")


# --- token issue refusals -----------------------------------------------------------------------


def test_unknown_purpose_is_refused_before_a_token_is_made(cli: Cli, tmp_path: Path) -> None:
    key, _, _ = generate(cli, tmp_path, "k")
    for signer in (["--demo"], ["--key", str(key), "--issuer", ISS, "--audience", AUD]):
        done = cli(
            "token", "issue", *signer, "--sub", "a", "--tenant", "t", "--purpose", "investigaton"
        )
        assert_error(done, "'investigaton'", "investigation")


def test_custom_purpose_vocabulary(cli: Cli, tmp_path: Path) -> None:
    key, jwks, _ = generate(cli, tmp_path, "k")
    vocabulary = tmp_path / "purposes.yaml"
    vocabulary.write_text("purposes:\n  fraud-review: {description: Fraud casework}\n")
    token = issue(cli, key, "--purposes", str(vocabulary), purpose="fraud-review")
    done = verify(cli, token, jwks, "--purposes", str(vocabulary))
    assert done.code == 0, done.err
    assert json.loads(done.out)["purpose"] == "fraud-review"
    # The shipped vocabulary does not know it.
    assert_refused(verify(cli, token, jwks), "purpose")


def test_issue_argument_rules(cli: Cli, tmp_path: Path) -> None:
    key, _, _ = generate(cli, tmp_path, "k")
    base = ["--sub", "a", "--tenant", "t", "--purpose", "audit"]
    assert_error(cli("token", "issue", "--key", str(key), *base), "--issuer", "--audience")
    assert_error(cli("token", "issue", "--demo", *base, "--issuer", ISS), "--demo sets the issuer")
    assert_error(cli("token", "issue", "--demo", *base, "--ttl", "0"), "--ttl")
    assert_error(
        cli("token", "issue", "--key", str(tmp_path / "nope"), *base, "--issuer", ISS,
            "--audience", AUD),
        "nope",
    )  # fmt: skip
    public = tmp_path / "public"
    public.mkdir()
    _, jwks, _ = generate(cli, public, "x")  # a public JWKS is not a signing key
    assert_error(
        cli("token", "issue", "--key", str(jwks), *base, "--issuer", ISS, "--audience", AUD)
    )
    # argparse's own rules: one signer, and exactly one of --purpose / --broad.
    for argv in (
        ["--demo", "--key", str(key), *base],
        ["--sub", "a", "--tenant", "t", "--purpose", "audit"],
        ["--demo", "--sub", "a", "--tenant", "t"],
        ["--demo", *base, "--broad"],
    ):
        with pytest.raises(SystemExit) as exited:
            cli("token", "issue", *argv)
        assert exited.value.code == 2


# --- token revoke -------------------------------------------------------------------------------


def test_revoke_records_the_jti_once(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    open_store(None, data_dir=tmp_path).close()
    monkeypatch.setenv("USER", "carol")
    done = cli("token", "revoke", "tok-9", "--reason", "laptop lost", "--data-dir", str(tmp_path))
    assert (done.code, done.out, done.err) == (0, "revoked tok-9\n", "")
    again = cli("token", "revoke", "tok-9", "--data-dir", str(tmp_path), "--by", "dave")
    assert (again.code, again.out) == (0, "tok-9 was already revoked\n")

    store = open_store(None, data_dir=tmp_path)
    try:
        assert revoked_token_ids(store) == frozenset({"tok-9"})
        with store.read() as connection:
            row = connection.execute(select(revoked_tokens)).one()
    finally:
        store.close()
    assert (row.revoked_by, row.reason) == ("carol", "laptop lost")


def test_revoke_by_store_url_and_default_by(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    open_store(None, data_dir=tmp_path).close()
    monkeypatch.delenv("USER", raising=False)
    url = f"sqlite:///{tmp_path / 'intelgraph.sqlite3'}"
    done = cli("token", "revoke", "tok-1", "--store", url)
    assert done.code == 0, done.err
    store = open_store(url)
    try:
        with store.read() as connection:
            assert connection.execute(select(revoked_tokens.c.revoked_by)).scalar_one() == "cli"
    finally:
        store.close()


def test_revoke_without_a_store_is_a_clear_error(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert_error(cli("token", "revoke", "tok-1"), "no store in .demo-data")
    assert_error(cli("token", "revoke", "tok-1", "--data-dir", str(tmp_path / "x")), "no store")
    assert not (tmp_path / ".demo-data").exists()  # nothing was created


def test_groups_without_a_subcommand_print_their_help(cli: Cli) -> None:
    for group, listed in (("keys", "generate"), ("token", "revoke")):
        done = cli(group)
        assert done.code == 2
        assert f"usage: intelgraph-privacy {group}" in done.out and listed in done.out


# --- the installed console script ---------------------------------------------------------------


def _script_has_keys() -> bool:
    if not SCRIPT.exists():
        return False
    done = subprocess.run(
        [str(SCRIPT), "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    # In the command list "{policy,...,keys,...}" (the word alone appears in other help text).
    return re.search(r"[{,]keys[,}]", done.stdout) is not None


wired = pytest.mark.skipif(
    not _script_has_keys(), reason="intelgraph_privacy.cli does not add the keys/token groups yet"
)


def script(*argv: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RUST_BACKTRACE": "0"}
    return subprocess.run(
        [str(SCRIPT), *argv],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=60,
        check=False,
    )


@wired
def test_script_generate_issue_verify(tmp_path: Path) -> None:
    done = script(
        "keys", "generate", "--alg", "ES256", "--out", "k.json", "--jwks", "jwks.json",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE((tmp_path / "k.json").stat().st_mode) == 0o600
    issued = script(
        "token", "issue", "--key", "k.json", "--sub", "alice", "--tenant", "t1",
        "--purpose", "investigation", "--issuer", ISS, "--audience", AUD, cwd=tmp_path,
    )  # fmt: skip
    assert issued.returncode == 0, issued.stderr
    checked = script(
        "token", "verify", "-", "--jwks", "jwks.json", "--issuer", ISS, "--audience", AUD,
        cwd=tmp_path, stdin=issued.stdout,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout)["sub"] == "alice"
    refused = script(
        "token", "verify", issued.stdout.strip(), "--jwks", "jwks.json", "--issuer", ISS,
        "--audience", "other", cwd=tmp_path,
    )  # fmt: skip
    assert refused.returncode == 1
    assert refused.stderr.startswith("token refused (audience): ")
    assert "Traceback" not in refused.stderr


@wired
def test_script_demo_and_revoke(tmp_path: Path) -> None:
    issued = script(
        "token", "issue", "--demo", "--sub", "bob", "--tenant", "t1", "--purpose", "audit",
        "--jti", "demo-1", cwd=tmp_path,
    )  # fmt: skip
    assert issued.returncode == 0, issued.stderr
    checked = script("token", "verify", "--demo", cwd=tmp_path, stdin=issued.stdout)
    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout)["jti"] == "demo-1"

    missing = script("token", "revoke", "demo-1", cwd=tmp_path)
    assert missing.returncode == 1
    assert missing.stderr.startswith("error: no store in .demo-data")
    open_store(None, data_dir=tmp_path / ".demo-data").close()
    revoked = script("token", "revoke", "demo-1", cwd=tmp_path)
    assert (revoked.returncode, revoked.stdout) == (0, "revoked demo-1\n"), revoked.stderr
