"""Damped inverses of the Kronecker factors and the preconditioned gradient (docs/methods/kfac.md), plain functions.

With the layer gradient as an (out, in [+1]) matrix ``grad`` and factors G (out x out), A (in x in),
the Fisher block is kron(G, A) (see factors.py) and the two damping conventions are:

- ``factored`` (the default, as in the NewtonSummary papers' K-FAC runs; Martens & Grosse 2015 section 6.3
  without the pi rescaling):
  V = (G + sqrt(d) I)^{-1} grad (A + sqrt(d) I)^{-1}, i.e. (kron(G, A) + sqrt(d) (G (+) A) + d I)^{-1}.
- ``kronecker`` (eigendecomposition only; the exact Tikhonov damping used by some packages):
  V = (kron(G, A) + d I)^{-1} vec(grad), computed in the factors' eigenbases as
  Q_G [(Q_G^T grad Q_A) / (lambda_G lambda_A^T + d)] Q_A^T.

Decompositions run in float64 (they are refreshed rarely) and are stored in the factor's dtype.
"""

from __future__ import annotations

import torch

DAMPING_STYLES = ("factored", "kronecker")
INVERSE_METHODS = ("inverse", "eigen")


def damped_inverse(factor: torch.Tensor, shift: float) -> torch.Tensor:
    """(factor + shift I)^{-1} of a symmetric PSD factor: Cholesky L, then L^{-T} L^{-1} (eigh if L fails).

    L^{-1} comes from a triangular solve rather than ``torch.cholesky_inverse``, whose multithreaded CPU
    kernel was seen to stall for seconds on a busy machine."""
    matrix = factor.double()
    identity = torch.eye(matrix.shape[0], dtype=matrix.dtype, device=matrix.device)
    matrix = (matrix + matrix.t()) / 2 + shift * identity
    chol, info = torch.linalg.cholesky_ex(matrix)
    if int(info) == 0:
        chol_inverse = torch.linalg.solve_triangular(chol, identity, upper=False)
        inverse = chol_inverse.t() @ chol_inverse
    else:  # numerically indefinite: invert on the clamped spectrum instead
        values, vectors = torch.linalg.eigh(matrix)
        inverse = (vectors / values.clamp_min(shift if shift > 0 else 1e-12)) @ vectors.t()
    return inverse.to(factor.dtype)


def eigendecomposition(factor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(eigenvalues clamped at 0, eigenvectors) of a symmetric PSD factor."""
    matrix = factor.double()
    values, vectors = torch.linalg.eigh((matrix + matrix.t()) / 2)
    return values.clamp_min(0).to(factor.dtype), vectors.to(factor.dtype)


def eigen_scale(g_values: torch.Tensor, a_values: torch.Tensor, damping: float, style: str) -> torch.Tensor:
    """Elementwise inverse of the damped Kronecker spectrum, shape (out, in [+1])."""
    if style == "factored":
        shift = damping**0.5
        return 1.0 / torch.outer(g_values + shift, a_values + shift)
    if style == "kronecker":
        return 1.0 / (torch.outer(g_values, a_values) + damping)
    raise ValueError(f"damping_style must be one of {DAMPING_STYLES}, got {style!r}")


def precondition_with_inverses(grad: torch.Tensor, g_inverse: torch.Tensor, a_inverse: torch.Tensor) -> torch.Tensor:
    """V = G_inv grad A_inv (factored damping already inside the inverses)."""
    return g_inverse @ grad @ a_inverse


def precondition_with_eigen(
    grad: torch.Tensor,
    g_vectors: torch.Tensor,
    a_vectors: torch.Tensor,
    scale: torch.Tensor,
) -> torch.Tensor:
    """V = Q_G [(Q_G^T grad Q_A) * scale] Q_A^T with ``scale`` from :func:`eigen_scale`."""
    return g_vectors @ ((g_vectors.t() @ grad @ a_vectors) * scale) @ a_vectors.t()


def kl_clip_scale(step_dot_grad: torch.Tensor, kl_clip: float) -> torch.Tensor:
    """nu = min(1, sqrt(kl_clip / sum_l lr_l^2 <V_l, grad_l>)) (Ba, Grosse & Martens 2017, section 5).

    ``step_dot_grad`` is the (tensor) sum; the result stays a tensor so that no device sync is needed.
    A non-positive sum (possible only through rounding) leaves the step unscaled.
    """
    safe = step_dot_grad.clamp_min(torch.finfo(step_dot_grad.dtype).tiny)
    scale = torch.sqrt(kl_clip / safe).clamp_max(1.0)
    return torch.where(step_dot_grad > 0, scale, torch.ones_like(scale))
