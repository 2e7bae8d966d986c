"""Peak memory of the run, logged as ``memory/peak_mb`` at every epoch."""

from __future__ import annotations

import resource

import torch


def peak_memory_mb(device: torch.device) -> dict[str, float]:
    """CUDA's peak allocation on a GPU; the process's peak resident memory on the CPU (ru_maxrss is in KiB on
    Linux)."""
    if device.type == "cuda":
        return {"memory/peak_mb": torch.cuda.max_memory_allocated(device) / 2**20}
    return {"memory/peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
