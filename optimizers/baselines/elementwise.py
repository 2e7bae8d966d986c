"""The loop that Yogi and RMSprop share: every parameter with a dense gradient, with its state created on first
use (a step counter and zero buffers), so each optimizer's file holds only its update formula."""

from __future__ import annotations

from collections.abc import Iterator

import torch


def gradients_and_state(optimizer: torch.optim.Optimizer, group: dict, method: str,
                        buffers: tuple[str, ...]) -> Iterator[tuple[torch.Tensor, torch.Tensor, dict]]:
    """(parameter, gradient, state) for each parameter of ``group`` that has a gradient; ``state["step"]`` is
    already advanced for this step. Sparse gradients are refused, naming ``method``."""
    for p in group["params"]:
        if p.grad is None:
            continue
        if p.grad.is_sparse:
            raise ValueError(f"{method} does not support sparse gradients")
        state = optimizer.state[p]
        if not state:
            state["step"] = 0
            for name in buffers:
                state[name] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["step"] += 1
        yield p, p.grad, state
