"""Per-subset step sizes from the summaries: anisotropic Nesterov cubic regularisation (arXiv:2312.03885, 2024
version, Section 5.1, Eq. 10 and Appendix 0.D, Eqs. 35-39; docs/methods/newton_summary.md, "Order 3").

Minimise  m(eta) = -eta^T gbar + 1/2 eta^T Hbar eta + (lambda_int / 6) ||D eta||^3,  D = diag(|D3|^(1/3)).
Stationarity: (Hbar + a r D^2) eta = gbar with a = lambda_int / 2 and r = ||D eta||. With M = D^-1 Hbar D^-1
= Q Lambda Q^T and c = Q^T D^-1 gbar the scalar secular equation is

    f(r) = ||(Lambda + a r I)^-1 c|| - r = 0,   r > r_low = max(0, -lambda_min / a),

f is decreasing there, so its root is unique; we bracket it and call brentq (as the released code does), with
x = r - r_low as the unknown so that a root within rounding distance of the pole (the near-hard case) keeps its
precision. Then eta = D^-1 Q (Lambda + a r I)^-1 c, the solution with Hbar + a r D^2 positive semidefinite.
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
    d = np.cbrt(np.abs(t))  # exact for perfect cubes, unlike ** (1/3)
    if lambda_int == 0 or d.max() == 0:  # no cubic term: the order-2 model, eta = Hbar^-1 gbar (Eq. 8)
        return _quadratic(g, h, "Hbar is not positive definite and there is no cubic term (lambda_int = 0 or D3 = 0)")
    floored = bool(d.min() < D_FLOOR_RATIO * d.max())
    d = np.maximum(d, D_FLOOR_RATIO * d.max())
    a = lambda_int / 2.0
    m = h / np.outer(d, d)
    lam, q = np.linalg.eigh(m)
    c = q.T @ (g / d)
    scale = max(np.abs(lam).max(), 1e-300)
    if np.linalg.norm(c) == 0 and lam[0] > EIG_TOL * scale:
        return CubicSolution(torch.zeros(size, dtype=torch.float64), True, "gbar = 0", 0.0)
    # The unknown is x = r - r_low >= 0. On an indefinite M the denominators are written as
    # (lambda_i - lambda_min) + a x, never as lambda_i + a r: near the pole (the "near-hard case", c with a tiny
    # weight on the lambda_min eigenvectors) x is tiny, and lambda_min + a r would lose it to cancellation,
    # while x itself keeps full relative precision.
    if lam[0] < 0:
        r_low, base = -lam[0] / a, lam - lam[0]
    else:
        r_low, base = 0.0, lam

    def components(x: float) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return c / (base + a * x)

    def f(x: float) -> float:
        value = float(np.linalg.norm(components(x)) - (r_low + x))
        return value if not math.isnan(value) else math.inf

    # Hard case (docs/methods/newton_summary.md, "Order 3"): c has no weight, up to rounding, on the eigenvectors at
    # lambda_min, and the other components alone leave room at r_low: the root sits at r_low and eta gets a
    # component along those vectors.
    at_min = lam <= lam[0] + EIG_TOL * scale
    if r_low > 0 and np.linalg.norm(c[at_min]) <= 1e-14 * max(np.linalg.norm(c), 1e-300):
        p = np.zeros_like(c)
        p[~at_min] = c[~at_min] / base[~at_min]
        if np.linalg.norm(p) <= r_low:
            tau = math.sqrt(max(r_low ** 2 - float(p @ p), 0.0))
            first = int(np.argmax(at_min))  # any unit vector of the lambda_min eigenspace gives a minimiser
            p[first] = math.copysign(tau, c[first]) if c[first] != 0 else tau
            return _checked(g, h, d, a, r_low, (q @ p) / d, "hard case")
    x = _root(f, r_low, math.sqrt(np.linalg.norm(c) / a))
    if x is None:
        return _fail(size, "could not bracket the root of the secular equation")
    r, eta = r_low + x, (q @ components(x)) / d
    if floored:  # M is badly conditioned: polish in the original coordinates, keep whichever fits better
        refined = _refine(g, h, d, a, r)
        if refined is not None and _residual(g, h, d, a, *refined) < _residual(g, h, d, a, r, eta):
            r, eta = refined
    return _checked(g, h, d, a, r, eta, "ok")


def _root(f, r_low: float, unit: float) -> float | None:
    """The root x > 0 of the decreasing function f, or None when no bracket is found.

    The upper end doubles until f < 0; the lower end halves from there towards 0 until f > 0 (f is +inf at 0 when
    the root is close to the pole, so the bracket is found in relative terms however small x is)."""
    high = max(r_low, unit, 1e-300)
    for _ in range(2100):
        if f(high) < 0:
            break
        high *= 2
    else:
        return None
    f_zero = f(0.0)
    if math.isfinite(f_zero):
        if f_zero <= 0:
            return 0.0  # the root is at the pole (within rounding)
        low = 0.0
    else:
        low = high
        for _ in range(2100):
            low /= 2
            value = f(low)
            if value > 0 and math.isfinite(value):
                break
            if value > 0:  # +inf: still closer to the pole than the root
                continue
            high = low  # f(low) <= 0: the root is below, move the upper end down
        else:
            return 0.0 if low == 0 else None
    return brentq(f, low, high, xtol=1e-300, rtol=4 * np.finfo(float).eps, maxiter=500)


def _residual(g: np.ndarray, h: np.ndarray, d: np.ndarray, a: float, r: float, eta: np.ndarray) -> float:
    """|(Hbar + a r D^2) eta - gbar| relative to the scale of the terms."""
    shifted = h + a * r * np.diag(d ** 2)
    scale = np.linalg.norm(g) + np.linalg.norm(shifted, 2) * np.linalg.norm(eta)
    return float(np.linalg.norm(shifted @ eta - g) / max(scale, 1e-300))


def _checked(g, h, d, a, r, eta, reason) -> CubicSolution:
    """Accept only a solution that meets the stationarity equation and r = ||D eta||; floored D entries on an
    indefinite Hbar can make the problem too ill-conditioned for float64 (the caller then keeps its eta)."""
    if not np.isfinite(eta).all():
        return _fail(g.shape[0], "the solution is not finite")
    if _residual(g, h, d, a, r, eta) > 1e-8 or abs(np.linalg.norm(d * eta) - r) > 1e-6 * max(r, 1e-300):
        return _fail(g.shape[0], "ill-conditioned cubic problem: the solution fails its stationarity check "
                                 "(D floored on an indefinite Hbar)")
    return CubicSolution(torch.from_numpy(np.ascontiguousarray(eta)), True, reason, float(r))


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
