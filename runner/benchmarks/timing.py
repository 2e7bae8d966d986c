"""The one way the benchmarks measure time: synchronised wall-clock seconds, medians over repeats.

CUDA kernels run asynchronously, so a clock read right after a call measures the launch, not the work: every
measurement here synchronises the device before starting the clock and again before stopping it (a no-op on
the CPU). Medians rather than means, because a benchmark run shares the machine and one slow outlier (another
process, a page fault) should not move the figure. When a benchmark compares methods, ``interleaved_medians``
alternates them round by round, so a drift in the machine's load hits every method alike and the ratios
printed come from one process under the same conditions.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping

import torch


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on ``device`` (nothing to wait for on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def elapsed(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds one call of ``fn()`` takes, work on the device included."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def interleaved_medians(functions: Mapping[str, Callable[[], object]], device: torch.device, repeats: int,
                        warmup: int = 1) -> dict[str, float]:
    """Median seconds of each function, called in turn once per round for ``repeats`` rounds.

    ``warmup`` untimed rounds come first (allocator caches, lazy initialisation, autotuning)."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be at least 1 and warmup non-negative, got {repeats} and {warmup}")
    for _ in range(warmup):
        for fn in functions.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, fn in functions.items():
            times[name].append(elapsed(fn, device))
    return {name: statistics.median(values) for name, values in times.items()}
