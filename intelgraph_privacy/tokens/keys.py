"""Public key sets (JWKS) that verify tokens, and the signing keys that issue them.

Each key verifies exactly one algorithm, chosen by its type (`key_algorithm`), never by a token:
that is what makes `alg: none` and RS256/HS256 key confusion impossible.
"""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path
from typing import Any

from jwcrypto import jwk

from intelgraph_privacy import codec
from intelgraph_privacy.errors import ConfigError
from intelgraph_privacy.tokens.claims import TokenError

#: Every algorithm this package can verify, each bound to exactly one key type.
SUPPORTED_ALGORITHMS: frozenset[str] = frozenset({"EdDSA", "ES256", "RS256"})
DEFAULT_ALGORITHMS: tuple[str, ...] = ("EdDSA", "ES256", "RS256")
MIN_RSA_BITS = 2048
#: A JWKS larger than this is not a key set (and must not exhaust memory when fetched).
MAX_JWKS_BYTES = 1 << 20

# JWK members that only a private or symmetric key has; a JWKS for verification never needs them.
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
#: `keys generate --alg` choices and the key each makes.
_GENERATE: dict[str, dict[str, Any]] = {
    "EdDSA": {"kty": "OKP", "crv": "Ed25519"},
    "ES256": {"kty": "EC", "crv": "P-256"},
    "RS256": {"kty": "RSA", "size": 3072},
}


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """One public key of a set and the one algorithm it verifies."""

    kid: str | None
    alg: str  # the one algorithm this key verifies
    key: Any  # jwk.JWK, public only
    thumbprint: str  # RFC 7638, over the key material only (a renamed kid keeps it)


def _key_alg(key: Any) -> str | None:
    """The one algorithm a key may verify, or None when this module does not support it.

    Binding the algorithm to the key type (never taking it from the token alone) is what makes
    `alg: none` and RS256/HS256 key confusion impossible.
    """
    kty, crv = key.get("kty"), key.get("crv")
    if kty == "OKP" and crv == "Ed25519":
        return "EdDSA"
    if kty == "EC" and crv == "P-256":
        return "ES256"
    if kty == "RSA":
        return "RS256"
    return None


def rsa_bits(key: Any) -> int:
    """The size of an RSA key in bits."""
    return int(key.get_op_key("verify").key_size)


class KeySet:
    """The public keys tokens are verified with (a JWKS), immutable once loaded."""

    __slots__ = ("_by_kid", "_keys", "fingerprint", "kids", "skipped", "thumbprints")

    def __init__(self, keys: Iterable[VerificationKey], skipped: Sequence[str] = ()) -> None:
        """Use `KeySet.from_json` or `load_jwks`; this constructor takes already checked keys."""
        self._keys: tuple[VerificationKey, ...] = tuple(keys)
        if not self._keys:
            raise ConfigError("the JWKS holds no key usable for EdDSA, ES256 or RS256")
        kids = [k.kid for k in self._keys if k.kid is not None]
        if len(kids) != len(set(kids)):
            raise ConfigError("the JWKS holds two keys with the same kid")
        if len(self._keys) > 1 and len(kids) != len(self._keys):
            # Tokens must name their key when there are several, so a kid-less key is unreachable.
            raise ConfigError("every key of a JWKS with several keys needs a kid")
        self._by_kid: dict[str, VerificationKey] = {
            k.kid: k for k in self._keys if k.kid is not None
        }
        #: The key ids in the set.
        self.kids: frozenset[str] = frozenset(kids)
        #: RFC 7638 thumbprints (SHA-256) of the keys.
        self.thumbprints: frozenset[str] = frozenset(k.thumbprint for k in self._keys)
        #: Keys left out (encryption keys, unsupported types, weak RSA), described for the logs.
        self.skipped: tuple[str, ...] = tuple(skipped)
        #: SHA-256 over (kid, alg, thumbprint) of every key: logs say which JWKS is loaded.
        self.fingerprint: str = hashlib.sha256(
            codec.dumps(sorted([k.kid or "", k.alg, k.thumbprint] for k in self._keys))
        ).hexdigest()

    @classmethod
    def from_json(cls, data: bytes | str | Mapping[str, Any]) -> KeySet:
        """Load a JWKS document (`{"keys": [...]}`) of public keys.

        Raises ConfigError when it is not a JWKS, carries private or symmetric key material, or
        holds no key usable for the supported algorithms. Keys that are valid but unusable here
        (`use: enc`, other curves, RSA under 2048 bits) are skipped and listed in `skipped`.
        """
        if isinstance(data, bytes | str):
            try:
                data = codec.loads(data)
            except codec.JSONDecodeError as exc:
                raise ConfigError(f"the JWKS is not valid JSON: {exc}") from exc
        if not isinstance(data, Mapping) or not isinstance(data.get("keys"), list):
            raise ConfigError('a JWKS must be a JSON object with a "keys" list')
        keys: list[VerificationKey] = []
        skipped: list[str] = []
        for index, entry in enumerate(data["keys"]):
            loaded = _load_public_key(index, entry, skipped)
            if loaded is not None:
                keys.append(loaded)
        return cls(keys, skipped)

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"KeySet(kids={sorted(self.kids)!r}, fingerprint={self.fingerprint[:16]!r})"

    @property
    def algorithms(self) -> frozenset[str]:
        """The algorithms the keys of this set can verify."""
        return frozenset(k.alg for k in self._keys)

    def select(self, kid: str | None) -> VerificationKey:
        """The key a token's `kid` names (TokenError `unknown_key` when none)."""
        if kid is None:
            if len(self._keys) == 1:
                return self._keys[0]
            raise TokenError("unknown_key", "the token has no kid and the key set has several keys")
        found = self._by_kid.get(kid)
        if found is None:
            raise TokenError("unknown_key", "the token's kid names no key in the key set")
        return found


def _load_public_key(index: int, entry: Any, skipped: list[str]) -> VerificationKey | None:
    """Check one JWKS member; None (with a note in `skipped`) when it is unusable here."""
    if not isinstance(entry, Mapping):
        raise ConfigError(f"JWKS key #{index} is not a JSON object")
    kid = entry.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise ConfigError(f"JWKS key #{index} has a kid that is not a string")
    name = f"JWKS key #{index}" + (f" (kid {kid!r})" if kid is not None else "")
    secret = sorted(_PRIVATE_MEMBERS.intersection(entry))
    if secret:
        # A verifier never needs these: their presence means a private key was published.
        raise ConfigError(
            f"{name} carries private or symmetric key material ({', '.join(secret)}); "
            "a JWKS for token verification must hold public keys only"
        )
    use, ops = entry.get("use"), entry.get("key_ops")
    if use is not None and use != "sig":
        skipped.append(f"{name}: use {use!r} is not 'sig'")
        return None
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        skipped.append(f"{name}: key_ops does not include 'verify'")
        return None
    alg = _key_alg(entry)
    if alg is None:
        skipped.append(f"{name}: key type {entry.get('kty')!r}/{entry.get('crv')!r} unsupported")
        return None
    declared = entry.get("alg")
    if declared is not None and declared != alg:
        # A key is used with the one algorithm it declares (RFC 8725 section 3.1).
        skipped.append(f"{name}: declared alg {declared!r} is not supported")
        return None
    try:
        key = jwk.JWK(**entry)
        thumbprint = key.thumbprint()
        # Build the public key object now: an invalid point or modulus fails here, not per token.
        public = key.get_op_key("verify")
        bits = int(public.key_size) if alg == "RS256" else 0
    except Exception as exc:  # jwcrypto raises many types for bad key material
        raise ConfigError(f"{name} is not a valid {alg} public key: {exc}") from exc
    if alg == "RS256" and bits < MIN_RSA_BITS:
        skipped.append(f"{name}: RSA key of {bits} bits (minimum {MIN_RSA_BITS})")
        return None
    return VerificationKey(kid=kid, alg=alg, key=key, thumbprint=thumbprint)


class _NoDowngradeRedirect(urllib.request.HTTPRedirectHandler):
    """Follow redirects, but never from https to anything else (keys must stay authenticated)."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        if req.full_url.lower().startswith("https:") and not newurl.lower().startswith("https:"):
            raise ConfigError("the JWKS URL redirects from https to a non-https URL; refused")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _display_url(url: str) -> str:
    # Never put URL credentials (user:password@) into an error message.
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def load_jwks(source: str, *, timeout: float = 5.0) -> KeySet:
    """Load a JWKS from a file path or an http(s):// URL (fetched once; call again to refresh).

    Raises ConfigError when the source cannot be read or is not a usable public JWKS.
    """
    scheme = source.split("://", 1)[0].lower() if "://" in source else ""
    if scheme in {"http", "https"}:
        shown = _display_url(source)
        if urllib.parse.urlsplit(source).username is not None:
            # urllib would take user:password@ for part of the host name; refuse it plainly.
            raise ConfigError(f"JWKS URL {shown} must not carry credentials")
        opener = urllib.request.build_opener(_NoDowngradeRedirect)
        request = urllib.request.Request(
            source, headers={"Accept": "application/json", "User-Agent": "intelgraph-privacy"}
        )
        try:
            with opener.open(request, timeout=timeout) as response:
                if response.status != 200:
                    raise ConfigError(f"JWKS {shown} answered HTTP {response.status}")
                body: bytes = response.read(MAX_JWKS_BYTES + 1)
        except urllib.error.HTTPError as exc:
            raise ConfigError(f"JWKS {shown} answered HTTP {exc.code}") from exc
        except (urllib.error.URLError, HTTPException, OSError, ValueError) as exc:
            raise ConfigError(f"JWKS {shown} could not be fetched: {exc}") from exc
    elif scheme:
        raise ConfigError(f"JWKS source scheme {scheme!r} is not supported (use a path or https)")
    else:
        shown = source
        try:
            with Path(source).open("rb") as handle:
                body = handle.read(MAX_JWKS_BYTES + 1)
        except OSError as exc:
            raise ConfigError(f"JWKS file {source} cannot be read: {exc}") from exc
    if len(body) > MAX_JWKS_BYTES:
        raise ConfigError(f"JWKS {shown} is larger than {MAX_JWKS_BYTES} bytes")
    try:
        return KeySet.from_json(body)
    except ConfigError as exc:
        raise ConfigError(f"JWKS {shown}: {exc}") from exc


def key_algorithm(key: Any) -> str | None:
    """The one algorithm a JWK may sign or verify here, or None when it is unsupported."""
    return _key_alg(key)


def generate_signing_key(alg: str = "EdDSA", *, kid: str | None = None) -> jwk.JWK:
    """A new private signing key for `alg` (EdDSA, ES256, RS256); kid defaults to its thumbprint."""
    params = _GENERATE.get(alg)
    if params is None:
        raise ConfigError(f"cannot generate a key for {alg!r}; choose from {sorted(_GENERATE)}")
    key = jwk.JWK.generate(**params)
    key.update({"kid": kid or key.thumbprint(), "alg": alg, "use": "sig"})
    return key


def load_signing_key(path: str | Path) -> jwk.JWK:
    """Read a private JWK (JSON) from a file; ConfigError unless it signs EdDSA, ES256 or RS256."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the signing key: {exc.strerror}") from exc
    try:
        key = jwk.JWK.from_json(raw)
    except Exception as exc:  # jwcrypto raises several types for bad JSON or key material
        raise ConfigError(f"{path}: not a JSON Web Key: {exc}") from exc
    if key.get("kty") == "oct":
        raise ConfigError(f"{path}: symmetric (HS*) keys are never used; use Ed25519, P-256, RSA")
    if not key.has_private:
        raise ConfigError(f"{path}: this is a public key; a private signing key is needed")
    alg = _key_alg(key)
    if alg is None:
        raise ConfigError(f"{path}: signing keys are Ed25519, P-256 or RSA")
    if alg == "RS256" and rsa_bits(key) < MIN_RSA_BITS:
        raise ConfigError(f"{path}: RSA signing keys need at least {MIN_RSA_BITS} bits")
    return key


def public_jwks(*keys: jwk.JWK) -> dict[str, Any]:
    """The public JWKS of these keys (private members never exported)."""
    exported = []
    for key in keys:
        public = key.export_public(as_dict=True)
        alg = _key_alg(public)
        if alg is not None:
            public.setdefault("alg", alg)
            public.setdefault("use", "sig")
        exported.append(public)
    return {"keys": exported}
