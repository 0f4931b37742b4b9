"""The purpose vocabulary: the names a token's `purpose` claim may take (presets/purposes.yaml).

A purpose says *why* data is asked for. Policies bind fields and operations to purposes, so an
unknown purpose is not "no purpose": it is refused at verification, before any policy runs.

```yaml
purposes:
  investigation: {description: "Casework on named subjects", max_ttl_seconds: 3600}
  analytics:     {description: "Aggregate statistics", max_ttl_seconds: 3600}
```
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from intelgraph_privacy.errors import ConfigError

_NAME = re.compile(r"[a-z][a-z0-9_.-]{0,63}")


class Purpose(BaseModel):
    """One purpose of the vocabulary."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    description: str = Field(min_length=1)
    #: The longest life a token exchanged for this purpose gets.
    max_ttl_seconds: int = Field(default=3600, ge=30, le=86_400)


class PurposeVocabulary(Mapping[str, Purpose]):
    """The purposes tokens may carry, by name (immutable)."""

    def __init__(self, purposes: Mapping[str, Purpose], *, source: str = "<purposes>") -> None:
        if not purposes:
            raise ConfigError(f"{source}: the purpose vocabulary is empty")
        for name in purposes:
            if not isinstance(name, str) or not _NAME.fullmatch(name):
                raise ConfigError(
                    f"{source}: {name!r} is not a purpose name (lower-case letters, digits, "
                    "'_', '-', '.'; at most 64 characters)"
                )
        self._purposes = dict(purposes)
        self.source = source

    @classmethod
    def of(cls, names: Mapping[str, str] | list[str] | tuple[str, ...]) -> PurposeVocabulary:
        """A vocabulary from names (or names and descriptions), with default lifetimes."""
        described = names if isinstance(names, Mapping) else {n: n for n in names}
        return cls({n: Purpose(description=d) for n, d in described.items()})

    def __getitem__(self, name: str) -> Purpose:
        return self._purposes[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._purposes)

    def __len__(self) -> int:
        return len(self._purposes)

    def __repr__(self) -> str:
        return f"PurposeVocabulary({sorted(self._purposes)!r})"


def load_purposes(path: str | Path) -> PurposeVocabulary:
    """Read a purpose vocabulary from YAML; ConfigError names the file and what is wrong."""
    path = Path(path)
    try:
        raw: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the purpose vocabulary: {exc.strerror}") from exc
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: the purpose vocabulary is not UTF-8 text") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("purposes"), dict):
        raise ConfigError(f"{path}: expected a mapping with a 'purposes' mapping")
    unknown = sorted(set(raw) - {"purposes"})
    if unknown:
        raise ConfigError(f"{path}: unknown keys {unknown}")
    purposes: dict[str, Purpose] = {}
    for name, body in raw["purposes"].items():
        try:
            purposes[str(name)] = Purpose.model_validate(body or {})
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or name}: {e['msg']}" for e in exc.errors()
            )
            raise ConfigError(f"{path}: purpose {name}: {problems}") from None
    return PurposeVocabulary(purposes, source=str(path))
