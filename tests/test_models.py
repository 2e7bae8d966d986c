import math

import pytest
import torch

from hoopt.models import MODELS, build_model

SHAPES = {
    "mlp": ((1, 28, 28), 10),
    "lenet": ((3, 32, 32), 10),
    "vgg": ((3, 32, 32), 10),
    "bigmlp": ((3, 32, 32), 10),
    "resnet18": ((3, 32, 32), 10),
    "pixelcnn": ((5, 28, 28), 256),
}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_output_shape(name):
    shape, classes = SHAPES[name]
    model = build_model(name)
    assert model(torch.randn(3, *shape)).shape == (3, classes)


@pytest.mark.parametrize("name,count,tensors", [
    ("pixelcnn", 94_696, None),  # the LODO paper's count
    ("resnet18", 11_173_962, None),  # the LODO paper's count
    ("mlp", 784 * 1024 + 1024 + 1024 * 200 + 200 + 200 * 100 + 100 + 100 * 10 + 10, 8),  # S = 8 (docs/methods/newton_summary.md)
    ("lenet", 62_006, 10),
    ("vgg", None, 18),
    ("bigmlp", 3072 * 1024 + 1024 + 19 * (1024 * 1024 + 1024) + 1024 * 10 + 10, 42),
])
def test_parameter_counts(name, count, tensors):
    params = list(build_model(name).parameters())
    if count is not None:
        assert sum(p.numel() for p in params) == count
    if tensors is not None:
        assert len(params) == tensors


def test_vbigmlp_depth_reduced_width():
    model = build_model("vbigmlp", width=8)
    assert len(list(model.parameters())) == 2 * 101
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("name,sigma", [("mlp", 1.0), ("lenet", 1.0), ("vgg", math.sqrt(2)), ("bigmlp", math.sqrt(2))])
def test_paper_initialisation(name, sigma):
    """W ~ N(0, sigma_w^2 / fan_in), b = 0 (the NewtonSummary papers' initialisation)."""
    torch.manual_seed(0)
    model = build_model(name)
    for module in model.modules():
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
            w = module.weight
            assert torch.count_nonzero(module.bias) == 0
            expected = sigma / math.sqrt(w[0].numel())
            tolerance = 0.35 if w.numel() < 1000 else 0.06
            assert abs(w.std().item() / expected - 1) < tolerance, module
            assert abs(w.mean().item()) < 4 * expected / math.sqrt(w.numel())


def tf_same_average_pool(x):
    """2x2 / stride 2 average pooling with TensorFlow's "SAME" padding, written out: an odd size gets one padded
    row/column at the end, and each window averages only the real cells it covers."""
    h, w = x.shape[-2:]
    out = torch.empty(*x.shape[:-2], (h + 1) // 2, (w + 1) // 2, dtype=x.dtype)
    for i in range(out.shape[-2]):
        for j in range(out.shape[-1]):
            out[..., i, j] = x[..., 2 * i:2 * i + 2, 2 * j:2 * j + 2].mean(dim=(-2, -1))
    return out


def test_pixelcnn_pooling_leaves_the_padded_cell_out_of_the_average():
    """The authors' avg_pool2d(padding="SAME"): at 7 -> 4 the last row and column average only real cells."""
    from hoopt.models.pixelcnn import avg_pool_same

    pooled = avg_pool_same(torch.ones(1, 1, 7, 7))
    assert pooled.shape == (1, 1, 4, 4)
    assert pooled[0, 0, -1, -1] == 1.0  # not 0.25: the three padded cells do not count
    for size in (28, 14, 7, 4, 2):
        x = torch.randn(2, 3, size, size, dtype=torch.float64, generator=torch.Generator().manual_seed(size))
        assert torch.allclose(avg_pool_same(x), tf_same_average_pool(x), rtol=0, atol=1e-15)
    x = torch.randn(1, 5, 28, 28)
    assert build_model("pixelcnn")(x).shape == (1, 256)  # 28 -> 14 -> 7 -> 4 -> 2 -> 1


def test_pixelcnn_starts_from_the_authors_lecun_normal_of_weights_and_biases():
    """Every weight and bias ~ N(0, 1 / (fan_in + 1)) (LODO paper, Appendix F.2: LeCun normal; the authors' code
    counts the bias as one more input): stem 5 inputs, expand 20, depthwise 3x3 = 9, project 120, head 20."""
    torch.manual_seed(0)
    model = build_model("pixelcnn")
    stds = {}
    for module in model.modules():
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
            fan_in = module.weight[0].numel()
            stds.setdefault(fan_in, []).extend([module.weight.detach().flatten(), module.bias.detach()])
    assert sorted(stds) == [5, 9, 20, 120]
    for fan_in, values in stds.items():
        values = torch.cat(values)
        assert values.std().item() == pytest.approx(1 / math.sqrt(fan_in + 1), rel=0.05), fan_in
        assert abs(values.mean().item()) < 4 / math.sqrt((fan_in + 1) * values.numel())
    assert all(torch.count_nonzero(m.bias) == m.bias.numel() for m in model.modules()
               if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)))  # biases are drawn too, not zero


def test_noisy_quadratic_spectrum_and_optimum():
    model = build_model("noisy_quadratic")
    eig = torch.linalg.eigvalsh(model.hessian.double())
    assert eig.min().item() == pytest.approx(1e-3, rel=1e-3)
    assert eig.max().item() == pytest.approx(1.0, rel=1e-4)
    assert model.optimum_loss == pytest.approx(7.41, abs=0.01)  # the LODO paper's count
    c = torch.randn(100)
    assert model(c).item() == pytest.approx(0.5 * (c @ model.hessian @ c).item(), rel=1e-5)


def test_rosenbrock_value_and_minimum():
    model = build_model("rosenbrock")
    assert model().item() == pytest.approx(0.01 * 1.5**2 + (2 - 0.25) ** 2)
    with torch.no_grad():
        model.xy.copy_(torch.tensor([1.0, 1.0]))
    assert model().item() == 0.0


def test_unknown_model_lists_names():
    with pytest.raises(ValueError, match="choose one of"):
        build_model("alexnet")
    assert {"mlp", "lenet", "vgg", "bigmlp", "vbigmlp", "resnet18", "pixelcnn"} <= set(MODELS)


def test_pooling_before_the_activation_is_the_papers_conv_act_pool():
    """LeNet and VGG pool before their increasing activation (cheaper derivatives): the same function and
    the same gradients as the papers' conv -> activation -> pool."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    x = torch.randn(4, 3, 32, 32, dtype=torch.float64)
    lenet = build_model("lenet").double()

    def lenet_act_then_pool(m, x):
        x = F.max_pool2d(torch.tanh(m.c1(x)), 2)
        x = F.max_pool2d(torch.tanh(m.c2(x)), 2).flatten(1)
        return m.f3(torch.tanh(m.f2(torch.tanh(m.f1(x)))))

    vgg = build_model("vgg").double()

    def vgg_act_then_pool(m, x):
        for layer in m.features:
            if isinstance(layer, torch.nn.Conv2d):
                x = F.elu(layer(x))
            elif isinstance(layer, torch.nn.MaxPool2d):
                x = layer(x)
        return m.classifier(m.pool(x).flatten(1))

    for model, reference in ((lenet, lenet_act_then_pool), (vgg, vgg_act_then_pool)):
        ours = model(x)
        theirs = reference(model, x)
        assert torch.equal(ours, theirs)
        g1 = torch.autograd.grad(ours.square().sum(), list(model.parameters()))
        g2 = torch.autograd.grad(reference(model, x).square().sum(), list(model.parameters()))
        assert all(torch.allclose(a, b, rtol=1e-12, atol=1e-14) for a, b in zip(g1, g2))
