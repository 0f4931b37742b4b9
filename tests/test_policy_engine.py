"""The policy engine: demo-tier decisions, the decision cache, hot reload and failing closed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from intelgraph_privacy import (
    Action,
    Catalog,
    FieldEntry,
    PolicyEngine,
    PolicyError,
    Principal,
    catalog_from_mapping,
    schema_from_sdl,
)
from intelgraph_privacy.policy import compile_bundle, evaluate
from tests.conftest import REGO, principal

PERSON = frozenset(
    {"Person.ssn", "Person.dob", "Person.email", "Person.phone", "Person.name", "Person.city"}
    | {"Person.age", "Person.id", "Case.informant"}
)
KEEP, MASK, NULL, HASH = Action.KEEP, Action.MASK, Action.NULL, Action.HASH


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    """A private copy of the shipped policies, free to edit."""
    return Path(shutil.copytree(REGO, tmp_path / "rego"))


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --- the demo tiers ---------------------------------------------------------------------------

TIERS = {
    ("high-clearance", "investigator"): {
        "Person.ssn": KEEP,
        "Person.dob": KEEP,
        "Person.email": KEEP,
        "Person.phone": KEEP,
    },
    ("investigator",): {
        "Person.ssn": NULL,
        "Person.dob": NULL,
        "Person.email": KEEP,
        "Person.phone": KEEP,
    },
    ("analyst",): {
        "Person.ssn": NULL,
        "Person.dob": NULL,
        "Person.email": MASK,
        "Person.phone": MASK,
    },
}


@pytest.mark.parametrize("roles", list(TIERS), ids="+".join)
def test_demo_tier_decisions(
    shipped_policy: PolicyEngine, demo_catalog: Catalog, roles: tuple[str, ...]
) -> None:
    decision = shipped_policy.decide(principal(*roles), PERSON, demo_catalog)
    assert decision.policy_version == shipped_policy.version
    assert set(decision.actions) == PERSON
    expected = {
        **TIERS[roles],
        "Person.name": KEEP,
        "Person.city": KEEP,
        "Person.age": KEEP,
        "Person.id": KEEP,
        "Case.informant": NULL,  # restricted: nobody here has restricted-clearance
    }
    assert dict(decision.actions) == expected
    assert decision["Person.ssn"] == expected["Person.ssn"]


def test_no_roles_sees_only_low_fields(shipped_policy: PolicyEngine, demo_catalog) -> None:
    decision = shipped_policy.decide(principal(), PERSON, demo_catalog)
    for coordinate in ("Person.ssn", "Person.dob", "Person.email", "Person.phone"):
        assert decision[coordinate] == NULL, coordinate
    assert decision["Person.name"] == KEEP
    assert decision["Case.informant"] == NULL


def test_catalog_reduction_is_applied_for_analysts(
    shipped_policy: PolicyEngine, demo_catalog: Catalog
) -> None:
    coords = frozenset({"Person.riskScore", "Case.reference", "Case.openedOn"})
    decision = shipped_policy.decide(principal("analyst"), coords, demo_catalog)
    assert dict(decision.actions) == {
        "Person.riskScore": Action.GENERALISE,
        "Case.reference": HASH,
        "Case.openedOn": Action.GENERALISE,
    }


def test_restricted_field_needs_clearance_and_listed_purpose(
    shipped_policy: PolicyEngine, demo_catalog: Catalog
) -> None:
    coords = frozenset({"Case.informant"})
    cleared = principal("restricted-clearance", "investigator")
    assert shipped_policy.decide(cleared, coords, demo_catalog)["Case.informant"] == KEEP
    elsewhere = principal("restricted-clearance", "investigator", purpose="analytics")
    assert shipped_policy.decide(elsewhere, coords, demo_catalog)["Case.informant"] == NULL


def test_purpose_binding(shipped_policy: PolicyEngine, demo_catalog: Catalog) -> None:
    coords = frozenset({"Query.cohort", "Query.people"})
    for purpose in ("investigation", "analytics"):
        decision = shipped_policy.decide(
            principal("investigator", purpose=purpose), coords, demo_catalog
        )
        assert decision["Query.cohort"] == KEEP, purpose
    marketing = shipped_policy.decide(
        principal("investigator", purpose="marketing"), coords, demo_catalog
    )
    # An operation bound to other purposes is refused outright (a field would be nulled).
    assert marketing["Query.cohort"] == Action.DENY
    assert marketing["Query.people"] == KEEP  # lists no purposes: serves any


def test_empty_coordinate_set(shipped_policy: PolicyEngine, demo_catalog: Catalog) -> None:
    assert (
        dict(shipped_policy.decide(principal("analyst"), frozenset(), demo_catalog).actions) == {}
    )


# --- the decision cache -----------------------------------------------------------------------


def test_identical_request_is_a_cache_hit(demo_catalog: Catalog) -> None:
    engine = PolicyEngine(REGO)
    coords = frozenset({"Person.ssn", "Person.email"})
    first = engine.decide(principal("analyst"), coords, demo_catalog)
    assert (engine.stats.hits, engine.stats.misses, engine.stats.evaluations) == (0, 1, 1)
    second = engine.decide(principal("analyst"), coords, demo_catalog)
    assert second is first
    assert (engine.stats.hits, engine.stats.misses, engine.stats.evaluations) == (1, 1, 1)
    # Roles are a set: the same roles in another order share the entry.
    engine.decide(principal("analyst", "investigator"), coords, demo_catalog)
    engine.decide(principal("investigator", "analyst"), coords, demo_catalog)
    assert (engine.stats.hits, engine.stats.evaluations) == (2, 2)


@pytest.mark.parametrize(
    "other",
    [
        Principal(sub="u2", tenant="t1", roles=("analyst",), purpose="investigation"),
        Principal(sub="u1", tenant="t2", roles=("analyst",), purpose="investigation"),
        Principal(sub="u1", tenant="t1", roles=("investigator",), purpose="investigation"),
        Principal(sub="u1", tenant="t1", roles=("analyst",), purpose="analytics"),
        Principal(sub="u1", tenant="t1", roles=("analyst",), purpose="investigation", region="eu"),
    ],
    ids=["sub", "tenant", "roles", "purpose", "region"],
)
def test_different_principal_is_a_cache_miss(demo_catalog: Catalog, other: Principal) -> None:
    engine = PolicyEngine(REGO)
    coords = frozenset({"Person.email"})
    engine.decide(principal("analyst"), coords, demo_catalog)
    engine.decide(other, coords, demo_catalog)
    assert (engine.stats.hits, engine.stats.misses, engine.stats.evaluations) == (0, 2, 2)


def test_other_coordinates_or_catalog_is_a_cache_miss(demo_schema, demo_catalog: Catalog) -> None:
    engine = PolicyEngine(REGO)
    who = principal("analyst")
    engine.decide(who, frozenset({"Person.email"}), demo_catalog)
    engine.decide(who, frozenset({"Person.email", "Person.ssn"}), demo_catalog)
    assert engine.stats.misses == 2
    # Same coordinates, another catalog: Person.email is now low, so analysts keep it.
    relaxed = catalog_from_mapping(
        {"fields": {"Person.email": {"sensitivity": "low"}}}, demo_schema
    )
    assert relaxed.version != demo_catalog.version
    decision = engine.decide(who, frozenset({"Person.email"}), relaxed)
    assert decision["Person.email"] == KEEP
    assert (engine.stats.hits, engine.stats.misses) == (0, 3)


def test_cache_is_bounded_lru(demo_catalog: Catalog) -> None:
    engine = PolicyEngine(REGO, cache_size=2)
    coords = frozenset({"Person.email"})
    a, b, c = (principal(role) for role in ("analyst", "investigator", "high-clearance"))
    engine.decide(a, coords, demo_catalog)
    engine.decide(b, coords, demo_catalog)
    engine.decide(b, coords, demo_catalog)  # hit
    engine.decide(c, coords, demo_catalog)  # evicts a (least recently used)
    assert (engine.stats.hits, engine.stats.evaluations) == (1, 3)
    again = engine.decide(a, coords, demo_catalog)  # re-evaluated
    assert again["Person.email"] == MASK
    assert (engine.stats.hits, engine.stats.misses, engine.stats.evaluations) == (1, 4, 4)
    engine.decide(c, coords, demo_catalog)  # c was kept
    assert engine.stats.hits == 2


def test_cached_decision_is_not_reused_under_a_catalog_that_resolves_differently() -> None:
    interfaces = "interface Node { id: ID! }\ninterface Secretive { id: ID! }\n"
    before = schema_from_sdl(interfaces + "type P implements Node { id: ID! }\ntype Query { p: P }")
    after = schema_from_sdl(
        interfaces + "type P implements Node & Secretive { id: ID! }\ntype Query { p: P }"
    )
    raw = {
        "fields": {"Node.id": {"sensitivity": "low"}, "Secretive.id": {"sensitivity": "restricted"}}
    }
    old, new = catalog_from_mapping(raw, before), catalog_from_mapping(raw, after)
    assert old.entry("P.id").sensitivity == "low"
    assert new.entry("P.id").sensitivity == "restricted"
    engine = PolicyEngine(REGO)
    who = principal("investigator")
    assert engine.decide(who, frozenset({"P.id"}), old)["P.id"] == KEEP
    assert engine.decide(who, frozenset({"P.id"}), new)["P.id"] == NULL


# --- hot reload -------------------------------------------------------------------------------

#: An extra rule: analysts get location fields hashed (the shipped tests still pass with it).
HASH_LOCATIONS = """

# Added by a test: analysts get location fields hashed.
hash contains input.field.name if {
\t"location" in input.field.categories
\t"analyst" in input.user.roles
}
"""

BROKEN = """\
package intelgraph.broken

import rego.v1

x if {
\tinput.a ==
}
"""

FAILING_TEST = """\
package intelgraph.extra_test

import rego.v1

test_city_is_masked_for_analysts if {
\tdata.intelgraph.decision.actions["Person.city"] == "mask" with input as {
\t\t"user": {"roles": ["analyst"], "purpose": "investigation"},
\t\t"fields": [{"name": "Person.city", "sensitivity": "low", "purposes": [], "categories": []}],
\t}
}
"""


def test_reload_swaps_in_an_edited_policy(policy_dir: Path, demo_catalog: Catalog) -> None:
    engine = PolicyEngine(policy_dir)
    analyst, investigator = principal("analyst"), principal("investigator")
    city = frozenset({"Person.city"})
    old_version = engine.version
    assert engine.decide(analyst, city, demo_catalog)["Person.city"] == KEEP
    assert engine.reload_if_changed() is None

    redact = policy_dir / "redact.rego"
    write(redact, redact.read_text(encoding="utf-8") + HASH_LOCATIONS)
    result = engine.reload()
    assert result.ok, result.error
    assert result.error is None
    assert result.version == engine.version != old_version
    assert result.tests and {t.outcome for t in result.tests} == {"pass"}
    assert engine.stats.reloads == 1
    assert engine.last_error is None

    decision = engine.decide(analyst, city, demo_catalog)
    assert decision["Person.city"] == HASH
    assert decision.policy_version == engine.version
    assert engine.decide(investigator, city, demo_catalog)["Person.city"] == KEEP
    # Nothing changed since the reload.
    assert engine.reload_if_changed() is None


def test_reload_of_unchanged_policy_keeps_version(policy_dir: Path, demo_catalog) -> None:
    engine = PolicyEngine(policy_dir)
    engine.decide(principal("analyst"), frozenset({"Person.ssn"}), demo_catalog)
    result = engine.reload()
    assert result.ok
    assert result.version == engine.version
    assert engine.stats.reloads == 0
    engine.decide(principal("analyst"), frozenset({"Person.ssn"}), demo_catalog)
    assert engine.stats.hits == 1  # the cache survives a no-op reload


def test_reload_if_changed_notices_an_edit(policy_dir: Path, demo_catalog: Catalog) -> None:
    engine = PolicyEngine(policy_dir)
    assert engine.reload_if_changed() is None
    redact = policy_dir / "redact.rego"
    write(redact, redact.read_text(encoding="utf-8") + HASH_LOCATIONS)
    result = engine.reload_if_changed()
    assert result is not None
    assert result.ok
    assert (
        engine.decide(principal("analyst"), frozenset({"Person.city"}), demo_catalog)["Person.city"]
        == HASH
    )
    assert engine.reload_if_changed() is None


def test_broken_file_is_refused_and_old_policy_keeps_serving(
    policy_dir: Path, demo_catalog: Catalog
) -> None:
    engine = PolicyEngine(policy_dir)
    coords = frozenset({"Person.ssn", "Person.email"})
    before = engine.decide(principal("analyst"), coords, demo_catalog)
    old_version = engine.version

    broken = write(policy_dir / "broken.rego", BROKEN)
    result = engine.reload()
    assert not result.ok
    assert result.version == old_version == engine.version
    assert result.error is not None
    assert str(broken) in result.error
    assert f"{broken}:7:" in result.error
    assert "Stack backtrace" not in result.error
    assert engine.last_error == result.error
    assert engine.stats.reload_failures == 1

    # Old decisions are still served, from the cache and freshly evaluated.
    assert engine.decide(principal("analyst"), coords, demo_catalog) == before
    fresh = engine.decide(principal("investigator"), coords, demo_catalog)
    assert dict(fresh.actions) == {"Person.ssn": NULL, "Person.email": KEEP}
    assert fresh.policy_version == old_version

    # Unchanged broken files are not tried again at every poll...
    assert engine.reload_if_changed() is None
    assert engine.stats.reload_failures == 1
    # ...but any change is, and still broken, it is refused again.
    write(policy_dir / "broken.rego", BROKEN + "\n# edited\n")
    retried = engine.reload_if_changed()
    assert retried is not None
    assert not retried.ok
    assert engine.stats.reload_failures == 2

    broken.unlink()
    healed = engine.reload()
    assert healed.ok
    assert healed.version == old_version
    assert engine.last_error is None


def test_policy_with_failing_test_is_refused(policy_dir: Path, demo_catalog: Catalog) -> None:
    engine = PolicyEngine(policy_dir)
    old_version = engine.version
    write(policy_dir / "extra_test.rego", FAILING_TEST)
    result = engine.reload()
    assert not result.ok
    assert result.version == old_version == engine.version
    assert result.error is not None
    assert "policy tests failed" in result.error
    assert "data.intelgraph.extra_test.test_city_is_masked_for_analysts (fail" in result.error
    outcomes = {t.rule: t.outcome for t in result.tests}
    assert outcomes["data.intelgraph.extra_test.test_city_is_masked_for_analysts"] == "fail"
    assert engine.last_error == result.error
    assert (
        engine.decide(principal("analyst"), frozenset({"Person.city"}), demo_catalog)["Person.city"]
        == KEEP
    )


def test_policy_edit_that_breaks_shipped_tests_is_refused(
    policy_dir: Path, demo_catalog: Catalog
) -> None:
    # Make high fields masked instead of nulled: the shipped tests expect null, so it is refused.
    redact = policy_dir / "redact.rego"
    text = redact.read_text(encoding="utf-8")
    high_rule = 'redact contains input.field.name if {\n\tinput.field.sensitivity == "high"'
    assert high_rule in text
    engine = PolicyEngine(policy_dir)
    write(redact, text.replace(high_rule, high_rule.replace("redact contains", "mask contains")))
    result = engine.reload()
    assert not result.ok
    assert result.error is not None
    assert "(fail" in result.error
    ssn = frozenset({"Person.ssn"})
    assert engine.decide(principal("analyst"), ssn, demo_catalog)["Person.ssn"] == NULL


def test_construction_refuses_failing_tests(policy_dir: Path) -> None:
    write(policy_dir / "extra_test.rego", FAILING_TEST)
    with pytest.raises(PolicyError, match=r"test_city_is_masked_for_analysts \(fail"):
        PolicyEngine(policy_dir)


def test_construction_refuses_broken_or_missing_policies(tmp_path: Path) -> None:
    broken = write(tmp_path / "broken.rego", BROKEN)
    with pytest.raises(PolicyError, match=r"broken\.rego:7:"):
        PolicyEngine(tmp_path)
    with pytest.raises(PolicyError, match="no such policy file or directory"):
        PolicyEngine(tmp_path / "missing")
    broken.unlink()
    with pytest.raises(PolicyError, match=r"no \.rego files"):
        PolicyEngine(tmp_path)


def test_construction_refuses_a_bundle_that_breaks_the_contract(tmp_path: Path) -> None:
    # A second definition of the contract's actions rule: the probe fails, nothing serves.
    write(
        tmp_path / "rogue.rego",
        'package intelgraph.decision\n\nimport rego.v1\n\nactions["Query.__probe"] := "bogus"\n',
    )
    with pytest.raises(PolicyError, match="policy probe failed"):
        PolicyEngine(tmp_path)


# --- evaluate fails closed --------------------------------------------------------------------


def test_evaluate_rejects_an_invalid_action() -> None:
    bundle = compile_bundle(
        [
            (
                "x.rego",
                'package intelgraph.decision\nimport rego.v1\nactions := {"Person.ssn": "bogus"}',
            )
        ]
    )
    with pytest.raises(PolicyError, match=r"no valid action for Person\.ssn.*'bogus'"):
        evaluate(bundle, principal("analyst"), {"Person.ssn": FieldEntry(sensitivity="high")})


def test_evaluate_rejects_a_missing_field() -> None:
    bundle = compile_bundle(
        [
            (
                "x.rego",
                'package intelgraph.decision\nimport rego.v1\nactions := {"Person.ssn": "keep"}',
            )
        ]
    )
    entries = {"Person.ssn": FieldEntry(), "Person.dob": FieldEntry()}
    with pytest.raises(PolicyError, match=r"no valid action for Person\.dob.*None"):
        evaluate(bundle, principal("analyst"), entries)


@pytest.mark.parametrize(
    "source",
    [
        "package intelgraph.decision\nimport rego.v1\nactions := {} if { false }",
        "package intelgraph.decision\nimport rego.v1\nactions := 5",
        "package intelgraph.decision\nimport rego.v1\nother := 1",
        "package somewhere.other\nimport rego.v1\nactions := {}",
    ],
    ids=["undefined", "not-an-object", "no-actions-rule", "no-decision-package"],
)
def test_evaluate_rejects_undefined_actions(source: str) -> None:
    bundle = compile_bundle([("x.rego", source)])
    with pytest.raises(PolicyError):
        evaluate(bundle, principal("analyst"), {"Person.ssn": FieldEntry()})


def test_evaluate_reports_a_runtime_error_without_backtrace() -> None:
    bundle = compile_bundle(
        [
            (
                "x.rego",
                "package intelgraph.decision\nimport rego.v1\n"
                'actions := {"Person.ssn": a} if { a := 1 / 0 }',
            )
        ]
    )
    with pytest.raises(PolicyError) as info:
        evaluate(bundle, principal("analyst"), {"Person.ssn": FieldEntry()})
    assert "Stack backtrace" not in str(info.value)


def test_worker_threads_and_reloads_never_share_an_engine(
    policy_dir: Path, demo_catalog: Catalog
) -> None:
    """regorus engines are bound to their thread: decisions from worker threads across reloads
    must work, and no engine may be dropped on a thread other than its own."""
    import gc
    import sys
    from concurrent.futures import ThreadPoolExecutor

    problems: list[str] = []
    previous_hook = sys.unraisablehook
    sys.unraisablehook = lambda report: problems.append(repr(report.exc_value))
    try:
        engine = PolicyEngine(policy_dir)
        coords = frozenset({"Person.city", "Person.ssn"})
        who = [principal("analyst"), principal("investigator"), principal("high-clearance")]
        with ThreadPoolExecutor(max_workers=3) as pool:
            for round_ in range(3):
                results = list(pool.map(lambda p: engine.decide(p, coords, demo_catalog), who * 4))
                assert all(r.policy_version == engine.version for r in results)
                # A new bundle, compiled on this thread, while the workers keep their engines.
                write(policy_dir / "extra.rego", f"package intelgraph.extra\nx := {round_}\n")
                assert engine.reload().ok
                gc.collect()
            after = list(pool.map(lambda p: engine.decide(p, coords, demo_catalog), who * 4))
            assert {r.policy_version for r in after} == {engine.version}
        gc.collect()
    finally:
        sys.unraisablehook = previous_hook
    assert not [p for p in problems if "unsendable" in p], problems
