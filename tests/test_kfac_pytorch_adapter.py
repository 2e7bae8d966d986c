"""optimizer=kfac_pytorch: the adapter to kfac-pytorch's KFACPreconditioner, and its message when absent. Tests
marked with the real package run where kfac-pytorch is installed (from its repository; not in CI); the others
use a stand-in with the package's interface."""

import io
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


class FakeLayer:
    """Stands in for a kfac-pytorch eigen layer: the attributes it keeps between inversions."""

    def __init__(self):
        self.qa = self.qg = self.dgda = None
        self.da = self.dg = None


class FakePreconditioner:
    """Stands in for kfac.preconditioner.KFACPreconditioner: halves the gradients, records its calls; its
    "inverses" (one fake layer per Linear) change at every step, as real ones do at every inversion."""

    def __init__(self, model, *, lr, **options):
        self.model, self.lr, self.options, self.steps = model, lr, options, 0
        self.loaded_with = None
        linear = [m for m in model.modules() if isinstance(m, nn.Linear)]
        self._layers = {m: (f"layer{i}", FakeLayer()) for i, m in enumerate(linear)}

    def step(self):
        for p in self.model.parameters():
            p.grad.mul_(0.5)
        self.steps += 1
        for _, layer in self._layers.values():
            layer.qa, layer.qg, layer.dgda = torch.full((2,), float(self.steps)), torch.eye(2), torch.ones(2, 2)

    def state_dict(self):
        return {"steps": self.steps}

    def load_state_dict(self, state, compute_inverses=True):
        self.steps = state["steps"]
        self.loaded_with = dict(compute_inverses=compute_inverses)


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
    (dict(kl_clip=float("nan")), r"kl_clip \(or None to disable it\) must be a finite number"),
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


def test_kl_clip_none_disables_clipping(monkeypatch):
    """kfac-pytorch takes None for "no KL clipping" (as hoopt's kfac does); the adapter hands it on, through the
    callable the package reads at every step (its constructor refuses a plain None with a TypeError)."""
    _fake_package(monkeypatch)
    opt = KFACPytorchAdapter(_model(), lr=0.1, kl_clip=None)
    assert opt.param_groups[0]["kl_clip"] is None and opt.preconditioner.options["kl_clip"](0) is None


def test_resume_restores_the_saved_inverses_instead_of_recomputing_them(monkeypatch):
    _fake_package(monkeypatch)
    model = _model()
    opt = KFACPytorchAdapter(model, lr=0.1)
    x, y = torch.randn(5, 4), torch.randint(0, 3, (5,))
    for _ in range(3):
        opt.step(lambda: (opt.zero_grad(), F.cross_entropy(model(x), y).backward())[0])
    state = opt.state_dict()
    assert set(state["kfac_pytorch_inverses"]) == {"layer0", "layer1"}
    assert set(state["kfac_pytorch_inverses"]["layer0"]) == {"qa", "qg", "dgda"}  # None entries are not saved
    fresh = KFACPytorchAdapter(_model(), lr=0.1)
    fresh.load_state_dict(state)
    assert fresh.preconditioner.loaded_with == dict(compute_inverses=False)
    for name, layer in fresh._package_layers().items():
        assert torch.equal(layer.qa, torch.full((2,), 3.0)) and layer.da is None, name
    older = dict(state)
    del older["kfac_pytorch_inverses"]  # a checkpoint from before: the package recomputes, as it used to
    fresh.load_state_dict(older)
    assert fresh.preconditioner.loaded_with == dict(compute_inverses=True)


def test_no_capture_hides_forwards_from_the_package_hooks(monkeypatch):
    """kfac-pytorch's hooks look only at module.training: inside no_capture() the hooked layers are in evaluation
    mode (their computation does not depend on it); BatchNorm keeps training mode, and everything is restored."""
    _fake_package(monkeypatch)
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Tanh(), nn.Linear(6, 3))
    opt = KFACPytorchAdapter(model, lr=0.1)
    with opt.no_capture():
        assert [m.training for m in model] == [False, True, True, False]
    assert all(m.training for m in model.modules())
    model.eval()
    with opt.no_capture():
        pass
    assert not any(m.training for m in model.modules())  # a module already in eval mode stays so


# -- with the real package ------------------------------------------------------------------------------
def _train(model, opt, batches):
    for x, y in batches:
        def closure(x=x, y=y):
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            return loss
        opt.step(closure)


@pytest.mark.skipif(not HAS_KFAC_PYTORCH, reason="kfac-pytorch is not installed (it is not on the package registry)")
@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("compute_method", ["eigen", "inverse"])
def test_resume_with_the_real_package_is_exact(compute_method):
    """Saved between two inversions (factors updated every step, inverses every 4): the resumed run must precondition
    with the inverses of the last inversion, not new ones from the factors of the resume step."""
    generator = torch.Generator().manual_seed(1)
    batches = [(torch.randn(16, 4, generator=generator), torch.randint(0, 3, (16,), generator=generator))
               for _ in range(12)]
    options = dict(lr=0.1, factor_update_steps=1, inv_update_steps=4, compute_method=compute_method)
    straight = _model()
    _train(straight, KFACPytorchAdapter(straight, **options), batches)
    first = _model()
    opt = KFACPytorchAdapter(first, **options)
    _train(first, opt, batches[:6])
    saved = io.BytesIO()
    torch.save({"model": first.state_dict(), "optimizer": opt.state_dict()}, saved)
    saved.seek(0)
    checkpoint = torch.load(saved, weights_only=False)
    resumed = _model()
    resumed.load_state_dict(checkpoint["model"])
    opt = KFACPytorchAdapter(resumed, **options)
    opt.load_state_dict(checkpoint["optimizer"])
    _train(resumed, opt, batches[6:])
    for a, b in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(a, b)


@pytest.mark.skipif(not HAS_KFAC_PYTORCH, reason="kfac-pytorch is not installed (it is not on the package registry)")
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_convention_map_between_hoopt_and_kfac_pytorch(float64_default):
    """docs/methods/kfac.md, "hoopt's kfac and kfac-pytorch": on the same batch (N examples, a convolution with T
    output positions), with the empirical Fisher, kfac-pytorch's factors are hoopt's scaled down: A by T^2 and G by
    N^2 T^3 (its G comes from the batch-mean loss's output gradients, and it divides inputs and output gradients of
    a convolution by T); its running factors start at the identity."""
    from kfac.preconditioner import KFACPreconditioner

    from hoopt.optimizers.kfac import KFAC

    def net():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(2, 3, 3), nn.Tanh(), nn.Flatten(), nn.Linear(3 * 4 * 4, 4))

    n, positions, decay = 7, 16, 0.5
    x, y = torch.randn(n, 2, 6, 6), torch.randint(0, 4, (n,))
    theirs, ours = net(), net()
    package = KFACPreconditioner(theirs, factor_update_steps=1, inv_update_steps=1, factor_decay=decay,
                                 kl_clip=lambda _: None, factor_dtype=torch.float64, inv_dtype=torch.float64)
    F.cross_entropy(theirs(x), y).backward()
    package.step()
    opt = KFAC(ours, fisher="empirical", cov_update_every=1, kl_clip=None)
    opt.step(lambda: (opt.zero_grad(), F.cross_entropy(ours(x), y).backward()))
    scales = {nn.Conv2d: (positions ** 2, n ** 2 * positions ** 3), nn.Linear: (1, n ** 2)}
    hooked = [m for m in ours.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    for (module, (_, layer)), mine in zip(package._layers.items(), hooked):
        a_scale, g_scale = scales[type(module)]
        eye_a, eye_g = torch.eye(layer.a_factor.shape[0]), torch.eye(layer.g_factor.shape[0])
        batch_a = (layer.a_factor - decay * eye_a) / (1 - decay)  # started at the identity
        batch_g = (layer.g_factor - decay * eye_g) / (1 - decay)
        state = opt.state[mine.weight]
        for ours_factor, theirs_factor in ((state["kfac_A"], a_scale * batch_a), (state["kfac_G"], g_scale * batch_g)):
            # (subtracting the identity part costs digits on small entries: compare with the factor's scale)
            assert (ours_factor - theirs_factor).abs().max() <= 1e-9 * theirs_factor.abs().max()
