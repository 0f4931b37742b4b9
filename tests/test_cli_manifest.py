"""`manifest verify`: real keys, real signed erasure manifests, a JWKS served over real HTTP.

The manifests are built with the orchestrator's own `region_report` / `build_manifest` and signed
per region and as a whole; the commands run in-process through `intelgraph_privacy.cli.run` on a
parser holding only the `manifest` group. Whole erasures end to end, with the manifests they
produce, are in tests/test_rtbf_orchestrator.py.
"""

from __future__ import annotations

import argparse
import io
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from intelgraph_privacy import codec
from intelgraph_privacy.cli import run
from intelgraph_privacy.cli_manifest import add_manifest_commands, manifest_lines
from intelgraph_privacy.rtbf import ManifestError
from intelgraph_privacy.rtbf.manifest import build_manifest, region_report
from intelgraph_privacy.signing import SIGNATURES, SignatureError, encode_signed, sign_document
from intelgraph_privacy.tokens import KeySet, generate_signing_key, public_jwks
from tests.servers import AppThread

CENTRAL = generate_signing_key("EdDSA", kid="central-2025")
EU = generate_signing_key("EdDSA", kid="region-eu")
US = generate_signing_key("EdDSA", kid="region-us")
STRANGER = generate_signing_key("EdDSA", kid="stranger")

JOB = "0b7d6a52-1111-4000-8000-000000000002"
SUBJECT = "hmac-sha256:" + "fe" * 32
WHEN = datetime(2026, 11, 26, 9, 30, tzinfo=UTC)
#: Region -> (its key, the datasets it erased with their rows).
REGIONS: dict[str, tuple[Any, dict[str, int]]] = {
    "eu-west": (EU, {"graph.knows": 3, "graph.person": 1}),
    "us-east": (US, {"search.index": 2}),
}


def _steps(rows: dict[str, int]) -> list[dict[str, Any]]:
    return [
        {
            "dataset": dataset,
            "op": "delete",
            "status": "done",
            "rows_found": count,
            "rows_affected": count,
            "remaining": 0,
            "attempts": 1,
            "started_at": WHEN,
            "finished_at": WHEN,
        }
        for dataset, count in rows.items()
    ]


def region_reports() -> list[dict[str, Any]]:
    """Each region's sub-manifest, signed with the region's key."""
    return [
        sign_document(
            region_report(
                job_id=JOB,
                subject=SUBJECT,
                scope="tenant:acme",
                region=region,
                steps=_steps(rows),
                policy_version="bundle+r1",
                reported_at=WHEN,
            ),
            [key],
        )
        for region, (key, rows) in REGIONS.items()
    ]


def unsigned_manifest(reports: Sequence[dict[str, Any]] | None = None) -> dict[str, Any]:
    return build_manifest(
        job_id=JOB,
        subject=SUBJECT,
        scope="tenant:acme",
        requested_at=WHEN,
        completed_at=WHEN,
        policy_version="bundle+r1",
        regions=region_reports() if reports is None else reports,
    )


def regional_manifest(*keys: Any) -> dict[str, Any]:
    """A complete erasure manifest, signed as a whole by `keys` (default: the central key)."""
    return sign_document(unsigned_manifest(), list(keys) or [CENTRAL])


SUMMARY = (
    f"job {JOB}: subject {SUBJECT} (tenant:acme), 3 datasets, 6 rows erased, every one verified"
)


@dataclass
class Result:
    code: int
    out: str
    err: str


Cli = Callable[..., Result]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    """Run `manifest` commands in-process; `stdin=` feeds standard input (bytes)."""
    parser = argparse.ArgumentParser(prog="intelgraph-privacy")
    add_manifest_commands(parser.add_subparsers())

    def invoke(*argv: str, stdin: bytes | None = None) -> Result:
        capsys.readouterr()
        if stdin is not None:
            monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(stdin)))
        code = run(parser, list(argv))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return invoke


@pytest.fixture
def jwks_file(tmp_path: Path) -> Path:
    path = tmp_path / "jwks.json"
    path.write_bytes(codec.dumps(public_jwks(CENTRAL, EU, US)))
    return path


def write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def test_verify_ok(cli: Cli, tmp_path: Path, jwks_file: Path) -> None:
    manifest = write(tmp_path / "m.json", encode_signed(regional_manifest(CENTRAL, EU)))
    done = cli("manifest", "verify", manifest, "--jwks", str(jwks_file))
    assert (done.code, done.err) == (0, "")
    assert done.out.splitlines()[0] == "manifest OK: signed by central-2025, region-eu"


def test_verify_regions(cli: Cli, tmp_path: Path, jwks_file: Path) -> None:
    manifest = write(tmp_path / "m.json", encode_signed(regional_manifest()))
    done = cli("manifest", "verify", manifest, "--jwks", str(jwks_file))
    assert done.code == 0, done.err
    assert done.out.splitlines() == [
        "manifest OK: signed by central-2025",
        "region eu-west: signed by region-eu",
        "region us-east: signed by region-us",
        SUMMARY,
    ]


def test_verify_from_stdin(cli: Cli, jwks_file: Path) -> None:
    data = encode_signed(regional_manifest())
    done = cli("manifest", "verify", "-", "--jwks", str(jwks_file), stdin=data)
    assert done.code == 0, done.err
    assert done.out.startswith("manifest OK: signed by central-2025\n")


@pytest.fixture
def jwks_server() -> Iterator[str]:
    """The key set served at /.well-known/jwks.json, as the demo serves it."""
    body = codec.dumps(public_jwks(CENTRAL, EU, US))

    async def jwks(_request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    def make_app() -> web.Application:
        app = web.Application()
        app.router.add_get("/.well-known/jwks.json", jwks)
        return app

    with AppThread(make_app) as server:
        yield f"{server.url}/.well-known/jwks.json"


def test_verify_with_jwks_url(cli: Cli, tmp_path: Path, jwks_server: str) -> None:
    manifest = write(tmp_path / "m.json", encode_signed(regional_manifest()))
    done = cli("manifest", "verify", manifest, "--jwks", jwks_server)
    assert done.code == 0, done.err
    assert len(done.out.splitlines()) == 4
    missing = jwks_server.replace("jwks.json", "nothing.json")
    done = cli("manifest", "verify", manifest, "--jwks", missing)
    assert done.code == 1
    assert "HTTP 404" in done.err


def test_tampered_file_refused(cli: Cli, tmp_path: Path, jwks_file: Path) -> None:
    data = encode_signed(regional_manifest())
    tampered = data.replace(b'"rows":3', b'"rows":2', 1)
    assert tampered != data
    done = cli("manifest", "verify", write(tmp_path / "t.json", tampered), "--jwks", str(jwks_file))
    assert (done.code, done.out) == (1, "")
    assert done.err.startswith("error: manifest refused (bad_signature): ")
    spaced = write(tmp_path / "r.json", data.replace(b",", b", ", 1))  # same content
    done = cli("manifest", "verify", spaced, "--jwks", str(jwks_file))
    assert done.code == 1
    assert "not_canonical" in done.err


def test_unknown_key_refused(cli: Cli, tmp_path: Path, jwks_file: Path) -> None:
    manifest = write(tmp_path / "m.json", encode_signed(regional_manifest(STRANGER)))
    done = cli("manifest", "verify", manifest, "--jwks", str(jwks_file))
    assert done.code == 1
    assert done.err.startswith("error: manifest refused (unknown_kid): ")
    assert "'stranger'" in done.err


def test_tampered_region_refused(cli: Cli, tmp_path: Path, jwks_file: Path) -> None:
    """A region sub-manifest changed and the whole re-signed with the central key: the outer
    signature verifies, the region's does not."""
    signed = regional_manifest()
    del signed[SIGNATURES]
    signed["regions"][1]["actions"][0]["rows"] = 0
    manifest = write(tmp_path / "m.json", encode_signed(sign_document(signed, [CENTRAL])))
    done = cli("manifest", "verify", manifest, "--jwks", str(jwks_file))
    assert done.code == 1
    assert done.err.startswith("error: region us-east refused (bad_signature): ")


def test_unsigned_region_refused(jwks_file: Path) -> None:
    reports = region_reports()
    del reports[1][SIGNATURES]
    data = encode_signed(sign_document(unsigned_manifest(reports), [CENTRAL]))
    with pytest.raises(SignatureError) as caught:
        manifest_lines(data, KeySet.from_json(public_jwks(CENTRAL, EU)))
    assert caught.value.reason == "no_signatures"
    assert "region us-east" in str(caught.value)


def test_a_manifest_that_disagrees_with_its_regions_is_refused(jwks_file: Path) -> None:
    """Every signature verifies, but the whole claims other rows than its regions report."""
    keys = KeySet.from_json(public_jwks(CENTRAL, EU, US))
    inflated = unsigned_manifest()
    inflated["actions"][0]["rows"] = 30
    with pytest.raises(ManifestError, match="actions differ"):
        manifest_lines(encode_signed(sign_document(inflated, [CENTRAL])), keys)
    unverified = [dict(r) for r in region_reports()]
    body = {k: v for k, v in unverified[1].items() if k != SIGNATURES}
    body["actions"][0]["verified"] = False
    unverified[1] = sign_document(body, [US])
    with pytest.raises(ManifestError, match=r"search\.index was not verified"):
        manifest_lines(encode_signed(sign_document(unsigned_manifest(unverified), [CENTRAL])), keys)


def test_other_signed_documents_are_not_manifests(jwks_file: Path) -> None:
    data = encode_signed(sign_document({"job": JOB, "regions": ["eu-west"]}, [CENTRAL]))
    with pytest.raises(ManifestError, match="not an erasure manifest"):
        manifest_lines(data, public_jwks(CENTRAL))


def test_require_kid(cli: Cli, tmp_path: Path, jwks_file: Path) -> None:
    manifest = write(tmp_path / "m.json", encode_signed(regional_manifest()))
    ok = cli(
        "manifest", "verify", manifest, "--jwks", str(jwks_file), "--require-kid", "central-2025"
    )
    assert ok.code == 0, ok.err
    done = cli(
        "manifest", "verify", manifest, "--jwks", str(jwks_file), "--require-kid", "region-eu"
    )
    assert done.code == 1
    assert "missing_kid" in done.err


def test_unreadable_inputs(cli: Cli, tmp_path: Path, jwks_file: Path) -> None:
    manifest = write(tmp_path / "m.json", encode_signed(regional_manifest()))
    done = cli("manifest", "verify", str(tmp_path / "absent.json"), "--jwks", str(jwks_file))
    assert (done.code, done.err.startswith("error: ")) == (1, True)
    done = cli("manifest", "verify", manifest, "--jwks", str(tmp_path / "absent-jwks.json"))
    assert (done.code, done.err.startswith("error: JWKS file")) == (1, True)
    private = write(
        tmp_path / "private.json", codec.dumps({"keys": [CENTRAL.export_private(True)]})
    )
    done = cli("manifest", "verify", manifest, "--jwks", private)
    assert done.code == 1
    assert "private" in done.err
    done = cli("manifest", "verify", "-", "--jwks", str(jwks_file), stdin=b"")
    assert (done.code, "empty" in done.err) == (1, True)
    done = cli("manifest", "verify", write(tmp_path / "x.json", b"[]\n"), "--jwks", str(jwks_file))
    assert done.code == 1
    assert "bad_json" in done.err


def test_region_kids_bind_each_region_to_its_own_key(
    cli: Cli, tmp_path: Path, jwks_file: Path
) -> None:
    """Without a binding, the central key could sign a region's part itself; with one, the part
    must be there and signed by that region's key."""
    bound = ("--region-kid", "eu-west=region-eu", "--region-kid", "us-east=region-us")
    genuine = write(tmp_path / "m.json", encode_signed(regional_manifest()))
    ok = cli("manifest", "verify", genuine, "--jwks", str(jwks_file), *bound)
    assert ok.code == 0, ok.err
    reports = region_reports()
    body = {k: v for k, v in reports[1].items() if k != SIGNATURES}
    reports[1] = sign_document(body, [CENTRAL])  # us-east's part, signed by the central key
    forged = write(
        tmp_path / "f.json", encode_signed(sign_document(unsigned_manifest(reports), [CENTRAL]))
    )
    assert cli("manifest", "verify", forged, "--jwks", str(jwks_file)).code == 0
    refused = cli("manifest", "verify", forged, "--jwks", str(jwks_file), *bound)
    assert refused.code == 1 and "region us-east refused (missing_kid)" in refused.err
    absent = cli(
        "manifest", "verify", genuine, "--jwks", str(jwks_file), "--region-kid", "ap=region-eu"
    )
    assert absent.code == 1 and "region 'ap' did not report" in absent.err
    malformed = cli("manifest", "verify", genuine, "--jwks", str(jwks_file), "--region-kid", "eu")
    assert malformed.code == 1 and "REGION=KID" in malformed.err


def test_json_equality_is_strict(jwks_file: Path) -> None:
    """`true` is not `1`: a whole whose actions say 1 where its regions say true is refused."""
    keys = KeySet.from_json(public_jwks(CENTRAL, EU, US))
    loose = unsigned_manifest()
    loose["actions"][0]["verified"] = 1
    with pytest.raises(ManifestError, match="actions differ"):
        manifest_lines(encode_signed(sign_document(loose, [CENTRAL])), keys)
