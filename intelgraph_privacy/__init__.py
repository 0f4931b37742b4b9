"""IntelGraph Privacy: a policy-as-code privacy layer for GraphQL graph APIs.

The main entry points:

- `load_schema` and `load_catalog`: the schema and what each of its fields holds;
- `PolicyEngine`: Rego policies on regorus, one cached decision per request;
- `Redactor`: plans and applies redaction to responses;
- `Principal`: who is asking, and why;
- `TokenVerifier` and `issue_token`: purpose-bound bearer JWTs, verified strictly against a JWKS
  with a `PurposeVocabulary`; `TokenExchange` trades a broad token for a purpose-bound one;
- `load_config`: the sidecar's settings (YAML plus `INTELGRAPH_*` environment variables).

The store and the audit log live in `intelgraph_privacy.store` and `intelgraph_privacy.audit`.
"""

from intelgraph_privacy.actions import Action
from intelgraph_privacy.catalog import Catalog, FieldEntry, catalog_from_mapping, load_catalog
from intelgraph_privacy.config import SidecarConfig, load_config
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
from intelgraph_privacy.tokens import (
    Claims,
    KeySet,
    PurposeVocabulary,
    TokenError,
    TokenExchange,
    TokenVerifier,
    issue_token,
    load_jwks,
    load_purposes,
)

__version__ = "0.1.0"

__all__ = [
    "Action",
    "Catalog",
    "CatalogError",
    "Claims",
    "ConfigError",
    "FieldEntry",
    "KeySet",
    "PlanError",
    "PolicyEngine",
    "PolicyError",
    "Principal",
    "PrivacyError",
    "PurposeVocabulary",
    "Redacted",
    "RedactionReport",
    "Redactor",
    "SidecarConfig",
    "TokenError",
    "TokenExchange",
    "TokenVerifier",
    "__version__",
    "catalog_from_mapping",
    "issue_token",
    "load_catalog",
    "load_config",
    "load_jwks",
    "load_purposes",
    "load_schema",
    "schema_from_sdl",
]
