"""An offline walk-through: one query, one sample response, three principals, three results."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, TextIO

import orjson

from intelgraph_privacy.catalog import load_catalog
from intelgraph_privacy.policy import PolicyEngine
from intelgraph_privacy.principal import Principal
from intelgraph_privacy.redact import Redactor
from intelgraph_privacy.schema import load_schema

#: DEMO ONLY: the pseudonym key of the demo. Never use it for real data.
DEMO_PSEUDONYM_KEY = b"intelgraph-demo-pseudonym-key-not-secret"

DEMO_QUERY = """query Dossier {
  people(first: 2) {
    id
    name
    ssn
    email
    phone
    dob
    age
    riskScore
    employer { name registrationNumber }
  }
  search(text: "Harbor") {
    ... on Case { reference title informant openedOn }
    ... on Organization { name }
  }
}"""

NEXT_STEPS = """
Try next (from the repository root):
  .venv/bin/intelgraph-privacy explain --purpose analytics   # same principals, another purpose
  .venv/bin/intelgraph-privacy policy test rego/ --verbose   # the shipped policies' Rego tests
  .venv/bin/intelgraph-privacy catalog check                 # validate presets/catalog.yaml
  then edit rego/redact.rego or presets/catalog.yaml and run the demo again;
  docs/policies.md shows how to write and test a policy of your own.
"""

DEMO_PRINCIPALS = {
    "analyst": Principal(sub="ana", tenant="demo", roles=("analyst",), purpose="investigation"),
    "investigator": Principal(
        sub="ivan", tenant="demo", roles=("investigator",), purpose="investigation"
    ),
    "high-clearance investigator": Principal(
        sub="hana", tenant="demo", roles=("high-clearance", "investigator"), purpose="investigation"
    ),
}


def demo_response(typename_key: str) -> dict[str, Any]:
    """A fixed upstream response to DEMO_QUERY (with the sidecar's `__typename` alias)."""
    return {
        "data": {
            "people": [
                {
                    "id": "P-1001",
                    "name": "Maria Keller",
                    "ssn": "512-44-6789",
                    "email": "maria.keller@example.org",
                    "phone": "+1-202-555-0147",
                    "dob": "1987-03-14",
                    "age": 37,
                    "riskScore": 72.5,
                    "employer": {"name": "Harbor Logistics", "registrationNumber": "HRB-20931"},
                },
                {
                    "id": "P-1002",
                    "name": "Tomas Berg",
                    "ssn": "623-10-4412",
                    "email": "t.berg@example.net",
                    "phone": "+1-415-555-0199",
                    "dob": "1979-11-02",
                    "age": 45,
                    "riskScore": 18.0,
                    "employer": None,
                },
            ],
            "search": [
                {
                    typename_key: "Case",
                    "reference": "CASE-2024-0042",
                    "title": "Harbor shipments",
                    "informant": "J. Doe (walk-in, 2024-02-01)",
                    "openedOn": "2024-02-03",
                },
                {typename_key: "Organization", "name": "Harbor Logistics"},
            ],
        }
    }


def run_demo(
    schema_path: Path,
    catalog_path: Path,
    policies: Path,
    *,
    purpose: str | None = None,
    out: TextIO,
) -> None:
    """Print the query, then the response each demo principal receives."""
    schema = load_schema(schema_path)
    catalog = load_catalog(catalog_path, schema)
    engine = PolicyEngine(policies)
    redactor = Redactor(schema, catalog, engine, pseudonym_key=DEMO_PSEUDONYM_KEY)
    out.write(f"Policy bundle {engine.version} ({policies}), catalog {catalog_path}\n\n")
    out.write(DEMO_QUERY + "\n")
    for label, demo_principal in DEMO_PRINCIPALS.items():
        principal = demo_principal.model_copy(update={"purpose": purpose or demo_principal.purpose})
        plan = redactor.plan(DEMO_QUERY, None, principal)
        response = copy.deepcopy(demo_response(redactor.shape(DEMO_QUERY).typename_alias))
        result = redactor.apply(plan, response)
        out.write(f"\n=== {label}: roles {', '.join(principal.roles)}; ")
        out.write(f"purpose {principal.purpose} ===\n")
        out.write(orjson.dumps(result.response, option=orjson.OPT_INDENT_2).decode() + "\n")
        out.write(f"redacted: {result.report.by_coordinate()}\n")
    out.write(NEXT_STEPS)
