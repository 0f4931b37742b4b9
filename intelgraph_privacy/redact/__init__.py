"""Redaction: plan (document + decision -> path actions) and apply (one walk over the response)."""

from intelgraph_privacy.redact.apply import Redacted, apply, denied_response, preview
from intelgraph_privacy.redact.plan import FieldPlan, Plan, SelectionPlan, TypePlan, compile_plan
from intelgraph_privacy.redact.redactor import Redactor
from intelgraph_privacy.redact.report import RedactionReport
from intelgraph_privacy.redact.shape import FieldShape, SelectionShape, Shape, build_shape
from intelgraph_privacy.redact.transforms import Pseudonymizer, generalise, mask

__all__ = [
    "FieldPlan",
    "FieldShape",
    "Plan",
    "Pseudonymizer",
    "Redacted",
    "RedactionReport",
    "Redactor",
    "SelectionPlan",
    "SelectionShape",
    "Shape",
    "TypePlan",
    "apply",
    "build_shape",
    "compile_plan",
    "denied_response",
    "generalise",
    "mask",
    "preview",
]
