"""NewtonSummary the optimizer (docs/methods/newton_summary.md): Newton and Cauchy steps on quadratics,
invariance to per-subset affine reparameterisation (Appendix 0.E), training on digits, determinism, exact resume,
hyperparameters in param_groups, the loop's hooks and argument checks."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from hoopt.optimizers.newton_summary import NewtonSummary, ReduceDampingOnPlateau
from hoopt.optimizers.protocol import Bars, Heatmap, TrainingHooks

PLAIN = dict(momentum=0.0, period=1, window=1, warmup=0, lambda_int=0.0, damping=1.0, remove_negative=False)


def quadratic(size=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(size, size, dtype=torch.float64, generator=gen)
    return a @ a.T + torch.eye(size, dtype=torch.float64), torch.randn(size, dtype=torch.float64, generator=gen)


def test_discrete_partition_with_gradient_direction_is_newton():
    h, b = quadratic()
    scalars = [nn.Parameter(torch.tensor(float(v), dtype=torch.float64)) for v in torch.linspace(-1, 1, 5)]
    names = [f"x{i}" for i in range(5)]
    loss_of = lambda x: 0.5 * x @ h @ x - b @ x
    summary_loss = lambda p: loss_of(torch.stack([p[n] for n in names]))
    opt = NewtonSummary(list(zip(names, scalars)), summary_loss=summary_loss, **PLAIN)  # canonical = discrete
    x0 = torch.stack([s.detach() for s in scalars])

    def closure():
        opt.zero_grad()
        loss = loss_of(torch.stack(scalars))
        loss.backward()
        return loss

    opt.step(closure)
    newton = torch.linalg.solve(h, b)  # x0 - H^-1 (H x0 - b)
    assert torch.allclose(torch.stack([s.detach() for s in scalars]), newton, rtol=1e-10, atol=1e-12)
    assert not torch.allclose(x0, newton)


def test_trivial_partition_is_cauchy():
    h, b = quadratic(seed=1)
    x = nn.Parameter(torch.zeros(5, dtype=torch.float64) + 0.3)
    loss_of = lambda v: 0.5 * v @ h @ v - b @ v
    opt = NewtonSummary([("x", x)], summary_loss=lambda p: loss_of(p["x"]), partition="trivial", **PLAIN)
    g = (h @ x - b).detach()
    expected = x.detach() - (g @ g) / (g @ h @ g) * g
    opt.zero_grad()
    loss_of(x).backward()
    opt.step()
    assert torch.allclose(x.detach(), expected, rtol=1e-12)


# -- a small MLP on digits ------------------------------------------------------------------------------
def digits(dtype=torch.float32):
    from sklearn.datasets import load_digits
    data = load_digits()
    x = torch.tensor(data.data / 16.0, dtype=dtype)
    return (x - x.mean(0)) / (x.std(0) + 1e-3), torch.tensor(data.target)


def small_mlp(dtype=torch.float32, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 10)).to(dtype)


class DigitsSampler:
    """A protocol.LossSampler over (x, y); records the sizes it was asked for."""

    def __init__(self, model, x, y):
        self.model, self.x, self.y, self.sizes = model, x, y, []

    def sample(self, batch_size, generator):
        self.sizes.append(batch_size)
        index = torch.randint(0, len(self.x), (batch_size,), generator=generator)
        return self.x[index], self.y[index]

    def loss(self, params, batch):
        return F.cross_entropy(functional_call(self.model, dict(params), (batch[0],)), batch[1])


def train(model, opt, x, y, steps, seed=0, start=0):
    gen = torch.Generator().manual_seed(seed)
    losses = []
    for step in range(start + steps):
        index = torch.randint(0, len(x), (100,), generator=gen)
        if step < start:
            continue

        def closure():
            opt.zero_grad()
            loss = F.cross_entropy(model(x[index]), y[index])
            loss.backward()
            return loss

        losses.append(opt.step(closure).item())
    return losses


def make(seed=0, **kwargs):
    x, y = digits()
    model = small_mlp(seed=seed)
    options = dict(damping=0.3, lambda_int=1.0, seed=7)
    options.update(kwargs)
    opt = NewtonSummary(model.named_parameters(), **options, loss_sampler=DigitsSampler(model, x, y))
    return model, opt, x, y


def test_decreases_the_loss_on_digits_and_logs():
    model, opt, x, y = make()
    losses = train(model, opt, x, y, 150)
    assert losses[:30] == pytest.approx([losses[0]] * 30, rel=0.5)  # warm-up: parameters frozen, noise only
    assert sum(losses[-10:]) / 10 < 0.5 * sum(losses[:10]) / 10
    logs = opt.diagnostics()
    assert set(logs) >= {"lr/0.weight", "lr/2.bias", "newton_summary/lambda_1", "newton_summary/solver_ok",
                         "newton_summary/root_r"}
    assert logs["newton_summary/lambda_1"] == 0.3 and logs["newton_summary/solver_ok"] in (0.0, 1.0)
    assert all(v >= 0 for k, v in logs.items() if k.startswith("lr/"))  # remove_negative
    visuals = opt.visuals()
    assert set(visuals) == {"summary/hbar", "summary/hbar_inv", "summary/gbar", "summary/d3"}
    labels = list(opt.partition.group_names)
    mean = opt.averaged_summary()
    hbar, inverse = visuals["summary/hbar"], visuals["summary/hbar_inv"]
    assert isinstance(hbar, Heatmap) and isinstance(inverse, Heatmap)
    assert hbar.labels == inverse.labels == labels and hbar.matrix.shape == (len(labels), len(labels))
    assert torch.equal(hbar.matrix, mean.hbar)
    torch.testing.assert_close(inverse.matrix, torch.linalg.pinv(mean.hbar))
    for key, values in (("summary/gbar", mean.gbar), ("summary/d3", mean.d3)):
        assert isinstance(visuals[key], Bars) and visuals[key].labels == labels
        assert torch.equal(visuals[key].values, values)


def test_diagonal_mode_draws_diag_hbar_and_a_non_finite_hbar_has_a_nan_inverse():
    model, opt, x, y = make(diagonal=True, warmup=0, period=1)
    train(model, opt, x, y, 2)
    mean = opt.averaged_summary()
    assert torch.equal(opt.visuals()["summary/hbar"].matrix, torch.diag(mean.hbar.diagonal()))
    assert torch.equal(mean.hbar, torch.diag(mean.hbar.diagonal()))  # only diag(Hbar) is computed
    assert (mean.hbar.diagonal() != 0).all()
    opt._ns["window"][-1].hbar[0, 0] = math.inf
    assert torch.isnan(opt.visuals()["summary/hbar_inv"].matrix).all()


def test_no_visuals_before_the_first_refresh_and_a_no_op_without_summaries():
    _, opt, _, _ = make()
    assert opt.visuals() == {}
    assert isinstance(opt, TrainingHooks)


def test_parameters_frozen_during_warmup():
    model, opt, x, y = make()
    before = copy.deepcopy(model.state_dict())
    train(model, opt, x, y, 30)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    train(model, opt, x, y, 1, start=30)
    assert not all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_deterministic_for_a_seed():
    runs = []
    for _ in range(2):
        model, opt, x, y = make()
        train(model, opt, x, y, 45)
        runs.append([p.detach().clone() for p in model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*runs))


def test_state_dict_round_trip_resumes_exactly():
    model, opt, x, y = make()
    train(model, opt, x, y, 47)
    saved_model, saved_opt = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())
    train(model, opt, x, y, 30, start=47)
    model2, opt2, _, _ = make(seed=1)
    model2.load_state_dict(saved_model)
    opt2.load_state_dict(saved_opt)
    train(model2, opt2, x, y, 30, start=47)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), model2.parameters()))
    assert opt.diagnostics() == opt2.diagnostics()


@pytest.mark.parametrize("options", [dict(diagonal=True), dict(direction="adam", damping=0.01),
                                     dict(partition="blocks-1", window=1)])
def test_variants_train(options):
    model, opt, x, y = make(**options, warmup=1)
    losses = train(model, opt, x, y, 50)
    assert math.isfinite(losses[-1]) and sum(losses[-10:]) < sum(losses[:10])


# -- invariance (Appendix E) ----------------------------------------------------------------------------
def test_invariant_to_per_subset_affine_reparameterisation():
    x, y = digits(torch.float64)
    x, y = x[:300], y[:300]
    model = small_mlp(torch.float64, seed=3)
    base = {n: p.detach().clone() for n, p in model.named_parameters()}
    gen = torch.Generator().manual_seed(0)
    scale = {n: float(torch.empty(()).uniform_(0.2, 5.0, generator=gen)) for n in base}
    shift = {n: torch.randn(p.shape, dtype=torch.float64, generator=gen) * 0.1 for n, p in base.items()}

    def run(reparam):
        # theta = a theta' + b; plain run: a = 1, b = 0
        to_theta = (lambda p: {n: scale[n] * p[n] + shift[n] for n in p}) if reparam else (lambda p: dict(p))
        start = {n: (v - shift[n]) / scale[n] for n, v in base.items()} if reparam else base
        primed = {n: nn.Parameter(v.clone()) for n, v in start.items()}
        loss_of = lambda p, xb, yb: F.cross_entropy(functional_call(model, to_theta(p), (xb,)), yb)
        batches = torch.Generator().manual_seed(11)

        def summary_loss(p):
            index = torch.randint(0, len(x), (50,), generator=batches)
            return loss_of(p, x[index], y[index])

        opt = NewtonSummary(list(primed.items()), damping=0.5, lambda_int=1.0, period=2, window=2, warmup=1,
                            summary_loss=summary_loss)
        data = torch.Generator().manual_seed(5)
        path = []
        for _ in range(25):
            index = torch.randint(0, len(x), (50,), generator=data)
            opt.zero_grad()
            loss_of(primed, x[index], y[index]).backward()
            opt.step()
            path.append({n: v.detach().clone() for n, v in to_theta(primed).items()})
        return path

    plain, reparam = run(False), run(True)
    moved = max((plain[-1][n] - base[n]).abs().max().item() for n in base)
    assert moved > 1e-2
    for a, b in zip(plain, reparam):
        for n in base:
            assert torch.allclose(a[n], b[n], rtol=1e-8, atol=1e-10), n


# -- plateau, validation --------------------------------------------------------------------------------
def test_reduce_damping_on_plateau():
    plateau = ReduceDampingOnPlateau(factor=0.5, patience=2, threshold=1e-4)
    damping = 1.0
    for loss in (1.0, 0.9, 0.89999, 0.9, 0.95):  # 0.89999 is within the relative threshold: no improvement
        damping = plateau.update(loss, damping)
    assert damping == 0.5 and plateau.best == math.inf  # reduced after 3 bad epochs, best reset
    assert plateau.update(2.0, damping) == 0.5 and plateau.best == 2.0
    model, opt, _, _ = make()
    for loss in (1.0, 1.0, 1.0, 1.0):
        opt.on_epoch_end(loss)
    assert opt.param_groups[0]["damping"] == pytest.approx(0.15)
    # the plateau settings are read from the group at each epoch: a patience of 0 reduces at once
    opt.param_groups[0].update(plateau_patience=0, plateau_factor=0.1)
    for loss in (1.0, 1.0):
        opt.on_epoch_end(loss)
    assert opt.param_groups[0]["damping"] == pytest.approx(0.015)


# -- hyperparameters in param_groups ---------------------------------------------------------------------
def test_every_hyperparameter_is_in_the_param_group_and_saved():
    _, opt, _, _ = make(period=7, partition="blocks-1")
    group = opt.param_groups[0]
    assert {"damping", "lambda_int", "momentum", "direction", "period", "summary_batch_size", "window", "warmup",
            "remove_negative", "partition", "diagonal", "plateau_factor", "plateau_patience", "plateau_threshold",
            "adam_betas", "adam_eps", "seed"} <= set(group)
    assert (group["period"], group["partition"], group["seed"]) == (7, "blocks-1", 7)
    assert group["param_names"] == [n for n, _ in small_mlp().named_parameters()]
    assert opt.state_dict()["param_groups"][0]["period"] == 7


def test_changing_period_in_param_groups_changes_the_schedule():
    def refreshes(set_period_to=None, **options):
        model, opt, x, y = make(warmup=0, summary_batch_size=20, lambda_int=0.0, **options)
        if set_period_to is not None:
            opt.param_groups[0]["period"] = set_period_to
        train(model, opt, x, y, 9)
        return opt._ns["refreshes"], [p.detach().clone() for p in model.parameters()]

    (count10, _), (count4, changed), (_, built4) = refreshes(), refreshes(set_period_to=4), refreshes(period=4)
    assert (count10, count4) == (1, 3)  # step 0, or steps 0, 4 and 8
    assert all(torch.equal(a, b) for a, b in zip(changed, built4))  # as if it had been built with period=4


def test_summary_batch_size_is_read_from_the_group_at_each_refresh():
    model, opt, x, y = make(warmup=0, period=1, summary_batch_size=30)
    train(model, opt, x, y, 1)
    opt.param_groups[0]["summary_batch_size"] = 40
    train(model, opt, x, y, 1, start=1)
    assert opt._loss_sampler.sizes == [30, 40]


def test_the_partition_cannot_change_after_construction():
    model, opt, x, y = make()
    opt.param_groups[0]["partition"] = "trivial"
    with pytest.raises(ValueError, match="partition is fixed at construction"):
        train(model, opt, x, y, 1)
    saved = opt.state_dict()
    with pytest.raises(ValueError, match="partition='trivial'"):
        make()[1].load_state_dict(saved)


# -- construction: names, dependencies, argument checks ---------------------------------------------------
def quiet_loss(params):
    return sum((p ** 2).sum() for p in params.values())


def test_refuses_unnamed_parameters_and_several_groups():
    model = small_mlp()
    with pytest.raises(ValueError, match=r"pass model.named_parameters\(\)"):
        NewtonSummary(model.parameters(), summary_loss=quiet_loss)
    named = list(model.named_parameters())
    with pytest.raises(ValueError, match="one parameter group"):
        NewtonSummary([{"params": named[:2]}, {"params": named[2:]}], summary_loss=quiet_loss)
    one_group = NewtonSummary([{"params": named, "period": 3}], summary_loss=quiet_loss)  # a group may set values
    assert one_group.param_groups[0]["period"] == 3


def test_needs_exactly_one_way_to_evaluate_the_summaries():
    model = small_mlp()
    x, y = torch.randn(10, 64), torch.randint(0, 10, (10,))
    with pytest.raises(ValueError, match="exactly one"):
        NewtonSummary(model.named_parameters())
    with pytest.raises(ValueError, match="exactly one"):
        NewtonSummary(model.named_parameters(), summary_loss=quiet_loss, loss_sampler=DigitsSampler(model, x, y))
    with pytest.raises(ValueError, match="loss_sampler must have"):
        NewtonSummary(model.named_parameters(), loss_sampler=object())


def test_the_summary_generator_exists_at_construction_on_the_parameters_device():
    _, opt, _, _ = make()
    assert opt._generator.device == torch.device("cpu")
    assert "generator" in opt.state_dict()["newton_summary"]


@pytest.mark.parametrize("kwargs,message", [
    (dict(damping=-0.1), "damping"), (dict(lambda_int=-1.0), "lambda_int"), (dict(momentum=1.0), "momentum"),
    (dict(period=0), "period"), (dict(window=0), "window"), (dict(warmup=-1), "warmup"),
    (dict(direction="newton"), "direction"), (dict(partition="nope"), "partition"),
    (dict(plateau_factor=2.0), "plateau_factor"),
    (dict(damping=math.nan), r"damping \(lambda_1\) must be a finite number, got nan"),
    (dict(lambda_int=math.inf), "lambda_int must be a finite number, got inf"),
    (dict(period="10"), r"period must be a whole number, got '10' \(type str\)"),
    (dict(damping="0.3"), r"damping \(lambda_1\) must be a number, got '0.3' \(type str\)"),
    (dict(period=2.5), "period must be a whole number, got 2.5"),
    (dict(period=True), r"period must be a whole number, got True \(type bool\)"),
    (dict(remove_negative="false"), "remove_negative must be true or false"),
    (dict(adam_betas=(0.9,)), "adam_betas must be two numbers"),
    (dict(adam_betas=(0.9, math.nan)), r"adam_betas\[1\] must be a finite number"),
    (dict(partition=3), "partition must be a partition name"),
])
def test_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        NewtonSummary(small_mlp().named_parameters(), summary_loss=quiet_loss, **kwargs)
