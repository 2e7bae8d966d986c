"""Adam, SGD, RMSprop, Yogi and LARS as the configs build them (named parameters, no dependencies): hoopt's Yogi,
RMSprop and LARS (optimizers/baselines/, the LODO authors' forms) and pytorch-optimizer's bias-corrected Yogi
against their update formulas in float64, the LODO paper's tuned values per task, and every baseline converging on
a small convex problem. Also the contract of optimizers/protocol.py that hoopt's own optimizers follow."""

import inspect
import os

import pytest
import torch
from conftest import read_metrics, train
from hydra import compose, initialize_config_dir

from hoopt.optimizers.baselines import LARS, RMSprop, Yogi
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


def least_squares_closure(opt, model, x, y):
    def closure():
        opt.zero_grad()
        loss = ((x @ model.w - y) ** 2).mean()
        loss.backward()
        return loss
    return closure


def least_squares_gradient(x, y, w):
    return torch.autograd.functional.jacobian(lambda w_: ((x @ w_ - y) ** 2).mean(), w)


def test_yogi_is_the_lodo_authors_form_without_bias_correction():
    """optimizer=yogi: m_0 = v_0 = 0, no bias correction, eps 1e-3 (Zaheer et al. 2018, Algorithm 2), the form
    whose values the LODO paper tuned."""
    cfg = composed("optimizer=yogi", "optimizer.lr=0.05", "model=mlp")
    x, y, _ = regression()
    model = Linear(torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1)))
    opt = build_optimizer(cfg, model, {})
    (b1, b2), eps, lr = (0.9, 0.999), 1e-3, 0.05
    w = model.w.detach().clone()
    m, v = torch.zeros_like(w), torch.zeros_like(w)
    for t in range(1, 6):
        grad = least_squares_gradient(x, y, w)
        opt.step(least_squares_closure(opt, model, x, y))
        m = b1 * m + (1 - b1) * grad
        v = v - (1 - b2) * torch.sign(v - grad**2) * grad**2
        if t == 1:
            assert torch.allclose(v, (1 - b2) * grad**2, rtol=1e-15, atol=0)  # from v_0 = 0
        w = w - lr * m / (v.sqrt() + eps)
        assert torch.allclose(model.w.detach(), w, rtol=1e-10, atol=1e-12)


def test_the_bias_corrected_yogi_keeps_its_own_name():
    cfg = composed("optimizer=yogi_bias_corrected", "optimizer.lr=0.05", "model=mlp")
    x, y, _ = regression()
    model = Linear(torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1)))
    opt = build_optimizer(cfg, model, {})
    (b1, b2), eps, lr = (0.9, 0.999), 1e-3, 0.05
    w = model.w.detach().clone()
    m = torch.full_like(w, 1e-6)
    v = torch.full_like(w, 1e-6)
    for t in range(1, 6):
        grad = least_squares_gradient(x, y, w)
        opt.step(least_squares_closure(opt, model, x, y))
        # pytorch-optimizer's Yogi: both moments start at 1e-6, then Adam's bias correction.
        m = b1 * m + (1 - b1) * grad
        v = v - (1 - b2) * torch.sign(v - grad**2) * grad**2
        w = w - lr / (1 - b1**t) * m / (v.sqrt() / (1 - b2**t) ** 0.5 + eps)
        assert torch.allclose(model.w.detach(), w, rtol=1e-10, atol=1e-12)


def test_yogi_reproduces_the_lodo_papers_rosenbrock_value(tmp_path):
    """Table 8 of the LODO paper: Yogi's mean loss over steps 180-200 is 7.916e-4 (pytorch-optimizer's
    bias-corrected Yogi at the same values: 3.0e-3)."""
    train(["model=rosenbrock", "optimizer=yogi", "logger.log_every=1"], tmp_path / "run")
    losses = {e["step"]: e["train/loss"] for e in read_metrics(tmp_path / "run") if "train/loss" in e}
    late = sum(losses[step] for step in range(180, 201)) / 21
    assert late == pytest.approx(7.916e-4, rel=0.1)


def test_rmsprop_puts_epsilon_inside_the_square_root():
    """The authors' (Keras') RMSprop: v = rho v + (1 - rho) g^2, b = momentum b + lr g / sqrt(v + eps), x -= b.
    Gradients of 1e-4 make the placement visible: sqrt(v + 1e-7) is three times sqrt(v) + 1e-7 here."""
    cfg = composed("optimizer=rmsprop", "optimizer.lr=0.01", "optimizer.alpha=0.5", "optimizer.momentum=0.9",
                   "model=mlp")
    x, y, _ = regression()
    x, y = x * 1e-2, y * 1e-2
    model = Linear(torch.zeros(5, 3, dtype=torch.float64))
    opt = build_optimizer(cfg, model, {})
    rho, mu, lr, eps = 0.5, 0.9, 0.01, 1e-7
    w = model.w.detach().clone()
    v, b = torch.zeros_like(w), torch.zeros_like(w)
    for _ in range(5):
        grad = least_squares_gradient(x, y, w)
        opt.step(least_squares_closure(opt, model, x, y))
        v = rho * v + (1 - rho) * grad**2
        b = mu * b + lr * grad / (v + eps).sqrt()
        w = w - b
        assert torch.allclose(model.w.detach(), w, rtol=1e-10, atol=1e-15)
    outside = (v.sqrt() + eps) / (v + eps).sqrt()
    assert outside.min() < 0.5  # the two placements differ by more than a factor of two on these gradients


class TwoLayers(torch.nn.Module):
    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.first = torch.nn.Linear(5, 4).double()
        self.second = torch.nn.Linear(4, 3).double()
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))

    def forward(self, x):
        return self.second(torch.tanh(self.first(x)))


def test_lars_is_the_lodo_authors_layerwise_form():
    """Per layer (a module's weight and bias together): local lr = ||x|| / (||g|| + wd ||x||) with trust 1,
    global lr = lr (1 - t / T)^2, momentum on global * local * (g + wd x)."""
    cfg = composed("optimizer=lars", "optimizer.lr=0.3", "optimizer.momentum=0.8", "optimizer.weight_decay=0.01",
                   "+optimizer.total_steps=5", "model=mlp")
    x, y, _ = regression()
    model = TwoLayers()
    opt = build_optimizer(cfg, model, {})
    names = [name for name, _ in model.named_parameters()]
    params = {name: p.detach().clone() for name, p in model.named_parameters()}
    buffers = {name: torch.zeros_like(p) for name, p in params.items()}
    lr, mu, wd, total = 0.3, 0.8, 0.01, 5

    def loss_of(values):
        out = torch.func.functional_call(model, values, (x,))
        return ((out - y) ** 2).mean()

    for t in range(1, 6):
        grads = dict(zip(names, torch.autograd.grad(loss_of({k: v.requires_grad_() for k, v in params.items()}),
                                                    [params[n] for n in names])))
        params = {k: v.detach() for k, v in params.items()}

        def closure():
            opt.zero_grad()
            loss = loss_of(dict(model.named_parameters()))
            loss.backward()
            return loss
        opt.step(closure)
        global_lr = lr * (1 - t / total) ** 2
        for layer in ("first", "second"):
            members = [f"{layer}.weight", f"{layer}.bias"]
            x_norm = torch.sqrt(sum(params[n].square().sum() for n in members))
            g_norm = torch.sqrt(sum(grads[n].square().sum() for n in members))
            local_lr = x_norm / (g_norm + wd * x_norm)
            for n in members:
                buffers[n] = mu * buffers[n] + global_lr * local_lr * (grads[n] + wd * params[n])
                params[n] = params[n] - buffers[n]
        for name, p in model.named_parameters():
            assert torch.allclose(p.detach(), params[name], rtol=1e-10, atol=1e-12), (t, name)
    assert opt.global_lr(opt.param_groups[0], 5) == 0.0  # the last step of the run has no global lr left


def lars_of_a_run(tmp_path, monkeypatch, *overrides):
    """The LARS optimizer a run builds (run.train), captured as it is constructed."""
    from conftest import train

    import functools

    built = []
    original = LARS.__init__

    @functools.wraps(original)  # the runner reads the signature to choose the dependencies it passes
    def record(self, *args, **kwargs):
        original(self, *args, **kwargs)
        built.append(self)

    monkeypatch.setattr(LARS, "__init__", record)
    run_dir = tmp_path / "_".join(o.replace("=", "-").lstrip("+") for o in overrides)
    status = train(["optimizer=lars", "dataset=digits", "+model.kwargs.hidden=[16]", "trainer.checkpoint=false",
                    *overrides], run_dir)
    return built[0].param_groups[0]["total_steps"], status["step"]


def test_lars_decays_over_the_runs_length_whether_its_budget_is_steps_or_epochs(tmp_path, monkeypatch):
    horizon, steps = lars_of_a_run(tmp_path, monkeypatch, "trainer.epochs=2")
    assert horizon == steps and steps > 2 and steps % 2 == 0  # an epoch budget: epochs x the steps of an epoch
    assert lars_of_a_run(tmp_path, monkeypatch, "trainer.steps=7", "trainer.epochs=9") == (7, 7)
    # a value in the config wins over the run's: another horizon, or none (a constant lr)
    assert lars_of_a_run(tmp_path, monkeypatch, "trainer.epochs=1", "+optimizer.total_steps=100")[0] == 100
    assert lars_of_a_run(tmp_path, monkeypatch, "trainer.epochs=1", "+optimizer.total_steps=null")[0] is None
    assert "total_steps" not in composed("experiment=lodo_resnet", "optimizer=lars").optimizer
    opt = LARS([torch.nn.Parameter(torch.ones(2))], lr=2.0, total_steps=4)
    assert [opt.global_lr(opt.param_groups[0], t) for t in (1, 2, 4, 6)] == [2.0 * 0.75**2, 0.5, 0.0, 0.0]


def test_lars_groups_a_layers_weight_and_bias_and_takes_unnamed_tensors_one_by_one():
    model = TwoLayers()
    named = LARS(model.named_parameters())
    assert [len(layer) for layer in named._layers(named.param_groups[0])] == [2, 2]
    plain = LARS(model.parameters())
    assert [len(layer) for layer in plain._layers(plain.param_groups[0])] == [1, 1, 1, 1]


@pytest.mark.parametrize("overrides,reduction,tolerance", [
    (["optimizer=adam", "optimizer.lr=0.05"], 1e-3, 0.05),
    (["optimizer=sgd", "optimizer.lr=0.05", "optimizer.momentum=0.9"], 1e-3, 0.05),
    (["optimizer=sgd", "optimizer.lr=0.05", "optimizer.momentum=0.9", "optimizer.nesterov=true"], 1e-3, 0.05),
    (["optimizer=rmsprop", "optimizer.lr=0.01", "optimizer.alpha=0.99"], 1e-3, 0.05),
    (["optimizer=yogi", "optimizer.lr=0.05"], 1e-3, 0.05),
    (["optimizer=yogi_bias_corrected", "optimizer.lr=0.05"], 1e-3, 0.05),
    # LARS's steps have norm ~ global lr * ||w||: it needs its decay to settle on the optimum.
    (["optimizer=lars", "optimizer.lr=0.05", "optimizer.weight_decay=0", "+optimizer.total_steps=1500"], 1e-3, 0.05),
])
def test_baselines_converge_on_least_squares(overrides, reduction, tolerance):
    cfg = composed("model=mlp", *overrides)
    x, y, target = regression()
    model = Linear(torch.zeros(5, 3, dtype=torch.float64) + 0.1)
    opt = build_optimizer(cfg, model, {})
    first = None
    for _ in range(1500):
        loss = opt.step(least_squares_closure(opt, model, x, y)).item()
        first = first if first is not None else loss
    assert loss < reduction * first
    assert torch.allclose(model.w.detach(), target, atol=tolerance)


@pytest.mark.parametrize("cls,kwargs,message", [
    (Yogi, dict(betas=(1.0, 0.9)), "betas[0] must be a number in [0, 1), got 1.0"),
    (Yogi, dict(eps=0.0), "eps must be a positive number, got 0.0"),
    (RMSprop, dict(alpha="0.9"), "alpha must be a number, got '0.9' (type str)"),
    (RMSprop, dict(eps=0), "eps must be a positive number, got 0"),
    (LARS, dict(total_steps=0), "total_steps must be a whole number >= 1, got 0"),
    (LARS, dict(trust_coefficient=-1.0), "trust_coefficient must be a positive number, got -1.0"),
])
def test_baselines_refuse_bad_hyperparameters_in_one_sentence(cls, kwargs, message):
    with pytest.raises(ValueError) as info:
        cls([torch.nn.Parameter(torch.zeros(2))], **kwargs)
    assert str(info.value) == message


def test_baselines_keep_every_hyperparameter_in_param_groups():
    p = [torch.nn.Parameter(torch.zeros(2))]
    assert {"lr", "betas", "eps"} <= set(Yogi(p).param_groups[0])
    assert {"lr", "alpha", "eps", "momentum"} <= set(RMSprop(p).param_groups[0])
    assert {"lr", "momentum", "weight_decay", "trust_coefficient", "total_steps", "decay_power"} <= set(
        LARS(p).param_groups[0])
    opt = Yogi(p)
    opt.param_groups[0]["betas"] = (0.9, 1.5)  # checked again at the step, where a scheduler could have put it
    p[0].grad = torch.ones(2)
    with pytest.raises(ValueError, match=r"betas\[1\] must be a number in \[0, 1\), got 1.5"):
        opt.step()


def test_paper_values_follow_the_model():
    """The LODO paper's tuned baselines come with the task (its Appendix E, Table 6; Rosenbrock: Appendix G)."""
    cfg = composed("model=noisy_quadratic", "optimizer=adam")
    assert cfg.optimizer.lr == 1.164 and list(cfg.optimizer.betas) == [0.465, 0.9884]
    cfg = composed("model=rosenbrock", "optimizer=yogi")
    assert cfg.optimizer.lr == 0.2991 and cfg.optimizer.eps == 0.001
    cfg = composed("model=noisy_quadratic", "optimizer=adam", "optimizer.lr=0.1")
    assert cfg.optimizer.lr == 0.1  # the user's override wins


@pytest.mark.parametrize("model", ["noisy_quadratic", "rosenbrock", "pixelcnn", "resnet18"])
def test_adam_in_the_lodo_tasks_has_keras_epsilon(model):
    assert composed(f"model={model}", "optimizer=adam").optimizer.eps == 1e-7
    assert composed("model=mlp", "optimizer=adam").optimizer.eps == 1e-8  # PyTorch's elsewhere


@pytest.mark.parametrize("optimizer,table_lr", [
    ("adam", 9.554e-4), ("sgd", 0.003411), ("yogi", 9.34e-4), ("lars", 8.552e-4), ("lodo", 0.08459),
    ("lodo_diagonal", 0.1325), ("lodo_global", 0.05583), ("lodo_residuals", 0.02134), ("lodo_sgd", 0.1035),
])
def test_image_generation_learning_rates_are_the_tables_halved(optimizer, table_lr):
    """The authors halved every tuned learning rate (LODO's alpha_0) on image generation before the final runs
    (LODO paper, Appendix E); Table 6 lists the values before halving."""
    assert composed("model=pixelcnn", f"optimizer={optimizer}").optimizer.lr == pytest.approx(table_lr / 2, rel=1e-12)
    assert composed("experiment=lodo_image", f"optimizer={optimizer}").optimizer.lr == pytest.approx(table_lr / 2,
                                                                                                      rel=1e-12)


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
    # the dependencies a constructor names are run pieces the runner can give, plus plain-PyTorch alternatives:
    # NewtonSummary's to its loss sampler, K-FAC's replaceable true-Fisher label sampler
    assert set(keyword_only) - {"summary_loss", "label_sampler"} <= set(RUN_DEPENDENCIES)
    assert keyword_only  # each of them needs something from the run
