"""IntelGraph Privacy: a policy-as-code privacy layer for GraphQL graph APIs.

The main entry points:

- `load_schema` and `load_catalog`: the schema and what each of its fields holds;
- `PolicyEngine`: Rego policies on regorus, one cached decision per request;
- `Redactor`: plans and applies redaction to responses;
- `Principal`: who is asking, and why.
"""

from intelgraph_privacy.actions import Action
from intelgraph_privacy.catalog import Catalog, FieldEntry, catalog_from_mapping, load_catalog
from intelgraph_privacy.errors import (
    CatalogError,
    ConfigError,
    PlanError,
    PolicyError,
    PrivacyError,
)
from intelgraph_privacy.policy import PolicyEngine
from intelgraph_privacy.principal import Principal
from intelgraph_privacy.redact import Redacted, RedactionReport, Redactor
from intelgraph_privacy.schema import load_schema, schema_from_sdl

__version__ = "0.1.0"

__all__ = [
    "Action",
    "Catalog",
    "CatalogError",
    "ConfigError",
    "FieldEntry",
    "PlanError",
    "PolicyEngine",
    "PolicyError",
    "Principal",
    "PrivacyError",
    "Redacted",
    "RedactionReport",
    "Redactor",
    "__version__",
    "catalog_from_mapping",
    "load_catalog",
    "load_schema",
    "schema_from_sdl",
]
