"""pytest plugin: an `intelgraph_harness` fixture configured from ini options.

```ini
[pytest]
intelgraph_schema = schema.graphql
intelgraph_catalog = catalog.yaml
intelgraph_policies = rego/
```
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from intelgraph_privacy.testing.harness import PrivacyHarness

_OPTIONS = {
    "intelgraph_schema": "GraphQL SDL file of the API under test",
    "intelgraph_catalog": "field catalog YAML file",
    "intelgraph_policies": "directory of Rego policies",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the ini options that locate the schema, catalog and policies."""
    for name, help_text in _OPTIONS.items():
        parser.addini(name, help_text, default=None)


@pytest.fixture(scope="session")
def intelgraph_harness(pytestconfig: pytest.Config) -> PrivacyHarness:
    """A PrivacyHarness over the configured schema, catalog and policies."""
    from intelgraph_privacy.testing.harness import PrivacyHarness

    paths: dict[str, Path] = {}
    for name in _OPTIONS:
        value = pytestconfig.getini(name)
        if not value:
            pytest.fail(f"set the ini option {name} to use the intelgraph_harness fixture")
        paths[name] = Path(pytestconfig.rootpath, str(value))
    return PrivacyHarness.from_files(
        paths["intelgraph_schema"], paths["intelgraph_catalog"], paths["intelgraph_policies"]
    )
