"""Per-subset step sizes from the summaries: anisotropic Nesterov cubic regularisation (arXiv:2312.03885, 2024
version, Section 5.1, Eq. 10 and Appendix 0.D, Eqs. 35-39; docs/methods/newton_summary.md, "Order 3").

Minimise  m(eta) = -eta^T gbar + 1/2 eta^T Hbar eta + (lambda_int / 6) ||D eta||^3,  D = diag(|D3|^(1/3)).
Stationarity: (Hbar + a r D^2) eta = gbar with a = lambda_int / 2 and r = ||D eta||. With M = D^-1 Hbar D^-1
= Q Lambda Q^T and c = Q^T D^-1 gbar the scalar secular equation is

    f(r) = ||(Lambda + a r I)^-1 c|| - r = 0,   r > r_low = max(0, -lambda_min / a),

f is decreasing there, so its root is unique; we bracket it and call brentq (as the released code does).
Then eta = D^-1 Q (Lambda + a r I)^-1 c, the solution with Hbar + a r D^2 positive semidefinite.
Everything runs in float64 on the CPU (S is small).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import brentq

# D entries below this fraction of the largest one are raised to it, which keeps D^-1 finite. The floor is
# relative, so a common rescaling of u changes nothing; per-subset affine invariance (Appendix 0.E) holds
# as long as no entry is floored, hence the small value (M's conditioning grows as its inverse squared).
D_FLOOR_RATIO = 1e-6
# Eigenvalues within this fraction of the spectrum's scale count as zero (definiteness tests, hard case).
EIG_TOL = 1e-12


@dataclass
class CubicSolution:
    """eta (float64, S); ok says whether it is a valid minimiser; reason explains a failure; root is r."""

    eta: torch.Tensor
    ok: bool
    reason: str
    root: float


def _fail(size: int, reason: str) -> CubicSolution:
    return CubicSolution(torch.zeros(size, dtype=torch.float64), False, reason, math.nan)


def cubic_step_sizes(gbar: torch.Tensor, hbar: torch.Tensor, d3: torch.Tensor, lambda_int: float) -> CubicSolution:
    """The minimiser of the cubic model above; lambda_int = 0 gives Hbar^-1 gbar (Hbar must be definite)."""
    g = gbar.detach().to("cpu", torch.float64).numpy().reshape(-1)
    h = hbar.detach().to("cpu", torch.float64).numpy()
    t = d3.detach().to("cpu", torch.float64).numpy().reshape(-1)
    size = g.shape[0]
    if h.shape != (size, size) or t.shape != (size,):
        raise ValueError(f"shapes do not match: gbar {tuple(g.shape)}, hbar {tuple(h.shape)}, d3 {tuple(t.shape)}")
    if not (math.isfinite(lambda_int) and lambda_int >= 0):
        raise ValueError(f"lambda_int must be a finite number >= 0, got {lambda_int}")
    if not (np.isfinite(g).all() and np.isfinite(h).all() and np.isfinite(t).all()):
        return _fail(size, "non-finite summaries")
    h = (h + h.T) / 2
    d = np.abs(t) ** (1.0 / 3.0)
    if lambda_int == 0 or d.max() == 0:  # no cubic term: the order-2 model, eta = Hbar^-1 gbar (Eq. 8)
        return _quadratic(g, h, "Hbar is not positive definite and there is no cubic term (lambda_int = 0 or D3 = 0)")
    d = np.maximum(d, D_FLOOR_RATIO * d.max())
    a = lambda_int / 2.0
    m = h / np.outer(d, d)
    lam, q = np.linalg.eigh(m)
    c = q.T @ (g / d)
    scale = max(np.abs(lam).max(), 1e-300)
    r_low = max(0.0, -lam[0] / a)

    def f(r: float) -> float:
        with np.errstate(divide="ignore", invalid="ignore"):
            value = float(np.linalg.norm(c / (lam + a * r)) - r)
        return value if not math.isnan(value) else math.inf

    # Hard case (docs/methods/newton_summary.md, "Order 3"): c has (numerically) no weight on the eigenvalues at
    # lambda_min, so f stays finite at r_low; if f(r_low) <= 0 the root sits at r_low and eta gets a component
    # along those vectors.
    at_min = lam <= lam[0] + EIG_TOL * scale
    if r_low > 0 and np.all(np.abs(c[at_min]) <= 1e-14 * max(np.linalg.norm(c), 1e-300)):
        shifted = lam + a * r_low
        free = ~at_min
        p = np.zeros_like(c)
        p[free] = c[free] / shifted[free]
        if np.linalg.norm(p) <= r_low:
            tau = math.sqrt(max(r_low ** 2 - float(p @ p), 0.0))
            p[np.argmax(at_min)] = tau  # any unit vector of the lambda_min eigenspace is a minimiser
            return CubicSolution(torch.from_numpy((q @ p) / d), True, "hard case", float(r_low))
    if np.linalg.norm(c) == 0:
        return CubicSolution(torch.zeros(size, dtype=torch.float64), True, "gbar = 0", 0.0)
    # Bracket: f is +inf (or positive) at r_low and decreases to -inf; step just inside the pole, then grow
    # the upper end until f < 0.
    unit = max(r_low, math.sqrt(np.linalg.norm(c) / a), 1e-300)
    low, f_low = r_low, f(r_low)
    for k in range(40):
        if math.isfinite(f_low):
            break
        low = r_low + unit * 1e-16 * 10 ** k
        f_low = f(low)
    high = max(2 * r_low, unit)
    for _ in range(2000):
        if f(high) < 0:
            break
        high *= 2
    else:
        return _fail(size, "could not bracket the root of the secular equation")
    if not math.isfinite(f_low) or f_low <= 0:  # the root is within rounding of the pole
        r = low
    else:
        r = brentq(f, low, high, xtol=1e-300, rtol=4 * np.finfo(float).eps, maxiter=500)
    eta = (q @ (c / (lam + a * r))) / d
    refined = _refine(g, h, d, a, r)
    if refined is not None:
        r, eta = refined
    if not np.isfinite(eta).all():
        return _fail(size, "the solution is not finite")
    # Accept only a solution that meets the stationarity equation and r = ||D eta||; floored D entries on
    # an indefinite Hbar can make the problem too ill-conditioned for float64 (the caller keeps its eta).
    shifted = h + a * r * np.diag(d ** 2)
    residual = np.linalg.norm(shifted @ eta - g)
    scale = np.linalg.norm(g) + np.linalg.norm(shifted, 2) * np.linalg.norm(eta)
    if residual > 1e-8 * scale or abs(np.linalg.norm(d * eta) - r) > 1e-6 * max(r, 1e-300):
        return _fail(size, "ill-conditioned cubic problem (tiny D entries on an indefinite Hbar)")
    return CubicSolution(torch.from_numpy(eta), True, "ok", float(r))


def _quadratic(g: np.ndarray, h: np.ndarray, reason: str) -> CubicSolution:
    lam, q = np.linalg.eigh(h)
    scale = max(np.abs(lam).max(), 1e-300)
    if lam[0] <= EIG_TOL * scale:
        return _fail(g.shape[0], reason)
    eta = q @ ((q.T @ g) / lam)
    return CubicSolution(torch.from_numpy(eta), True, "ok", 0.0)


def _refine(g: np.ndarray, h: np.ndarray, d: np.ndarray, a: float, r0: float):
    """Polish the root in the original coordinates, where Hbar + a r D^2 is far better conditioned than M
    when some D entries are small. Returns (r, eta), or None when no sign change is found near r0."""

    def solve(r: float):
        shifted = h + a * r * np.diag(d ** 2)
        try:
            factor = np.linalg.cholesky(shifted)
        except np.linalg.LinAlgError:
            return None  # below the pole: not positive definite
        return np.linalg.solve(factor.T, np.linalg.solve(factor, g))

    def f(r: float) -> float:
        eta = solve(r)
        return math.inf if eta is None else float(np.linalg.norm(d * eta) - r)

    if not (math.isfinite(r0) and r0 > 0):
        return None
    f0 = f(r0)
    if f0 == 0:
        return r0, solve(r0)
    step, other = 1e-10, r0
    for _ in range(80):
        other = r0 * (1 + step) if f0 > 0 else r0 / (1 + step)
        if (f(other) < 0) == (f0 > 0):
            break
        step *= 2
    else:
        return None
    low, high = (r0, other) if f0 > 0 else (other, r0)
    # below the pole f is +inf; a huge finite stand-in keeps brentq's bracket valid (it bisects there)
    r = brentq(lambda x: min(f(x), 1e300), low, high, xtol=1e-300, rtol=4 * np.finfo(float).eps, maxiter=500)
    eta = solve(r)
    return None if eta is None else (float(r), eta)
