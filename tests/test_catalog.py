"""The field catalog: loading, validation against the schema, defaults, inheritance, versioning."""

from __future__ import annotations

from pathlib import Path

import pytest

from intelgraph_privacy import (
    Catalog,
    CatalogError,
    ConfigError,
    FieldEntry,
    catalog_from_mapping,
    load_catalog,
    schema_from_sdl,
)
from tests.conftest import PRESETS

SMALL_SDL = """
interface Node { id: ID! }
interface Tagged { id: ID! label: String }
interface Secretive { id: ID! label: String }

type Thing implements Node & Tagged & Secretive {
  id: ID!
  label: String
  colour: String
}

type Plain implements Node { id: ID! size: Int }

type Query { thing: Thing plain: Plain }
"""


@pytest.fixture(scope="module")
def small_schema():  # type: ignore[no-untyped-def]
    return schema_from_sdl(SMALL_SDL)


def write(tmp_path: Path, text: str, name: str = "catalog.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- the demo catalog ------------------------------------------------------------------------


def test_demo_catalog_loads(demo_catalog: Catalog) -> None:
    assert demo_catalog.source == str(PRESETS / "catalog.yaml")
    assert demo_catalog.default_sensitivity == "medium"
    ssn = demo_catalog.entry("Person.ssn")
    assert ssn.sensitivity == "high"
    assert ssn.categories == ("ssn",)
    assert ssn.retention == "pii-7y"
    assert demo_catalog.entry("Person.riskScore").reduce == "generalise"
    assert demo_catalog.entry("Organization.registrationNumber").reduce == "hash"
    informant = demo_catalog.entry("Case.informant")
    assert informant.sensitivity == "restricted"
    assert informant.purposes == ("investigation",)
    assert demo_catalog.entry("Query.cohort").purposes == ("analytics", "investigation", "export")
    assert "Person.ssn" in demo_catalog.declared
    assert "Person.id" not in demo_catalog.declared  # comes from Node.id


def test_demo_catalog_interface_entry_is_inherited(demo_catalog: Catalog) -> None:
    node_id = demo_catalog.declared["Node.id"]
    for coordinate in ("Person.id", "Organization.id", "Case.id"):
        entry = demo_catalog.entry(coordinate)
        assert entry == node_id
        assert entry.sensitivity == "low"
        assert entry.subject_key is True


# --- load errors: each names the file, the coordinate and what is wrong ----------------------

ERROR_CASES = [
    pytest.param(
        "fields:\n  Person.ssnn: {sensitivity: high}\n",
        ["Person.ssnn", "no field 'ssnn'", "ssn"],
        id="unknown-field",
    ),
    pytest.param(
        "fields:\n  Persn.ssn: {sensitivity: high}\n",
        ["Persn.ssn", "no type 'Persn'"],
        id="unknown-type",
    ),
    pytest.param(
        "fields:\n  CaseStatus.OPEN: {sensitivity: low}\n",
        ["CaseStatus.OPEN", "CaseStatus is not an object or interface type"],
        id="enum-type",
    ),
    pytest.param(
        "fields:\n  String.length: {sensitivity: low}\n",
        ["String.length", "String is not an object or interface type"],
        id="scalar-type",
    ),
    pytest.param(
        "fields:\n  SearchResult.id: {sensitivity: low}\n",
        ["SearchResult.id", "SearchResult is not an object or interface type"],
        id="union-type",
    ),
    pytest.param(
        "fields:\n  Person: {sensitivity: high}\n",
        ["Person", "not a schema coordinate", "Type.field"],
        id="no-dot",
    ),
    pytest.param(
        "fields:\n  Person.: {sensitivity: high}\n",
        ["Person.", "not a schema coordinate"],
        id="empty-field",
    ),
    pytest.param(
        "fields:\n  .ssn: {sensitivity: high}\n",
        [".ssn", "not a schema coordinate"],
        id="empty-type",
    ),
    pytest.param(
        "fields:\n  Person.ssn: {sensitivity: hi}\n",
        ["Person.ssn", "sensitivity", "'low'", "'restricted'"],
        id="bad-sensitivity",
    ),
    pytest.param(
        "fields:\n  Person.ssn: {sensitivty: high}\n",
        ["Person.ssn", "sensitivty", "not permitted"],
        id="unknown-key",
    ),
    pytest.param(
        "fields:\n  Person.ssn: {sensitivity: high, categories: [SSN]}\n",
        ["Person.ssn", "categories", "'SSN'", "lower-case label"],
        id="bad-category-label",
    ),
    pytest.param(
        "fields:\n  Person.ssn: {sensitivity: high, categories: ['social security']}\n",
        ["Person.ssn", "categories", "'social security'"],
        id="category-with-space",
    ),
    pytest.param(
        "fields:\n  Person.ssn: {sensitivity: high, purposes: [Investigation]}\n",
        ["Person.ssn", "purposes", "'Investigation'"],
        id="bad-purpose-label",
    ),
    pytest.param(
        "fields:\n  Person.ssn: {sensitivity: high, categories: ssn}\n",
        ["Person.ssn", "categories"],
        id="categories-not-a-list",
    ),
    pytest.param(
        "fields:\n  Person.email: {reduce: scramble}\n",
        ["Person.email", "reduce"],
        id="bad-reduce",
    ),
    pytest.param(
        "fields:\n  Person.age: {band: 0}\n",
        ["Person.age", "band"],
        id="zero-band",
    ),
    pytest.param(
        "fields:\n  Person.ssn: high\n",
        ["Person.ssn", "dictionary"],
        id="entry-not-a-mapping",
    ),
    pytest.param(
        "default_sensitivity: secret\nfields: {}\n",
        ["default_sensitivity", "'restricted'"],
        id="bad-default-sensitivity",
    ),
    pytest.param(
        "feilds:\n  Person.ssn: {sensitivity: high}\n",
        ["feilds", "not permitted"],
        id="unknown-top-level-key",
    ),
    pytest.param("- Person.ssn\n- Person.dob\n", ["must be a mapping"], id="yaml-list"),
    pytest.param("just some text\n", ["must be a mapping"], id="yaml-scalar"),
    pytest.param(
        "fields:\n  Person.ssn: {sensitivity: [high\n",
        ["not valid YAML"],
        id="invalid-yaml",
    ),
]


@pytest.mark.parametrize(("text", "fragments"), ERROR_CASES)
def test_bad_catalog_raises_catalog_error_naming_file_and_problem(
    tmp_path: Path, demo_schema, text: str, fragments: list[str]
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(CatalogError) as info:
        load_catalog(path, demo_schema)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_missing_catalog_file(tmp_path: Path, demo_schema) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(CatalogError) as info:
        load_catalog(path, demo_schema)
    assert str(path) in str(info.value)
    assert "cannot read catalog" in str(info.value)
    assert isinstance(info.value, ConfigError)


def test_catalog_from_mapping_names_its_source(demo_schema) -> None:
    with pytest.raises(CatalogError, match=r"^inline\.yaml: Person\.ssnn: "):
        catalog_from_mapping({"fields": {"Person.ssnn": {}}}, demo_schema, source="inline.yaml")
    with pytest.raises(CatalogError, match=r"^<catalog>: .*must be a mapping"):
        catalog_from_mapping(["Person.ssn"], demo_schema)


def test_empty_catalog_file_gives_defaults_everywhere(tmp_path: Path, demo_schema) -> None:
    catalog = load_catalog(write(tmp_path, ""), demo_schema)
    assert catalog.declared == {}
    assert catalog.entry("Person.ssn") == FieldEntry(sensitivity="medium")


# --- defaults ---------------------------------------------------------------------------------


def test_unlisted_field_gets_default_medium(small_schema) -> None:
    catalog = catalog_from_mapping(
        {"fields": {"Thing.label": {"sensitivity": "low"}}}, small_schema
    )
    assert catalog.entry("Thing.colour") == FieldEntry(sensitivity="medium")
    assert catalog.entry("Plain.size").sensitivity == "medium"
    assert catalog.entry("Thing.label").sensitivity == "low"
    # A coordinate the schema does not have still resolves, to the default.
    assert catalog.entry("Nowhere.at_all").sensitivity == "medium"


def test_default_sensitivity_is_configurable(small_schema) -> None:
    catalog = catalog_from_mapping(
        {
            "default_sensitivity": "high",
            "fields": {
                "Thing.label": {"sensitivity": "low"},
                "Thing.colour": {"categories": ["colour"]},
            },
        },
        small_schema,
    )
    assert catalog.default_sensitivity == "high"
    assert catalog.entry("Plain.size").sensitivity == "high"
    assert catalog.entry("Thing.label").sensitivity == "low"
    # An entry without `sensitivity` gets the catalog default, and keeps its other attributes.
    colour = catalog.entry("Thing.colour")
    assert colour.sensitivity == "high"
    assert colour.categories == ("colour",)


def test_entry_without_sensitivity_gets_default_medium(small_schema) -> None:
    catalog = catalog_from_mapping(
        {"fields": {"Thing.colour": {"categories": ["colour"]}, "Plain.size": None}},
        small_schema,
    )
    assert catalog.entry("Thing.colour").sensitivity == "medium"
    assert catalog.entry("Thing.colour").categories == ("colour",)
    assert catalog.entry("Plain.size") == FieldEntry(sensitivity="medium")


# --- interface inheritance --------------------------------------------------------------------


def test_interface_entry_is_inherited(small_schema) -> None:
    catalog = catalog_from_mapping(
        {"fields": {"Node.id": {"sensitivity": "low", "subject_key": True}}}, small_schema
    )
    assert catalog.entry("Plain.id").sensitivity == "low"
    assert catalog.entry("Plain.id").subject_key is True
    assert catalog.entry("Node.id").sensitivity == "low"
    # Thing implements Node too, and no other interface describes its id.
    assert catalog.entry("Thing.id").sensitivity == "low"


@pytest.mark.parametrize(
    "sensitivities",
    [
        {"Node": "low", "Tagged": "restricted", "Secretive": "high"},
        {"Node": "restricted", "Tagged": "low", "Secretive": "high"},
        {"Node": "high", "Tagged": "low", "Secretive": "restricted"},
    ],
)
def test_most_protective_interface_wins(small_schema, sensitivities: dict[str, str]) -> None:
    fields = {f"{iface}.id": {"sensitivity": s} for iface, s in sensitivities.items()}
    catalog = catalog_from_mapping({"fields": fields}, small_schema)
    assert catalog.entry("Thing.id").sensitivity == "restricted"
    # Plain implements Node only: it gets Node's entry, whatever the other interfaces say.
    assert catalog.entry("Plain.id").sensitivity == sensitivities["Node"]


def test_most_protective_interface_entry_is_taken_whole(small_schema) -> None:
    catalog = catalog_from_mapping(
        {
            "fields": {
                "Tagged.label": {"sensitivity": "low", "categories": ["tag"]},
                "Secretive.label": {"sensitivity": "high", "categories": ["secret"]},
            }
        },
        small_schema,
    )
    label = catalog.entry("Thing.label")
    assert label.sensitivity == "high"
    assert label.categories == ("secret",)


def test_own_entry_overrides_interface_entry(small_schema) -> None:
    catalog = catalog_from_mapping(
        {
            "fields": {
                "Node.id": {"sensitivity": "low"},
                "Plain.id": {"sensitivity": "high", "categories": ["internal-id"]},
            }
        },
        small_schema,
    )
    assert catalog.entry("Plain.id").sensitivity == "high"
    assert catalog.entry("Plain.id").categories == ("internal-id",)
    assert catalog.entry("Thing.id").sensitivity == "low"


# --- version ----------------------------------------------------------------------------------

BASE_YAML = """\
default_sensitivity: medium
fields:
  Person.ssn: {sensitivity: high, categories: [ssn]}
  Person.email: {sensitivity: medium, categories: [email]}
  Node.id: {sensitivity: low}
"""


def test_version_is_stable_for_the_same_content(tmp_path: Path, demo_schema) -> None:
    first = load_catalog(write(tmp_path, BASE_YAML, "a.yaml"), demo_schema)
    again = load_catalog(write(tmp_path, BASE_YAML, "a.yaml"), demo_schema)
    elsewhere = load_catalog(write(tmp_path, BASE_YAML, "b.yaml"), demo_schema)
    reordered = load_catalog(
        write(
            tmp_path,
            "fields:\n"
            "  Node.id: {sensitivity: low}\n"
            "  Person.email: {categories: [email], sensitivity: medium}\n"
            "  Person.ssn: {categories: [ssn], sensitivity: high}\n",
            "c.yaml",
        ),
        demo_schema,
    )
    assert len(first.version) == 16
    assert first.version == again.version == elsewhere.version == reordered.version


@pytest.mark.parametrize(
    "edited",
    [
        BASE_YAML.replace("Person.ssn: {sensitivity: high", "Person.ssn: {sensitivity: restricted"),
        BASE_YAML.replace("categories: [ssn]", "categories: [ssn, id]"),
        BASE_YAML.replace("Node.id: {sensitivity: low}", "Node.id: {sensitivity: low, band: 5}"),
        BASE_YAML.replace("default_sensitivity: medium", "default_sensitivity: high"),
        BASE_YAML + "  Person.dob: {sensitivity: high}\n",
        BASE_YAML.replace("  Person.email: {sensitivity: medium, categories: [email]}\n", ""),
    ],
    ids=["sensitivity", "categories", "band", "default", "added-entry", "removed-entry"],
)
def test_version_changes_when_the_catalog_changes(tmp_path: Path, demo_schema, edited: str) -> None:
    assert edited != BASE_YAML
    base = load_catalog(write(tmp_path, BASE_YAML, "base.yaml"), demo_schema)
    changed = load_catalog(write(tmp_path, edited, "edited.yaml"), demo_schema)
    assert changed.version != base.version


def test_duplicate_coordinate_is_an_error(tmp_path: Path, demo_schema) -> None:
    path = write(
        tmp_path,
        "fields:\n  Person.ssn: {sensitivity: high}\n  Person.ssn: {sensitivity: low}\n",
    )
    with pytest.raises(CatalogError, match=r"Person\.ssn"):
        load_catalog(path, demo_schema)
