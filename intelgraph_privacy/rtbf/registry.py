"""The dataset registry: where a data subject's data lives, and how it depends on other data.

```yaml
datastores:
  eu-main: {url: "sqlite:///eu.sqlite3", region: eu}      # relative to this file
  us-main: {url: "postgresql://app@db.us.internal/graph", region: us}
datasets:
  person:
    datastore: eu-main
    table: person
    subject_key: id              # the column holding the subject's id
    key: id                      # the row key other datasets reference (default: subject_key)
    tenants: [acme]              # the tenants whose data the table holds ("*": any), or
    # tenant_column: tenant      # the column naming each row's tenant
    erase: delete                # or anonymise: null the `anonymise` columns and the subject key
    fields:
      email: {categories: [email], retention: pii-7y}
  knows:
    datastore: eu-main
    table: knows
    references:                  # foreign keys: rows pointing at an erased row go too
      - {column: person_id, dataset: person}
      - {column: other_id, dataset: person}
  case_file:
    datastore: eu-main
    table: case_file
    references:
      - {column: informant_id, dataset: person, on_erase: "null"}  # keep the case, drop the link
  city_counts:
    datastore: eu-main
    table: city_counts
    derived: {sources: [person], query: "SELECT city, COUNT(*) AS n FROM person GROUP BY city"}
  login_events:
    datastore: eu-main
    table: login_events
    subject_key: person_id
    tenants: [acme]
    timestamp_column: at         # retention measures age from here
    legal_hold_column: on_hold   # rows with true are never removed by retention
    retention: events-90d
retention_classes:
  events-90d: {max_age: 90d, action: delete}
  pii-7y: {max_age: 7y, action: "null"}
```

A dataset holds a subject's data through its `subject_key`, or through `references` to rows that
do (transitively). References stay within a region: each region's data is erased by that
region's executor, and only the subject's keyed hash crosses regions. Derived datasets are
rebuilt from their sources (in the same datastore) after the erasure. Loading checks all of this
and says where a mistake is: the file, the dataset and the key.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from intelgraph_privacy.errors import ConfigError, describe_validation
from intelgraph_privacy.yamlfile import load_yaml_file

__all__ = [
    "Dataset",
    "DatasetRegistry",
    "Datastore",
    "Derivation",
    "FieldSpec",
    "Reference",
    "RegistryError",
    "RetentionClass",
    "load_registry",
    "registry_from_mapping",
]

ANY_TENANT = "*"
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class RegistryError(ConfigError):
    """The dataset registry does not load or is inconsistent."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Datastore(_Strict):
    """A database holding datasets, in one region."""

    url: str
    region: str


class Reference(_Strict):
    """A foreign key: `column` holds the `key` of a row of `dataset`."""

    column: str
    dataset: str
    #: What happens to a row pointing at an erased row: deleted, or the link set to NULL.
    on_erase: Literal["delete", "null"] = "delete"


class Derivation(_Strict):
    """How a derived dataset is rebuilt: `query` (a SELECT) over its `sources`."""

    sources: list[str] = Field(min_length=1)
    query: str = Field(min_length=1)


class FieldSpec(_Strict):
    """What a column holds (categories) and how long it may be kept (a retention class)."""

    categories: list[str] = []
    retention: str | None = None


class _DatasetInput(_Strict):
    datastore: str
    table: str
    subject_key: str | None = None
    key: str | None = None
    tenant_column: str | None = None
    tenants: list[str] | None = None
    erase: Literal["delete", "anonymise"] = "delete"
    anonymise: list[str] = []
    references: list[Reference] = []
    derived: Derivation | None = None
    fields: dict[str, FieldSpec] = {}
    #: The column saying when a row was written (retention measures age from it).
    timestamp_column: str | None = None
    #: A boolean column: rows where it is true are on legal hold (never removed by retention).
    legal_hold_column: str | None = None
    #: A retention class for whole rows.
    retention: str | None = None


class RetentionClass(_Strict):
    """How long data of a retention class is kept, and what happens to it afterwards.

    `max_age`: a number and a unit, `90d`, `12w`, `18m` (30-day months), `7y` (365-day years),
    or `36h`. `action`: `delete` removes the rows; `null` empties the fields of the class (field
    classes only); `anonymise` nulls the dataset's `anonymise` columns and its subject key
    (dataset classes; on a field, the same as `null`).
    """

    max_age: str
    action: Literal["delete", "null", "anonymise"]

    @property
    def max_age_seconds(self) -> int:
        """`max_age` in seconds."""
        return _age_seconds(self.max_age)


_AGE = re.compile(r"([1-9][0-9]{0,5})([hdwmy])")
_AGE_UNITS = {"h": 3600, "d": 86400, "w": 7 * 86400, "m": 30 * 86400, "y": 365 * 86400}


def _age_seconds(text: str) -> int:
    match = _AGE.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"max_age {text!r} is not an age such as 90d, 12w, 18m, 7y or 36h")
    return int(match.group(1)) * _AGE_UNITS[match.group(2)]


class _RegistryInput(_Strict):
    datastores: dict[str, Datastore] = Field(min_length=1)
    datasets: dict[str, _DatasetInput] = Field(min_length=1)
    retention_classes: dict[str, RetentionClass] = {}


@dataclass(frozen=True, slots=True)
class Dataset:
    """One registered dataset (a table in a datastore), validated."""

    name: str
    datastore: str
    region: str
    table: str
    subject_key: str | None
    key: str | None
    tenant_column: str | None
    #: The tenants whose data the table holds (`("*",)`: any); empty with a tenant column.
    tenants: tuple[str, ...]
    erase: Literal["delete", "anonymise"]
    anonymise: tuple[str, ...]
    references: tuple[Reference, ...]
    derived: Derivation | None
    fields: Mapping[str, FieldSpec]
    timestamp_column: str | None
    legal_hold_column: str | None
    retention: str | None

    def holds_tenant(self, tenant: str) -> bool:
        """Whether rows of `tenant` may be in this dataset."""
        return (
            self.tenant_column is not None or ANY_TENANT in self.tenants or (tenant in self.tenants)
        )


@dataclass(frozen=True)
class DatasetRegistry:
    """The validated registry: datastores and datasets by name."""

    datastores: Mapping[str, Datastore]
    datasets: Mapping[str, Dataset]
    source: str = "<registry>"
    retention_classes: Mapping[str, RetentionClass] = field(default_factory=dict)
    #: dataset -> the datasets whose references point at it.
    referrers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def regions(self) -> tuple[str, ...]:
        """Every region that holds a datastore, sorted."""
        return tuple(sorted({d.region for d in self.datastores.values()}))

    def dataset(self, name: str) -> Dataset:
        """The dataset called `name` (RegistryError when there is none)."""
        try:
            return self.datasets[name]
        except KeyError:
            raise RegistryError(f"{self.source}: no dataset {name!r}") from None


def load_registry(path: str | Path) -> DatasetRegistry:
    """Load and validate a dataset registry YAML file (RegistryError on any mistake).

    Relative SQLite paths in datastore URLs are taken relative to the file's directory.
    """
    path = Path(path)
    try:
        raw = load_yaml_file(path, what="dataset registry")
    except ConfigError as exc:
        raise RegistryError(str(exc)) from None
    return registry_from_mapping(raw, source=str(path), base_dir=path.parent)


def registry_from_mapping(
    raw: Any, *, source: str = "<registry>", base_dir: Path | None = None
) -> DatasetRegistry:
    """Build a registry from already-decoded YAML/JSON data (RegistryError on any mistake)."""
    if not isinstance(raw, dict):
        raise RegistryError(
            f"{source}: the registry must be a mapping with 'datastores' and 'datasets'"
        )
    try:
        top = _RegistryInput.model_validate(raw)
    except ValidationError as exc:
        raise RegistryError(f"{source}: {describe_validation(exc)}") from None
    datastores = {
        name: _check_datastore(name, store, source, base_dir)
        for name, store in top.datastores.items()
    }
    datasets = {
        name: _check_dataset(name, spec, datastores, source) for name, spec in top.datasets.items()
    }
    _check_links(datasets, source)
    _check_retention(top.retention_classes, datasets, source)
    referrers: dict[str, list[str]] = {name: [] for name in datasets}
    for name, dataset in datasets.items():
        for reference in dataset.references:
            if name not in referrers[reference.dataset]:
                referrers[reference.dataset].append(name)
    return DatasetRegistry(
        datastores,
        datasets,
        source,
        dict(top.retention_classes),
        {name: tuple(sorted(names)) for name, names in referrers.items()},
    )


def _check_datastore(name: str, store: Datastore, source: str, base_dir: Path | None) -> Datastore:
    where = f"{source}: datastores.{name}"
    if not _NAME.fullmatch(name):
        raise RegistryError(f"{where}: a datastore name is letters, digits, '.', '_' or '-'")
    if not _NAME.fullmatch(store.region):
        raise RegistryError(f"{where}: region {store.region!r} is not a region name")
    url = store.url
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////") and base_dir:
        # sqlite:///relative.db: relative to the registry, not to whoever runs the command.
        relative = url.removeprefix("sqlite:///")
        url = f"sqlite:///{(base_dir / relative).resolve()}"
    elif not url.startswith(("sqlite:///", "postgresql://", "postgres://", "postgresql+psycopg:")):
        raise RegistryError(
            f"{where}: url must be sqlite:///<path> or postgresql://... (got {url.split(':')[0]}:)"
        )
    return Datastore(url=url, region=store.region)


def _identifier(value: str, where: str, what: str) -> str:
    if not _IDENTIFIER.fullmatch(value):
        raise RegistryError(
            f"{where}: {what} {value!r} is not a plain SQL identifier "
            "(letters, digits and '_', not starting with a digit)"
        )
    return value


def _check_dataset(
    name: str, spec: _DatasetInput, datastores: Mapping[str, Datastore], source: str
) -> Dataset:
    where = f"{source}: datasets.{name}"
    if not _NAME.fullmatch(name):
        raise RegistryError(f"{where}: a dataset name is letters, digits, '.', '_' or '-'")
    if spec.datastore not in datastores:
        known = ", ".join(sorted(datastores))
        raise RegistryError(f"{where}: unknown datastore {spec.datastore!r} (known: {known})")
    _identifier(spec.table, where, "table")
    columns = [
        ("subject_key", spec.subject_key),
        ("key", spec.key),
        ("tenant_column", spec.tenant_column),
        ("timestamp_column", spec.timestamp_column),
        ("legal_hold_column", spec.legal_hold_column),
    ]
    for what, column in columns:
        if column is not None:
            _identifier(column, where, what)
    for column in [*spec.anonymise, *spec.fields, *(r.column for r in spec.references)]:
        _identifier(column, where, "column")
    if spec.tenant_column is not None and spec.tenants is not None:
        raise RegistryError(f"{where}: give tenants or tenant_column, not both")
    tenants = tuple(spec.tenants) if spec.tenants is not None else ()
    if spec.tenant_column is None and not tenants:
        raise RegistryError(
            f"{where}: say whose data the table holds: tenants: [<tenant>, ...] ('*' for any) "
            "or tenant_column: <column>"
        )
    for tenant in tenants:
        if tenant != ANY_TENANT and not _NAME.fullmatch(tenant):
            raise RegistryError(f"{where}: tenants: {tenant!r} is not a tenant id")
    if spec.derived is not None:
        query = spec.derived.query.strip().rstrip(";").strip()
        if not re.match(r"(?is)(select|with)\b", query) or ";" in query:
            raise RegistryError(
                f"{where}: derived.query must be one SELECT (or WITH ... SELECT) statement"
            )
    erases = spec.subject_key or spec.references or spec.erase != "delete" or spec.anonymise
    if spec.derived is not None and erases:
        raise RegistryError(
            f"{where}: a derived dataset is rebuilt from its sources: it takes no "
            "subject_key, references, erase or anonymise"
        )
    if spec.erase == "anonymise" and (spec.subject_key is None or not spec.anonymise):
        raise RegistryError(
            f"{where}: erase: anonymise needs subject_key and the anonymise columns to null"
        )
    referenced_columns = [r.column for r in spec.references]
    duplicates = sorted({c for c in referenced_columns if referenced_columns.count(c) > 1})
    if duplicates:
        raise RegistryError(f"{where}: references: column {duplicates[0]!r} is listed twice")
    return Dataset(
        name=name,
        datastore=spec.datastore,
        region=datastores[spec.datastore].region,
        table=spec.table,
        subject_key=spec.subject_key,
        key=spec.key or spec.subject_key,
        tenant_column=spec.tenant_column,
        tenants=tenants,
        erase=spec.erase,
        anonymise=tuple(spec.anonymise),
        references=tuple(spec.references),
        derived=spec.derived,
        fields=dict(spec.fields),
        timestamp_column=spec.timestamp_column,
        legal_hold_column=spec.legal_hold_column,
        retention=spec.retention,
    )


def _check_links(datasets: Mapping[str, Dataset], source: str) -> None:
    """References and derivations name known datasets, stay in place, and form no cycle."""
    for name, dataset in datasets.items():
        where = f"{source}: datasets.{name}"
        for reference in dataset.references:
            parent = datasets.get(reference.dataset)
            if parent is None:
                raise RegistryError(f"{where}: references: unknown dataset {reference.dataset!r}")
            if parent.derived is not None:
                raise RegistryError(
                    f"{where}: references: {reference.dataset!r} is derived (rebuilt from its "
                    "sources): reference the datasets it is built from"
                )
            if parent.key is None:
                raise RegistryError(
                    f"{where}: references: {reference.dataset!r} has no key (or subject_key) "
                    "for its rows to be referenced by"
                )
            if parent.region != dataset.region:
                raise RegistryError(
                    f"{where}: references: {reference.dataset!r} is in region {parent.region!r}, "
                    f"this dataset in {dataset.region!r}: references cannot cross regions "
                    "(each region erases its own data; give each region's copy a subject_key)"
                )
        if dataset.derived is not None:
            for source_name in dataset.derived.sources:
                origin = datasets.get(source_name)
                if origin is None:
                    raise RegistryError(
                        f"{where}: derived.sources: unknown dataset {source_name!r}"
                    )
                if origin.datastore != dataset.datastore:
                    raise RegistryError(
                        f"{where}: derived.sources: {source_name!r} is in datastore "
                        f"{origin.datastore!r}, not {dataset.datastore!r}: a derived dataset is "
                        "rebuilt by one query in its own datastore"
                    )
    references = {n: [r.dataset for r in d.references] for n, d in datasets.items()}
    _refuse_cycle(references, source, "references")
    derivations = {n: list(d.derived.sources) if d.derived else [] for n, d in datasets.items()}
    _refuse_cycle(derivations, source, "derived.sources")


def _check_retention(
    classes: Mapping[str, RetentionClass], datasets: Mapping[str, Dataset], source: str
) -> None:
    """Retention classes parse, exist where used, and have what their action needs."""
    for name, defined in classes.items():
        try:
            defined.max_age_seconds  # noqa: B018 - parsing is the check
        except ValueError as exc:
            raise RegistryError(f"{source}: retention_classes.{name}: {exc}") from None
    for name, dataset in datasets.items():
        where = f"{source}: datasets.{name}"
        used = [("retention", dataset.retention)] + [
            (f"fields.{column}.retention", spec.retention)
            for column, spec in dataset.fields.items()
        ]
        for what, class_name in used:
            if class_name is None:
                continue
            found = classes.get(class_name)
            if found is None:
                known = ", ".join(sorted(classes)) or "none are defined"
                raise RegistryError(
                    f"{where}: {what}: unknown retention class {class_name!r} "
                    f"(retention_classes: {known})"
                )
            retention = found
            if dataset.timestamp_column is None:
                raise RegistryError(
                    f"{where}: {what}: retention needs timestamp_column (when each row was written)"
                )
            if what != "retention" and retention.action == "delete":
                raise RegistryError(
                    f"{where}: {what}: class {class_name!r} deletes rows: a field's class nulls "
                    "or anonymises it; give a deleting class to the dataset (retention:)"
                )
            if what == "retention" and retention.action == "null":
                raise RegistryError(
                    f"{where}: retention: class {class_name!r} nulls fields: give it to fields, "
                    "or use a class that deletes or anonymises rows"
                )
            if (
                what == "retention"
                and retention.action == "anonymise"
                and (dataset.subject_key is None or not dataset.anonymise)
            ):
                raise RegistryError(
                    f"{where}: retention: class {class_name!r} anonymises rows: the dataset "
                    "needs subject_key and anonymise columns"
                )


def _refuse_cycle(edges: Mapping[str, Iterable[str]], source: str, what: str) -> None:
    """RegistryError naming a cycle of `edges`, if there is one (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(edges):
        if state.get(start):
            continue
        path: list[str] = []
        stack: list[tuple[str, Iterable[str]]] = [(start, iter(sorted(set(edges[start]))))]
        state[start] = 1
        path.append(start)
        while stack:
            node, children = stack[-1]
            child = next(iter(children), None)
            if child is None:
                stack.pop()
                path.pop()
                state[node] = 2
                continue
            if state.get(child) == 1:
                cycle = [*path[path.index(child) :], child]
                raise RegistryError(
                    f"{source}: {what} form a cycle: {' -> '.join(cycle)} "
                    "(an erasure order cannot be found)"
                )
            if not state.get(child):
                state[child] = 1
                path.append(child)
                stack.append((child, iter(sorted(set(edges[child])))))
