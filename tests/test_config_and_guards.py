"""The configuration model (file, environment, overrides) and the document guards."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from graphql import OperationDefinitionNode, parse

from intelgraph_privacy.config import load_config
from intelgraph_privacy.errors import ConfigError
from sidecar.errors import ClientError
from sidecar.guards import check_document, measure

SHADOW_HASH = hashlib.sha256(b"query Shadow { people { name } }").hexdigest()
MINIMAL = {
    "upstream.url": "http://127.0.0.1:1/graphql",
    "auth.jwks": "jwks.json",
    "auth.issuer": "https://idp",
    "auth.audience": "api",
    "policy.pseudonym_key_file": "key",
}


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    config_file = tmp_path / "sidecar.yaml"
    config_file.write_text(
        "upstream: {url: 'http://up:1/graphql', timeout_seconds: 3}\n"
        "auth: {jwks: keys/jwks.json, issuer: https://idp, audience: api}\n"
        "policy: {pseudonym_key_file: secret.key, catalog: catalog.yaml}\n"
    )
    config = load_config(
        config_file,
        environ={
            "INTELGRAPH_UPSTREAM__TIMEOUT_SECONDS": "7.5",
            "INTELGRAPH_LIMITS__MAX_DEPTH": "4",
            "INTELGRAPH_PREVIEW__DOCUMENTS": f"[{SHADOW_HASH}]",
            "INTELGRAPH_PREVIEW__ENABLED": "false",
            "INTELGRAPH_LOG_LEVEL": "DEBUG",
            "INTELGRAPH_DEMO": "true",  # not a setting: the demo switch is not settable
            "UNRELATED": "x",
        },
    )
    assert config.upstream.timeout_seconds == 7.5
    assert config.limits.max_depth == 4
    assert config.preview.documents == (SHADOW_HASH,)
    assert config.log_level == "DEBUG"
    assert config.demo is False
    # Relative paths in the file are relative to the file.
    assert config.auth.jwks == str(tmp_path / "keys" / "jwks.json")
    assert config.policy.pseudonym_key_file == tmp_path / "secret.key"
    assert config.policy.catalog == tmp_path / "catalog.yaml"
    assert config.in_preview(SHADOW_HASH) and not config.in_preview("0" * 64)


def test_bad_values_name_the_setting() -> None:
    with pytest.raises(ConfigError, match=r"limits\.max_batch"):
        load_config(environ={}, overrides={**MINIMAL, "limits.max_batch": 0})
    with pytest.raises(ConfigError, match=r"auth\.leeway_seconds"):
        load_config(environ={}, overrides={**MINIMAL, "auth.leeway_seconds": 120})
    with pytest.raises(ConfigError, match="INTELGRAPH_PREVIEW__DOCUMENTS"):
        load_config(environ={"INTELGRAPH_PREVIEW__DOCUMENTS": "[unclosed"}, overrides=MINIMAL)
    # An operation name is not a document hash: a client chooses its operation names.
    with pytest.raises(ConfigError, match="is not a document hash"):
        load_config(environ={}, overrides={**MINIMAL, "preview.documents": ["Shadow"]})
    with pytest.raises(ConfigError, match="cannot be forwarded: content-length, host"):
        load_config(
            environ={},
            overrides={
                **MINIMAL,
                "upstream.forward_headers": ["Authorization", "Host", "content-length"],
            },
        )
    allowed = load_config(
        environ={}, overrides={**MINIMAL, "upstream.forward_headers": ["Authorization"]}
    )
    assert allowed.upstream.forward_headers == ("authorization",)
    with pytest.raises(ConfigError, match="Extra inputs are not permitted"):
        load_config(environ={}, overrides={**MINIMAL, "limits.max_dept": 3})


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read configuration"):
        load_config(tmp_path / "absent.yaml", environ={})


def test_demo_needs_no_keys_but_others_do() -> None:
    assert load_config(environ={}, overrides={"upstream.url": "http://x", "demo": True}).demo
    with pytest.raises(ConfigError, match="pseudonym_key_file"):
        load_config(
            environ={}, overrides={k: v for k, v in MINIMAL.items() if "pseudonym" not in k}
        )


# -- guards -----------------------------------------------------------------------------------


def operation(text: str) -> tuple[object, OperationDefinitionNode]:
    document = parse(text)
    ops = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    return document, ops[0]


def test_depth_counts_through_fragments() -> None:
    document, op = operation(
        "{ people { ...A } } fragment A on Person { knows { ... on Person { knows { name } } } }"
    )
    measured = measure(document, op)  # type: ignore[arg-type]
    assert measured.depth == 4 and measured.aliases == 0 and not measured.introspection


def test_aliases_are_counted_per_expansion() -> None:
    # One aliased field in a fragment spread 3 times is 3 aliases for the upstream.
    document, op = operation(
        "{ a: people { ...F } b: people { ...F } c: people { ...F } } "
        "fragment F on Person { n: name }"
    )
    assert measure(document, op).aliases == 6  # type: ignore[arg-type]


def test_fragment_bombs_are_measured_without_expanding() -> None:
    # Each level doubles the expansion: 2**20 aliases, counted in linear time.
    levels = 20
    fragments = [f"fragment F{levels} on Person {{ x: name }}"]
    for i in range(levels - 1, -1, -1):
        fragments.append(f"fragment F{i} on Person {{ ...F{i + 1} knows {{ ...F{i + 1} }} }}")
    document, op = operation("{ people { ...F0 } } " + " ".join(fragments))
    measured = measure(document, op)  # type: ignore[arg-type]
    assert measured.aliases == 2**levels
    with pytest.raises(ClientError) as refused:
        check_document(measured, max_depth=100, max_aliases=30, introspection_allowed=False)
    assert refused.value.status == 400 and refused.value.code == "ALIAS_LIMIT"


def test_introspection_is_found_anywhere() -> None:
    document, op = operation(
        '{ people { ...T } } fragment T on Person { __type(name: "X") { name } }'
    )
    measured = measure(document, op)  # type: ignore[arg-type]
    assert measured.introspection
    with pytest.raises(ClientError, match="introspection"):
        check_document(measured, max_depth=10, max_aliases=10, introspection_allowed=False)
    check_document(measured, max_depth=10, max_aliases=10, introspection_allowed=True)
    document, op = operation("{ people { __typename } }")
    assert not measure(document, op).introspection  # type: ignore[arg-type]


def test_depth_limit_message_names_both_numbers() -> None:
    document, op = operation("{ people { knows { knows { name } } } }")
    with pytest.raises(ClientError, match="4 fields deep; the limit is 3"):
        check_document(
            measure(document, op),  # type: ignore[arg-type]
            max_depth=3,
            max_aliases=10,
            introspection_allowed=False,
        )


def test_huge_documents_are_planned_but_not_cached(redactor) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import principal

    huge = (
        '{ search(text: "' + "x" * (redactor.max_cached_document_chars + 1) + '") { __typename } }'
    )
    small = "query HugeTestSmall { people(first: 3) { city name } }"
    who = principal("analyst")
    misses = redactor.plan_misses
    for _ in range(2):
        assert redactor.plan(huge, None, who).operation_type == "query"
        redactor.plan(small, None, who)
    # The huge document missed both times; the small one was planned once, then cached.
    assert redactor.plan_misses - misses == 3
