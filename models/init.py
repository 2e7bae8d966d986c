"""The NewtonSummary papers' initialisation, W ~ N(0, sigma_w^2 / fan_in) and b = 0 (arXiv:2312.03885;
docs/methods/newton_summary.md, "The papers' experiments")."""

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
