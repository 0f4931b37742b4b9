"""Giving `not` with a wildcard its Rego meaning on regorus.

In Rego, `not input.user.roles[_] == "high-clearance"` means "no role is high-clearance": the
wildcard is local to the negated expression. regorus 0.9 binds the wildcard outside the `not`
instead, so the expression means "some role is not high-clearance", and a user with no roles at
all passes the rule of PRODUCT.md untouched. Since that rule is how sensitive fields get
redacted, this module rewrites such negations before the policy is compiled:

    not input.user.roles[_] == "high-clearance"
becomes
    not __ig_not_0_1
    __ig_not_0_1 { input.user.roles[_] == "high-clearance" }     (appended to the file)

which regorus evaluates correctly. The rewrite works on the byte spans of regorus' own AST and
keeps every line where it was, so error positions still point at the author's code. A negated
wildcard expression that also uses local variables cannot be moved into a rule this way: the
bundle is refused with an explanation rather than silently evaluated wrongly.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import regorus

from intelgraph_privacy.codec import loads
from intelgraph_privacy.errors import PolicyError

_GLOBAL_ROOTS = frozenset({"input", "data", "_"})
_SCOPES = ("ArrayCompr", "SetCompr", "ObjectCompr")
_STRINGS = ("String", "RawString")


@dataclass(frozen=True, slots=True)
class _Negation:
    start: int
    end: int
    line: int
    free: frozenset[str]


def rewrite_wildcard_negations(path: str, source: str, *, rego_v0: bool, tag: str) -> str:
    """Return `source` with every `not <expression using _>` moved into a helper rule."""
    if "not" not in source or "_" not in source:
        return source
    engine = regorus.Engine()
    engine.set_rego_v0(rego_v0)
    engine.add_policy(path, source)  # already known to parse
    (policy,) = loads(engine.get_ast_as_json())
    ast = policy.get("ast", {})
    globals_ = _package_names(ast)
    negations = sorted(_negations(ast), key=lambda n: n.start)
    if not negations:
        return source
    data = source.encode("utf-8")
    out: list[bytes] = []
    helpers: list[str] = []
    cursor = 0
    for n, neg in enumerate(negations):
        locals_ = neg.free - globals_ - _GLOBAL_ROOTS
        if locals_:
            raise PolicyError(
                f"{path}:{neg.line}: a `not` over an expression with `_` and local variables "
                f"({', '.join(sorted(locals_))}) is evaluated differently by regorus than by "
                "OPA; move the negated expression into a helper rule or function"
            )
        name = f"__ig_not_{tag}_{n}"
        expression = data[neg.start : neg.end].decode("utf-8")
        helpers.append(f"{name} {{ {expression} }}" if rego_v0 else f"{name} if {{ {expression} }}")
        out.append(data[cursor : neg.start])
        out.append(name.encode())
        cursor = neg.end
    out.append(data[cursor:])
    rewritten = b"".join(out).decode("utf-8")
    footer = "\n\n# Added by intelgraph_privacy: wildcard negations (see policy/negation.py).\n"
    return rewritten.rstrip("\n") + footer + "\n".join(helpers) + "\n"


def _package_names(ast: dict[str, Any]) -> frozenset[str]:
    # Rule names and import aliases of the file: references to them are not local variables.
    names: set[str] = set()
    for rule in ast.get("rules", []):
        head = rule.get("Spec", {}).get("head", {}) if isinstance(rule, dict) else {}
        for body in head.values() if isinstance(head, dict) else ():
            ref = body.get("refr") if isinstance(body, dict) else None
            root = _root_var(ref)
            if root:
                names.add(root)
            if isinstance(body, dict) and "fcn" in body:
                root = _root_var(body["fcn"])
                if root:
                    names.add(root)
    for imp in ast.get("imports", []):
        if isinstance(imp, dict):
            alias = imp.get("as")
            root = alias if isinstance(alias, str) else _last_name(imp.get("refr"))
            if root:
                names.add(root)
    return frozenset(names)


def _negations(node: Any) -> Iterator[_Negation]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "NotExpr" and isinstance(value, dict):
                expr = value.get("expr")
                if isinstance(expr, dict):
                    variables = set(_vars(expr))
                    if "_" in variables:
                        span = _span(expr)
                        yield _Negation(span[0], span[1], span[2], frozenset(variables))
                    yield from _negations(expr)
            else:
                yield from _negations(value)
    elif isinstance(node, list):
        for item in node:
            yield from _negations(item)


def _vars(node: Any) -> Iterator[str]:
    # Variables of an expression, outside nested comprehensions (their own scope) and
    # outside the function position of calls.
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _SCOPES:
                continue
            if key == "Var" and isinstance(value, dict):
                name = value.get("value")
                if isinstance(name, str):
                    yield name
            elif key == "Call" and isinstance(value, dict):
                yield from _vars(value.get("params"))
            else:
                yield from _vars(value)
    elif isinstance(node, list):
        for item in node:
            yield from _vars(item)


def _span(expr: dict[str, Any]) -> tuple[int, int, int]:
    # The outermost span of the expression node; its children may start earlier (regorus
    # anchors binary operators at the operator), so take the widest.
    starts, ends, lines = [], [], []
    for span in _spans(expr):
        starts.append(span["start"])
        ends.append(span["end"])
        lines.append(span["line"])
    return min(starts), max(ends), min(lines)


def _spans(node: Any, quoted: bool = False) -> Iterator[dict[str, int]]:
    if isinstance(node, dict):
        span = node.get("span")
        if isinstance(span, dict) and "start" in span and "end" in span:
            if quoted:
                # regorus spans a string literal's content only: take its quotes too.
                span = {**span, "start": span["start"] - 1, "end": span["end"] + 1}
            yield span
        for key, value in node.items():
            if key != "span":
                yield from _spans(value, key in _STRINGS)
    elif isinstance(node, list):
        for item in node:
            yield from _spans(item)


def _root_var(ref: Any) -> str | None:
    while isinstance(ref, dict):
        if "Var" in ref:
            value = ref["Var"].get("value")
            return value if isinstance(value, str) else None
        inner = ref.get("RefDot") or ref.get("RefBrack")
        ref = inner.get("refr") if isinstance(inner, dict) else None
    return None


def _last_name(ref: Any) -> str | None:
    if isinstance(ref, dict) and "RefDot" in ref:
        field = ref["RefDot"].get("field")
        if isinstance(field, list) and len(field) == 2 and isinstance(field[1], str):
            return field[1]
    return _root_var(ref)
