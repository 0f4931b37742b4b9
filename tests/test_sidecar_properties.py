"""Property: through the real sidecar, generated queries never leak what the policy protects.

Queries come from hypothesis-graphql (with aliases, named fragments and directives added by the
library's strategy), principals from every role and purpose combination, data from the real
sample graph. For each pair, the sidecar's response must equal what the library's plan makes of
the raw upstream response, and no protected identifier may appear in it.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from intelgraph_privacy import Principal, Redactor
from intelgraph_privacy.codec import dumps
from intelgraph_privacy.redact import apply
from intelgraph_privacy.testing import principals, protected_values, queries
from intelgraph_privacy.tokens import issue_token
from sidecar.proxy import _sanitise_upstream_errors
from tests.servers import post_json
from tests.sidecar_env import AUDIENCE, ISSUER, RecordingUpstream, Sidecar, SigningKeys

_CURSOR = re.compile(r'after: "(?:[^"\\]|\\.)*"')


def from_the_start(query: str) -> str:
    """Random `after` cursors mostly point past the last id: start at the beginning instead."""
    return _CURSOR.sub("after: null", query)


#: Hand-written queries that always reach identifiers, through aliases and fragments.
DOSSIERS = (
    "{ people(first: 5) { ssn email phone } }",
    "{ p: people(first: 3) { ...Who knows(first: 2) { e: email } } } "
    "fragment Who on Person { s: ssn phone }",
    '{ search(text: "a") { ... on Person { ssn email } ... on Case { subjects { phone } } } }',
    "{ people(first: 2) { cases { subjects { ssn } } "
    "employer { employees(first: 2) { email } } } }",
)

#: Values unique to one person: if their coordinate is protected, they must not appear at all.
IDENTIFIERS = frozenset({"Person.ssn", "Person.email", "Person.phone"})


def protected_identifiers(plan: Any, raw: dict[str, Any]) -> set[str]:
    found = set()
    for path, value in protected_values(plan, raw).items():
        if isinstance(value, str) and len(value) >= 6 and _coordinate(plan, path) in IDENTIFIERS:
            found.add(value)
    return found


def _coordinate(plan: Any, path: tuple[Any, ...]) -> str | None:
    keys = [p for p in path if isinstance(p, str)]
    last = keys[-1] if keys else None
    for field in plan.fields:
        if field.key == last:
            return str(field.coordinate)
    return None


def token_for(keys: SigningKeys, who: Principal) -> str:
    return issue_token(
        keys.key,
        sub=who.sub,
        tenant=who.tenant,
        roles=list(who.roles),
        purpose=who.purpose,
        issuer=ISSUER,
        audience=AUDIENCE,
        extra={"region": who.region} if who.region else None,
    )


def test_generated_queries_never_leak_through_the_sidecar(
    sidecar: Sidecar,
    upstream: RecordingUpstream,
    test_keys: SigningKeys,
) -> None:
    runtime = sidecar.state.runtime
    assert runtime is not None
    # The same schema, catalog, policy and pseudonym key as the sidecar, planned locally.
    local: Redactor = runtime.redactor
    stats = {"compared": 0, "refused": 0, "protected": 0}

    people_queries = queries(runtime.schema, fields=["people"]).map(from_the_start)
    any_queries = st.one_of(
        queries(runtime.schema), people_queries, people_queries, st.sampled_from(DOSSIERS)
    )

    @settings(
        max_examples=60,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(query=any_queries, who=principals())
    def check(query: str, who: Principal) -> None:
        reply = post_json(sidecar.url, {"query": query}, token=token_for(test_keys, who))
        if who.purpose not in sidecar.state.purposes:
            # A purpose outside the vocabulary: refused before anything else.
            assert reply.status == 401, reply.raw
            assert "data" not in reply.json
            stats["refused"] += 1
            return
        if reply.status != 200:
            # Refused by a guard (depth, aliases: 400) or a purpose-bound operation (403, the
            # plan denies it): no data at all.
            assert reply.status in (400, 403), reply.raw
            assert reply.status == 400 or local.plan(query, None, who).denied
            assert "data" not in reply.json or reply.json["data"] is None
            stats["refused"] += 1
            return
        plan = local.plan(query, None, who)
        raw = post_json(
            upstream.graphql_url,
            {"query": plan.upstream_document, "operationName": plan.operation_name},
        ).json
        # What the sidecar does: rebuild upstream errors (messages hidden), then apply the plan.
        sanitised = copy.deepcopy(raw)
        _sanitise_upstream_errors(sanitised, keep_located=False)
        expected = apply(plan, sanitised).response
        encoded = dumps(reply.json).decode()
        identifiers = protected_identifiers(plan, raw)
        stats["protected"] += bool(identifiers)
        for value in identifiers:
            assert value not in encoded, f"{value!r} leaked for {who}"
        assert reply.json == expected
        stats["compared"] += 1

    check()
    # The property must have looked at real responses, not only refusals.
    assert stats["compared"] >= 20, stats
    assert stats["protected"] >= 3, stats
