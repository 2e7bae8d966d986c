"""RMSprop as the LODO paper's authors ran it (Keras' RMSprop with momentum, which their runs all use):

    v_t   = rho v_{t-1} + (1 - rho) g_t^2                (v_0 = 0)
    b_t   = momentum b_{t-1} + lr g_t / sqrt(v_t + eps)  (b_0 = 0)
    x_{t+1} = x_t - b_t

``alpha`` is the paper's rho (the decay itself, as in ``torch.optim.RMSprop``, not 1 - decay). Two details differ
from ``torch.optim.RMSprop``: epsilon sits inside the square root, and the learning rate enters the momentum
buffer, so a change of ``lr`` during training scales new gradients only (with a constant lr both put lr in the
same place). With momentum 0 this is lr g / sqrt(v + eps); Keras puts epsilon outside the root there, but none of
the paper's tuned RMSprop runs has momentum 0."""

from __future__ import annotations

import torch

from .elementwise import gradients_and_state
from ..validation import require_non_negative, require_positive, require_probability


def _validate(group: dict) -> None:
    group["lr"] = require_non_negative("lr", group["lr"])
    group["alpha"] = require_probability("alpha", group["alpha"])
    group["eps"] = require_positive("eps", group["eps"])  # 0 would divide 0 by 0 where a gradient stays 0
    group["momentum"] = require_probability("momentum", group["momentum"])


class RMSprop(torch.optim.Optimizer):
    """RMSprop with heavy-ball momentum and epsilon inside the square root (the LODO paper's baseline).

    Args:
        params: parameters or ``model.named_parameters()`` (or parameter groups).
        lr: learning rate.
        alpha: decay of the squared-gradient average (the LODO paper's rho).
        eps: added to the squared-gradient average under the square root (Keras' 1e-7).
        momentum: decay of the step buffer (0: no momentum).
    """

    def __init__(self, params, lr: float = 1e-3, alpha: float = 0.9, eps: float = 1e-7, momentum: float = 0.0):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, momentum=momentum))
        for group in self.param_groups:
            _validate(group)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            _validate(group)
            rho, momentum, lr = group["alpha"], group["momentum"], group["lr"]
            for p, g, state in gradients_and_state(self, group, "RMSprop", ("square_avg", "momentum_buffer")):
                v, buffer = state["square_avg"], state["momentum_buffer"]
                v.mul_(rho).addcmul_(g, g, value=1 - rho)
                buffer.mul_(momentum).addcdiv_(g, v.add(group["eps"]).sqrt_(), value=lr)
                p.sub_(buffer)
        return loss
