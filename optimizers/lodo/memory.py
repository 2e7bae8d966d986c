"""How much memory LODO keeps, estimated before anything is allocated (O(N m) state: Liao et al., Section 3).

Per model parameter with the defaults (k = 4, N = 16, float32, Adam): theta is N*k*m ~ 128 n numbers,
its meta-gradient and Adam's two moments as many again, plus 2*N*m int32 permutation indices and the
per-layer activations the hypergradient keeps during a step.
"""

from __future__ import annotations

import torch

from ..validation import require_choice
from .ablations import DiagonalPreconditioner, GlobalPreconditioner, ResidualPermutationPreconditioner
from .preconditioner import BlockPermutationPreconditioner

PRECONDITIONER_CLASSES = {
    "blocks": BlockPermutationPreconditioner,
    "diagonal": DiagonalPreconditioner,
    "global": GlobalPreconditioner,
    "residuals": ResidualPermutationPreconditioner,
}
DEFAULT_DEPTH = {"blocks": 16, "residuals": 64, "diagonal": 0, "global": 0}
_GIB = 2**30


class LodoMemoryError(MemoryError):
    """LODO's state would not fit the device; raised before allocating it."""


def lodo_memory_bytes(num_params: int, preconditioner: str = "blocks", block_size: int = 4, depth: int | None = None,
                      meta_optimizer: str = "adam", dtype: torch.dtype = torch.float32) -> dict[str, int]:
    """Bytes LODO needs for a model of ``num_params`` parameters, by component (kept state and step workspace)."""
    require_choice("preconditioner", preconditioner, tuple(PRECONDITIONER_CLASSES))
    depth = DEFAULT_DEPTH[preconditioner] if depth is None else depth
    numel = PRECONDITIONER_CLASSES[preconditioner].memory_numel(num_params, block_size, depth)
    f = torch.empty((), dtype=dtype).element_size()
    theta = numel["theta"] * f
    moments = 2 if meta_optimizer == "adam" else 0
    return {
        "preconditioner": theta,
        "meta_gradient": theta,
        "meta_optimizer": moments * theta,
        "permutations": numel["index_entries"] * numel["index_bytes"],
        "vectors": 3 * num_params * f,  # momentum, flat gradient, step
        # transient during a step: the hypergradient's per-layer activations (fused Adam needs no scratch)
        "workspace": numel["workspace"] * f,
    }


def lodo_bytes_per_parameter(num_params: int, **options) -> float:
    """Total bytes of ``lodo_memory_bytes`` divided by the parameter count."""
    return sum(lodo_memory_bytes(num_params, **options).values()) / num_params


def available_memory_bytes(device: torch.device | str) -> int | None:
    """Free memory on ``device``: CUDA's free bytes, or MemAvailable of /proc/meminfo on the CPU; None if unknown."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type == "cpu":
        try:
            with open("/proc/meminfo") as meminfo:
                for line in meminfo:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            return None
    return None


def check_lodo_fits(num_params: int, device: torch.device | str, **options) -> int:
    """Raise LodoMemoryError when LODO's estimated memory exceeds what ``device`` has free; return the estimate."""
    needed = sum(lodo_memory_bytes(num_params, **options).values())
    free = available_memory_bytes(device)
    if free is not None and needed > free:
        raise LodoMemoryError(
            f"LODO needs about {needed / _GIB:.2f} GiB on {device} ({needed / num_params:.0f} bytes per parameter "
            f"for {num_params:,} parameters) but only {free / _GIB:.2f} GiB are free; use a smaller depth or "
            f"block_size, preconditioner=diagonal or global, or a device with more memory.")
    return needed


def measured_state_bytes(optimizer) -> int:
    """Bytes a constructed LODO optimizer actually keeps (theta, its gradient, permutations, meta-optimizer
    state, momentum); the step's transient workspace is not included."""
    tensors = list(optimizer.preconditioner.state_dict().values())
    tensors += [p.grad for p in optimizer.preconditioner.parameters() if p.grad is not None]
    for state in optimizer.meta_optimizer.state.values():
        tensors += [t for t in state.values() if torch.is_tensor(t)]
    tensors.append(optimizer._momentum)
    return sum(t.numel() * t.element_size() for t in tensors)
