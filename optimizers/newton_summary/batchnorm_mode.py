"""Batch normalisation written in differentiable ops, so that D3 exists for models with BatchNorm.

PyTorch's native batch_norm kernel has a double backward but no third one ("batch_norm does not support
3rd+ order derivatives"), and D3_i = d^3 phi / dt_i^3 needs three. Inside this mode every
``F.batch_norm`` call is evaluated as (x - mean) / sqrt(var + eps) * weight + bias with mean and biased
var taken over every dimension but the channels (training mode) or read from the running statistics
(evaluation mode): the same function, so the summaries stay exact, with derivatives of every order.

The summaries are a measurement, not a training step: in this mode the running statistics are left
untouched (the native kernel would fold the summary batch into them), and so is the counter
``num_batches_tracked`` that BatchNorm modules bump in place.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode


def _arguments(args, kwargs):
    names = ("input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps")
    defaults = dict(weight=None, bias=None, training=False, momentum=0.1, eps=1e-5)
    values = dict(defaults)
    values.update(zip(names, args))
    values.update(kwargs)
    return values


def composite_batch_norm(input, running_mean=None, running_var=None, weight=None, bias=None,
                         training=False, momentum=0.1, eps=1e-5):
    """F.batch_norm's function in plain differentiable ops; running statistics are only read."""
    shape = [1, -1] + [1] * (input.dim() - 2)  # broadcast per channel (dimension 1)
    if training or running_mean is None or running_var is None:
        dims = [d for d in range(input.dim()) if d != 1]
        mean = input.mean(dims, keepdim=True)
        var = (input - mean).square().mean(dims, keepdim=True)
    else:
        mean, var = running_mean.view(shape), running_var.view(shape)
    out = (input - mean) * torch.rsqrt(var + eps)
    if weight is not None:
        out = out * weight.view(shape)
    if bias is not None:
        out = out + bias.view(shape)
    return out


def _is_counter(tensor) -> bool:
    return isinstance(tensor, torch.Tensor) and tensor.dim() == 0 and not tensor.is_floating_point() \
        and not tensor.is_complex()


class DifferentiableBatchNorm(TorchFunctionMode):
    """Routes F.batch_norm to ``composite_batch_norm`` while active."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is F.batch_norm:
            return composite_batch_norm(**_arguments(args, kwargs or {}))
        if func is torch.Tensor.add_ and _is_counter(args[0]):
            return args[0]
        return func(*args, **(kwargs or {}))
