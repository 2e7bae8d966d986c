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
                # The bias is added outside the op: inside it, its gradient would run the op's whole
                # backward kernel (mkldnn's convolution_backward) just to sum the output gradient.
                bias = args[2] if len(args) > 2 else kwargs.get("bias")
                if len(args) > 2:
                    args[2] = None
                else:
                    kwargs.pop("bias", None)
                main, along = _both_outputs(func, args, kwargs, base, unit)
                if bias is not None:
                    main = main + _per_channel(func, bias, main)
                return _AddScaled.apply(main, t, along.contiguous())
        return func(*args, **kwargs)


# Spatial dimensions of each convolution's output (its channel dimension precedes them).
_SPATIAL_DIMS = {F.conv1d: 1, F.conv2d: 2, F.conv3d: 3,
                 F.conv_transpose1d: 1, F.conv_transpose2d: 2, F.conv_transpose3d: 3}
# Convolutions whose output channels are the weight's rows: conv(x, [W; U]) is [conv(x, W); conv(x, U)]
# along the channel dimension, one call sharing the input's unfolding instead of two (groups = 1 only).
# Measured on the CPU: faster for LeNet's first conv; for linear layers two matmuls beat one on the
# stacked weight, whose halves are then strided views.
_STACKABLE = frozenset({F.conv1d, F.conv2d, F.conv3d})


def _both_outputs(func, args, kwargs, base, unit):
    """op(x, W) and op(x, U); from one call on the stacked weight where that is the same function."""
    groups = args[6] if len(args) > 6 else kwargs.get("groups", 1)
    if func in _STACKABLE and groups == 1:
        both = _call_with_weight(func, args, kwargs, torch.cat([base, unit]))
        return both.chunk(2, both.dim() - _SPATIAL_DIMS[func] - 1)
    return _call_with_weight(func, args, kwargs, base), _call_with_weight(func, args, kwargs, unit)


def _call_with_weight(func, args, kwargs, weight):
    if len(args) > 1:
        return func(*args[:1], weight, *args[2:], **kwargs)
    return func(*args, **{**kwargs, "weight": weight})


def _per_channel(func, bias, out):
    """The bias shaped to broadcast over ``out``: last dimension for linear, the channel one for convs."""
    if func is F.linear:
        return bias
    return bias.reshape((-1,) + (1,) * _SPATIAL_DIMS[func])


class _AddScaled(torch.autograd.Function):
    """main + t * along for a scalar t: one kernel forward, and d/dt as one dot product (instead of a
    product tensor and its sum) in every backward pass of every order; the backward is itself
    differentiable, so higher derivatives go through it."""

    @staticmethod
    def forward(main, t, along):
        return torch.addcmul(main, t, along)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[2])

    @staticmethod
    def backward(ctx, grad):
        (along,) = ctx.saved_tensors
        return grad, torch.vdot(grad.reshape(-1), along.reshape(-1)), None
