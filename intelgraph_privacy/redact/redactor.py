"""The redaction front door: parse, validate, decide and plan with caches, then apply."""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from typing import Any

from cachetools import LRUCache
from graphql import (
    DocumentNode,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    parse,
    validate,
)
from graphql.execution.values import get_variable_values

from intelgraph_privacy.actions import Action
from intelgraph_privacy.catalog import Catalog
from intelgraph_privacy.errors import PlanError
from intelgraph_privacy.policy import Decision, PolicyEngine
from intelgraph_privacy.principal import Principal
from intelgraph_privacy.redact.apply import Redacted, apply, preview
from intelgraph_privacy.redact.plan import Plan, compile_plan
from intelgraph_privacy.redact.report import RedactionReport
from intelgraph_privacy.redact.shape import Shape, build_shape
from intelgraph_privacy.redact.transforms import Pseudonymizer


class Redactor:
    """Plans and applies redaction for one schema, catalog and policy engine.

    Documents are parsed and validated once (cached by text), shapes once per operation, and plans
    once per (document, operation, principal attributes, policy version, catalog version).
    """

    def __init__(
        self,
        schema: GraphQLSchema,
        catalog: Catalog,
        policy: PolicyEngine,
        *,
        pseudonym_key: bytes,
        cache_size: int = 2048,
        introspection_roles: frozenset[str] = frozenset({"admin"}),
        max_tokens: int | None = None,
        max_cached_document_chars: int = 64 * 1024,
        subject_keys: bool = False,
    ) -> None:
        if catalog.schema is not schema:
            raise ValueError("the catalog was validated against a different schema")
        self.schema = schema
        self.catalog = catalog
        self.policy = policy
        self.pseudonymizer = Pseudonymizer(pseudonym_key)
        self.introspection_roles = introspection_roles
        #: Parsing stops past this many tokens (a guard against huge documents).
        self.max_tokens = max_tokens
        #: Longer documents are planned every time, not cached: the caches are keyed by the
        #: text, and a few thousand huge documents would otherwise hold gigabytes.
        self.max_cached_document_chars = max_cached_document_chars
        #: With `subject_keys`, upstream documents also ask for each object's subject key
        #: (catalog `subject_key: true`), so erased subjects can be recognised.
        self.subject_keys: dict[str, str] = catalog.subject_keys() if subject_keys else {}
        self._lock = threading.Lock()
        self._documents: LRUCache[str, DocumentNode | PlanError] = LRUCache(cache_size)
        self._shapes: LRUCache[tuple[str, str | None], Shape] = LRUCache(cache_size)
        self._plans: LRUCache[tuple[Any, ...], Plan] = LRUCache(cache_size)
        self.plan_hits = 0
        self.plan_misses = 0

    def document(self, text: str) -> DocumentNode:
        """Parse and validate a document against the schema (cached, errors included)."""
        with self._lock:
            cached = self._documents.get(text)
        if cached is None:
            cached = _parse_and_validate(self.schema, text, self.max_tokens)
            with self._lock:
                if len(text) <= self.max_cached_document_chars:
                    self._documents[text] = cached
        if isinstance(cached, PlanError):
            # A fresh exception each time: re-raising one object would grow its traceback.
            raise PlanError(str(cached), cached.errors)
        return cached

    def shape(self, text: str, operation_name: str | None = None) -> Shape:
        """The operation's shape (cached)."""
        key = (text, operation_name or None)
        with self._lock:
            cached = self._shapes.get(key)
        if cached is None:
            cached = build_shape(
                self.schema, self.document(text), operation_name, subject_keys=self.subject_keys
            )
            with self._lock:
                if len(text) <= self.max_cached_document_chars:
                    self._shapes[key] = cached
        return cached

    def plan(
        self,
        text: str,
        operation_name: str | None,
        principal: Principal,
        variables: Mapping[str, Any] | None = None,
    ) -> Plan:
        """The redaction plan for `principal` running this operation (cached)."""
        if variables is not None:
            self.check_variables(text, operation_name, variables)
        key = (
            text,
            operation_name or None,
            principal.cache_key(),
            self.policy.version,
            self.catalog.version,
        )
        with self._lock:
            cached = self._plans.get(key)
        if cached is not None:
            self.plan_hits += 1
            return cached
        self.plan_misses += 1
        shape = self.shape(text, operation_name)
        decision = self.policy.decide(principal, shape.coordinates, self.catalog)
        plan = compile_plan(
            shape,
            decision,
            self.catalog,
            pseudonymizer=self.pseudonymizer,
            allow_introspection=bool(self.introspection_roles & set(principal.roles)),
        )
        with self._lock:
            if len(text) <= self.max_cached_document_chars:
                self._plans[key] = plan
        return plan

    def passthrough_plan(self, text: str, operation_name: str | None, principal: Principal) -> Plan:
        """A plan that keeps every field: what preview mode serves (cached).

        It still drops what the sidecar injected (`__typename` aliases), keys the schema does
        not know, and introspection the principal may not run.
        """
        allow = bool(self.introspection_roles & set(principal.roles))
        key = ("passthrough", text, operation_name or None, allow, self.catalog.version)
        with self._lock:
            cached = self._plans.get(key)
        if cached is not None:
            return cached
        shape = self.shape(text, operation_name)
        keep = Decision({c: Action.KEEP for c in shape.coordinates}, "passthrough")
        plan = compile_plan(
            shape, keep, self.catalog, pseudonymizer=self.pseudonymizer, allow_introspection=allow
        )
        with self._lock:
            if len(text) <= self.max_cached_document_chars:
                self._plans[key] = plan
        return plan

    def check_variables(
        self, text: str, operation_name: str | None, variables: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Coerce variables against the operation's definitions; PlanError when they do not fit."""
        document = self.document(text)
        operation = _operation(document, operation_name)
        result = get_variable_values(
            self.schema, operation.variable_definitions or (), dict(variables)
        )
        if isinstance(result, list):
            raise PlanError(
                "invalid variables",
                [_without_suggestions(dict(e.formatted)) for e in result],
            )
        return dict(result.coerced)

    def apply(self, plan: Plan, response: Any) -> Redacted:
        """Rewrite a decoded upstream response according to the plan."""
        return apply(plan, response)

    def preview(self, plan: Plan, response: Any) -> RedactionReport:
        """What the plan would redact, leaving the response unchanged."""
        return preview(plan, response)


def _parse_and_validate(
    schema: GraphQLSchema, text: str, max_tokens: int | None = None
) -> DocumentNode | PlanError:
    try:
        document = parse(text, max_tokens=max_tokens)
    except GraphQLError as exc:
        return PlanError(f"syntax error: {exc.message}", [exc.formatted])  # type: ignore[list-item]
    errors = validate(schema, document)
    if errors:
        return PlanError(
            "the document does not validate against the schema",
            [_without_suggestions(e.formatted) for e in errors],  # type: ignore[arg-type]
        )
    return document


# "Did you mean 'ssn'?" would tell a caller about fields the policy may hide from them.
_SUGGESTION = re.compile(r"\s*Did you mean [^?]*\?\s*$")


def _without_suggestions(formatted: dict[str, Any]) -> dict[str, Any]:
    message = formatted.get("message")
    if isinstance(message, str):
        formatted = {**formatted, "message": _SUGGESTION.sub("", message)}
    return formatted


def _operation(document: DocumentNode, name: str | None) -> OperationDefinitionNode:
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    for op in operations:
        if (name and op.name and op.name.value == name) or (not name and len(operations) == 1):
            return op
    raise PlanError(f"unknown operation {name!r}" if name else "operationName is required")
