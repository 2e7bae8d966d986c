"""NewtonSummary (SPEC 1): Hessian summaries, the cubic step-size solver, partitions and the optimizer."""

from .cubic_solver import CubicSolution, cubic_step_sizes
from .heatmaps import render_bars, render_heatmap
from .optimizer import NewtonSummary
from .partitions import Partition, build_partition
from .plateau import ReduceDampingOnPlateau
from .summaries import Summary, hessian_summary

__all__ = [
    "CubicSolution", "NewtonSummary", "Partition", "ReduceDampingOnPlateau", "Summary", "build_partition",
    "cubic_step_sizes", "hessian_summary", "render_bars", "render_heatmap",
]
