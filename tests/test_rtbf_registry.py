"""The dataset registry: what loads, and each mistake refused saying where it is and what."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from intelgraph_privacy.rtbf import (
    RegistryError,
    load_registry,
    plan_erasure,
    registry_from_mapping,
)

BASE: dict[str, Any] = {
    "datastores": {
        "eu-main": {"url": "sqlite:///eu.sqlite3", "region": "eu"},
        "us-main": {"url": "postgresql://app@db.internal/graph", "region": "us"},
    },
    "datasets": {
        "person": {
            "datastore": "eu-main",
            "table": "person",
            "subject_key": "id",
            "tenants": ["acme"],
            "timestamp_column": "created_at",
            "fields": {"email": {"categories": ["email"], "retention": "pii-7y"}},
        },
        "knows": {
            "datastore": "eu-main",
            "table": "knows",
            "tenants": ["acme"],
            "references": [
                {"column": "person_id", "dataset": "person"},
                {"column": "other_id", "dataset": "person", "on_erase": "null"},
            ],
        },
        "counts": {
            "datastore": "eu-main",
            "table": "counts",
            "tenants": ["*"],
            "derived": {"sources": ["person"], "query": "SELECT 1"},
        },
        "accounts": {
            "datastore": "us-main",
            "table": "accounts",
            "subject_key": "person_ref",
            "key": "account_id",
            "tenant_column": "tenant",
            "erase": "anonymise",
            "anonymise": ["email"],
        },
    },
    "retention_classes": {"pii-7y": {"max_age": "7y", "action": "null"}},
}


def variant(change: Any) -> dict[str, Any]:
    raw = copy.deepcopy(BASE)
    change(raw)
    return raw


def test_a_registry_loads_with_relative_sqlite_paths_resolved(tmp_path: Path) -> None:
    path = tmp_path / "datasets.yaml"
    path.write_text(yaml.safe_dump(BASE))
    registry = load_registry(path)
    assert registry.regions == ("eu", "us")
    assert registry.datastores["eu-main"].url == f"sqlite:///{tmp_path / 'eu.sqlite3'}"
    assert registry.datastores["us-main"].url == "postgresql://app@db.internal/graph"
    person = registry.dataset("person")
    assert (person.region, person.key, person.tenants) == ("eu", "id", ("acme",))
    assert registry.referrers["person"] == ("knows",)
    assert registry.dataset("accounts").key == "account_id"
    assert registry.retention_classes["pii-7y"].max_age_seconds == 7 * 365 * 86400
    plan = plan_erasure(registry, "acme")
    assert [s.dataset for s in plan.regions["eu"]] == ["knows", "person", "counts"]
    assert [s.kind for s in plan.regions["eu"]] == ["erase", "erase", "recompute"]
    assert [s.dataset for s in plan.regions["us"]] == ["accounts"]
    # Another tenant: only what its rows may be in (a tenant column, or "*").
    other = plan_erasure(registry, "globex")
    assert {r: [s.dataset for s in steps] for r, steps in other.regions.items()} == {
        "us": ["accounts"]
    }


def _set(path: str, value: Any) -> Any:
    def change(raw: dict[str, Any]) -> None:
        *parents, last = path.split("/")
        node = raw
        for key in parents:
            node = node[key]
        if value is _DELETE:
            del node[last]
        else:
            node[last] = value

    return change


_DELETE = object()

ERRORS = [
    (
        _set("datasets/person/datastore", "nowhere"),
        r"datasets\.person: unknown datastore 'nowhere'",
    ),
    (_set("datasets/person/table", "person; DROP"), r"datasets\.person: table .* not a plain SQL"),
    (_set("datasets/person/colour", "red"), r"colour: Extra inputs are not permitted"),
    (_set("datasets/person/tenants", _DELETE), r"datasets\.person: say whose data"),
    (
        _set("datasets/accounts/tenants", ["acme"]),
        r"datasets\.accounts: give tenants or tenant_column, not both",
    ),
    (
        _set("datasets/knows/references", [{"column": "person_id", "dataset": "ghost"}]),
        r"datasets\.knows: references: unknown dataset 'ghost'",
    ),
    (
        _set("datasets/knows/references", [{"column": "a", "dataset": "accounts"}]),
        r"datasets\.knows: references: 'accounts' is in region 'us'.*cannot cross regions",
    ),
    (
        _set("datasets/knows/references", [{"column": "c", "dataset": "counts"}]),
        r"'counts' is derived",
    ),
    (
        _set(
            "datasets/person/references",
            [{"column": "best_friend", "dataset": "knows"}],
        ),
        r"'knows' has no key",
    ),
    (
        _set("datasets/counts/derived", {"sources": ["accounts"], "query": "SELECT 1"}),
        r"datasets\.counts: derived\.sources: 'accounts' is in datastore 'us-main'",
    ),
    (_set("datasets/accounts/anonymise", []), r"erase: anonymise needs subject_key"),
    (
        _set("datasets/person/fields/email/retention", "forever"),
        r"fields\.email\.retention: unknown retention class 'forever'",
    ),
    (_set("datasets/person/timestamp_column", _DELETE), r"retention needs timestamp_column"),
    (_set("retention_classes/pii-7y/max_age", "seven years"), r"not an age such as 90d"),
    (
        _set("retention_classes/pii-7y/action", "delete"),
        r"fields\.email\.retention: class 'pii-7y' deletes rows",
    ),
    (
        _set("datasets/counts/derived", {"sources": ["person"], "query": "DELETE FROM person"}),
        r"derived\.query must be one SELECT",
    ),
    (
        _set("datasets/counts/derived", {"sources": ["person"], "query": "SELECT 1; DROP x"}),
        r"derived\.query must be one SELECT",
    ),
    (_set("datastores/us-main/url", "mysql://x/y"), r"url must be sqlite:///<path> or postgres"),
    (_set("datastores/us-main/region", "us east"), r"region 'us east' is not a region name"),
]


@pytest.mark.parametrize(("change", "message"), ERRORS)
def test_mistakes_are_refused_saying_where_and_what(change: Any, message: str) -> None:
    with pytest.raises(RegistryError, match=message) as refused:
        registry_from_mapping(variant(change), source="datasets.yaml")
    assert str(refused.value).startswith("datasets.yaml: ")


def test_reference_cycles_are_refused_naming_the_cycle() -> None:
    def cycle(raw: dict[str, Any]) -> None:
        raw["datasets"]["person"]["references"] = [{"column": "x", "dataset": "cases"}]
        raw["datasets"]["cases"] = {
            "datastore": "eu-main",
            "table": "cases",
            "key": "id",
            "tenants": ["acme"],
            "references": [{"column": "p", "dataset": "knows"}],
        }
        raw["datasets"]["knows"]["key"] = "id"
        raw["datasets"]["knows"]["references"].append({"column": "c", "dataset": "cases"})

    with pytest.raises(RegistryError, match=r"references form a cycle: .*->.*->") as refused:
        registry_from_mapping(variant(cycle), source="datasets.yaml")
    assert "an erasure order cannot be found" in str(refused.value)


def test_file_problems_are_refused(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="cannot read the dataset registry"):
        load_registry(tmp_path / "absent.yaml")
    twice = tmp_path / "twice.yaml"
    twice.write_text("datastores: {}\ndatastores: {}\n")
    with pytest.raises(RegistryError, match=r"datastores: listed twice \(line 2\)"):
        load_registry(twice)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(RegistryError, match="must be a mapping"):
        load_registry(empty)
