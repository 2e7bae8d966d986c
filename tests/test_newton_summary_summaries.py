"""Summaries against brute force on tiny float64 models (the full parameter Hessian contracted with the
direction blocks, and the third-derivative tensor of phi(t) = L(theta + sum_i t_i u_i)), and against the
2S + 1-call reference procedure (reference.py) on a paper network too large for brute force."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from hoopt.models import build_model
from hoopt.optimizers.newton_summary import build_partition, hessian_summary
from hoopt.optimizers.newton_summary.reference import reference_summary


def tiny_mlp():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3), nn.ELU(), nn.Linear(3, 2)).double()
    x, y = torch.randn(7, 5, dtype=torch.float64), torch.randint(0, 2, (7,))
    return model, x, y


class TinyConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(2, 3, 3)
        self.f1 = nn.Linear(12, 3)

    def forward(self, x):
        return self.f1(F.max_pool2d(torch.tanh(self.c1(x)), 2).flatten(1))


def tiny_conv():
    torch.manual_seed(1)
    model = TinyConv().double()
    x, y = torch.randn(5, 2, 6, 6, dtype=torch.float64), torch.randint(0, 3, (5,))
    return model, x, y


def setup(factory):
    model, x, y = factory()
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    gen = torch.Generator().manual_seed(2)
    direction = {n: torch.randn(p.shape, dtype=p.dtype, generator=gen) for n, p in params.items()}
    loss_fn = lambda p: F.cross_entropy(functional_call(model, p, (x,)), y)
    return params, direction, loss_fn


def brute_force(params, direction, loss_fn, partition):
    names = list(params)
    shapes = [params[n].shape for n in names]
    sizes = [params[n].numel() for n in names]
    flat0 = torch.cat([params[n].reshape(-1) for n in names])

    def loss_flat(flat):
        pieces = torch.split(flat, sizes)
        return loss_fn({n: piece.reshape(s) for n, piece, s in zip(names, pieces, shapes)})

    full_h = torch.autograd.functional.hessian(loss_flat, flat0)  # P x P
    full_g = torch.autograd.functional.jacobian(loss_flat, flat0)
    columns = []  # U: P x S, column i = u restricted to group i
    for group in partition.groups:
        columns.append(torch.cat([direction[n].reshape(-1) if n in group else torch.zeros(params[n].numel(),
                                  dtype=torch.float64) for n in names]))
    u = torch.stack(columns, 1)
    gbar, hbar = u.T @ full_g, u.T @ full_h @ u

    def phi(t):
        return loss_flat(flat0 + u @ t)

    t0 = torch.zeros(partition.size, dtype=torch.float64)
    third = torch.autograd.functional.jacobian(
        lambda t: torch.autograd.functional.hessian(phi, t, create_graph=True), t0)
    d3 = torch.stack([third[i, i, i] for i in range(partition.size)])
    hbar_phi = torch.autograd.functional.hessian(phi, t0)
    assert torch.allclose(hbar, hbar_phi, rtol=1e-10, atol=1e-12)
    return gbar, hbar, d3


def relative_error(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-300)).item()


CASES = [(tiny_mlp, spec) for spec in ("canonical", "trivial", "weights-biases", "blocks-1", "blocks-2",
                                       "alternate-2", "chunks-2")]
CASES += [(tiny_conv, spec) for spec in ("canonical", "trivial", "weights-biases", "blocks-1")]


@pytest.mark.parametrize("factory,spec", CASES)
def test_summaries_match_brute_force(factory, spec):
    params, direction, loss_fn = setup(factory)
    partition = build_partition(spec, list(params.items()))
    expected = brute_force(params, direction, loss_fn, partition)
    got = hessian_summary(loss_fn, params, direction, partition)
    for name, a, b in zip(("gbar", "hbar", "d3"), got, expected):
        assert a.dtype == torch.float64 and a.shape == b.shape
        assert relative_error(a, b) < 1e-9, (name, a, b)
    assert torch.equal(got.hbar, got.hbar.T)


def test_second_order_only_leaves_d3_zero():
    params, direction, loss_fn = setup(tiny_mlp)
    partition = build_partition("canonical", list(params))
    full = hessian_summary(loss_fn, params, direction, partition)
    cheap = hessian_summary(loss_fn, params, direction, partition, third_order=False)
    assert torch.allclose(full.hbar, cheap.hbar, rtol=1e-12) and torch.allclose(full.gbar, cheap.gbar, rtol=1e-12)
    assert torch.count_nonzero(cheap.d3) == 0


def test_diagonal_only_is_the_diagonal_of_the_full_hbar():
    """The Appendix 0.K ablation computes only Hbar_ii (one second backward per group, with respect to its own
    t_i): the same diagonal, gbar and D3 as the full summary, zeros elsewhere."""
    for factory in (tiny_mlp, tiny_conv):
        params, direction, loss_fn = setup(factory)
        partition = build_partition("canonical", list(params))
        full = hessian_summary(loss_fn, params, direction, partition)
        diagonal = hessian_summary(loss_fn, params, direction, partition, diagonal=True)
        assert torch.equal(diagonal.hbar, torch.diag(diagonal.hbar.diagonal()))
        assert relative_error(diagonal.hbar.diagonal(), full.hbar.diagonal()) < 1e-12
        assert relative_error(diagonal.gbar, full.gbar) < 1e-12 and relative_error(diagonal.d3, full.d3) < 1e-12
        assert torch.count_nonzero(full.hbar - torch.diag(full.hbar.diagonal())) > 0


def test_float32_agrees_with_float64():
    params, direction, loss_fn = setup(tiny_conv)
    partition = build_partition("canonical", list(params))
    exact = hessian_summary(loss_fn, params, direction, partition)
    model, x, y = tiny_conv()
    model = model.float()
    p32 = {n: p.float() for n, p in params.items()}
    u32 = {n: u.float() for n, u in direction.items()}
    loss32 = lambda p: F.cross_entropy(functional_call(model, p, (x.float(),)), y)
    approx = hessian_summary(loss32, p32, u32, partition)
    for a, b in zip(approx, exact):
        assert relative_error(a, b) < 1e-4


def test_parameters_outside_the_partition_are_held_fixed():
    params, direction, loss_fn = setup(tiny_mlp)
    names = list(params)
    from hoopt.optimizers.newton_summary import Partition
    partial = Partition(("a", "b"), ((names[0],), (names[2], names[3])))
    full = build_partition("canonical", names)
    everything = hessian_summary(loss_fn, params, direction, full)
    got = hessian_summary(loss_fn, params, direction, partial)
    # group b = tensors 2 and 3 together: its entries are sums of the canonical ones
    assert torch.allclose(got.hbar[0, 0], everything.hbar[0, 0])
    assert torch.allclose(got.hbar[0, 1], everything.hbar[0, 2] + everything.hbar[0, 3])
    assert torch.allclose(got.gbar[1], everything.gbar[2] + everything.gbar[3])


def test_split_first_layer_used_with_kwargs_and_shared_weights():
    """Weight passed by keyword and used twice (once on data, once on an activation): still exact."""
    torch.manual_seed(3)
    w = torch.randn(4, 4, dtype=torch.float64)
    x = torch.randn(6, 4, dtype=torch.float64)

    def loss_fn(p):
        h = torch.tanh(F.linear(input=x, weight=p["w"]))
        return torch.tanh(F.linear(h, p["w"], p["b"])).pow(2).sum()

    params = {"w": w, "b": torch.randn(4, dtype=torch.float64)}
    direction = {"w": torch.randn(4, 4, dtype=torch.float64), "b": torch.randn(4, dtype=torch.float64)}
    partition = build_partition("canonical", list(params))
    expected = brute_force(params, direction, loss_fn, partition)
    got = hessian_summary(loss_fn, params, direction, partition)
    for a, b in zip(got, expected):
        assert relative_error(a, b) < 1e-9


class TinyBatchNormNet(nn.Module):
    """Conv -> BatchNorm2d -> tanh -> Linear -> BatchNorm1d: the layers whose native kernel has no D3."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(2, 3, 3)
        self.bn1 = nn.BatchNorm2d(3)
        self.f1 = nn.Linear(48, 4)
        self.bn2 = nn.BatchNorm1d(4)
        self.f2 = nn.Linear(4, 3)

    def forward(self, x):
        h = torch.tanh(self.bn1(self.c1(x))).flatten(1)
        return self.f2(torch.tanh(self.bn2(self.f1(h))))


def tiny_batchnorm():
    torch.manual_seed(4)
    model = TinyBatchNormNet().double()
    with torch.no_grad():  # non-trivial affine parameters
        for bn in (model.bn1, model.bn2):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
    x, y = torch.randn(6, 2, 6, 6, dtype=torch.float64), torch.randint(0, 3, (6,))
    return model, x, y


@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_models_get_exact_summaries_with_d3(training):
    """Native batch_norm has no third derivative; D3 is checked against central differences of the
    second-order (native) Hessian of phi, gbar and Hbar against the full parameter Hessian."""
    model, x, y = tiny_batchnorm()
    model.train(training)
    if not training:
        with torch.no_grad():
            model.bn1.running_mean.uniform_(-0.3, 0.3)
            model.bn1.running_var.uniform_(0.5, 2.0)
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    gen = torch.Generator().manual_seed(5)
    direction = {n: torch.randn(p.shape, dtype=p.dtype, generator=gen) for n, p in params.items()}
    loss_fn = lambda p: F.cross_entropy(functional_call(model, p, (x,)), y)
    partition = build_partition("canonical", list(params))
    got = hessian_summary(loss_fn, params, direction, partition)
    for name, b in model.named_buffers():  # a summary is a measurement: running statistics untouched
        assert torch.equal(b, buffers[name]), name
    S = partition.size
    u = {}
    for i, group in enumerate(partition.groups):
        for n in group:
            u[n] = (i, direction[n])

    def phi(t):
        return loss_fn({n: p + t[u[n][0]] * u[n][1] if n in u else p for n, p in params.items()})

    model.train(training)
    t0 = torch.zeros(S, dtype=torch.float64)
    native_g = torch.autograd.functional.jacobian(phi, t0)
    native_h = torch.autograd.functional.hessian(phi, t0)

    def central(h):
        return torch.stack([(torch.autograd.functional.hessian(phi, t0 + h * e)[i, i]
                             - torch.autograd.functional.hessian(phi, t0 - h * e)[i, i]) / (2 * h)
                            for i, e in enumerate(torch.eye(S, dtype=torch.float64))])

    d3 = (4 * central(1e-4) - central(2e-4)) / 3  # Richardson: truncation error O(h^4)
    assert relative_error(got.gbar, native_g) < 1e-9
    assert relative_error(got.hbar, native_h) < 1e-9
    assert relative_error(got.d3, d3) < 1e-6, (got.d3, d3)
    assert got.d3.abs().max() > 0


@pytest.mark.parametrize("training", [True, False])
def test_composite_batch_norm_equals_the_native_kernel(training):
    from hoopt.optimizers.newton_summary.batchnorm_mode import composite_batch_norm
    torch.manual_seed(6)
    x = torch.randn(5, 3, 4, 4, dtype=torch.float64)
    mean, var = torch.randn(3, dtype=torch.float64), torch.rand(3, dtype=torch.float64) + 0.5
    w, b = torch.randn(3, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    native = F.batch_norm(x, mean.clone(), var.clone(), w, b, training=training, eps=1e-3)
    ours = composite_batch_norm(x, mean, var, w, b, training=training, eps=1e-3)
    assert torch.allclose(native, ours, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("conv,groups", [(F.conv1d, 1), (F.conv2d, 1), (F.conv2d, 2), (F.conv_transpose2d, 1)])
def test_split_first_layer_for_every_convolution_kind(conv, groups):
    """The first layer split (stacked weights for plain convs, two calls otherwise) stays exact."""
    torch.manual_seed(7)
    spatial = (6,) if conv is F.conv1d else (5, 5)
    x = torch.randn(3, 4, *spatial, dtype=torch.float64)
    kernel = (3,) if conv is F.conv1d else (3, 3)
    shape = (4, 6 // groups, *kernel) if conv is F.conv_transpose2d else (6, 4 // groups, *kernel)

    def loss_fn(p):
        h = torch.tanh(conv(x, p["w"], p["b"], groups=groups) if groups > 1 else conv(x, p["w"], bias=p["b"]))
        return (h.flatten(1) @ p["v"]).sin().sum()

    out = conv(x, torch.zeros(shape, dtype=torch.float64), groups=groups) if groups > 1 else \
        conv(x, torch.zeros(shape, dtype=torch.float64))
    params = {"w": torch.randn(shape, dtype=torch.float64), "b": torch.randn(6, dtype=torch.float64),
              "v": torch.randn(out[0].numel(), 2, dtype=torch.float64)}
    direction = {n: torch.randn_like(p) for n, p in params.items()}
    partition = build_partition("canonical", list(params))
    expected = brute_force(params, direction, loss_fn, partition)
    got = hessian_summary(loss_fn, params, direction, partition)
    for a, b in zip(got, expected):
        assert relative_error(a, b) < 1e-9


@pytest.mark.parametrize("factory,spec", [(tiny_mlp, "canonical"), (tiny_mlp, "alternate-2"), (tiny_conv, "blocks-1")])
def test_reference_procedure_matches_brute_force(factory, spec):
    """The oracle itself, checked where the full Hessian is affordable."""
    params, direction, loss_fn = setup(factory)
    partition = build_partition(spec, list(params.items()))
    expected = brute_force(params, direction, loss_fn, partition)
    got = reference_summary(loss_fn, params, direction, partition)
    for name, a, b in zip(("gbar", "hbar", "d3"), got, expected):
        assert a.dtype == torch.float64 and relative_error(a, b) < 1e-9, (name, a, b)


@pytest.mark.parametrize("spec", ["canonical", "alternate-2"])
def test_summaries_match_the_reference_procedure_on_lenet(spec):
    """A paper network (too large for brute force): the fast schedule's forward-order rows, first-layer split
    and pooling give the 2S + 1-call reference's numbers, also when groups mix distant layers."""
    torch.manual_seed(8)
    model = build_model("lenet").double()
    x, y = torch.randn(6, 3, 32, 32, dtype=torch.float64), torch.randint(0, 10, (6,))
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    gen = torch.Generator().manual_seed(9)
    direction = {n: torch.randn(p.shape, dtype=p.dtype, generator=gen) for n, p in params.items()}
    loss_fn = lambda p: F.cross_entropy(functional_call(model, p, (x,)), y)
    partition = build_partition(spec, list(params.items()))
    expected = reference_summary(loss_fn, params, direction, partition)
    got = hessian_summary(loss_fn, params, direction, partition)
    for name, a, b in zip(("gbar", "hbar", "d3"), got, expected):
        assert relative_error(a, b) < 1e-9, (name, a, b)
    assert expected.d3.abs().max() > 0
