"""The field catalog: what each schema coordinate (`Type.field`) holds and who may see it.

Loaded from YAML and validated against the GraphQL schema, so a typo in a coordinate or a value
is a load error that names the file, the coordinate and what is wrong, never a silent leak.

```yaml
default_sensitivity: medium        # for fields the catalog does not list
fields:
  Person.ssn: {sensitivity: high, categories: [ssn], subject_key: false}
  Node.id:    {sensitivity: low}   # inherited by every implementation without its own entry
```
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from graphql import GraphQLInterfaceType, GraphQLObjectType, GraphQLSchema
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from intelgraph_privacy.codec import dumps
from intelgraph_privacy.errors import CatalogError, describe_validation
from intelgraph_privacy.yamlfile import DuplicateKeyError, UniqueKeyLoader

Sensitivity = Literal["low", "medium", "high", "restricted"]
#: Sensitivities from least to most protected.
SENSITIVITY_ORDER: tuple[Sensitivity, ...] = ("low", "medium", "high", "restricted")

_LABEL = r"^[a-z][a-z0-9_.-]*$"


class FieldEntry(BaseModel):
    """What the catalog says about one field."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sensitivity: Sensitivity = "medium"
    categories: tuple[str, ...] = ()
    #: Purposes the field may serve; empty means every purpose.
    purposes: tuple[str, ...] = ()
    quasi_identifier: bool = False
    #: An analytics operation (a root field): its rows leave only k-anonymous.
    analytics: bool = False
    subject_key: bool = False
    residency: str | None = None
    retention: str | None = None
    #: What a partially cleared reader gets instead of the value (the shipped medium tier uses it).
    reduce: Literal["mask", "hash", "generalise", "null"] = "mask"
    #: Band width used when the field is generalised (age 37 -> 30 with band 10).
    band: float = Field(default=10.0, gt=0)

    def policy_input(self, coordinate: str, *, operation: bool = False) -> dict[str, Any]:
        """The entry as the Rego policies read it (`input.field`).

        `operation` says the coordinate is a root field (`Query.x`, `Mutation.y`): the
        operation itself, which policies refuse (deny) rather than null.
        """
        type_name, _, field_name = coordinate.partition(".")
        return {
            "name": coordinate,
            "type": type_name,
            "field": field_name,
            "operation": operation,
            "sensitivity": self.sensitivity,
            "categories": list(self.categories),
            "purposes": list(self.purposes),
            "quasi_identifier": self.quasi_identifier,
            "analytics": self.analytics,
            "subject_key": self.subject_key,
            "residency": self.residency,
            "retention": self.retention,
            "reduce": self.reduce,
        }


class _EntryInput(FieldEntry):
    # As written in YAML: sensitivity may be omitted (then the catalog default applies).
    sensitivity: Sensitivity | None = None  # type: ignore[assignment]


class _CatalogInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    default_sensitivity: Sensitivity = "medium"
    fields: dict[str, dict[str, Any] | None] = Field(default_factory=dict)


class Catalog:
    """Field catalog bound to a schema: every object-type coordinate resolves to an entry."""

    def __init__(
        self,
        schema: GraphQLSchema,
        entries: Mapping[str, FieldEntry],
        *,
        default_sensitivity: Sensitivity = "medium",
        source: str = "<catalog>",
    ) -> None:
        self.schema = schema
        self.default_sensitivity: Sensitivity = default_sensitivity
        self.source = source
        self._declared = dict(entries)
        _check_coordinates(schema, self._declared, source)
        self._resolved = self._resolve_all()
        self._root_types = frozenset(
            t.name
            for t in (schema.query_type, schema.mutation_type, schema.subscription_type)
            if t is not None
        )
        #: Content hash: decisions cached under one catalog are not reused under another.
        # Hash what coordinates resolve to (not only what is written): the same file over
        # another schema can resolve differently through interfaces.
        self.version = _content_hash(default_sensitivity, self._resolved)

    @property
    def declared(self) -> Mapping[str, FieldEntry]:
        """The entries as written in the catalog."""
        return self._declared

    def analytics_operations(self) -> list[str]:
        """The root fields the catalog marks `analytics: true`, sorted."""
        return sorted(c for c, e in self._resolved.items() if e.analytics and self.is_operation(c))

    def subject_keys(self) -> dict[str, str]:
        """Object type name -> its subject-key field (entries with `subject_key: true`,
        interface entries inherited); a type with several keeps the first by name."""
        keys: dict[str, str] = {}
        for coordinate, entry in sorted(self._resolved.items()):
            type_name, _, field_name = coordinate.partition(".")
            gtype = self.schema.type_map.get(type_name)
            if entry.subject_key and isinstance(gtype, GraphQLObjectType):
                keys.setdefault(type_name, field_name)
        return keys

    def is_operation(self, coordinate: str) -> bool:
        """Whether `Type.field` is a root field (an operation the schema offers)."""
        return coordinate.partition(".")[0] in self._root_types

    def entry(self, coordinate: str) -> FieldEntry:
        """The entry for `Type.field`: declared, else inherited from an interface, else default."""
        found = self._resolved.get(coordinate)
        if found is not None:
            return found
        return FieldEntry(sensitivity=self.default_sensitivity)

    def _resolve_all(self) -> dict[str, FieldEntry]:
        resolved: dict[str, FieldEntry] = {}
        default = FieldEntry(sensitivity=self.default_sensitivity)
        for type_name, gtype in self.schema.type_map.items():
            if type_name.startswith("__") or not isinstance(
                gtype, GraphQLObjectType | GraphQLInterfaceType
            ):
                continue
            for field_name in gtype.fields:
                coordinate = f"{type_name}.{field_name}"
                own = self._declared.get(coordinate)
                if own is not None:
                    resolved[coordinate] = own
                    continue
                inherited = [
                    self._declared[f"{iface.name}.{field_name}"]
                    for iface in gtype.interfaces
                    if f"{iface.name}.{field_name}" in self._declared
                ]
                # Several interfaces may describe the same field: the most protective wins.
                resolved[coordinate] = (
                    max(inherited, key=lambda e: SENSITIVITY_ORDER.index(e.sensitivity))
                    if inherited
                    else default
                )
        return resolved


def load_catalog(path: str | Path, schema: GraphQLSchema) -> Catalog:
    """Load a catalog YAML file and validate it against `schema`."""
    path = Path(path)
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=UniqueKeyLoader)
    except OSError as exc:
        raise CatalogError(f"{path}: cannot read catalog: {exc.strerror}") from exc
    except DuplicateKeyError as exc:
        raise CatalogError(f"{path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise CatalogError(f"{path}: not valid YAML: {exc}") from exc
    return catalog_from_mapping(raw if raw is not None else {}, schema, source=str(path))


def catalog_from_mapping(raw: Any, schema: GraphQLSchema, *, source: str = "<catalog>") -> Catalog:
    """Build a catalog from already-decoded YAML/JSON data."""
    if not isinstance(raw, dict):
        raise CatalogError(f"{source}: the catalog must be a mapping with a 'fields' key")
    try:
        top = _CatalogInput.model_validate(raw)
    except ValidationError as exc:
        raise CatalogError(f"{source}: {describe_validation(exc)}") from exc
    entries: dict[str, FieldEntry] = {}
    for coordinate, written in top.fields.items():
        body = {} if written is None else written
        if not isinstance(body, dict):
            raise CatalogError(f"{source}: {coordinate}: the entry must be a mapping")
        try:
            parsed = _EntryInput.model_validate(body)
        except ValidationError as exc:
            raise CatalogError(f"{source}: {coordinate}: {describe_validation(exc)}") from exc
        _check_labels(parsed, coordinate, source)
        values = parsed.model_dump()
        values["sensitivity"] = parsed.sensitivity or top.default_sensitivity
        entries[coordinate] = FieldEntry.model_validate(values)
    return Catalog(schema, entries, default_sensitivity=top.default_sensitivity, source=source)


def _check_labels(entry: FieldEntry, coordinate: str, source: str) -> None:
    for attribute in ("categories", "purposes"):
        for label in getattr(entry, attribute):
            if not re.match(_LABEL, label):
                raise CatalogError(
                    f"{source}: {coordinate}: {attribute}: {label!r} is not a lower-case label "
                    "(letters, digits, '_', '-', '.')"
                )


def _check_coordinates(
    schema: GraphQLSchema, entries: Mapping[str, FieldEntry], source: str
) -> None:
    for coordinate in entries:
        type_name, dot, field_name = coordinate.partition(".")
        if not dot or not type_name or not field_name:
            raise CatalogError(
                f"{source}: {coordinate}: not a schema coordinate (expected Type.field)"
            )
        gtype = schema.type_map.get(type_name)
        if gtype is None:
            raise CatalogError(f"{source}: {coordinate}: the schema has no type {type_name!r}")
        if not isinstance(gtype, GraphQLObjectType | GraphQLInterfaceType):
            raise CatalogError(
                f"{source}: {coordinate}: {type_name} is not an object or interface type"
            )
        if field_name not in gtype.fields:
            known = ", ".join(sorted(gtype.fields))
            raise CatalogError(
                f"{source}: {coordinate}: type {type_name} has no field {field_name!r} "
                f"(it has: {known})"
            )


def _content_hash(default: str, entries: Mapping[str, FieldEntry]) -> str:
    payload = {"default": default, "fields": {k: v.model_dump() for k, v in entries.items()}}
    return hashlib.sha256(dumps(payload, sort_keys=True)).hexdigest()[:16]
