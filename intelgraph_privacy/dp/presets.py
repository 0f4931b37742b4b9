"""Differential-privacy presets (presets/dp.yaml): which epsilon and delta a release may use.

The product's presets are `strict` (epsilon 1), `standard` (epsilon 2, the default) and `relaxed`
(epsilon 4), all with delta 1e-6. An epsilon outside the presets is refused unless
`custom_epsilon.allowed` is set, and then only within `[min, max]`.

```python
from intelgraph_privacy.dp import load_presets

presets = load_presets("presets/dp.yaml")
presets.resolve(preset="strict")   # Resolved(name='strict', epsilon=1.0, delta=1e-06)
presets.resolve(epsilon=4.0)       # the preset with that epsilon: 'relaxed'
```
"""

from __future__ import annotations

import math
import re
from numbers import Real
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from intelgraph_privacy.errors import ConfigError, PrivacyError

__all__ = [
    "CUSTOM_PRESET",
    "DEFAULT_PRESETS",
    "CustomEpsilon",
    "DPError",
    "DPPresets",
    "Preset",
    "PresetError",
    "ReleaseError",
    "Resolved",
    "load_presets",
]

#: The preset name a release records when it used an allowed custom epsilon.
CUSTOM_PRESET = "custom"

_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")


class DPError(PrivacyError, ValueError):
    """A differentially private release was refused (before any budget was spent)."""


class PresetError(DPError):
    """The preset or epsilon asked for is not allowed by the DP presets."""


class ReleaseError(DPError):
    """The release's arguments or data are unusable (no bounds, NaN values, empty data...)."""


class Preset(BaseModel):
    """One named privacy level."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    epsilon: float = Field(gt=0, le=100, allow_inf_nan=False)
    delta: float = Field(ge=0, lt=1, allow_inf_nan=False)
    description: str = ""


class CustomEpsilon(BaseModel):
    """Whether (and within which range) a release may ask for an epsilon of its own."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    allowed: bool = False
    min: float = Field(default=0.1, gt=0, allow_inf_nan=False)
    max: float = Field(default=4.0, gt=0, le=100, allow_inf_nan=False)
    delta: float = Field(default=1e-6, ge=0, lt=1, allow_inf_nan=False)

    @model_validator(mode="after")
    def _ordered(self) -> CustomEpsilon:
        if self.min > self.max:
            raise ValueError(f"min ({self.min:g}) is larger than max ({self.max:g})")
        return self


class Resolved(BaseModel):
    """The privacy parameters of one release: the preset's name (or "custom"), epsilon, delta."""

    model_config = ConfigDict(frozen=True)

    name: str
    epsilon: float
    delta: float


class DPPresets(BaseModel):
    """The DP settings of presets/dp.yaml (immutable)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    default: str
    presets: dict[str, Preset] = Field(min_length=1)
    custom_epsilon: CustomEpsilon = CustomEpsilon()
    #: Values per individual when a release does not say (enforced with `ids`).
    max_contributions: int = Field(default=1, ge=1, le=1_000_000)
    #: Share of a mean's epsilon spent on its noisy sum (the rest on its noisy count).
    mean_sum_share: float = Field(default=0.5, gt=0, lt=1)
    quantile_grid: int = Field(default=1024, ge=2)
    #: The exponential mechanism's float round-off grows as grid**2 * 2**-53 (see mechanisms).
    max_quantile_grid: int = Field(default=4096, ge=2, le=8192)
    max_histogram_bins: int = Field(default=10_000, ge=1, le=1_000_000)
    #: The data-independent range of a noisy sum is max_rows times the largest bound.
    max_rows: int = Field(default=2**30, ge=1, le=2**40)

    @model_validator(mode="after")
    def _consistent(self) -> DPPresets:
        for name in self.presets:
            if not _NAME.fullmatch(name) or name == CUSTOM_PRESET:
                raise ValueError(
                    f"{name!r} is not a preset name (lower-case letters, digits, '_', '-'; "
                    f"at most 32 characters; not {CUSTOM_PRESET!r})"
                )
        if self.default not in self.presets:
            raise ValueError(f"default preset {self.default!r} is not one of {self.names}")
        if self.quantile_grid > self.max_quantile_grid:
            raise ValueError(
                f"quantile_grid ({self.quantile_grid}) is larger than max_quantile_grid "
                f"({self.max_quantile_grid})"
            )
        return self

    @property
    def names(self) -> list[str]:
        """The preset names, in file order."""
        return list(self.presets)

    def resolve(self, preset: str | None = None, epsilon: float | None = None) -> Resolved:
        """The preset a release uses: by name, by epsilon, or the default when neither is given.

        Raises PresetError for an unknown preset, an epsilon that contradicts the named preset,
        or an epsilon that is no preset's when custom epsilons are not allowed (or out of range).
        """
        if epsilon is not None:
            epsilon = _check_epsilon(epsilon)
        if preset is not None:
            if not isinstance(preset, str) or preset not in self.presets:
                raise PresetError(f"unknown DP preset {preset!r}; the presets are {self.names}")
            chosen = self.presets[preset]
            if epsilon is not None and epsilon != chosen.epsilon:
                raise PresetError(
                    f"epsilon {epsilon:g} contradicts preset {preset!r} "
                    f"(epsilon {chosen.epsilon:g}); give one or the other"
                )
            return Resolved(name=preset, epsilon=chosen.epsilon, delta=chosen.delta)
        if epsilon is None:
            chosen = self.presets[self.default]
            return Resolved(name=self.default, epsilon=chosen.epsilon, delta=chosen.delta)
        for name, candidate in self.presets.items():
            if candidate.epsilon == epsilon:
                return Resolved(name=name, epsilon=epsilon, delta=candidate.delta)
        allowed = {name: p.epsilon for name, p in self.presets.items()}
        custom = self.custom_epsilon
        if not custom.allowed:
            raise PresetError(
                f"epsilon {epsilon:g} is not one of the DP presets {allowed}, and custom "
                "epsilons are not allowed (custom_epsilon.allowed in presets/dp.yaml)"
            )
        if not custom.min <= epsilon <= custom.max:
            raise PresetError(
                f"custom epsilon {epsilon:g} is outside the allowed range "
                f"[{custom.min:g}, {custom.max:g}] (custom_epsilon in presets/dp.yaml)"
            )
        return Resolved(name=CUSTOM_PRESET, epsilon=epsilon, delta=custom.delta)


def _check_epsilon(epsilon: object) -> float:
    if isinstance(epsilon, bool) or not isinstance(epsilon, Real):
        raise PresetError(f"epsilon must be a number, got {type(epsilon).__name__}")
    value = float(epsilon)
    if not math.isfinite(value) or value <= 0:
        raise PresetError(f"epsilon must be a finite positive number, got {epsilon!r}")
    return value


#: The built-in presets: the same as presets/dp.yaml (a test keeps them equal).
DEFAULT_PRESETS = DPPresets(
    default="standard",
    presets={
        "strict": Preset(
            epsilon=1.0,
            delta=1e-6,
            description=(
                "Smallest epsilon, most noise; for small populations and sensitive attributes."
            ),
        ),
        "standard": Preset(
            epsilon=2.0, delta=1e-6, description="The default for aggregate exports."
        ),
        "relaxed": Preset(
            epsilon=4.0,
            delta=1e-6,
            description="Least noise; for large populations and low-sensitivity attributes.",
        ),
    },
    custom_epsilon=CustomEpsilon(allowed=False, min=0.1, max=4.0, delta=1e-6),
    max_contributions=1,
    mean_sum_share=0.5,
    quantile_grid=1024,
    max_quantile_grid=4096,
    max_histogram_bins=10_000,
    max_rows=2**30,
)


def presets_from_mapping(raw: Any, *, source: str = "<dp presets>") -> DPPresets:
    """DP presets from an already-parsed mapping; ConfigError says what is wrong."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping with 'default' and 'presets'")
    try:
        return DPPresets.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'presets'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"{source}: {problems}") from None


def load_presets(path: str | Path) -> DPPresets:
    """Read DP presets from YAML (presets/dp.yaml); ConfigError names the file and the problem."""
    path = Path(path)
    try:
        raw: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the DP presets: {exc.strerror}") from exc
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: the DP presets are not UTF-8 text") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    return presets_from_mapping(raw, source=str(path))
