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
        KFACPytorchAdapter(_model().parameters(), lr=0.1)
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


def test_adapter_preconditions_before_the_sgd_step(monkeypatch):
    package, module = types.ModuleType("kfac"), types.ModuleType("kfac.preconditioner")
    module.KFACPreconditioner = FakePreconditioner
    package.preconditioner = module
    monkeypatch.setitem(sys.modules, "kfac", package)
    monkeypatch.setitem(sys.modules, "kfac.preconditioner", module)
    model = _model()
    opt = KFACPytorchAdapter(model, lr=0.1, momentum=0.0, weight_decay=0.0, damping=0.01, kl_clip=0.002)
    assert opt.preconditioner.options == dict(damping=0.01, factor_decay=0.95, kl_clip=0.002, factor_update_steps=10,
                                              inv_update_steps=100, compute_method="eigen")
    assert opt.preconditioner.lr(0) == 0.1
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
    fresh = KFACPytorchAdapter(list(model.parameters()), lr=0.1)
    fresh.load_state_dict(state)  # before the model is known: applied at registration
    fresh.register_model(model)
    assert fresh.preconditioner.steps == 1


def test_adapter_without_a_model_says_how_to_register_one(monkeypatch):
    module = types.ModuleType("kfac.preconditioner")
    module.KFACPreconditioner = FakePreconditioner
    monkeypatch.setitem(sys.modules, "kfac", types.ModuleType("kfac"))
    monkeypatch.setitem(sys.modules, "kfac.preconditioner", module)
    opt = KFACPytorchAdapter(_model().parameters(), lr=0.1)
    with pytest.raises(RuntimeError, match="register_model"):
        opt.step()
