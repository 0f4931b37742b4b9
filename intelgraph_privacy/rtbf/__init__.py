"""The right to be forgotten: erase a data subject everywhere, and prove it with a signed manifest.

- `load_registry(path)`: the dataset registry (where subjects' data lives, and its dependencies);
- `plan_erasure(registry, tenant)`: the ordered steps per region (pure);
- `ErasureOrchestrator`: `request(subject_id, scope)` -> job (and tombstone), `run(job_id)`
  -> every region erased and verified, then the signed manifest; resumable after any failure;
- `verify_manifest(bytes, jwks)`: check a manifest offline;
- tombstones: `subject_hash`, `refuse_if_erased`, `is_erased`, `tombstoned_hashes`;
- retention: `compile_retention` (pure), `plan_retention` (dry run), `apply_retention`.

See docs/rtbf.md.
"""

from intelgraph_privacy.rtbf.executor import BatchSubject, ErasureError, RegionExecutor
from intelgraph_privacy.rtbf.jobs import (
    ErasureJob,
    ErasureRequestError,
    get_job,
    parse_scope,
    request_erasure,
)
from intelgraph_privacy.rtbf.manifest import ManifestCheck, ManifestError, verify_manifest
from intelgraph_privacy.rtbf.orchestrator import ErasureOrchestrator
from intelgraph_privacy.rtbf.planner import ErasurePlan, PlanStep, plan_erasure
from intelgraph_privacy.rtbf.progress import job_steps
from intelgraph_privacy.rtbf.registry import (
    Dataset,
    DatasetRegistry,
    RegistryError,
    load_registry,
    registry_from_mapping,
)
from intelgraph_privacy.rtbf.retention import (
    RetentionCount,
    RetentionError,
    RetentionPlan,
    RetentionRule,
    apply_retention,
    compile_retention,
    plan_retention,
)
from intelgraph_privacy.rtbf.tombstones import (
    ErasedSubjectError,
    is_erased,
    refuse_if_erased,
    subject_hash,
    tombstoned_hashes,
)

__all__ = [
    "BatchSubject",
    "Dataset",
    "DatasetRegistry",
    "ErasedSubjectError",
    "ErasureError",
    "ErasureJob",
    "ErasureOrchestrator",
    "ErasurePlan",
    "ErasureRequestError",
    "ManifestCheck",
    "ManifestError",
    "PlanStep",
    "RegionExecutor",
    "RegistryError",
    "RetentionCount",
    "RetentionError",
    "RetentionPlan",
    "RetentionRule",
    "apply_retention",
    "compile_retention",
    "get_job",
    "is_erased",
    "job_steps",
    "load_registry",
    "parse_scope",
    "plan_erasure",
    "plan_retention",
    "refuse_if_erased",
    "registry_from_mapping",
    "request_erasure",
    "subject_hash",
    "tombstoned_hashes",
    "verify_manifest",
]
