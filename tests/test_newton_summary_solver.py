"""The cubic step-size solver (docs/methods/newton_summary.md) on small float64 problems with known answers."""

import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from hoopt.optimizers.newton_summary import cubic_step_sizes
from hoopt.optimizers.newton_summary.cubic_solver import D_FLOOR_RATIO


def cubic_model(eta, g, h, d, lam):
    return -eta @ g + 0.5 * eta @ h @ eta + lam / 6 * np.linalg.norm(d * eta) ** 3


def effective_d(d3):
    d = np.abs(d3) ** (1 / 3)
    return np.maximum(d, D_FLOOR_RATIO * d.max())


def check_stationary_and_global(g, h, d3, lam, solution):
    eta, d = solution.eta.numpy(), effective_d(d3)
    r = np.linalg.norm(d * eta)
    assert solution.ok and math.isclose(solution.root, r, rel_tol=1e-6, abs_tol=1e-12)
    shifted = h + lam / 2 * r * np.diag(d ** 2)
    residual = shifted @ eta - g
    assert np.linalg.norm(residual) <= 1e-9 * (np.linalg.norm(g) + np.linalg.norm(shifted, 2) * np.linalg.norm(eta))
    assert np.linalg.eigvalsh(shifted).min() >= -1e-9 * np.linalg.norm(shifted, 2)
    best = cubic_model(eta, g, h, d, lam)
    rng = np.random.default_rng(0)
    for _ in range(10):  # no local search from random starts does better
        start = rng.normal(size=g.shape) * (1 + np.abs(eta).max())
        other = minimize(cubic_model, start, args=(g, h, d, lam), method="BFGS", options={"gtol": 1e-12})
        assert best <= other.fun + 1e-9 * max(1.0, abs(best))


def tensors(*arrays):
    return [torch.tensor(a, dtype=torch.float64) for a in arrays]


def random_problem(seed, size=6, definite=True):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(size, size))
    h = a @ a.T + 0.5 * np.eye(size) if definite else (a + a.T) / 2
    return rng.normal(size=size), h, rng.normal(size=size) * rng.uniform(0.1, 3.0, size)


def test_lambda_int_zero_definite_gives_newton():
    g, h, d3 = random_problem(1)
    solution = cubic_step_sizes(*tensors(g, h, d3), 0.0)
    assert solution.ok
    np.testing.assert_allclose(solution.eta.numpy(), np.linalg.solve(h, g), rtol=1e-10)


def test_trivial_partition_gives_cauchy_step():
    solution = cubic_step_sizes(*tensors([3.0], [[4.0]], [1.0]), 0.0)
    assert solution.ok and solution.eta.item() == pytest.approx(0.75)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("definite", [True, False])
def test_stationarity_and_global_minimum(seed, definite):
    g, h, d3 = random_problem(seed, definite=definite)
    for lam in (0.3, 1.0, 3.0):
        check_stationary_and_global(g, h, d3, lam, cubic_step_sizes(*tensors(g, h, d3), lam))


def test_indefinite_without_cubic_term_fails():
    g, h, d3 = random_problem(2, definite=False)
    assert np.linalg.eigvalsh(h).min() < 0
    solution = cubic_step_sizes(*tensors(g, h, d3), 0.0)
    assert not solution.ok and "positive definite" in solution.reason
    solution = cubic_step_sizes(*tensors(g, h, np.zeros_like(d3)), 1.0)  # D3 = 0: no cubic term either
    assert not solution.ok


@pytest.mark.parametrize("definite", [True, False])
def test_zero_entries_in_d_are_floored(definite):
    g, h, d3 = random_problem(3, definite=definite)
    d3[[1, 4]] = 0.0
    solution = cubic_step_sizes(*tensors(g, h, d3), 1.0)
    assert torch.isfinite(solution.eta).all()
    if definite or solution.ok:
        check_stationary_and_global(g, h, d3, 1.0, solution)
    else:  # the floored, indefinite problem is nearly unbounded: a clean refusal is also correct
        assert "ill-conditioned" in solution.reason


def test_hard_case():
    # M = diag(-1, 2) with D = I; gbar has no component on the lambda_min eigenvector: r = r_low = 1.
    g, h, d3 = np.array([0.0, 1.0]), np.diag([-1.0, 2.0]), np.ones(2)
    solution = cubic_step_sizes(*tensors(g, h, d3), 2.0)
    assert solution.ok and solution.reason == "hard case"
    eta = solution.eta.numpy()
    assert eta[1] == pytest.approx(1 / 3) and abs(eta[0]) == pytest.approx(math.sqrt(8 / 9))
    check_stationary_and_global(g, h, d3, 2.0, solution)


def test_near_hard_case_still_converges():
    g, h, d3 = np.array([1e-9, 1.0]), np.diag([-1.0, 2.0]), np.ones(2)
    solution = cubic_step_sizes(*tensors(g, h, d3), 2.0)
    assert solution.ok and torch.isfinite(solution.eta).all()
    assert np.linalg.norm(solution.eta.numpy()) == pytest.approx(1.0, rel=1e-3)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_input_fails_cleanly(bad):
    g, h, d3 = random_problem(4)
    h[0, 1] = bad
    solution = cubic_step_sizes(*tensors(g, h, d3), 1.0)
    assert not solution.ok and "non-finite" in solution.reason and solution.eta.shape == (6,)


def test_zero_gradient():
    _, h, d3 = random_problem(5, definite=True)
    solution = cubic_step_sizes(*tensors(np.zeros(6), h, d3), 1.0)
    assert solution.ok and torch.count_nonzero(solution.eta) == 0
    # indefinite: eta = 0 is a saddle of the model; the minimiser moves along negative curvature (hard case)
    _, h, d3 = random_problem(5, definite=False)
    solution = cubic_step_sizes(*tensors(np.zeros(6), h, d3), 1.0)
    assert solution.reason == "hard case" and solution.eta.norm() > 0
    check_stationary_and_global(np.zeros(6), h, d3, 1.0, solution)


def test_rejects_bad_arguments():
    g, h, d3 = random_problem(6)
    with pytest.raises(ValueError, match="lambda_int"):
        cubic_step_sizes(*tensors(g, h, d3), -1.0)
    with pytest.raises(ValueError, match="shapes"):
        cubic_step_sizes(*tensors(g, h[:3, :3], d3), 1.0)
