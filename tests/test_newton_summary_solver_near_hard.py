"""The cubic solver near the hard case (docs/methods/newton_summary.md, "Order 3"): gbar with a tiny but non-zero
component on the lowest eigenvector of an indefinite problem puts the root within 1e-14 .. 1e-8 of the pole. Such
problems are well posed (D has no tiny entries; the minimiser has a PSD shifted matrix and a small residual), so
they must be solved, and solved accurately: the reference is an exact bisection in rational arithmetic."""

from fractions import Fraction

import numpy as np
import pytest
import torch

from hoopt.optimizers.newton_summary import cubic_step_sizes

D = (1, 2, 3)  # D = diag(1, 2, 3): D3 = (1, 8, 27), no tiny entry
LAMBDA_INT = 1.0


def near_hard_problem(weight):
    """Hbar = D M D with M's eigenvalues (-0.86, 1, 2), so r_low = 0.86 / (lambda_int / 2) = 1.72; gbar = D Q c with
    c = (weight, 0.5, 0.7): the other components alone do not reach r_low, so the root is r_low + O(weight)."""
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))
    d = np.array(D, dtype=float)
    hbar = np.outer(d, d) * (q @ np.diag([-0.86, 1.0, 2.0]) @ q.T)
    hbar = (hbar + hbar.T) / 2  # exactly symmetric, so the rational reference sees the same matrix
    gbar = d * (q @ np.array([weight, 0.5, 0.7]))
    return gbar, hbar


def _solve(matrix, vector):
    """Gaussian elimination over the rationals (3 x 3)."""
    m = [list(row) + [v] for row, v in zip(matrix, vector)]
    n = len(m)
    for col in range(n):
        pivot = next(r for r in range(col, n) if m[r][col] != 0)
        m[col], m[pivot] = m[pivot], m[col]
        for r in range(n):
            if r != col and m[r][col] != 0:
                factor = m[r][col] / m[col][col]
                m[r] = [x - factor * y for x, y in zip(m[r], m[col])]
    return [m[i][n] / m[i][i] for i in range(n)]


def _positive_definite(matrix):
    """Sylvester's criterion, exactly."""
    a = matrix
    minor2 = a[0][0] * a[1][1] - a[0][1] * a[1][0]
    det = (a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1]) - a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0])
           + a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0]))
    return a[0][0] > 0 and minor2 > 0 and det > 0


def exact_minimiser(gbar, hbar):
    """Bisection on r over the rationals: r is above the root when Hbar + (lambda_int / 2) r D^2 is positive
    definite and ||D eta(r)|| < r, with eta(r) = (Hbar + (lambda_int / 2) r D^2)^-1 gbar. 200 halvings of [0, 4]
    leave a bracket of 3e-60; returns (r, eta) at its upper end."""
    h = [[Fraction(float(x)) for x in row] for row in hbar]
    g = [Fraction(float(x)) for x in gbar]
    half = Fraction(LAMBDA_INT) / 2

    def eta_at(r):
        shifted = [[h[i][j] + (half * r * D[i] ** 2 if i == j else 0) for j in range(3)] for i in range(3)]
        return (_solve(shifted, g) if _positive_definite(shifted) else None), shifted

    low, high = Fraction(0), Fraction(4)
    for _ in range(200):
        mid = (low + high) / 2
        eta, _ = eta_at(mid)
        above = eta is not None and sum((D[i] * eta[i]) ** 2 for i in range(3)) < mid * mid
        low, high = (low, mid) if above else (mid, high)
    eta, shifted = eta_at(high)
    return float(high), np.array([float(x) for x in eta]), shifted


@pytest.mark.parametrize("weight", [1e-14, 1e-13, 1e-12, 1e-11, 1e-10, 1e-8, 1e-6])
def test_near_hard_problems_are_solved_to_the_exact_minimiser(weight):
    gbar, hbar = near_hard_problem(weight)
    r_ref, eta_ref, _ = exact_minimiser(gbar, hbar)
    assert 1.72 < r_ref < 1.7201  # the root sits just above the pole r_low = 1.72
    d3 = torch.tensor([float(x) ** 3 for x in D], dtype=torch.float64)
    solution = cubic_step_sizes(torch.tensor(gbar), torch.tensor(hbar), d3, LAMBDA_INT)
    assert solution.ok, solution.reason
    eta = solution.eta.numpy()
    assert np.linalg.norm(eta - eta_ref) <= 1e-9 * np.linalg.norm(eta_ref)
    assert abs(solution.root - r_ref) <= 1e-12 * r_ref
    shifted = hbar + LAMBDA_INT / 2 * solution.root * np.diag(np.array(D, dtype=float) ** 2)
    assert np.linalg.eigvalsh(shifted).min() >= -1e-12  # the minimiser's shifted matrix is PSD


def test_genuinely_unbounded_models_are_still_refused():
    """Only a model without a cubic term can be unbounded: an indefinite Hbar with lambda_int = 0 or D3 = 0."""
    gbar, hbar = near_hard_problem(1e-3)
    for d3, lambda_int in ((torch.ones(3, dtype=torch.float64), 0.0), (torch.zeros(3, dtype=torch.float64), 1.0)):
        solution = cubic_step_sizes(torch.tensor(gbar), torch.tensor(hbar), d3, lambda_int)
        assert not solution.ok and "not positive definite" in solution.reason
