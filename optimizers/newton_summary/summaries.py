"""Order-1, 2 and 3 summaries of a loss along a direction split by a partition.

With u_i the direction restricted to group i and phi(t) = L(theta + sum_i t_i u_i), t in R^S:
gbar = grad phi(0) (S), Hbar = Hessian phi(0) (S x S), D3_i = d^3 phi / dt_i^3 (0) (S): the derivatives
"according to the partition" of Wolinski, "Gathering and Exploiting Higher-Order Information when Training
Large Structured Models", arXiv:2312.03885, Section 3, Eqs. 5-7 (docs/methods/newton_summary.md, "The
summaries"). The full Hessian is never formed.

The schedule is reverse mode on the S scalars t (each a leaf at 0, theta_n + t_group(n) u_n fed to the loss).
One forward and one gradient with a graph give gbar; then, for the groups in forward order, a double
backward of gbar_i restricted to t_i and the later t_j gives row i of Hbar (upper triangle, mirrored: a row
never back-propagates into layers before its own group), immediately followed by a third backward of
Hbar_ii restricted to t_i for D3_i. Those are the 2S + 1 calls of the reference procedure (reference.py,
the paper's Appendix 0.A), plus the first-layer split of split_mode.py, which removes the weight-gradient
matmuls of layers fed by the data from all of them (``hoopt-bench summary`` measures the gain against
reference.py). Batch normalisation is evaluated in plain ops (batchnorm_mode.py): the native kernel has no
third derivative.

A forward-mode alternative (torch.func: vmap over the S unit vectors of jvp(jvp(grad phi))) was tried and
removed: on the CPU it cost 32-58 gradient evaluations per refresh on the MLP and about 40 on LeNet at batch
100, against 1.6-1.8 and 5.5 for this schedule, since forward mode recomputes every layer for every row.
"""

from __future__ import annotations

from typing import Callable, Mapping, NamedTuple

import torch

from .batchnorm_mode import DifferentiableBatchNorm
from .partitions import Partition
from .split_mode import SplitLinearInWeight as _SplitLinearInWeight

LossOfParams = Callable[[Mapping[str, torch.Tensor]], torch.Tensor]


class Summary(NamedTuple):
    """gbar (S), Hbar (S x S, symmetric) and the order-3 diagonal D3 (S), float64, on the params' device."""

    gbar: torch.Tensor
    hbar: torch.Tensor
    d3: torch.Tensor


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum()


def _group_order(partition: Partition, names: list[str]) -> list[int]:
    """Groups sorted by the position of their first tensor in the network (forward order)."""
    position = {n: i for i, n in enumerate(names)}
    missing = [n for group in partition.groups for n in group if n not in position]
    if missing:
        raise ValueError(f"the partition names parameters that are not given: {', '.join(missing[:5])}")
    return sorted(range(partition.size), key=lambda i: min(position[n] for n in partition.groups[i]))


def _reverse_summary(loss_fn, params, direction, partition, third_order, diagonal) -> Summary:
    S = partition.size
    order = _group_order(partition, list(params))
    group = partition.group_of()
    ref = next(iter(params.values()))
    t = [torch.zeros((), dtype=ref.dtype, device=ref.device, requires_grad=True) for _ in range(S)]
    hbar = torch.zeros(S, S, dtype=torch.float64, device=ref.device)
    d3 = torch.zeros(S, dtype=torch.float64, device=ref.device)
    with torch.enable_grad():
        shifted = {n: (p.detach() + t[group[n]] * direction[n] if n in group else p.detach())
                   for n, p in params.items()}
        splits = {id(shifted[n]): (params[n].detach(), direction[n], t[group[n]]) for n in group}
        with _SplitLinearInWeight(splits), DifferentiableBatchNorm():
            loss = loss_fn(shifted)
        gbar = torch.autograd.grad(loss, t, create_graph=True, allow_unused=True, materialize_grads=True)
        for k, i in enumerate(order):
            # row i: Hbar_ij for the groups j from i on (upper triangle, mirrored); only Hbar_ii for diag(Hbar)
            later = [i] if diagonal else order[k:]
            if not gbar[i].requires_grad:  # phi is linear in t_i: the row and D3_i are zero
                continue
            row = torch.autograd.grad(gbar[i], [t[j] for j in later], create_graph=third_order,
                                      retain_graph=True, allow_unused=True, materialize_grads=True)
            values = torch.stack([r.detach() for r in row]).to(torch.float64)
            hbar[i, later] = values
            hbar[later, i] = values
            if third_order and row[0].requires_grad:  # D3_i = d Hbar_ii / d t_i
                d3[i] = torch.autograd.grad(row[0], t[i], retain_graph=True)[0].detach().to(torch.float64)
            del row
        g = torch.stack([x.detach() for x in gbar]).to(torch.float64)
    return Summary(g, hbar, d3)


def hessian_summary(loss_fn: LossOfParams, params: Mapping[str, torch.Tensor], direction: Mapping[str, torch.Tensor],
                    partition: Partition, *, third_order: bool = True, diagonal: bool = False) -> Summary:
    """gbar, Hbar and D3 of ``loss_fn`` at ``params`` along ``direction`` split by ``partition``.

    ``loss_fn`` maps a name -> tensor mapping (all of ``params``) to a scalar and must be differentiable
    three times (e.g. ``lambda p: F.cross_entropy(torch.func.functional_call(model, p, (x,)), y)``).
    Parameters outside the partition are held fixed. ``third_order=False`` leaves D3 at zero (cheaper).
    ``diagonal=True`` computes only the diagonal of Hbar (the rest stays 0): each second backward is taken with
    respect to its own t_i alone, so it never reaches the layers of the later groups (the Appendix 0.K ablation).
    Works for any S, on any device, with float32 or float64 parameters; the result is float64.
    """
    missing = [n for group in partition.groups for n in group if n not in direction]
    if missing:
        raise ValueError(f"the direction has no entry for: {', '.join(missing[:5])}")
    return _reverse_summary(loss_fn, params, direction, partition, third_order, diagonal)
