"""Kronecker factors of one Linear or Conv2d layer (Martens & Grosse 2015; docs/methods/kfac.md), as plain functions.

A layer computes ``s = W a`` at every *row*: one row per example for a Linear layer on (N, d) inputs,
one row per example and output location for Conv2d (the input patch under the kernel, KFC: Grosse &
Martens 2016) or for a Linear layer on (N, ..., d) inputs. With a bias, ``a`` carries a trailing 1
(homogeneous coordinate), so the layer's parameter matrix is ``[W | b]`` of shape (out, in [+1]).

Conventions (N = examples in the batch, M = rows, g = d loss_n / d s with loss_n the loss of ONE
example, i.e. N times the gradient of the batch-mean loss):

    A = (1/M) sum_rows a a^T              (mean over examples and locations)
    G = (1/N) sum_rows g g^T              (sum over locations, mean over examples)

so that the Fisher block of ``vec([W|b])`` (row-major) is approximated by ``kron(G, A)``. For a Linear
layer on one example this is exact: kron(G, A) = vec(grad) vec(grad)^T. For Conv2d it is KFC's
approximation F = T * E[a a^T] (x) E[g g^T] with T locations (spatial homogeneity, spatially
uncorrelated derivatives); putting the factor T in G keeps A an average, which is what the damping
is added to.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def is_supported_layer(module: nn.Module) -> bool:
    """Linear and ungrouped Conv2d get Kronecker factors; grouped/depthwise convs do not."""
    if isinstance(module, nn.Conv2d):
        return module.groups == 1
    return isinstance(module, nn.Linear)


def input_columns(module: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """The layer's input vectors ``a`` (without the bias 1) as the columns of an (in, M) matrix.

    Columns rather than rows: for Linear this is a transposed view that matmul reads without a copy."""
    if isinstance(module, nn.Linear):
        return inputs.reshape(-1, inputs.shape[-1]).t()
    if isinstance(module, nn.Conv2d):
        return conv_patch_columns(module, inputs)
    raise TypeError(f"K-FAC factors support Linear and Conv2d, got {type(module).__name__}")


def conv_patch_columns(conv: nn.Conv2d, inputs: torch.Tensor) -> torch.Tensor:
    """Input patches as an (C*kh*kw, N*Ho*Wo) matrix, rows in the order of ``conv.weight.reshape(out, -1)``.

    Built from a strided view of the padded input and one copy: several times faster on the CPU than
    ``F.unfold`` followed by the transpose that the (features, locations) layout needs."""
    if isinstance(conv.padding, str) or conv.padding_mode != "zeros":
        # 'same' padding may be asymmetric and non-zero modes pad differently.
        mode = "constant" if conv.padding_mode == "zeros" else conv.padding_mode
        inputs = F.pad(inputs, conv._reversed_padding_repeated_twice, mode=mode)
    elif any(conv.padding):
        pad_h, pad_w = conv.padding
        inputs = F.pad(inputs, (pad_w, pad_w, pad_h, pad_h))
    (kh, kw), (dh, dw), (sh, sw) = conv.kernel_size, conv.dilation, conv.stride
    windows = inputs.unfold(2, dh * (kh - 1) + 1, sh).unfold(3, dw * (kw - 1) + 1, sw)[..., ::dh, ::dw]
    # windows: (N, C, Ho, Wo, kh, kw) -> (C, kh, kw, N, Ho, Wo)
    return windows.permute(1, 4, 5, 0, 2, 3).reshape(inputs.shape[1] * kh * kw, -1)


def output_grad_columns(module: nn.Module, grad_output: torch.Tensor) -> torch.Tensor:
    """Gradients w.r.t. the layer's outputs ``s`` as the columns of an (out, M) matrix."""
    if isinstance(module, nn.Conv2d):
        return grad_output.transpose(0, 1).reshape(grad_output.shape[1], -1)
    return grad_output.reshape(-1, grad_output.shape[-1]).t()


def activation_moment_sum(columns: torch.Tensor, with_bias: bool) -> torch.Tensor:
    """sum over columns of a a^T, a = [column, 1] when the layer has a bias (blocks, no padded copy)."""
    second = columns @ columns.t()
    if not with_bias:
        return second
    first = columns.sum(1)
    count = torch.full((1, 1), float(columns.shape[1]), dtype=columns.dtype, device=columns.device)
    top = torch.cat([second, first[:, None]], dim=1)
    return torch.cat([top, torch.cat([first[None, :], count], dim=1)], dim=0)


def grad_matrix(module: nn.Module) -> torch.Tensor | None:
    """The gradient of ``[W | b]`` as an (out, in [+1]) matrix, or None when W has no gradient."""
    weight_grad = module.weight.grad
    if weight_grad is None:
        return None
    matrix = weight_grad.reshape(weight_grad.shape[0], -1)
    if module.bias is None:
        return matrix
    bias_grad = module.bias.grad if module.bias.grad is not None else torch.zeros_like(module.bias)
    return torch.cat([matrix, bias_grad[:, None]], dim=1)


def split_matrix(module: nn.Module, matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Inverse of :func:`grad_matrix`: (weight-shaped, bias-shaped or None) views of ``matrix``."""
    if module.bias is None:
        return matrix.reshape(module.weight.shape), None
    return matrix[:, :-1].reshape(module.weight.shape), matrix[:, -1]
