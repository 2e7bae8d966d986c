"""NewtonSummary (Wolinski & Arbel; docs/methods/newton_summary.md): Hessian summaries, the cubic step-size
solver, partitions and the optimizer."""

from .cubic_solver import CubicSolution, cubic_step_sizes
from .optimizer import NewtonSummary
from .partitions import Partition, build_partition
from .plateau import ReduceDampingOnPlateau
from .summaries import Summary, hessian_summary

__all__ = [
    "CubicSolution", "NewtonSummary", "Partition", "ReduceDampingOnPlateau", "Summary", "build_partition",
    "cubic_step_sizes", "hessian_summary",
]
