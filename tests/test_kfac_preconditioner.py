"""K-FAC's damped preconditioner, KL clipping and update against dense Kronecker formulas (float64), and its
argument checks (docs/methods/kfac.md)."""

import math
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hoopt.optimizers.kfac import KFAC
from hoopt.optimizers.kfac.factors import grad_matrix
from hoopt.optimizers.kfac.inverses import (
    damped_inverse,
    eigen_scale,
    eigendecomposition,
    kl_clip_scale,
    precondition_with_eigen,
    precondition_with_inverses,
)


pytestmark = pytest.mark.usefixtures("float64_default")  # brute-force comparisons in float64 (conftest.py)


def _psd(n, rank, seed):
    generator = torch.Generator().manual_seed(seed)
    factor = torch.randn(n, rank, generator=generator)
    return factor @ factor.T / rank  # rank-deficient when rank < n: damping is what makes it invertible


def _problem():
    return _psd(4, 2, 0), _psd(5, 3, 1), torch.randn(4, 5, generator=torch.Generator().manual_seed(2))


def test_damped_inverse_is_the_inverse():
    factor = _psd(6, 3, 3)
    torch.testing.assert_close(damped_inverse(factor, 0.2) @ (factor + 0.2 * torch.eye(6)), torch.eye(6))


def test_factored_damping_matches_dense_kronecker_formula():
    g_factor, a_factor, grad = _problem()
    damping = 0.03
    shift = math.sqrt(damping)
    dense = torch.kron(torch.linalg.inv(g_factor + shift * torch.eye(4)), torch.linalg.inv(a_factor + shift * torch.eye(5)))
    expected = (dense @ grad.reshape(-1)).reshape(4, 5)
    by_inverse = precondition_with_inverses(grad, damped_inverse(g_factor, shift), damped_inverse(a_factor, shift))
    torch.testing.assert_close(by_inverse, expected)
    (g_values, g_vectors), (a_values, a_vectors) = eigendecomposition(g_factor), eigendecomposition(a_factor)
    scale = eigen_scale(g_values, a_values, damping, "factored")
    torch.testing.assert_close(precondition_with_eigen(grad, g_vectors, a_vectors, scale), expected)


def test_kronecker_damping_is_the_exact_damped_inverse():
    g_factor, a_factor, grad = _problem()
    damping = 0.03
    dense = torch.kron(g_factor, a_factor) + damping * torch.eye(20)
    expected = torch.linalg.solve(dense, grad.reshape(-1)).reshape(4, 5)
    (g_values, g_vectors), (a_values, a_vectors) = eigendecomposition(g_factor), eigendecomposition(a_factor)
    scale = eigen_scale(g_values, a_values, damping, "kronecker")
    torch.testing.assert_close(precondition_with_eigen(grad, g_vectors, a_vectors, scale), expected)


def test_kl_clip_scale():
    assert float(kl_clip_scale(torch.tensor(0.04), 0.01)) == pytest.approx(0.5)
    assert float(kl_clip_scale(torch.tensor(0.001), 0.01)) == 1.0
    assert float(kl_clip_scale(torch.tensor(0.0), 0.01)) == 1.0


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(3, 4)
        self.norm = nn.BatchNorm1d(4)
        self.fc2 = nn.Linear(4, 2, bias=False)

    def forward(self, x):
        return self.fc2(torch.tanh(self.norm(self.fc1(x))))


def _closure(opt, model, x, y):
    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        return loss

    return closure


def _dense_direction(opt, layer, damping):
    state = opt.state[layer.weight]
    n_out, n_in = state["kfac_G"].shape[0], state["kfac_A"].shape[0]
    shift = math.sqrt(damping)
    dense = torch.kron(torch.linalg.inv(state["kfac_G"] + shift * torch.eye(n_out)),
                       torch.linalg.inv(state["kfac_A"] + shift * torch.eye(n_in)))
    return (dense @ grad_matrix(layer).reshape(-1)).reshape(n_out, n_in)


@pytest.mark.parametrize("inverse_method", ["inverse", "eigen"])
@pytest.mark.parametrize("kl_clip", [None, 1e-6])
def test_first_step_is_the_dense_damped_natural_gradient(inverse_method, kl_clip):
    torch.manual_seed(0)
    model = Net()
    x, y = torch.randn(8, 3), torch.randint(0, 2, (8,))
    lr, damping, weight_decay = 0.5, 0.03, 0.01
    opt = KFAC(model, lr=lr, momentum=0.9, damping=damping, weight_decay=weight_decay, kl_clip=kl_clip,
               cov_update_every=1, inv_update_every=1, fisher="empirical", inverse_method=inverse_method)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    opt.step(_closure(opt, model, x, y))  # captures this batch's factors, inverts, then steps
    directions = {layer: _dense_direction(opt, layer, damping) for layer in (model.fc1, model.fc2)}
    if kl_clip is None:
        nu = 1.0
    else:
        total = sum(lr**2 * (v * grad_matrix(layer)).sum() for layer, v in directions.items())
        nu = min(1.0, math.sqrt(kl_clip / float(total)))
        assert nu < 1.0
    fc1 = directions[model.fc1] * nu
    expected = {
        "fc1.weight": fc1[:, :-1], "fc1.bias": fc1[:, -1], "fc2.weight": directions[model.fc2] * nu,
        "norm.weight": model.norm.weight.grad, "norm.bias": model.norm.bias.grad,  # plain-gradient fallback
    }
    for name, p in model.named_parameters():
        step = expected[name] + weight_decay * before[name]
        torch.testing.assert_close(p.detach(), before[name] - lr * step)
    assert opt.diagnostics()["kfac/kl_scale"] == pytest.approx(nu)


def test_momentum_accumulates_preconditioned_directions_between_inversions():
    torch.manual_seed(1)
    model = Net()
    batches = [(torch.randn(8, 3), torch.randint(0, 2, (8,))) for _ in range(2)]
    lr, momentum = 0.1, 0.9
    opt = KFAC(model, lr=lr, momentum=momentum, weight_decay=0.0, kl_clip=None, cov_update_every=1,
               inv_update_every=5, fisher="empirical")
    opt.step(_closure(opt, model, *batches[0]))
    first = _dense_direction(opt, model.fc2, 0.03)  # inverses of step 0; unchanged at step 1
    inverse_step0 = opt.state[model.fc2.weight]["kfac_A_inv"].clone()
    before = model.fc2.weight.detach().clone()
    opt.step(_closure(opt, model, *batches[1]))
    assert torch.equal(opt.state[model.fc2.weight]["kfac_A_inv"], inverse_step0)  # T_inv = 5
    g_inv, a_inv = opt.state[model.fc2.weight]["kfac_G_inv"], inverse_step0
    second = g_inv @ grad_matrix(model.fc2) @ a_inv
    torch.testing.assert_close(model.fc2.weight.detach(), before - lr * (momentum * first + second))


def test_diagnostics_report_damping_step_norm_and_inversion_time():
    torch.manual_seed(2)
    model = Net()
    opt = KFAC(model, lr=0.1, cov_update_every=1, inv_update_every=1)
    before = torch.cat([p.detach().reshape(-1).clone() for p in model.parameters()])
    opt.step(_closure(opt, model, torch.randn(8, 3), torch.randint(0, 2, (8,))))
    after = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    values = opt.diagnostics()
    assert values["kfac/damping"] == 0.03
    assert values["kfac/step_norm"] == pytest.approx(float((after - before).norm()))
    assert values["kfac/inversion_ms"] > 0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(lr=-0.1), "lr must be a positive number, got -0.1"),
        (dict(lr=math.nan), "lr must be a finite number, got nan"),
        (dict(lr="0.01"), "lr must be a number, got '0.01' (type str)"),
        (dict(momentum=1.0), "momentum must be a number in [0, 1), got 1.0"),
        (dict(stat_decay=1.5), "stat_decay must be a number in [0, 1)"),
        (dict(damping=0.0), "damping must be a positive number"),
        (dict(damping=math.inf), "damping must be a finite number, got inf"),
        (dict(kl_clip=-1.0), "kl_clip (or None to disable it) must be a positive number"),
        (dict(weight_decay=-1.0), "weight_decay must be a non-negative number"),
        (dict(cov_update_every=0), "cov_update_every must be a whole number >= 1"),
        (dict(inv_update_every=2.5), "inv_update_every must be a whole number, got 2.5"),
        (dict(inv_update_every="100"), "inv_update_every must be a whole number, got '100' (type str)"),
        (dict(fisher="exact"), "fisher must be one of 'true', 'empirical', got 'exact'"),
        (dict(inverse_method="svd"), "inverse_method must be one of"),
        (dict(damping_style="kronecker"), "damping_style='kronecker' needs inverse_method='eigen'"),
        (dict(seed=1.5), "seed must be a whole number, got 1.5"),
        (dict(classifier="yes"), "classifier must be true or false"),
    ],
)
def test_invalid_arguments_are_rejected_with_a_clear_message(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        KFAC(Net(), **kwargs)


def test_hyperparameters_live_in_the_param_groups():
    opt = KFAC(Net(), lr=0.2, kl_clip=None, cov_update_every=3, inv_update_every=7, inverse_method="eigen",
               damping_style="kronecker", seed=11)
    group = opt.param_groups[0]
    expected = dict(lr=0.2, kl_clip=None, cov_update_every=3, inv_update_every=7, fisher="true",
                    inverse_method="eigen", damping_style="kronecker", seed=11, momentum=0.9, stat_decay=0.95,
                    damping=0.03, weight_decay=0.003)
    assert {key: group[key] for key in expected} == expected
    assert opt.state_dict()["param_groups"][0]["inv_update_every"] == 7
    assert opt.visuals() == {}
    opt.on_epoch_end(1.0)  # nothing per epoch
