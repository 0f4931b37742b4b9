"""`intelgraph-privacy manifest verify`: check a signed erasure manifest (see `signing`).

```sh
intelgraph-privacy manifest verify manifest.json --jwks http://127.0.0.1:8080/.well-known/jwks.json
intelgraph-privacy manifest verify - --jwks jwks.json < manifest.json
```

Every signature of the manifest must verify with the key set, each region's sub-manifest's
too, and the whole must agree with its regions (`intelgraph_privacy.rtbf.verify_manifest`).
Prints `manifest OK: signed by <kid>, ...`, one `region <name>: signed by <kid>` line per
region and a summary line. A refusal raises a PrivacyError for the CLI runner to print, exit
status 1.

Heavy imports (jwcrypto) happen inside the command: the CLI must start fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from intelgraph_privacy.errors import ConfigError

if TYPE_CHECKING:
    from intelgraph_privacy.signing import KeysLike

__all__ = ["JWKS_TIMEOUT_SECONDS", "MAX_MANIFEST_BYTES", "add_manifest_commands", "manifest_lines"]

#: A manifest larger than this is refused before parsing.
MAX_MANIFEST_BYTES = 64 << 20
#: How long fetching a JWKS from an http(s) URL may take.
JWKS_TIMEOUT_SECONDS = 10.0


def add_manifest_commands(commands: argparse._SubParsersAction[Any]) -> None:
    """Add the `manifest` group (`manifest verify FILE --jwks FILE_OR_URL`) to sub-parsers."""
    manifest = commands.add_parser("manifest", help="signed erasure manifests")
    actions = manifest.add_subparsers(dest="manifest_command", required=True, metavar="ACTION")
    verify = actions.add_parser(
        "verify",
        help="check an erasure manifest: every signature (its regions' too) and its content",
        description="Verify a signed manifest file byte for byte: its canonical form, every "
        "signature against the key set, and each region sub-manifest's signatures. Prints the "
        "signing key ids and exits 0, or prints why it is refused and exits 1.",
    )
    verify.add_argument("file", metavar="FILE", help="the manifest file, or - for stdin")
    verify.add_argument(
        "--jwks", required=True, metavar="FILE_OR_URL", help="public key set (path or http(s) URL)"
    )
    verify.add_argument(
        "--require-kid",
        action="append",
        default=[],
        metavar="KID",
        help="this key must have signed the manifest (repeat for several)",
    )
    verify.add_argument(
        "--region-kid",
        action="append",
        default=[],
        metavar="REGION=KID",
        help="this region's part must be there, signed by this key (repeat per region)",
    )
    verify.set_defaults(run=_manifest_verify)


def manifest_lines(
    data: bytes,
    jwks: KeysLike,
    *,
    required_kids: tuple[str, ...] = (),
    region_kids: Mapping[str, str] | None = None,
) -> list[str]:
    """Verify an erasure manifest (`intelgraph_privacy.rtbf.verify_manifest`); lines to print.

    Raises SignatureError or ManifestError (PrivacyErrors) naming the part that is refused.
    """
    from intelgraph_privacy.rtbf.manifest import verify_manifest

    check = verify_manifest(
        data, jwks, required_kids=required_kids or None, region_kids=region_kids
    )
    manifest = check.manifest
    lines = [f"manifest OK: signed by {', '.join(check.kids)}"]
    lines += [f"region {name}: signed by {', '.join(kids)}" for name, kids in check.regions.items()]
    rows = sum(int(a.get("rows") or 0) for a in manifest["actions"] if a.get("op") != "recompute")
    lines.append(
        f"job {manifest['jobId']}: subject {manifest['subjectId']} ({manifest['scope']}), "
        f"{len(manifest['datasets'])} datasets, {rows} rows erased, every one verified"
    )
    return lines


def _read_manifest(source: str) -> bytes:
    if source == "-":
        data = sys.stdin.buffer.read(MAX_MANIFEST_BYTES + 1)
    else:
        try:
            with Path(source).open("rb") as handle:
                data = handle.read(MAX_MANIFEST_BYTES + 1)
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read the manifest: {exc.strerror}") from exc
    if len(data) > MAX_MANIFEST_BYTES:
        raise ConfigError(f"{source}: larger than {MAX_MANIFEST_BYTES} bytes; not a manifest")
    if not data:
        raise ConfigError(f"{source}: empty; no manifest to verify")
    return data


def _manifest_verify(args: argparse.Namespace) -> int:
    from intelgraph_privacy.tokens import load_jwks

    data = _read_manifest(args.file)
    # The same loader as token verification: size limit, no https downgrade, public keys only.
    keys = load_jwks(args.jwks, timeout=JWKS_TIMEOUT_SECONDS)
    region_kids: dict[str, str] = {}
    for binding in args.region_kid:
        region, equals, kid = binding.partition("=")
        if not (region and equals and kid):
            raise ConfigError(f"--region-kid takes REGION=KID, got {binding!r}")
        region_kids[region] = kid
    lines = manifest_lines(
        data, keys, required_kids=tuple(args.require_kid), region_kids=region_kids
    )
    for line in lines:
        print(line)
    return 0
