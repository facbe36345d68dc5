"""Op registry and the candidate ops. Importing this package registers the DARTS ops."""

from nas_lightning.ops import darts_ops  # noqa: F401  (registers the ops)
from nas_lightning.ops.darts_ops import FactorizedReduce, relu_conv_bn
from nas_lightning.ops.registry import (
    ZERO,
    available_ops,
    build_op,
    canonical_name,
    register_op,
    validate_ops,
)

__all__ = [
    "ZERO",
    "FactorizedReduce",
    "available_ops",
    "build_op",
    "canonical_name",
    "register_op",
    "relu_conv_bn",
    "validate_ops",
]
