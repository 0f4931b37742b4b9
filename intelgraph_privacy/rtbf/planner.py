"""The erasure plan: which datasets to work through, in which order, region by region.

Pure: the plan depends on the registry and the tenant only. Which of the datasets really hold
the subject is found when the plan runs (`intelgraph_privacy.rtbf.executor`), since only the
subject's keyed hash is known outside the region that holds the data.

Order within a region: every dataset that can hold the subject's rows — through its subject key,
or through references to such rows, transitively — children (the referencing) before parents
(the referenced), so that no foreign key is left pointing at an erased row and the rows a child
is matched through still exist when it is erased; then the derived datasets built from them,
sources before what is built from them. Ties are broken by name, so a plan is reproducible.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from intelgraph_privacy.rtbf.registry import DatasetRegistry

__all__ = ["ErasurePlan", "PlanStep", "derived_affected", "plan_erasure"]


@dataclass(frozen=True, slots=True)
class PlanStep:
    """One dataset's work in a plan: erase the subject's rows, or rebuild a derived dataset."""

    dataset: str
    region: str
    kind: Literal["erase", "recompute"]


@dataclass(frozen=True, slots=True)
class ErasurePlan:
    """The steps of an erasure in every region, each region's in its order."""

    tenant: str
    regions: Mapping[str, tuple[PlanStep, ...]]

    @property
    def datasets(self) -> tuple[str, ...]:
        """Every dataset of the plan, region by region, in order."""
        ordered = sorted(self.regions)
        return tuple(step.dataset for region in ordered for step in self.regions[region])


def plan_erasure(registry: DatasetRegistry, tenant: str) -> ErasurePlan:
    """The erasure plan for a subject of `tenant` over `registry`."""
    datasets = registry.datasets
    in_scope = {name for name, d in datasets.items() if d.holds_tenant(tenant)}
    holding = _holding(registry, in_scope)
    derived = _derived_from(registry, in_scope, holding)
    regions: dict[str, tuple[PlanStep, ...]] = {}
    for region in registry.regions:
        erase = [n for n in holding if datasets[n].region == region]
        rebuild = [n for n in derived if datasets[n].region == region]
        # Child before parent: an edge parent -> child says "child first" once reversed.
        parents = {
            n: [r.dataset for r in datasets[n].references if r.dataset in holding] for n in erase
        }
        erase_order = _topological(erase, parents)
        rebuild_order = _topological(
            rebuild,
            {n: [s for s in _sources(registry, n) if s in derived] for n in rebuild},
            before_dependencies=True,
        )
        steps = [PlanStep(n, region, "erase") for n in erase_order]
        steps += [PlanStep(n, region, "recompute") for n in rebuild_order]
        if steps:
            regions[region] = tuple(steps)
    return ErasurePlan(tenant, regions)


def _holding(registry: DatasetRegistry, in_scope: set[str]) -> set[str]:
    """Datasets that can hold the subject: a subject key, or references to such datasets."""
    holding = {n for n in in_scope if registry.datasets[n].subject_key is not None}
    frontier = list(holding)
    while frontier:
        parent = frontier.pop()
        for child in registry.referrers.get(parent, ()):
            if child in in_scope and child not in holding:
                holding.add(child)
                frontier.append(child)
    return holding


def _sources(registry: DatasetRegistry, name: str) -> list[str]:
    derived = registry.datasets[name].derived
    return list(derived.sources) if derived else []


def _derived_from(registry: DatasetRegistry, in_scope: set[str], holding: set[str]) -> set[str]:
    """Derived datasets whose sources (transitively) include a dataset that is erased."""
    derived = {n for n in in_scope if registry.datasets[n].derived is not None}
    affected: set[str] = set()
    changed = True
    while changed:
        changed = False
        for name in derived - affected:
            if any(s in holding or s in affected for s in _sources(registry, name)):
                affected.add(name)
                changed = True
    return affected


def derived_affected(
    registry: DatasetRegistry, changed: set[str], in_scope: set[str] | None = None
) -> list[str]:
    """Derived datasets built (transitively) from `changed`, sources before what they feed."""
    scope = set(registry.datasets) if in_scope is None else in_scope
    affected = _derived_from(registry, scope, changed)
    order = _topological(
        sorted(affected),
        {n: [s for s in _sources(registry, n) if s in affected] for n in affected},
        before_dependencies=True,
    )
    return order


def _topological(
    nodes: list[str], depends: Mapping[str, list[str]], *, before_dependencies: bool = False
) -> list[str]:
    """Order `nodes` along `depends` (node -> nodes it points at), smallest name first on ties.

    By default a node comes before what it points at (a child before the parents it
    references); with `before_dependencies` after (a derived dataset after its sources).
    The registry has no cycles (checked on load).
    """
    members = set(nodes)
    blockers: dict[str, set[str]] = {n: set() for n in nodes}
    for node in nodes:
        for target in depends.get(node, []):
            if target not in members or target == node:
                continue
            if before_dependencies:
                blockers[node].add(target)  # the target (a source) first
            else:
                blockers[target].add(node)  # the node (a child) first
    ready = [n for n in nodes if not blockers[n]]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        node = heapq.heappop(ready)
        order.append(node)
        for other in nodes:
            if node in blockers[other]:
                blockers[other].discard(node)
                if not blockers[other]:
                    heapq.heappush(ready, other)
    return order
