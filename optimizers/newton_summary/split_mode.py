"""Evaluate op(x, W + t U) as op(x, W) + t op(x, U) for ops linear in their weight, when x is data.

phi(t) = L(theta + sum_i t_i u_i) puts t inside the weights. For linear and convolution layers whose input
does not depend on t (the first layer: its input is the data), the two forms are equal, but the split one
has no path from t through the weight: every backward pass then gets d/dt_i as <z_bar, op(x, U)> from
the layer's output gradient and skips the weight-gradient matmul (the largest one of the MLP), in each of
the 2S + 1 autograd calls. For a layer whose input depends on t, the split would add a backward matmul
through op(x, U) instead of saving one, so such calls go through unchanged. Any other use of a shifted
weight also goes through unchanged, so the result is exact in every case.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

# op(input, weight, bias, ...) with the output linear in weight; the bias is the third argument.
LINEAR_IN_WEIGHT = frozenset({F.linear, F.conv1d, F.conv2d, F.conv3d,
                              F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d})


class SplitLinearInWeight(TorchFunctionMode):
    """``table``: id(shifted weight W + t U) -> (W, U, t)."""

    def __init__(self, table: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]):
        super().__init__()
        self.table = table

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func in LINEAR_IN_WEIGHT:
            args = list(args)
            x = args[0] if args else kwargs.get("input")
            weight = args[1] if len(args) > 1 else kwargs.get("weight")
            hit = self.table.get(id(weight)) if weight is not None else None
            if hit is not None and isinstance(x, torch.Tensor) and not x.requires_grad:
                base, unit, t = hit
                if len(args) > 1:
                    args[1] = base
                else:
                    kwargs["weight"] = base
                main = func(*args, **kwargs)
                if len(args) > 1:
                    args[1] = unit
                else:
                    kwargs["weight"] = unit
                if len(args) > 2:
                    args[2] = None
                else:
                    kwargs.pop("bias", None)
                return main + t * func(*args, **kwargs)
        return func(*args, **kwargs)
