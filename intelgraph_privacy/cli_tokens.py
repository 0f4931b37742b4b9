"""`intelgraph-privacy keys ...` and `intelgraph-privacy token ...`: signing keys and tokens.

- `keys generate` makes a private signing JWK (file mode 0600) and its public JWKS, or adds the
  new public key to an existing JWKS for key rotation.
- `token issue` signs a purpose-bound (or, with `--broad`, identity-provider style) token;
  `token verify` checks one strictly and prints its claims; `token jwks` prints the public JWKS
  of signing keys; `token revoke` records a token id as revoked in the store.

Heavy imports (jwcrypto, the store) happen inside the commands: the CLI must start fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from intelgraph_privacy.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable

    from jwcrypto import jwk

__all__ = ["add_token_commands"]

_ALGORITHMS = ("EdDSA", "ES256", "RS256")
_CLEARANCES = ("low", "medium", "high", "restricted")
_PRIVATE_KEY_MODE = 0o600
_PUBLIC_FILE_MODE = 0o644


def add_token_commands(commands: argparse._SubParsersAction[Any]) -> None:
    """Add the `keys` and `token` command groups to a parser's sub-parsers.

    Every sub-command sets `run=<function(args) -> int>`; errors are raised as ConfigError or
    PrivacyError for the runner (`intelgraph_privacy.cli.run`) to print.
    """
    from intelgraph_privacy.cli import _default, add_store_arguments

    keys = commands.add_parser("keys", help="manage token signing keys")
    keys.set_defaults(run=_print_help(keys))
    keys_commands = keys.add_subparsers(title="keys commands")
    generate = keys_commands.add_parser(
        "generate",
        help="make a private signing key (JWK, mode 0600) and its public JWKS",
        description="Make a private signing key and, with --jwks, the public key set that "
        "verifiers load. For rotation, --jwks FILE --add adds the new public key to FILE.",
    )
    generate.add_argument("--alg", choices=_ALGORITHMS, default="EdDSA", help="(default EdDSA)")
    generate.add_argument("--kid", help="key id (default: the key's RFC 7638 thumbprint)")
    generate.add_argument(
        "--out", type=Path, required=True, metavar="PRIVATE_JWK_FILE", help="private key file"
    )
    generate.add_argument(
        "--jwks", type=Path, metavar="PUBLIC_JWKS_FILE", help="also write the public JWKS here"
    )
    generate.add_argument(
        "--add",
        action="store_true",
        help="with --jwks: add the new public key to the existing JWKS (key rotation)",
    )
    generate.add_argument("--force", action="store_true", help="overwrite existing files")
    generate.set_defaults(run=_keys_generate)

    token = commands.add_parser("token", help="issue, verify and revoke tokens")
    token.set_defaults(run=_print_help(token))
    token_commands = token.add_subparsers(title="token commands")

    issue = token_commands.add_parser(
        "issue",
        help="print a signed bearer token",
        description="Sign a token with a private key (--key; then --issuer and --audience are "
        "required) or the public demo key (--demo, accepted only by `intelgraph-privacy demo`).",
    )
    signer = issue.add_mutually_exclusive_group(required=True)
    signer.add_argument("--key", type=Path, metavar="PRIVATE_JWK_FILE", help="signing key")
    signer.add_argument(
        "--demo",
        action="store_true",
        help="sign with the public demo key (only `intelgraph-privacy demo` accepts it)",
    )
    issue.add_argument("--sub", required=True, help="the subject (user id)")
    issue.add_argument("--tenant", required=True)
    issue.add_argument("--roles", default="", help="comma-separated roles")
    kind = issue.add_mutually_exclusive_group(required=True)
    kind.add_argument("--purpose", help="a purpose of the vocabulary (see --purposes)")
    kind.add_argument(
        "--broad",
        action="store_true",
        help="no purpose: an identity-provider token, only good for /token/exchange",
    )
    issue.add_argument("--issuer", help="iss claim (required with --key)")
    issue.add_argument("--audience", help="aud claim (required with --key)")
    issue.add_argument("--ttl", type=int, default=3600, help="seconds (default 3600)")
    issue.add_argument("--region")
    issue.add_argument("--clearance", choices=_CLEARANCES)
    issue.add_argument("--jti", help="token id (default: random); what `token revoke` takes")
    issue.add_argument(
        "--purposes",
        default=_default("presets/purposes.yaml"),
        metavar="FILE",
        help="purpose vocabulary (default presets/purposes.yaml)",
    )
    issue.set_defaults(run=_token_issue)

    verify = token_commands.add_parser(
        "verify",
        help="verify a token and print its claims",
        description="Verify a token strictly, as the sidecar does (revocation is not checked). "
        "Prints the claims and exits 0, or prints why it is refused and exits 1.",
    )
    verify.add_argument("token", nargs="?", default="-", help="the token, or - for stdin")
    source = verify.add_mutually_exclusive_group(required=True)
    source.add_argument("--jwks", metavar="FILE_OR_URL", help="public key set")
    source.add_argument("--demo", action="store_true", help="the demo's key, issuer, audience")
    verify.add_argument("--issuer", help="expected iss (required without --demo)")
    verify.add_argument("--audience", help="expected aud (required without --demo)")
    verify.add_argument(
        "--purposes",
        default=_default("presets/purposes.yaml"),
        metavar="FILE",
        help="purpose vocabulary (default presets/purposes.yaml)",
    )
    verify.add_argument(
        "--broad",
        action="store_true",
        help="an identity-provider token without purpose (checks signature, times, iss, aud)",
    )
    verify.set_defaults(run=_token_verify)

    jwks = token_commands.add_parser("jwks", help="print the public JWKS of signing keys")
    keys_source = jwks.add_mutually_exclusive_group(required=True)
    keys_source.add_argument(
        "--key",
        type=Path,
        action="append",
        metavar="PRIVATE_JWK_FILE",
        help="a signing key (repeat for several, in order)",
    )
    keys_source.add_argument("--demo", action="store_true", help="the demo key's JWKS")
    jwks.set_defaults(run=_token_jwks)

    revoke = token_commands.add_parser("revoke", help="revoke a token by its id (jti)")
    revoke.add_argument("jti", metavar="JTI")
    revoke.add_argument("--reason", metavar="TEXT")
    revoke.add_argument("--by", metavar="NAME", help='who revokes (default: $USER, else "cli")')
    add_store_arguments(revoke)
    revoke.set_defaults(run=_token_revoke)


def _print_help(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    # A group named without a sub-command shows its own help, not the top-level one.
    def show(_args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    return show


# --- files -----------------------------------------------------------------------------------


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create `path` with `mode` (O_EXCL: fails if it exists); removed again if writing fails."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def _write_file(path: Path, data: bytes, mode: int, *, replace: bool) -> None:
    """Write `path` created with `mode` from the start (a key is never readable by others, not
    even briefly). With `replace`, a temporary file is renamed over the old one atomically, so
    an existing file's looser mode is not inherited."""
    try:
        if not replace:
            _write_new(path, data, mode)
            return
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temporary.unlink(missing_ok=True)
        _write_new(temporary, data, mode)
        try:
            os.replace(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
    except FileExistsError:
        raise ConfigError(f"{path} exists; use --force to overwrite it") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write: {exc.strerror}") from exc


def _read_jwks_document(path: Path) -> dict[str, Any]:
    """An existing JWKS file, checked (public keys only), as its raw JSON document."""
    from intelgraph_privacy.tokens import KeySet

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the JWKS: {exc.strerror}") from exc
    try:
        KeySet.from_json(text)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    document: dict[str, Any] = json.loads(text)
    return document


def _dump(document: Any) -> bytes:
    return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode("utf-8")


# --- keys generate ---------------------------------------------------------------------------


def _keys_generate(args: argparse.Namespace) -> int:
    from intelgraph_privacy.tokens import generate_signing_key, public_jwks

    out: Path = args.out
    jwks_path: Path | None = args.jwks
    if args.add and jwks_path is None:
        raise ConfigError("--add needs --jwks FILE (the key set to add the new public key to)")
    if args.kid is not None and not args.kid.strip():
        raise ConfigError("--kid must not be empty")
    if jwks_path is not None and jwks_path.resolve() == out.resolve():
        raise ConfigError("--out and --jwks must be different files")
    # Check every precondition before writing anything, so a refusal leaves no half-done work.
    if out.exists() and not args.force:
        raise ConfigError(f"{out} exists; use --force to overwrite it")
    existing: dict[str, Any] | None = None
    if jwks_path is not None and jwks_path.exists():
        if args.add:
            existing = _read_jwks_document(jwks_path)
        elif not args.force:
            raise ConfigError(
                f"{jwks_path} exists; use --add to add the new key to it (rotation) "
                "or --force to overwrite it"
            )

    key = generate_signing_key(args.alg, kid=args.kid)
    kid = str(key.get("kid"))
    public = public_jwks(key)
    if existing is not None:
        kids = {k.get("kid") for k in existing["keys"] if isinstance(k, dict)}
        if kid in kids:
            raise ConfigError(f"{jwks_path} already holds a key with kid {kid!r}; choose another")
        public = {**existing, "keys": [*existing["keys"], *public["keys"]]}

    _write_file(
        out, key.export_private().encode("utf-8"), _PRIVATE_KEY_MODE, replace=bool(args.force)
    )
    print(f"kid: {kid}")
    print(f"private key ({args.alg}): {out} (mode 0600; keep it secret)")
    if jwks_path is not None:
        # Replaced atomically: a verifier reloading the JWKS never reads a half-written file.
        _write_file(jwks_path, _dump(public), _PUBLIC_FILE_MODE, replace=jwks_path.exists())
        count = len(public["keys"])
        print(f"public JWKS: {jwks_path} ({count} key{'' if count == 1 else 's'})")
    return 0


# --- token issue -----------------------------------------------------------------------------


def _check_purpose(purpose: str, vocabulary_file: str) -> None:
    from intelgraph_privacy.tokens import load_purposes

    vocabulary = load_purposes(vocabulary_file)
    if purpose not in vocabulary:
        # Refused here, so a typo never becomes a token that every verifier rejects.
        raise ConfigError(
            f"unknown purpose {purpose!r}; {vocabulary_file} defines {', '.join(vocabulary)}"
        )


def _token_issue(args: argparse.Namespace) -> int:
    from intelgraph_privacy.tokens import (
        DEMO_AUDIENCE,
        DEMO_EXCHANGE_AUDIENCE,
        DEMO_IDP_ISSUER,
        DEMO_ISSUER,
        DEMO_KID,
        demo_private_key,
        issue_token,
        load_signing_key,
    )

    if args.ttl <= 0:
        raise ConfigError("--ttl must be a positive number of seconds")
    key: jwk.JWK
    kid: str | None
    if args.demo:
        if args.issuer is not None or args.audience is not None:
            # The demo sidecar accepts only its own issuer and audience.
            raise ConfigError("--demo sets the issuer and audience; drop --issuer/--audience")
        key, kid = demo_private_key(), DEMO_KID
        issuer, audience = (
            (DEMO_IDP_ISSUER, DEMO_EXCHANGE_AUDIENCE)
            if args.broad
            else (DEMO_ISSUER, DEMO_AUDIENCE)
        )
    else:
        if not args.issuer or not args.audience:
            raise ConfigError("--key needs --issuer and --audience")
        key, kid = load_signing_key(args.key), None  # kid: the key's own
        issuer, audience = args.issuer, args.audience
    if not args.broad:
        _check_purpose(args.purpose, args.purposes)
    extra: dict[str, Any] = {}
    if args.region:
        extra["region"] = args.region
    if args.clearance:
        extra["clearance"] = args.clearance
    roles = [r.strip() for r in args.roles.split(",") if r.strip()]
    token = issue_token(
        key,
        sub=args.sub,
        tenant=args.tenant,
        roles=roles,
        purpose=None if args.broad else args.purpose,
        issuer=issuer,
        audience=audience,
        ttl=args.ttl,
        kid=kid,
        jti=args.jti,
        extra=extra or None,
    )
    print(token)
    return 0


# --- token verify ----------------------------------------------------------------------------


def _token_verify(args: argparse.Namespace) -> int:
    from intelgraph_privacy.tokens import (
        DEMO_AUDIENCE,
        DEMO_EXCHANGE_AUDIENCE,
        DEMO_IDP_ISSUER,
        DEMO_ISSUER,
        JwtVerifier,
        KeySet,
        TokenError,
        TokenVerifier,
        demo_jwks,
        load_jwks,
        load_purposes,
    )

    token = sys.stdin.read() if args.token == "-" else args.token
    token = token.strip()
    if not token:
        raise ConfigError("no token given (pass it as an argument or on stdin)")
    issuer: str | None = args.issuer
    audience: str | None = args.audience
    if args.demo:
        keys = KeySet.from_json(demo_jwks())
        # The demo's IdP tokens (--broad) and access tokens have their own issuer and audience.
        issuer = issuer or (DEMO_IDP_ISSUER if args.broad else DEMO_ISSUER)
        audience = audience or (DEMO_EXCHANGE_AUDIENCE if args.broad else DEMO_AUDIENCE)
    else:
        if not issuer or not audience:
            raise ConfigError("--jwks needs --issuer and --audience (or use --demo)")
        keys = load_jwks(args.jwks)
    verifier: JwtVerifier
    if args.broad:
        verifier = JwtVerifier(keys, issuer=issuer, audience=audience, allow_demo_key=args.demo)
    else:
        verifier = TokenVerifier(
            keys,
            issuer=issuer,
            audience=audience,
            purposes=load_purposes(args.purposes),
            allow_demo_key=args.demo,
        )
    try:
        if isinstance(verifier, TokenVerifier):
            claims = verifier.verify(token).model_dump(mode="json", exclude_none=True)
        else:
            claims = verifier.verify_payload(token)
    except TokenError as exc:
        # A refusal is an answer, not a failure of the command: no "error:" prefix, no traceback.
        print(f"token refused ({exc.reason}): {exc}", file=sys.stderr)
        return 1
    print(json.dumps(claims, indent=2, sort_keys=True))
    return 0


# --- token jwks ------------------------------------------------------------------------------


def _token_jwks(args: argparse.Namespace) -> int:
    from intelgraph_privacy.tokens import KeySet, demo_jwks, load_signing_key, public_jwks

    if args.demo:
        document = demo_jwks()
    else:
        document = public_jwks(*(load_signing_key(path) for path in args.key))
        KeySet.from_json(document)  # refuses two keys with one kid: verifiers could not load it
    print(json.dumps(document, indent=2, sort_keys=True))
    return 0


# --- token revoke ----------------------------------------------------------------------------


def _token_revoke(args: argparse.Namespace) -> int:
    # Imported here: intelgraph_privacy.cli imports this module.
    from intelgraph_privacy.cli import open_store_from_args
    from intelgraph_privacy.tokens import DEFAULT_MAX_TOKEN_AGE, revoke_token

    revoked_by = args.by or os.environ.get("USER") or "cli"
    # Keep the revocation as long as the sidecar accepts tokens: its max_token_age_seconds.
    max_age = DEFAULT_MAX_TOKEN_AGE
    if args.config:
        from intelgraph_privacy.config import load_config

        max_age = load_config(args.config).auth.max_token_age_seconds
    store = open_store_from_args(args)
    try:
        revoked = revoke_token(
            store, args.jti, revoked_by=revoked_by, reason=args.reason, max_token_age=max_age
        )
    finally:
        store.close()
    print(f"revoked {args.jti}" if revoked else f"{args.jti} was already revoked")
    return 0
