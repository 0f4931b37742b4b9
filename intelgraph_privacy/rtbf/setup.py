"""Building an orchestrator from a sidecar configuration, or for the demo's data directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from intelgraph_privacy.config import SidecarConfig
from intelgraph_privacy.errors import ConfigError
from intelgraph_privacy.rtbf.executor import StepHook
from intelgraph_privacy.rtbf.orchestrator import ErasureOrchestrator, JobObserver
from intelgraph_privacy.rtbf.registry import load_registry
from intelgraph_privacy.store import Store

__all__ = ["DEMO_REGISTRY_NAME", "demo_orchestrator", "orchestrator_from_config"]

#: The dataset registry's file name in the demo's data directory.
DEMO_REGISTRY_NAME = "datasets.yaml"


def orchestrator_from_config(
    config: SidecarConfig,
    store: Store,
    *,
    policy_version: str | None = None,
    hook: StepHook | None = None,
    observer: JobObserver | None = None,
) -> ErasureOrchestrator:
    """The orchestrator of a sidecar configuration (`rtbf` section); ConfigError when unset.

    Subjects are hashed with the pseudonym key; manifests are signed with `rtbf.signing_key_file`
    (the demo key in the demo), each region's part with its `rtbf.region_keys` entry or the same.
    """
    from intelgraph_privacy.tokens import demo_private_key, load_signing_key

    settings = config.rtbf
    if settings.registry is None:
        raise ConfigError("erasures need a dataset registry: set rtbf.registry")
    registry = load_registry(settings.registry)
    if settings.signing_key_file is not None:
        manifest_key: Any = load_signing_key(settings.signing_key_file)
    elif config.demo:
        manifest_key = demo_private_key()
    else:
        raise ConfigError("rtbf.signing_key_file is required to sign erasure manifests")
    region_keys = {region: manifest_key for region in registry.regions}
    for region, path in settings.region_keys.items():
        if region not in region_keys:
            raise ConfigError(f"rtbf.region_keys: the registry has no region {region!r}")
        region_keys[region] = load_signing_key(path)
    return ErasureOrchestrator(
        store,
        registry,
        hash_key=config.pseudonym_key(),
        region_keys=region_keys,
        manifest_key=manifest_key,
        policy_version=policy_version,
        hook=hook,
        observer=observer,
    )


def demo_orchestrator(data_dir: Path, store: Store) -> ErasureOrchestrator:
    """The demo's orchestrator: its registry in `data_dir`, its public demo keys."""
    from intelgraph_privacy.demo import DEMO_PSEUDONYM_KEY
    from intelgraph_privacy.tokens import demo_private_key

    path = data_dir / DEMO_REGISTRY_NAME
    if not path.is_file():
        raise ConfigError(f"no dataset registry in {data_dir} (expected {path}; start the demo)")
    registry = load_registry(path)
    key = demo_private_key()
    return ErasureOrchestrator(
        store,
        registry,
        hash_key=DEMO_PSEUDONYM_KEY,
        region_keys=dict.fromkeys(registry.regions, key),
        manifest_key=key,
    )
