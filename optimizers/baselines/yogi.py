"""Yogi (Zaheer et al., "Adaptive Methods for Nonconvex Optimization", NeurIPS 2018, Algorithm 2) in the form the
LODO paper's authors ran and tuned: m_0 = v_0 = 0, no bias correction, epsilon 1e-3.

    m_t = beta1 m_{t-1} + (1 - beta1) g_t
    v_t = v_{t-1} - (1 - beta2) sign(v_{t-1} - g_t^2) g_t^2
    x_{t+1} = x_t - lr m_t / (sqrt(v_t) + eps)

The LODO paper's tuned Yogi values (its Appendix E, Table 6) belong to this form; pytorch-optimizer's ``Yogi``
(``optimizer=yogi_bias_corrected``) starts v at 1e-6 and divides by 1 - beta^t, which on Rosenbrock moves the
mean loss over steps 180-200 from 7.9e-4 to 3.0e-3 at the same values."""

from __future__ import annotations

import torch

from .elementwise import gradients_and_state
from ..validation import require_betas, require_non_negative, require_positive


def _validate(group: dict) -> None:
    group["lr"] = require_non_negative("lr", group["lr"])
    group["betas"] = require_betas("betas", group["betas"])
    group["eps"] = require_positive("eps", group["eps"])


class Yogi(torch.optim.Optimizer):
    """Yogi: Adam's first moment with an additive second moment that grows or shrinks by (1 - beta2) g^2 towards g^2.

    Args:
        params: parameters or ``model.named_parameters()`` (or parameter groups).
        lr: learning rate.
        betas: (beta1, beta2), the decays of the first moment and of the second moment's additive update.
        eps: added to sqrt(v) in the denominator (Yogi's 1e-3, not Adam's 1e-8: v starts at 0, so the first
            steps are about lr (1 - beta1) / (sqrt(1 - beta2) + eps) in size).
    """

    def __init__(self, params, lr: float = 0.01, betas=(0.9, 0.999), eps: float = 1e-3):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps))
        for group in self.param_groups:
            _validate(group)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            _validate(group)  # a scheduler or a user may have changed the group since the last step
            beta1, beta2 = group["betas"]
            for p, g, state in gradients_and_state(self, group, "Yogi", ("exp_avg", "exp_avg_sq")):
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.mul_(beta1).add_(g, alpha=1 - beta1)
                g2 = g * g
                v.addcmul_(torch.sign(v - g2), g2, value=-(1 - beta2))
                p.addcdiv_(m, v.sqrt().add_(group["eps"]), value=-group["lr"])
        return loss
