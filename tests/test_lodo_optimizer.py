"""The LODO optimizer (Liao et al., Section 3; docs/methods/lodo.md): step, hypergradient through one explicit
step, resume, hyperparameters in param_groups, argument checks, diagnostics."""

import copy
import io
import math

import pytest
import torch
from torch.func import functional_call

from hoopt.optimizers.lodo import (
    LODO,
    apply_block_permutation,
    apply_block_permutation_transpose,
    hessian_approximation_error,
    random_unit_probes,
)
from hoopt.optimizers.lodo.ablations import apply_residual_permutation, apply_residual_permutation_transpose

F64 = torch.float64
KINDS = ["blocks", "residuals", "diagonal", "global"]


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2)).double()


def batch(seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(8, 3, generator=g, dtype=F64), torch.randn(8, 2, generator=g, dtype=F64)


def closure_for(model, opt, data):
    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(data[0]), data[1])
        loss.backward()
        return loss
    return closure


def flat(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def differentiable_q(opt, theta, v):
    """Q(theta) v written with autograd-friendly ops, independently of the optimizer's hand-written gradient."""
    p, n = opt.preconditioner, opt.num_params
    if opt.kind in ("diagonal", "global"):
        return theta[0] * v
    x = v.new_zeros(1, p.m)
    x = torch.cat([v.unsqueeze(0), x[:, n:]], dim=1)
    if opt.kind == "blocks":
        y = apply_block_permutation(theta[0], p.perms, x)
        return apply_block_permutation_transpose(theta[0], p.inverses, y)[0, :n]
    y = apply_residual_permutation(theta[0], p.perms, x) * theta[1]
    return apply_residual_permutation_transpose(theta[0], p.inverses, y)[0, :n]


def make_lodo(model, kind="blocks", **kw):
    options = dict(lr=0.1, meta_lr=1e-3, beta=0.7, preconditioner=kind, depth=3, seed=0)
    options.update(kw)
    return LODO(model.parameters(), **options)


@pytest.mark.parametrize("kind", KINDS)
def test_hypergradient_equals_autograd_through_one_explicit_step(kind):
    model = tiny_model()
    opt = make_lodo(model, kind)
    with torch.no_grad():  # move the preconditioner off its initial value, so the test sees its structure
        for t in opt.preconditioner.parameters():
            t.mul_(1 + 0.2 * torch.randn(t.shape, generator=torch.Generator().manual_seed(7), dtype=F64))
    x0 = flat(model)
    theta0 = [t.detach().clone().requires_grad_() for t in opt.preconditioner.parameters()]
    opt.step(closure_for(model, opt, batch(1)))
    x1, m0 = flat(model), opt._momentum.clone()

    # autograd: x1(theta) = x0 - alpha_0 Q(theta) m0, loss of the next minibatch at x1(theta)
    x1_theta = x0 - 0.1 * differentiable_q(opt, theta0, m0)
    torch.testing.assert_close(x1_theta.detach(), x1, rtol=1e-12, atol=1e-14)
    names, shapes = zip(*[(n, p.shape) for n, p in model.named_parameters()])
    pieces = torch.split(x1_theta, [s.numel() for s in shapes])
    params = {n: piece.view(s) for n, piece, s in zip(names, pieces, shapes)}
    data = batch(2)
    loss = torch.nn.functional.mse_loss(functional_call(model, params, (data[0],)), data[1])
    expected = torch.autograd.grad(loss, theta0)

    opt.step(closure_for(model, opt, data))
    got = [t.grad for t in opt.preconditioner.parameters()]
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-14)


def test_first_step_is_momentum_sgd_with_alpha0():
    model = tiny_model()
    opt = make_lodo(model, lr=0.2, beta=0.6)
    x0 = flat(model)
    opt.step(closure_for(model, opt, batch(1)))
    g0 = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    torch.testing.assert_close(opt._momentum, 0.4 * g0)
    torch.testing.assert_close(flat(model), x0 - 0.2 * 0.4 * g0, rtol=1e-12, atol=1e-14)


def test_meta_sgd_moves_theta_by_meta_lr_times_hypergradient():
    model = tiny_model()
    opt = make_lodo(model, meta_optimizer="sgd", meta_lr=0.05)
    assert isinstance(opt.meta_optimizer, torch.optim.SGD)
    opt.step(closure_for(model, opt, batch(1)))
    before = opt.preconditioner.blocks.clone()
    opt.step(closure_for(model, opt, batch(2)))
    torch.testing.assert_close(opt.preconditioner.blocks, before - 0.05 * opt.preconditioner.blocks.grad)


def test_no_momentum_steps_along_the_current_gradient():
    model = tiny_model()
    opt = make_lodo(model, beta=0.0, meta_lr=0.0)
    for seed in (1, 2):
        x = flat(model)
        opt.step(closure_for(model, opt, batch(seed)))
        g = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
        torch.testing.assert_close(opt._momentum, g)
        torch.testing.assert_close(flat(model), x - 0.1 * g, rtol=1e-12, atol=1e-14)  # Q = I, meta_lr 0


@pytest.mark.parametrize("kind,meta", [("blocks", "adam"), ("blocks", "sgd"), ("residuals", "adam"),
                                       ("diagonal", "adam"), ("global", "adam")])
def test_state_dict_round_trip_resumes_exactly(kind, meta):
    model = tiny_model()
    opt = make_lodo(model, kind, meta_optimizer=meta, meta_lr=1e-2)
    for seed in range(3):
        opt.step(closure_for(model, opt, batch(seed)))
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buffer)
    for seed in range(3, 7):
        opt.step(closure_for(model, opt, batch(seed)))
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=False)

    resumed_model = tiny_model(seed=99)
    resumed_model.load_state_dict(saved["model"])
    resumed = make_lodo(resumed_model, kind, meta_optimizer=meta, meta_lr=1e-2, seed=12345)  # other permutations
    resumed.load_state_dict(saved["opt"])
    for seed in range(3, 7):
        resumed.step(closure_for(resumed_model, resumed, batch(seed)))
    assert torch.equal(flat(resumed_model), flat(model))
    for a, b in zip(resumed.preconditioner.parameters(), opt.preconditioner.parameters()):
        assert torch.equal(a, b)


def test_load_rejects_a_state_of_other_settings():
    model = tiny_model()
    saved = copy.deepcopy(make_lodo(model).state_dict())
    with pytest.raises(ValueError, match="depth=3"):
        make_lodo(tiny_model(), depth=4).load_state_dict(saved)
    with pytest.raises(ValueError, match="not saved by LODO"):
        make_lodo(tiny_model()).load_state_dict(torch.optim.SGD(model.parameters(), lr=0.1).state_dict())


@pytest.mark.parametrize("kwargs,message", [
    (dict(lr=-0.1), "lr must be a positive number, got -0.1"),
    (dict(lr=math.nan), "lr must be a finite number, got nan"),
    (dict(lr="0.1"), r"lr must be a number, got '0.1' \(type str\)"),
    (dict(meta_lr=-1.0), "meta_lr must be a non-negative number"),
    (dict(meta_lr=math.inf), "meta_lr must be a finite number, got inf"),
    (dict(beta=1.0), r"beta must be a number in \[0, 1\), got 1.0"),
    (dict(block_size=0), "block_size must be a whole number >= 1, got 0"),
    (dict(block_size="4"), r"block_size must be a whole number, got '4' \(type str\)"),
    (dict(depth=0), "depth must be a whole number >= 1"),
    (dict(depth=2.0), "depth must be a whole number, got 2.0"),
    (dict(preconditioner="dense"), "preconditioner must be one of 'blocks', "),
    (dict(meta_optimizer="rmsprop"), "meta_optimizer must be one of 'adam', 'sgd', got 'rmsprop'"),
    (dict(meta_betas=(0.9,)), "meta_betas must be two numbers"),
    (dict(meta_eps=0.0), "meta_eps must be a positive number"),
    (dict(hessian_error_every=-1), "hessian_error_every"),
    (dict(seed=True), r"seed must be a whole number, got True \(type bool\)"),
    (dict(check_memory="no"), "check_memory must be true or false"),
])
def test_invalid_arguments_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LODO(tiny_model().parameters(), **kwargs)


def test_one_parameter_group_only_and_frozen_parameters_stay_put():
    model = tiny_model()
    with pytest.raises(ValueError, match="single parameter group"):
        LODO([{"params": model[0].parameters()}, {"params": model[2].parameters()}])
    named = LODO(model.named_parameters(), depth=3)  # named parameters too, as the runner passes them
    assert named.param_groups[0]["param_names"] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    model[0].weight.requires_grad_(False)
    frozen = model[0].weight.clone()
    opt = make_lodo(model)
    assert opt.num_params == sum(p.numel() for p in model.parameters()) - frozen.numel()
    for seed in range(3):
        opt.step(closure_for(model, opt, batch(seed)))
    assert torch.equal(model[0].weight, frozen)


def test_plain_step_without_closure_uses_existing_gradients():
    model = tiny_model()
    twin = copy.deepcopy(model)
    opt, twin_opt = make_lodo(model), make_lodo(twin)
    for seed in range(3):
        data = batch(seed)
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(data[0]), data[1]).backward()
        assert opt.step() is None
        twin_opt.step(closure_for(twin, twin_opt, data))
    assert torch.equal(flat(model), flat(twin))


def test_diagnostics_and_hessian_error_from_the_hessian_given_at_construction():
    n = 6
    h = torch.diag(torch.linspace(0.5, 2.0, n, dtype=F64))
    x = torch.nn.Parameter(torch.zeros(n, dtype=F64))
    opt = LODO([x], lr=0.3, meta_lr=1e-3, beta=0.5, depth=3, hessian_error_every=2, hessian=h)
    assert opt.diagnostics() == {} and opt.visuals() == {}
    opt.on_epoch_end(1.0)  # nothing to do per epoch
    centre = torch.ones(n, dtype=F64)
    for step in range(4):
        before = x.detach().clone()
        opt.zero_grad()
        (0.5 * (x - centre) @ h @ (x - centre)).backward()
        opt.step()
        d = opt.diagnostics()
        assert d["lodo/step_norm"] == pytest.approx(float((x.detach() - before).norm()), rel=1e-12)
        assert ("lodo/meta_grad_norm" in d) == (step > 0)
        assert ("lodo/hessian_error" in d) == (step % 2 == 1)  # every 2 steps, reported once
    probes = random_unit_probes(n, 100, torch.Generator().manual_seed(1))  # the optimizer's: seed + 1
    expected = hessian_approximation_error(opt.preconditioner_matrix(), h, probes)
    assert opt.hessian_error() == pytest.approx(expected, rel=1e-12)
    assert d["lodo/hessian_error"] == pytest.approx(expected, rel=1e-12)


def test_hessian_error_metric():
    h = torch.diag(torch.tensor([1.0, 2.0, 4.0], dtype=F64))
    probes = random_unit_probes(3, 100, torch.Generator().manual_seed(0))
    assert torch.allclose(probes.norm(dim=1), torch.ones(100, dtype=F64))
    assert hessian_approximation_error(torch.linalg.inv(h), h, probes) == pytest.approx(0.0, abs=1e-12)
    assert hessian_approximation_error(torch.zeros(3, 3, dtype=F64), h, probes) == pytest.approx(1.0)
    # 1/2 G: (I - G H) = I / 2, so the error is exactly 1/2 for every unit probe
    assert hessian_approximation_error(0.5 * torch.linalg.inv(h), h, probes) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="hessian=H"):
        make_lodo(tiny_model()).hessian_error()
    with pytest.raises(ValueError, match=r"hessian must be \(6, 6\)"):
        LODO([torch.nn.Parameter(torch.zeros(6, dtype=F64))], depth=3, hessian=torch.eye(5))


# -- hyperparameters in param_groups ---------------------------------------------------------------------
def test_hyperparameters_live_in_the_param_group():
    opt = make_lodo(tiny_model(), block_size=2, hessian_error_every=5)
    group = opt.param_groups[0]
    assert {key: group[key] for key in ("lr", "meta_lr", "beta", "block_size", "depth", "preconditioner",
                                        "meta_optimizer", "seed", "hessian_error_every")} == dict(
        lr=0.1, meta_lr=1e-3, beta=0.7, block_size=2, depth=3, preconditioner="blocks", meta_optimizer="adam",
        seed=0, hessian_error_every=5)
    assert group["meta_betas"] == (0.9, 0.999) and group["meta_eps"] == 1e-7
    assert LODO(tiny_model().parameters(), preconditioner="residuals").param_groups[0]["depth"] == 64  # default N
    assert opt.state_dict()["param_groups"][0]["block_size"] == 2


def test_beta_and_meta_settings_are_read_from_the_group_at_each_step():
    data = [batch(seed) for seed in range(4)]
    changed_model, built_model = tiny_model(), tiny_model()
    changed = make_lodo(changed_model)
    built = make_lodo(built_model, beta=0.3, meta_lr=5e-3, meta_betas=(0.5, 0.9), meta_eps=1e-5)
    changed.param_groups[0].update(beta=0.3, meta_lr=5e-3, meta_betas=(0.5, 0.9), meta_eps=1e-5)
    for d in data:
        changed.step(closure_for(changed_model, changed, d))
        built.step(closure_for(built_model, built, d))
    assert torch.equal(flat(changed_model), flat(built_model))
    assert changed.meta_optimizer.param_groups[0]["betas"] == (0.5, 0.9)


def test_structural_settings_cannot_change_after_construction():
    model = tiny_model()
    opt = make_lodo(model)
    opt.param_groups[0]["block_size"] = 8
    with pytest.raises(ValueError, match="block_size is fixed at construction"):
        opt.step(closure_for(model, opt, batch(0)))
