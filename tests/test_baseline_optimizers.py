"""Adam, SGD, RMSprop, Yogi and LARS as the configs build them (named parameters, no dependencies): Yogi and LARS
(from pytorch-optimizer) against their update formulas in float64, and every baseline converging on a small convex
problem. Also the contract of optimizers/protocol.py that hoopt's own optimizers follow."""

import inspect
import os

import pytest
import torch
from hydra import compose, initialize_config_dir

from hoopt.optimizers.kfac import KFAC, KFACPytorchAdapter
from hoopt.optimizers.lodo import LODO
from hoopt.optimizers.newton_summary import NewtonSummary
from hoopt.optimizers.protocol import RUN_DEPENDENCIES, TrainingHooks
from hoopt.runner.training.build import build_optimizer

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


def composed(*overrides):
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


class Linear(torch.nn.Module):
    def __init__(self, w):
        super().__init__()
        self.w = torch.nn.Parameter(w.clone())


def regression(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 5, generator=g, dtype=torch.float64)
    target = torch.randn(5, 3, generator=g, dtype=torch.float64)
    y = x @ target
    return x, y, target


def test_yogi_matches_its_update_formula():
    cfg = composed("optimizer=yogi", "optimizer.lr=0.05", "model=mlp")
    x, y, _ = regression()
    model = Linear(torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1)))
    opt = build_optimizer(cfg, model, {})
    (b1, b2), eps, lr = (0.9, 0.999), 1e-3, 0.05
    w = model.w.detach().clone()
    m = torch.full_like(w, 1e-6)
    v = torch.full_like(w, 1e-6)
    for t in range(1, 6):
        def closure():
            opt.zero_grad()
            loss = ((x @ model.w - y) ** 2).mean()
            loss.backward()
            return loss
        w_before = model.w.detach().clone()
        opt.step(closure)
        grad = torch.autograd.functional.jacobian(lambda w_: ((x @ w_ - y) ** 2).mean(), w_before)
        # Yogi (Zaheer et al. 2018): additive second-moment update driven by sign(v - g^2).
        m = b1 * m + (1 - b1) * grad
        v = v - (1 - b2) * torch.sign(v - grad**2) * grad**2
        w = w - lr / (1 - b1**t) * m / (v.sqrt() / (1 - b2**t) ** 0.5 + eps)
        assert torch.allclose(model.w.detach(), w, rtol=1e-10, atol=1e-12)


def test_lars_matches_its_update_formula():
    cfg = composed("optimizer=lars", "optimizer.lr=0.5", "optimizer.momentum=0.9", "model=mlp")
    x, y, _ = regression()
    model = Linear(torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2)))
    opt = build_optimizer(cfg, model, {})
    w, buf, eta, lr, mu = model.w.detach().clone(), None, 1e-3, 0.5, 0.9
    for _ in range(5):
        grad = torch.autograd.functional.jacobian(lambda w_: ((x @ w_ - y) ** 2).mean(), w)

        def closure():
            opt.zero_grad()
            loss = ((x @ model.w - y) ** 2).mean()
            loss.backward()
            return loss
        opt.step(closure)
        # LARS (You et al. 2017): layer-wise trust ratio eta ||w|| / ||g||, then heavy-ball momentum.
        scaled = eta * w.norm() / grad.norm() * grad
        buf = scaled if buf is None else mu * buf + scaled
        w = w - lr * buf
        assert torch.allclose(model.w.detach(), w, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("overrides,reduction,tolerance", [
    (["optimizer=adam", "optimizer.lr=0.05"], 1e-3, 0.05),
    (["optimizer=sgd", "optimizer.lr=0.05", "optimizer.momentum=0.9"], 1e-3, 0.05),
    (["optimizer=sgd", "optimizer.lr=0.05", "optimizer.momentum=0.9", "optimizer.nesterov=true"], 1e-3, 0.05),
    (["optimizer=rmsprop", "optimizer.lr=0.01", "optimizer.alpha=0.99"], 1e-3, 0.05),
    (["optimizer=yogi", "optimizer.lr=0.05"], 1e-3, 0.05),
    # LARS's steps have norm ~ lr * trust * ||w||: at a constant lr it settles in a neighbourhood of the
    # optimum whose size scales with lr, so it gets a looser (still far from trivial) target.
    (["optimizer=lars", "optimizer.lr=1.0", "optimizer.trust_coefficient=0.005"], 1e-2, 0.1),
])
def test_baselines_converge_on_least_squares(overrides, reduction, tolerance):
    cfg = composed("model=mlp", *overrides)
    x, y, target = regression()
    model = Linear(torch.zeros(5, 3, dtype=torch.float64) + 0.1)
    opt = build_optimizer(cfg, model, {})
    first = None
    for _ in range(1500):
        def closure():
            opt.zero_grad()
            loss = ((x @ model.w - y) ** 2).mean()
            loss.backward()
            return loss
        loss = opt.step(closure).item()
        first = first if first is not None else loss
    assert loss < reduction * first
    assert torch.allclose(model.w.detach(), target, atol=tolerance)


def test_paper_values_follow_the_model():
    """The LODO paper's tuned baselines come with the task (its Appendix E, Table 6; Rosenbrock: Appendix G)."""
    cfg = composed("model=noisy_quadratic", "optimizer=adam")
    assert cfg.optimizer.lr == 1.164 and list(cfg.optimizer.betas) == [0.465, 0.9884]
    cfg = composed("model=rosenbrock", "optimizer=yogi")
    assert cfg.optimizer.lr == 0.2991 and cfg.optimizer.eps == 0.001
    cfg = composed("model=noisy_quadratic", "optimizer=adam", "optimizer.lr=0.1")
    assert cfg.optimizer.lr == 0.1  # the user's override wins


# -- the optimizer contract (optimizers/protocol.py) ------------------------------------------------------
def test_a_class_that_misspells_a_hook_cannot_be_instantiated():
    class Misspelled(torch.optim.SGD, TrainingHooks):
        def diagnostic(self):  # not diagnostics: the loop would never call it
            return {"x": 1.0}

        def visuals(self):
            return {}

        def on_epoch_end(self, train_loss):
            pass

    params = [torch.nn.Parameter(torch.zeros(2))]
    with pytest.raises(TypeError, match="abstract method.*diagnostics"):
        Misspelled(params, lr=0.1)

    class Complete(Misspelled):
        def diagnostics(self):
            return {}

    assert Complete(params, lr=0.1).diagnostics() == {}


@pytest.mark.parametrize("cls", [NewtonSummary, LODO, KFAC, KFACPytorchAdapter])
def test_hoopts_optimizers_follow_the_contract(cls):
    assert issubclass(cls, torch.optim.Optimizer) and issubclass(cls, TrainingHooks)
    keyword_only = [name for name, p in inspect.signature(cls).parameters.items() if p.kind is p.KEYWORD_ONLY]
    # the dependencies a constructor names are run pieces the runner can give, plus NewtonSummary's plain-PyTorch
    # alternative to its loss sampler
    assert set(keyword_only) - {"summary_loss"} <= set(RUN_DEPENDENCIES)
    assert keyword_only  # each of them needs something from the run
