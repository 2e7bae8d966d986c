"""AdaHessian (Yao et al., "ADAHESSIAN: An Adaptive Second Order Optimizer for Machine Learning", AAAI 2021,
arXiv:2006.00719) and Sophia (Liu et al., "Sophia: A Scalable Stochastic Second-order Optimizer for Language Model
Pre-training", ICLR 2024, arXiv:2305.14342; its Hutchinson variant SophiaH) from the maintained pytorch-optimizer
package, made to fit hoopt's contract.

Both estimate diag(H) with Hutchinson probes z^T (dg/dtheta) z, which differentiates the gradient itself: the
backward pass must keep its graph. The package's classes expect the caller to have run ``backward(create_graph=True)``;
here ``step`` asks the closure for that (``closure(create_graph=True)``, optimizers/protocol.py), so the training
loop needs no special case. Their probes come from torch's global generator, which checkpoints save, so resuming
stays exact."""

from __future__ import annotations

import warnings

import pytorch_optimizer
import torch


def _step_with_graph(optimizer_class, optimizer, closure):
    loss = None
    if closure is not None:
        with torch.enable_grad(), warnings.catch_warnings():
            # torch warns that a kept graph ties each parameter to its gradient; the closure's zero_grad sets the
            # gradients to None every step (as the training loop's does), which breaks that cycle.
            warnings.filterwarnings("ignore", message=r"Using backward\(\) with create_graph=True")
            loss = closure(create_graph=True)
    optimizer_class.step(optimizer)  # the package's step reads the gradients' graph for its Hutchinson probes
    return loss


class AdaHessian(pytorch_optimizer.AdaHessian):
    @torch.no_grad()
    def step(self, closure=None):
        return _step_with_graph(pytorch_optimizer.AdaHessian, self, closure)


class SophiaH(pytorch_optimizer.SophiaH):
    @torch.no_grad()
    def step(self, closure=None):
        return _step_with_graph(pytorch_optimizer.SophiaH, self, closure)
