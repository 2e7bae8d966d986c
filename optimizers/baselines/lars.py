"""LARS (You, Gitman and Ginsburg, "Large Batch Training of Convolutional Networks", 2017, Algorithm 1) as the LODO
paper's authors ran it: a trust ratio per layer, with a layer's weight and bias taken together, and a global
learning rate decayed polynomially over the run.

For each layer l (the parameters of one module, e.g. a convolution's weight and bias) at step t = 1, 2, ...:

    global_lr  = lr (1 - t / total_steps)^decay_power          (lr itself when total_steps is None)
    local_lr_l = trust_coefficient ||x_l|| / (||g_l|| + weight_decay ||x_l||)
    b_l        = momentum b_l + global_lr local_lr_l (g_l + weight_decay x_l)
    x_l        = x_l - b_l

with norms over the whole layer. The LODO authors' trust coefficient is 1 (their tuned lr absorbs You et al.'s
0.001), and their runs decay with power 2 over the run's steps. Layers come from the parameter names
(``model.named_parameters()``: the part before the last dot); parameters passed without names are one layer each.
A layer whose weights are all zero keeps local_lr = 0 and never moves, as in the formula; 0 / 0 (zero weights and
a zero gradient) is taken as 0."""

from __future__ import annotations

from collections import OrderedDict

import torch

from ..validation import require_int, require_non_negative, require_positive, require_probability


def _validate(group: dict) -> None:
    group["lr"] = require_non_negative("lr", group["lr"])
    group["momentum"] = require_probability("momentum", group["momentum"])
    group["weight_decay"] = require_non_negative("weight_decay", group["weight_decay"])
    group["trust_coefficient"] = require_positive("trust_coefficient", group["trust_coefficient"])
    if group["total_steps"] is not None:
        group["total_steps"] = require_int("total_steps", group["total_steps"], 1)
    group["decay_power"] = require_non_negative("decay_power", group["decay_power"])


def layer_of(name: str) -> str:
    """The module a parameter belongs to: ``stages.0.1.expand.weight`` -> ``stages.0.1.expand``."""
    return name.rpartition(".")[0] or name


class LARS(torch.optim.Optimizer):
    """Layer-wise adaptive rate scaling with heavy-ball momentum and a polynomially decayed global learning rate.

    Args:
        params: ``model.named_parameters()`` (layers are grouped by module name), parameters, or parameter groups.
        lr: the global learning rate at the start of the run.
        momentum: decay of each layer's step buffer.
        weight_decay: beta, added to the gradient and to the trust ratio's denominator.
        trust_coefficient: eta, the factor of the trust ratio (the LODO authors' runs: 1).
        total_steps: the run's length in steps for the decay lr (1 - t / total_steps)^decay_power; None keeps lr
            constant. Past total_steps the global learning rate is 0. hoopt's runner passes the run's length
            (a run dependency, optimizers/protocol.py) unless the config sets it.
        decay_power: the decay's exponent (You et al. and the LODO authors: 2).
    """

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.9, weight_decay: float = 5e-4,
                 trust_coefficient: float = 1.0, total_steps: int | None = None, decay_power: float = 2.0):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                                      trust_coefficient=trust_coefficient, total_steps=total_steps,
                                      decay_power=decay_power))
        for group in self.param_groups:
            _validate(group)

    @staticmethod
    def _layers(group: dict) -> list[list[torch.Tensor]]:
        names = group.get("param_names")
        if names is None:
            return [[p] for p in group["params"]]
        layers: OrderedDict[str, list[torch.Tensor]] = OrderedDict()
        for name, p in zip(names, group["params"]):
            layers.setdefault(layer_of(name), []).append(p)
        return list(layers.values())

    def global_lr(self, group: dict, step: int) -> float:
        """The decayed learning rate of ``group`` at step ``step`` (1 for the first step)."""
        if group["total_steps"] is None:
            return group["lr"]
        remaining = max(0.0, 1.0 - step / group["total_steps"])
        return group["lr"] * remaining ** group["decay_power"]

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            _validate(group)
            wd, momentum = group["weight_decay"], group["momentum"]
            for layer in self._layers(group):
                layer = [p for p in layer if p.grad is not None]
                if not layer:
                    continue
                if any(p.grad.is_sparse for p in layer):
                    raise ValueError("LARS does not support sparse gradients")
                for p in layer:
                    state = self.state[p]
                    if not state:
                        state["step"] = 0
                        state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["step"] += 1
                step = self.state[layer[0]]["step"]
                weight_norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p) for p in layer]))
                grad_norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in layer]))
                denominator = grad_norm + wd * weight_norm
                local_lr = torch.where(denominator > 0, group["trust_coefficient"] * weight_norm / denominator,
                                       torch.zeros_like(denominator))
                scale = local_lr * self.global_lr(group, step)
                for p in layer:
                    buffer = self.state[p]["momentum_buffer"]
                    direction = p.grad.add(p, alpha=wd) if wd else p.grad
                    buffer.mul_(momentum).add_(direction * scale)
                    p.sub_(buffer)
        return loss
