"""Loading a directory of Rego files into a compiled regorus engine.

Files are written in Rego v1 by default. A file that only parses as Rego v0 (such as the rule in
PRODUCT.md) is accepted too: the bundle then runs on an engine in v0 mode, where every v1 file must
say `import rego.v1` so that it keeps its v1 meaning.
"""

from __future__ import annotations

import hashlib
import re
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import regorus

from intelgraph_privacy.codec import dumps, loads
from intelgraph_privacy.errors import PolicyError
from intelgraph_privacy.policy.negation import rewrite_wildcard_negations

Syntax = Literal["v0", "v1"]

#: Where the library's decision contract appears in error messages and the version hash.
CONTRACT_PATH = "<intelgraph_privacy>/decision.rego"
_IMPORT_V1 = re.compile(r"^\s*import\s+rego\.v1\s*(?:#.*)?$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class RegoFile:
    """One policy source file and the Rego syntax it parsed as."""

    path: str
    source: str
    syntax: Syntax


@dataclass(frozen=True, slots=True, weakref_slot=True)
class PolicyBundle:
    """A compiled set of policies: an engine ready to evaluate, and what it was built from."""

    files: tuple[RegoFile, ...]
    syntax: Syntax
    #: Content hash of every file and the data document: the policy version.
    version: str
    #: Fully qualified test rules (`data.pkg.test_x`) found in the bundle.
    tests: tuple[str, ...]
    #: Compiles the policies into a fresh engine.
    rebuild: Callable[[], Any] = field(repr=False, compare=False)

    def thread_engine(self) -> Any:
        """The calling thread's engine for this bundle, compiled on the thread's first use.

        regorus engines are pyo3 `unsendable`: used, or even dropped, on another thread they
        fail. So none is shared: each thread keeps its own engines, and drops those of bundles
        that are gone on its next call (on its own thread, where they were made).
        """
        engines = _thread_engines()
        entry = engines.get(id(self))
        if entry is not None and entry[0]() is self:
            return entry[1]
        _sweep(engines)
        engine = self.rebuild()
        engines[id(self)] = (weakref.ref(self), engine)
        return engine

    def _adopt(self, engine: Any) -> None:
        # The compiling thread keeps the engine it just built.
        _sweep(engines := _thread_engines())
        engines[id(self)] = (weakref.ref(self), engine)


#: Per thread: id(bundle) -> (weak reference to the bundle, that thread's engine for it).
_ENGINES = threading.local()


def _thread_engines() -> dict[int, tuple[weakref.ref[PolicyBundle], Any]]:
    engines: dict[int, tuple[weakref.ref[PolicyBundle], Any]] | None = getattr(
        _ENGINES, "engines", None
    )
    if engines is None:
        engines = _ENGINES.engines = {}
    return engines


def _sweep(engines: dict[int, tuple[weakref.ref[PolicyBundle], Any]]) -> None:
    for key in [k for k, (ref, _) in engines.items() if ref() is None]:
        del engines[key]


def contract_source() -> str:
    """The Rego source of the library's decision contract."""
    return (
        resources.files("intelgraph_privacy.policy")
        .joinpath("decision.rego")
        .read_text(encoding="utf-8")
    )


def rego_error(exc: BaseException) -> str:
    """A regorus error message without the Rust backtrace it may carry."""
    text = str(exc).split("Stack backtrace:")[0].strip()
    return text or type(exc).__name__


def load_bundle(
    sources: str | Path | Iterable[str | Path],
    *,
    data: Mapping[str, Any] | None = None,
    include_contract: bool = True,
) -> PolicyBundle:
    """Compile the `.rego` files of a directory (recursively) or of an explicit list of paths."""
    paths = _policy_paths(sources)
    if not paths:
        raise PolicyError(f"no .rego files in {sources}")
    texts: list[tuple[str, str]] = []
    if include_contract:
        texts.append((CONTRACT_PATH, contract_source()))
    for path in paths:
        try:
            texts.append((str(path), path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            raise PolicyError(f"{path}: cannot read policy: {exc}") from exc
    return compile_bundle(texts, data=data)


def compile_bundle(
    texts: Iterable[tuple[str, str]], *, data: Mapping[str, Any] | None = None
) -> PolicyBundle:
    """Compile (path, source) pairs into a bundle; a parse error names the file and line."""
    files = tuple(RegoFile(path, source, _detect_syntax(path, source)) for path, source in texts)
    syntax: Syntax = "v0" if any(f.syntax == "v0" for f in files) else "v1"
    if syntax == "v0":
        for f in files:
            if f.syntax == "v1" and not _IMPORT_V1.search(f.source):
                raise PolicyError(
                    f"{f.path}: this bundle mixes Rego v0 and v1 files, so every v1 file must "
                    "declare `import rego.v1` (add it after the package line)"
                )
    engine = regorus.Engine()
    engine.set_rego_v0(syntax == "v0")
    compiled: list[tuple[str, str]] = []
    for index, f in enumerate(files):
        try:
            source = rewrite_wildcard_negations(
                f.path, f.source, rego_v0=syntax == "v0", tag=str(index)
            )
            engine.add_policy(f.path, source)
        except RuntimeError as exc:
            raise PolicyError(f"{f.path}: {rego_error(exc)}") from exc
        compiled.append((f.path, source))
    data_json = dumps(dict(data)).decode() if data else None
    if data_json is not None:
        try:
            engine.add_data_json(data_json)
        except RuntimeError as exc:
            raise PolicyError(f"policy data: {rego_error(exc)}") from exc

    def rebuild() -> Any:
        # The same sources already compiled once above, so this cannot fail differently.
        copy = regorus.Engine()
        copy.set_rego_v0(syntax == "v0")
        for path, source in compiled:
            copy.add_policy(path, source)
        if data_json is not None:
            copy.add_data_json(data_json)
        return copy

    version = _version(files, data)
    bundle = PolicyBundle(files, syntax, version, _test_rules(engine), rebuild)
    bundle._adopt(engine)
    return bundle


def _policy_paths(sources: str | Path | Iterable[str | Path]) -> list[Path]:
    if isinstance(sources, str | Path):
        root = Path(sources)
        if root.is_dir():
            return sorted(root.rglob("*.rego"))
        if root.is_file():
            return [root]
        raise PolicyError(f"{root}: no such policy file or directory")
    return [Path(p) for p in sources]


def _detect_syntax(path: str, source: str) -> Syntax:
    probe = regorus.Engine()
    try:
        probe.add_policy(path, source)
        return "v1"
    except RuntimeError as v1_error:
        if _IMPORT_V1.search(source):
            # Declared v1: report its error (a v0 parse would only add noise on stderr).
            raise PolicyError(f"{path}: {rego_error(v1_error)}") from v1_error
        probe = regorus.Engine()
        probe.set_rego_v0(True)
        try:
            probe.add_policy(path, source)
        except RuntimeError:
            # Report the v1 error: v1 is the syntax we ask authors to write.
            raise PolicyError(f"{path}: {rego_error(v1_error)}") from v1_error
        return "v0"


def _version(files: tuple[RegoFile, ...], data: Mapping[str, Any] | None) -> str:
    # Content only: file names do not change what Rego means, and replicas that spell the
    # policy directory differently must agree on the version.
    digest = hashlib.sha256()
    for source_hash in sorted(hashlib.sha256(f.source.encode()).digest() for f in files):
        digest.update(source_hash)
    digest.update(dumps(dict(data or {}), sort_keys=True))
    return digest.hexdigest()[:16]


def _test_rules(engine: Any) -> tuple[str, ...]:
    found: set[str] = set()
    for policy in loads(engine.get_ast_as_json()):
        ast = policy.get("ast", {})
        package = _ref_path(ast.get("package", {}).get("refr"))
        if package is None:
            continue
        for rule in ast.get("rules", []):
            name = _rule_name(rule)
            if name is not None and name.startswith("test_"):
                found.add(f"data.{package}.{name}")
    return tuple(sorted(found))


def _rule_name(rule: dict[str, Any]) -> str | None:
    spec = rule.get("Spec")
    if not isinstance(spec, dict):
        return None
    head = spec.get("head", {})
    if not isinstance(head, dict) or len(head) != 1:
        return None
    (body,) = head.values()
    return _ref_path(body.get("refr")) if isinstance(body, dict) else None


def _ref_path(ref: Any) -> str | None:
    # Flatten the AST of `a.b.c` (nested RefDot nodes around a Var) into "a.b.c".
    if not isinstance(ref, dict):
        return None
    if "Var" in ref:
        value = ref["Var"].get("value")
        return value if isinstance(value, str) else None
    if "RefDot" in ref:
        inner = ref["RefDot"]
        base = _ref_path(inner.get("refr"))
        fld = inner.get("field")
        name = fld[1] if isinstance(fld, list) and len(fld) == 2 else None
        if base is not None and isinstance(name, str):
            return f"{base}.{name}"
    return None
