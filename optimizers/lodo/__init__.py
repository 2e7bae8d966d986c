"""LODO, learning to optimize during optimization (Liao et al., arXiv:2210.06171; docs/methods/lodo.md), and its
ablations."""

from .ablations import (
    DiagonalPreconditioner,
    GlobalPreconditioner,
    ResidualPermutationPreconditioner,
    dense_residual_permutation_operator,
)
from .base import Preconditioner
from .diagnostics import hessian_approximation_error, random_unit_probes
from .memory import (
    LodoMemoryError,
    available_memory_bytes,
    check_lodo_fits,
    lodo_bytes_per_parameter,
    lodo_memory_bytes,
    measured_state_bytes,
)
from .optimizer import LODO, make_preconditioner
from .preconditioner import (
    BlockPermutationPreconditioner,
    apply_block_permutation,
    apply_block_permutation_transpose,
    block_permutation_pair_gradient,
    dense_block_permutation_operator,
    padded_size,
)

__all__ = [
    "LODO",
    "LodoMemoryError",
    "Preconditioner",
    "BlockPermutationPreconditioner",
    "DiagonalPreconditioner",
    "GlobalPreconditioner",
    "ResidualPermutationPreconditioner",
    "make_preconditioner",
    "apply_block_permutation",
    "apply_block_permutation_transpose",
    "block_permutation_pair_gradient",
    "dense_block_permutation_operator",
    "dense_residual_permutation_operator",
    "padded_size",
    "hessian_approximation_error",
    "random_unit_probes",
    "available_memory_bytes",
    "check_lodo_fits",
    "lodo_bytes_per_parameter",
    "lodo_memory_bytes",
    "measured_state_bytes",
]
