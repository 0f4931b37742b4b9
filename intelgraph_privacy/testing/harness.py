"""A harness that ties a schema, catalog and policy bundle to the strategies and invariants."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from intelgraph_privacy.catalog import Catalog, load_catalog
from intelgraph_privacy.policy import PolicyEngine
from intelgraph_privacy.principal import Principal
from intelgraph_privacy.redact import Plan, RedactionReport, Redactor
from intelgraph_privacy.schema import load_schema
from intelgraph_privacy.testing.invariants import assert_no_leak, assert_spec_nulls
from intelgraph_privacy.testing.strategies import Canaries, principals, queries, responses

#: TEST ONLY: pseudonym key used by the harness.
HARNESS_PSEUDONYM_KEY = b"intelgraph-testing-harness-key"


@dataclass(frozen=True)
class RedactionCase:
    """One query, principal and upstream response, and what redaction made of it."""

    query: str
    principal: Principal
    plan: Plan
    original: dict[str, Any]
    redacted: dict[str, Any]
    report: RedactionReport
    canaries: Canaries

    def check(self) -> None:
        """Run every invariant on this case."""
        assert_no_leak(self.plan, self.original, self.redacted)
        assert_spec_nulls(self.plan, self.original, self.redacted)


class PrivacyHarness:
    """Generates redaction cases for a schema, catalog and policy bundle."""

    def __init__(self, redactor: Redactor) -> None:
        self.redactor = redactor

    @classmethod
    def from_files(
        cls, schema: str | Path, catalog: str | Path, policies: str | Path
    ) -> PrivacyHarness:
        """Load a schema SDL file, a catalog YAML file and a directory of Rego policies."""
        gschema = load_schema(schema)
        loaded: Catalog = load_catalog(catalog, gschema)
        engine = PolicyEngine(policies)
        return cls(Redactor(gschema, loaded, engine, pseudonym_key=HARNESS_PSEUDONYM_KEY))

    def run(self, query: str, principal: Principal, response: dict[str, Any]) -> RedactionCase:
        """Plan and apply; the upstream response is copied first, so it stays as it was."""
        plan = self.redactor.plan(query, None, principal)
        original = copy.deepcopy(response)
        result = self.redactor.apply(plan, copy.deepcopy(response))
        return RedactionCase(
            query, principal, plan, original, result.response, result.report, Canaries()
        )

    def cases(
        self,
        who: st.SearchStrategy[Principal] | None = None,
        *,
        fields: list[str] | None = None,
    ) -> st.SearchStrategy[RedactionCase]:
        """Cases over generated queries (with aliases and fragments) and matching responses."""
        who = who if who is not None else principals()
        schema = self.redactor.schema

        @st.composite
        def build(draw: st.DrawFn) -> RedactionCase:
            query = draw(queries(schema, fields=fields))
            principal = draw(who)
            shape = self.redactor.shape(query)
            canaries = Canaries()
            response = draw(responses(schema, shape, canaries))
            case = self.run(query, principal, response)
            return RedactionCase(
                case.query,
                case.principal,
                case.plan,
                case.original,
                case.redacted,
                case.report,
                canaries,
            )

        return build()
