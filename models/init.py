"""The papers' initialisations: the NewtonSummary papers' W ~ N(0, sigma_w^2 / fan_in) and b = 0 (arXiv:2312.03885;
docs/methods/newton_summary.md, "The papers' experiments"), and the LODO paper's LeCun normal of weights and biases
(docs/methods/lodo.md)."""

import math

import torch
from torch import nn


def paper_init_(model: nn.Module, sigma_w: float, generator: torch.Generator | None = None) -> None:
    """Re-initialise every Linear and Conv2d of ``model`` in place."""
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            fan_in = module.weight[0].numel()  # in_features, or in_channels/groups * kh * kw
            with torch.no_grad():
                module.weight.normal_(0.0, sigma_w / math.sqrt(fan_in), generator=generator)
                if module.bias is not None:
                    module.bias.zero_()


def lecun_normal_with_bias_(model: nn.Module, generator: torch.Generator | None = None) -> None:
    """The LODO paper's "LeCun normal" initialisation as its authors wrote it (arXiv:2210.06171, Appendix F.2):
    every Linear and Conv2d weight *and bias* ~ N(0, 1 / (fan_in + 1)), the bias counted as one more input."""
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            fan_in = module.weight[0].numel()  # in_features, or in_channels/groups * kh * kw (9 for depthwise 3x3)
            std = 1.0 / math.sqrt(fan_in + 1)
            with torch.no_grad():
                module.weight.normal_(0.0, std, generator=generator)
                if module.bias is not None:
                    module.bias.normal_(0.0, std, generator=generator)
