"""Op registry and the candidate ops. Importing this package registers every op."""

from nas_lightning.ops import darts_ops, mbconv, rnn_ops  # noqa: F401  (registers the ops)
from nas_lightning.ops.darts_ops import FactorizedReduce, relu_conv_bn
from nas_lightning.ops.desc import OpCost, OpDesc
from nas_lightning.ops.registry import (
    ZERO,
    OpSpec,
    available_ops,
    build_op,
    canonical_name,
    describe,
    is_zero,
    module_from_desc,
    op_cost,
    op_label,
    op_spec,
    register_op,
    validate_ops,
)

__all__ = [
    "ZERO",
    "FactorizedReduce",
    "OpCost",
    "OpDesc",
    "OpSpec",
    "available_ops",
    "build_op",
    "canonical_name",
    "describe",
    "is_zero",
    "module_from_desc",
    "op_cost",
    "op_label",
    "op_spec",
    "register_op",
    "relu_conv_bn",
    "validate_ops",
]
