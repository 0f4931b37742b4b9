"""Cost shaping: caps on operations that a human approved (the cost engine applies them)."""

from intelgraph_privacy.cost.shapes import CostShape, approve_cost_shape, approved_shapes

__all__ = ["CostShape", "approve_cost_shape", "approved_shapes"]
