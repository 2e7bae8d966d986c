"""LODO's diagnostics on the noisy quadratic bowl (arXiv:2210.06171, Section 5.1): how well G approximates H^{-1}."""

from __future__ import annotations

import torch


def random_unit_probes(n: int, count: int, generator: torch.Generator,
                       dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``count`` directions uniform on the unit sphere of R^n, as rows of a (count, n) tensor (CPU)."""
    v = torch.randn(count, n, generator=generator, dtype=dtype)
    return v / v.norm(dim=1, keepdim=True)


def hessian_approximation_error(preconditioner: torch.Tensor, hessian: torch.Tensor, probes: torch.Tensor) -> float:
    """sqrt(mean over unit probes v of ||(I - G H) v||^2) (docs/methods/lodo.md, "Diagnostics"); 0 when G = H^{-1}.

    With many probes this tends to ||I - G H||_F / sqrt(n); the paper uses 100 random ones.
    """
    g = preconditioner.to(torch.float64)
    h = hessian.to(device=g.device, dtype=torch.float64)
    v = probes.to(device=g.device, dtype=torch.float64).T  # (n, count)
    residual = v - g @ (h @ v)
    return float(residual.pow(2).sum(0).mean().sqrt())
