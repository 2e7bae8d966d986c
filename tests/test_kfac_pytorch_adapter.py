"""optimizer=kfac_pytorch: the adapter to kfac-pytorch's KFACPreconditioner, and its message when absent."""

import sys
import types

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hoopt.optimizers.kfac import INSTALL_HINT, KFACPytorchAdapter, KFACPytorchUnavailableError

try:
    from kfac.preconditioner import KFACPreconditioner  # noqa: F401

    HAS_KFAC_PYTORCH = True
except ImportError:
    HAS_KFAC_PYTORCH = False


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))


@pytest.mark.skipif(not HAS_KFAC_PYTORCH, reason="kfac-pytorch is not installed (it is not on the package registry)")
def test_adapter_trains_with_the_real_package():
    model = _model()
    opt = KFACPytorchAdapter(model, lr=0.1, factor_update_steps=1, inv_update_steps=2)
    x, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
    losses = []
    for _ in range(15):
        def closure():
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            return loss
        losses.append(opt.step(closure).item())
    assert all(map(torch.isfinite, torch.tensor(losses))) and losses[-1] < losses[0]
    opt.load_state_dict(opt.state_dict())


def test_missing_package_raises_one_sentence_saying_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "kfac", None)  # makes `import kfac...` fail as if it were absent
    monkeypatch.setitem(sys.modules, "kfac.preconditioner", None)
    with pytest.raises(KFACPytorchUnavailableError) as error:
        KFACPytorchAdapter(_model(), lr=0.1)
    assert isinstance(error.value, ImportError)
    assert str(error.value) == INSTALL_HINT
    assert "pip install git+https://github.com/gpauloski/kfac-pytorch" in INSTALL_HINT
    assert INSTALL_HINT.count(". ") == 0 and INSTALL_HINT.endswith(".")


class FakePreconditioner:
    """Stands in for kfac.preconditioner.KFACPreconditioner: halves the gradients, records its calls."""

    def __init__(self, model, *, lr, **options):
        self.model, self.lr, self.options, self.steps = model, lr, options, 0

    def step(self):
        for p in self.model.parameters():
            p.grad.mul_(0.5)
        self.steps += 1

    def state_dict(self):
        return {"steps": self.steps}

    def load_state_dict(self, state):
        self.steps = state["steps"]


def _fake_package(monkeypatch):
    """Makes `from kfac.preconditioner import KFACPreconditioner` find FakePreconditioner."""
    module = types.ModuleType("kfac.preconditioner")
    module.KFACPreconditioner = FakePreconditioner
    monkeypatch.setitem(sys.modules, "kfac", types.ModuleType("kfac"))
    monkeypatch.setitem(sys.modules, "kfac.preconditioner", module)


def test_adapter_preconditions_before_the_sgd_step(monkeypatch):
    _fake_package(monkeypatch)
    model = _model()
    opt = KFACPytorchAdapter(model.named_parameters(), lr=0.1, momentum=0.0, weight_decay=0.0, damping=0.01,
                             kl_clip=0.002, model=model)
    options = dict(opt.preconditioner.options)
    assert options.pop("compute_method") == "eigen"  # chosen once: it picks kfac-pytorch's layer type
    # the others are read from param_groups[0] at every kfac-pytorch step, so schedulers apply to them
    assert {key: read(0) for key, read in options.items()} == dict(damping=0.01, factor_decay=0.95, kl_clip=0.002,
                                                                   factor_update_steps=10, inv_update_steps=100)
    assert opt.preconditioner.lr(0) == 0.1
    opt.param_groups[0].update(damping=0.02, lr=0.2)
    assert (options["damping"](5), opt.preconditioner.lr(5)) == (0.02, 0.2)
    opt.param_groups[0].update(damping=0.01, lr=0.1)
    x, y = torch.randn(5, 4), torch.randint(0, 3, (5,))
    before = [p.detach().clone() for p in model.parameters()]

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        return loss

    opt.step(closure)
    grads = [p.grad for p in model.parameters()]  # already halved by the preconditioner
    for p, b, g in zip(model.parameters(), before, grads):
        torch.testing.assert_close(p.detach(), b - 0.1 * g)
    state = opt.state_dict()
    assert state["kfac_pytorch"] == {"steps": 1}
    assert state["param_groups"][0]["damping"] == 0.01
    fresh = KFACPytorchAdapter(model, lr=0.1)
    fresh.load_state_dict(state)
    assert fresh.preconditioner.steps == 1
    assert fresh.param_groups[0]["kl_clip"] == 0.002  # the checkpoint's values, like SGD's own
    assert fresh.diagnostics() == {"kfac/damping": 0.01} and fresh.visuals() == {}


def test_adapter_needs_the_model_at_construction(monkeypatch):
    _fake_package(monkeypatch)
    with pytest.raises(ValueError, match="needs the model"):
        KFACPytorchAdapter(_model().named_parameters(), lr=0.1)


@pytest.mark.parametrize("kwargs,message", [
    (dict(damping=0.0), "damping must be a positive number"),
    (dict(factor_decay=1.5), r"factor_decay must be a number in \(0, 1\]"),
    (dict(kl_clip=float("nan")), "kl_clip must be a finite number"),
    (dict(factor_update_steps=0), "factor_update_steps must be a whole number >= 1"),
    (dict(inv_update_steps="100"), r"inv_update_steps must be a whole number, got '100' \(type str\)"),
    (dict(compute_method="svd"), "compute_method must be one of 'eigen', 'inverse'"),
    (dict(lr=-1.0), "lr must be a positive number"),
])
def test_adapter_rejects_bad_arguments(monkeypatch, kwargs, message):
    _fake_package(monkeypatch)
    with pytest.raises(ValueError, match=message):
        KFACPytorchAdapter(_model(), **kwargs)


def test_compute_method_cannot_change_after_construction(monkeypatch):
    _fake_package(monkeypatch)
    opt = KFACPytorchAdapter(_model(), lr=0.1)
    opt.param_groups[0]["compute_method"] = "inverse"
    with pytest.raises(ValueError, match="compute_method is fixed at construction"):
        opt.step()
