"""The right to be forgotten: erasure jobs (the orchestrator works through them)."""

from intelgraph_privacy.rtbf.jobs import (
    ErasureJob,
    ErasureRequestError,
    get_job,
    parse_scope,
    request_erasure,
)

__all__ = ["ErasureJob", "ErasureRequestError", "get_job", "parse_scope", "request_erasure"]
