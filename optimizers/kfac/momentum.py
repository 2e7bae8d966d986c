"""The last stage of a K-FAC step (docs/methods/kfac.md): SGD with momentum and weight decay on the directions."""

from __future__ import annotations

import torch


def momentum_sgd_update(group: dict, by_param: dict[torch.Tensor, torch.Tensor], state: dict,
                        weight_decay: float | None = None) -> None:
    """d = direction + wd * p; buf <- momentum * buf + d (d on the first step); p <- p - lr * buf.

    ``by_param`` holds the preconditioned directions; other parameters with a gradient use it as is. ``weight_decay``
    overrides the group's (the papers' flavour has none before its start step)."""
    weight_decay = group["weight_decay"] if weight_decay is None else weight_decay
    params, directions = [], []
    for p in group["params"]:
        if p.grad is not None:
            params.append(p)
            directions.append(by_param.get(p, p.grad))
    if not params:
        return
    if weight_decay != 0:
        directions = torch._foreach_add(directions, params, alpha=weight_decay)
    old_buffers, old_directions = [], []
    for p, d in zip(params, directions):
        buffer = state[p].get("momentum_buffer")
        if buffer is None:
            state[p]["momentum_buffer"] = d.clone()
        else:
            old_buffers.append(buffer)
            old_directions.append(d)
    if old_buffers:
        torch._foreach_mul_(old_buffers, group["momentum"])
        torch._foreach_add_(old_buffers, old_directions)
    torch._foreach_add_(params, [state[p]["momentum_buffer"] for p in params], alpha=-group["lr"])
