"""The slow, obviously correct way to compute the summaries: the oracle of the tests and ``hoopt-bench summary``.

With u_i the direction restricted to group i and phi(t) = L(theta + sum_i t_i u_i), the summaries are
gbar_i = <grad L, u_i>, Hbar_ij = <grad gbar_i, u_j> and D3_i = <grad Hbar_ii, u_i>: each order is the gradient
of a scalar of the previous order with respect to the parameter tensors, contracted with a direction block.
That is the recursion of Pearlmutter's trick extended to the partition (Wolinski, "Gathering and Exploiting
Higher-Order Information when Training Large Structured Models", arXiv:2312.03885, Section 3 and Appendix
0.A, Eq. 16; docs/methods/newton_summary.md, "The summaries"). Written out literally it takes 2S + 1
sequential autograd calls on the parameter tensors themselves: one gradient with a graph (gbar), S double
backwards (row i of Hbar, over the groups j >= i only, mirrored, since Hbar is symmetric), and S third
backwards of Hbar_ii restricted to group i (D3_i).

``summaries.hessian_summary`` computes the same numbers faster (scalar leaves t, rows in forward order, the
first layer split off the graph, batch normalisation in plain ops); this function has none of those tricks,
which is the point: it is short enough to check against the paper by eye, so it is the yardstick that the
fast schedule is tested against on models too large for the full Hessian, and what the summary benchmark
reports its speed-up against.

It lives with the maths rather than under tests/ because the benchmark, which ships in the package, times
it; and rather than in the benchmark because tests import it and a test must not depend on a benchmark.
Its loss must be differentiable three times with native kernels (no BatchNorm: PyTorch's batch_norm has no
third derivative; see batchnorm_mode.py).
"""

from __future__ import annotations

from typing import Mapping

import torch

from .partitions import Partition
from .summaries import LossOfParams, Summary


def _contract(tensors, units) -> torch.Tensor:
    """sum over a group's tensors of <tensor, direction block>."""
    return sum((t * u).sum() for t, u in zip(tensors, units))


def reference_summary(loss_fn: LossOfParams, params: Mapping[str, torch.Tensor],
                      direction: Mapping[str, torch.Tensor], partition: Partition) -> Summary:
    """gbar, Hbar and D3 of ``loss_fn`` at ``params`` along ``direction`` split by ``partition``, in 2S + 1
    autograd calls; same meaning and arguments as ``hessian_summary``; float64 results on the CPU."""
    leaves = {n: p.detach().requires_grad_(True) for n, p in params.items()}
    groups = [[leaves[n] for n in names] for names in partition.groups]
    units = [[direction[n] for n in names] for names in partition.groups]
    S = partition.size

    loss = loss_fn(leaves)
    flat = [t for group in groups for t in group]
    grads = dict(zip(map(id, flat), torch.autograd.grad(loss, flat, create_graph=True)))  # call 1
    gbar = [_contract([grads[id(t)] for t in groups[i]], units[i]) for i in range(S)]

    hbar = torch.zeros(S, S, dtype=torch.float64)
    diagonal = []  # Hbar_ii with its graph, for D3
    for i in range(S):  # calls 2 .. S + 1
        later = [t for j in range(i, S) for t in groups[j]]
        rows = torch.autograd.grad(gbar[i], later, create_graph=True, allow_unused=True, materialize_grads=True)
        start = 0
        for j in range(i, S):
            entry = _contract(rows[start:start + len(groups[j])], units[j])
            start += len(groups[j])
            hbar[i, j] = hbar[j, i] = float(entry.detach())
            if j == i:
                diagonal.append(entry)

    d3 = torch.zeros(S, dtype=torch.float64)
    for i in range(S):  # calls S + 2 .. 2S + 1
        thirds = torch.autograd.grad(diagonal[i], groups[i], retain_graph=True, allow_unused=True,
                                     materialize_grads=True)
        d3[i] = float(_contract(thirds, units[i]).detach())
    return Summary(torch.tensor([float(g.detach()) for g in gbar], dtype=torch.float64), hbar, d3)
