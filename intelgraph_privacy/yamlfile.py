"""Reading YAML configuration safely: the safe loader, with duplicate keys refused.

PyYAML keeps the last of two equal keys silently; in a privacy configuration that hides a
mistake (two entries for one dataset, the second winning), so every file is read through here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from intelgraph_privacy.errors import ConfigError

__all__ = ["DuplicateKeyError", "UniqueKeyLoader", "load_yaml_file"]


class DuplicateKeyError(yaml.YAMLError):
    """A mapping lists the same key twice."""


class UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses duplicate keys, naming the key and its line."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise DuplicateKeyError(
                    f"{key}: listed twice (line {key_node.start_mark.line + 1})"
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_yaml_file(path: str | Path, *, what: str) -> Any:
    """The decoded YAML of `path` (None for an empty file); ConfigError naming the file otherwise.

    `what` says what the file is, for messages ("dataset registry").
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the {what}: {exc.strerror}") from None
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)  # a SafeLoader subclass
    except DuplicateKeyError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
