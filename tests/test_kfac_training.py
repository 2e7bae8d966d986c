"""K-FAC trains the paper networks and a ResNet-18 slice (BatchNorm, bias-free convs, in-place ReLU) and
resumes exactly from its state_dict; configs build it the way the runner does (optimizers/protocol.py), its
hyperparameters live in param_groups."""

import copy
import io
import os

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from torch import nn
from torchvision.models.resnet import BasicBlock

from hoopt.models import build_model
from hoopt.optimizers.kfac import KFAC
from hoopt.runner.training.build import build_optimizer

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


def resnet_slice(num_classes=10):
    """A narrow ResNet-18-style slice from torchvision's own BasicBlock (bias-free 3x3 convs, BatchNorm,
    ReLU(inplace=True), a strided 1x1 downsample); the full ResNet-18 is too large for a CPU test."""
    downsample = nn.Sequential(nn.Conv2d(16, 32, 1, stride=2, bias=False), nn.BatchNorm2d(32))
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True),
                         BasicBlock(16, 16), BasicBlock(16, 32, stride=2, downsample=downsample),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, num_classes))


def small_vgg(num_classes=10):
    """A VGG-style slice with BatchNorm and in-place ReLU between bias-free convs."""
    def block(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
    return nn.Sequential(*block(3, 8), nn.MaxPool2d(2), *block(8, 16), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(16 * 2 * 2, num_classes))


CASES = {  # model, input shape, batch size
    "mlp": (lambda: build_model("mlp", input_shape=(1, 8, 8), hidden=(64, 32, 16)), (1, 8, 8), 32),
    "lenet": (lambda: build_model("lenet", input_shape=(3, 16, 16)), (3, 16, 16), 32),
    "vgg_slice": (small_vgg, (3, 8, 8), 32),
    "resnet_slice": (resnet_slice, (3, 8, 8), 32),
}


def _batches(shape, count, batch=32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [(torch.randn(batch, *shape, generator=generator), torch.randint(0, 10, (batch,), generator=generator))
            for _ in range(count)]


def _train(model, opt, batches):
    losses = []
    for x, y in batches:
        def closure(x=x, y=y):
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            return loss
        losses.append(opt.step(closure).item())
    return losses


@pytest.mark.parametrize("name", sorted(CASES))
def test_trains_without_nan_and_the_loss_decreases(name):
    make, shape, batch_size = CASES[name]
    torch.manual_seed(0)
    model = make()
    opt = KFAC(model, lr=0.05, cov_update_every=2, inv_update_every=6, seed=0)
    batch = _batches(shape, 1, batch=batch_size)[0]
    losses = _train(model, opt, [batch] * 20)  # memorise one batch
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.5 * losses[0], losses
    assert len(opt._layers) == sum(isinstance(m, (nn.Linear, nn.Conv2d)) for m in model.modules())


@pytest.mark.parametrize("make, inverse_method", [(small_vgg, "inverse"), (small_vgg, "eigen"),
                                                   (resnet_slice, "inverse")])
def test_state_dict_round_trip_resumes_exactly(make, inverse_method):
    torch.manual_seed(1)
    reference = make()
    initial = {k: v.clone() for k, v in reference.state_dict().items()}
    batches = _batches((3, 8, 8), 9, batch=8, seed=1)
    options = dict(lr=0.05, cov_update_every=2, inv_update_every=3, inverse_method=inverse_method, seed=7)

    opt = KFAC(reference, **options)
    straight = _train(reference, opt, batches)

    first = make()
    first.load_state_dict(initial)
    opt = KFAC(first, **options)
    _train(first, opt, batches[:5])  # stops between a covariance and an inversion step
    saved = io.BytesIO()
    torch.save({"model": first.state_dict(), "optimizer": opt.state_dict()}, saved)
    saved.seek(0)
    checkpoint = torch.load(saved, weights_only=False)

    resumed = make()
    resumed.load_state_dict(checkpoint["model"])
    opt = KFAC(resumed, **{**options, "seed": 123})  # the generator state comes from the checkpoint
    opt.load_state_dict(checkpoint["optimizer"])
    rest = _train(resumed, opt, batches[5:])
    assert rest == straight[5:]
    for (name, a), b in zip(reference.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_load_state_dict_restores_the_generator_of_an_optimizer_built_from_named_parameters():
    torch.manual_seed(2)
    model = build_model("lenet")
    opt = KFAC(model, lr=0.01, cov_update_every=1)
    _train(model, opt, _batches((3, 32, 32), 2, batch=4))
    state = opt.state_dict()
    twin = copy.deepcopy(model)
    late = KFAC(twin.named_parameters(), lr=0.01, cov_update_every=1, seed=99, model=twin)
    assert not torch.equal(late.generator.get_state(), opt.generator.get_state())
    late.load_state_dict(state)
    assert torch.equal(late.generator.get_state(), opt.generator.get_state())
    assert late.param_groups[0]["seed"] == opt.param_groups[0]["seed"]  # the checkpoint's, like every value


def test_step_without_closure_matches_step_with_closure():
    torch.manual_seed(3)
    batches = _batches((3, 8, 8), 7, batch=8, seed=3)
    first, second = small_vgg(), small_vgg()
    second.load_state_dict(first.state_dict())
    options = dict(lr=0.05, cov_update_every=2, inv_update_every=3, seed=0)
    opt = KFAC(first, **options)
    _train(first, opt, batches)
    opt2 = KFAC(second, **options)
    for x, y in batches:  # the plain PyTorch pattern: forward, backward, step()
        opt2.zero_grad()
        F.cross_entropy(second(x), y).backward()
        opt2.step()
    for a, b in zip(first.state_dict().values(), second.state_dict().values()):
        assert torch.equal(a, b)


def test_non_classifiers_use_the_empirical_fisher():
    model = build_model("lenet")
    opt = KFAC(model.named_parameters(), lr=0.01, model=model)
    assert opt._capture.fisher == "true" and len(opt._layers) == 5
    assert opt.param_groups[0]["param_names"] == [n for n, _ in model.named_parameters()]
    model = build_model("lenet")
    opt = KFAC(model.named_parameters(), lr=0.01, model=model, classifier=False)
    assert opt.param_groups[0]["fisher"] == "empirical" and opt._capture.fisher == "empirical"
    _train(model, opt, _batches((3, 32, 32), 2, batch=4))
    bowl = build_model("noisy_quadratic")
    opt = KFAC(bowl.named_parameters(), lr=0.1, model=bowl, classifier=False)  # no Linear/Conv2d: SGD + momentum
    centre = torch.zeros(100)
    for _ in range(3):
        opt.step(lambda: (opt.zero_grad(), bowl(centre).backward()))


def test_needs_the_model_at_construction():
    model = build_model("mlp")
    with pytest.raises(ValueError, match="KFAC needs the model"):
        KFAC(model.named_parameters(), lr=0.01)
    with pytest.raises(ValueError, match="another one as model"):
        KFAC(model, lr=0.01, model=build_model("mlp"))


def test_true_fisher_on_a_model_without_logits_says_what_to_do():
    model = nn.Sequential(nn.Linear(3, 2), nn.Flatten(0))
    opt = KFAC(model, lr=0.1)
    with pytest.raises(ValueError, match="fisher='empirical'"):
        opt.step(lambda: model(torch.randn(4, 3)).sum().backward())


def test_a_covariance_step_that_captures_nothing_warns_once():
    model = build_model("lenet")
    opt = KFAC(model, lr=0.01, cov_update_every=1)
    with pytest.warns(UserWarning, match="captured no factor statistics"):
        opt.step(lambda: None)  # no forward: nothing to capture


def _composed(*overrides):
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


def test_config_builds_kfac_with_the_paper_values():
    model = build_model("lenet")
    cfg = _composed("optimizer=kfac", "model=lenet", "seed=5")
    opt = build_optimizer(cfg, model, {"model": model, "classifier": True})
    assert isinstance(opt, KFAC)
    group = opt.param_groups[0]
    assert (group["momentum"], group["stat_decay"], group["damping"], group["weight_decay"]) == (0.9, 0.95, 0.03, 0.003)
    assert (group["kl_clip"], group["cov_update_every"], group["inv_update_every"], group["fisher"], group["seed"]) == (
        0.01, 10, 100, "true", 5)
    model = build_model("lenet")
    cfg = _composed("optimizer=kfac", "model=lenet", "optimizer.lr=0.2", "optimizer.inverse_method=eigen")
    group = build_optimizer(cfg, model, {"model": model}).param_groups[0]
    assert group["lr"] == 0.2 and group["inverse_method"] == "eigen"


# -- hyperparameters in param_groups ---------------------------------------------------------------------
def test_changing_the_covariance_period_in_param_groups_changes_when_factors_are_captured():
    torch.manual_seed(4)
    model = small_vgg()
    opt = KFAC(model, lr=0.05, cov_update_every=10, inv_update_every=1, seed=0)
    batches = _batches((3, 8, 8), 4, batch=8, seed=4)
    _train(model, opt, batches[:1])  # step 0 captures
    layer = opt._layers[0]
    after_first = opt.state[layer.weight]["kfac_A"].clone()
    _train(model, opt, batches[1:2])  # step 1: not a covariance step with T_cov = 10
    assert torch.equal(opt.state[layer.weight]["kfac_A"], after_first)
    opt.param_groups[0]["cov_update_every"] = 1
    _train(model, opt, batches[2:3])
    assert not torch.equal(opt.state[layer.weight]["kfac_A"], after_first)


def test_inverse_method_takes_effect_at_the_next_inverse_refresh():
    torch.manual_seed(5)
    model = small_vgg()
    opt = KFAC(model, lr=0.05, cov_update_every=1, inv_update_every=2, seed=0)
    batches = _batches((3, 8, 8), 3, batch=8, seed=5)
    _train(model, opt, batches[:1])
    state = opt.state[opt._layers[0].weight]
    assert "kfac_A_inv" in state
    opt.param_groups[0]["inverse_method"] = "eigen"
    _train(model, opt, batches[1:2])  # no refresh on step 1: the inverses of step 0 still serve
    assert "kfac_A_inv" in state and "kfac_A_vecs" not in state
    _train(model, opt, batches[2:3])
    assert "kfac_A_vecs" in state and "kfac_A_inv" not in state


def _conv_and_other_groups(model, **conv_options):
    convs = [p for m in model.modules() if isinstance(m, nn.Conv2d) for p in m.parameters()]
    others = [p for p in model.parameters() if all(p is not q for q in convs)]
    return [{"params": convs, **conv_options}, {"params": others}]


def test_shared_settings_must_agree_across_parameter_groups():
    model = small_vgg()
    opt = KFAC(_conv_and_other_groups(model, lr=0.1), lr=0.05, model=model)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.05]  # per-group values are fine
    assert len(opt._layers) == 3  # two convs in one group, the Linear layer in the other
    other = small_vgg()
    with pytest.raises(ValueError, match="kl_clip must be the same in every parameter group"):
        KFAC(_conv_and_other_groups(other, kl_clip=0.1), lr=0.05, model=other)
    opt.param_groups[1]["cov_update_every"] = 3
    with pytest.raises(ValueError, match="cov_update_every must be the same"):
        opt.step(lambda: None)


# -- statistics come from steps only ------------------------------------------------------------------------
def test_forwards_outside_a_step_neither_draw_labels_nor_enter_the_factors():
    """A grad-enabled forward and backward between steps (an observer such as the Hbar probe, before the first step
    too) leaves the trajectory exactly as it is; inside no_capture() even within the capture window."""
    torch.manual_seed(6)
    batches = _batches((3, 8, 8), 7, batch=8, seed=6)
    probe_x = torch.randn(8, 3, 8, 8)
    first, second = small_vgg(), small_vgg()
    second.load_state_dict(first.state_dict())
    options = dict(lr=0.05, cov_update_every=2, inv_update_every=3, seed=0)
    plain = KFAC(first, **options)
    _train(first, plain, batches)
    observed = KFAC(second, **options)

    def observe():
        F.cross_entropy(second(probe_x), torch.zeros(8, dtype=torch.long)).backward()
        second.zero_grad()

    for x, y in batches:
        observe()  # before each step, the first one included
        _train(second, observed, [(x, y)])
    for a, b in zip(first.parameters(), second.parameters()):  # (the observer moved BatchNorm's running statistics)
        assert torch.equal(a, b)
    assert torch.equal(plain.generator.get_state(), observed.generator.get_state())
    observed.zero_grad()  # opens the window of the next covariance step (the plain-PyTorch pattern)...
    with observed.no_capture():  # ...but an observer inside no_capture() still does not count
        second(probe_x).sum().backward()
    assert observed._capture.take() == {}
