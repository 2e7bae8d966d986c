"""K-FAC factors (docs/methods/kfac.md) against dense per-example computations on tiny float64 layers."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from hoopt.optimizers.kfac import KFAC
from hoopt.optimizers.kfac.capture import sample_labels
from hoopt.optimizers.kfac.factors import conv_patch_columns, grad_matrix, split_matrix

pytestmark = pytest.mark.usefixtures("float64_default")  # brute-force comparisons in float64 (conftest.py)


def _per_example_grads(model, x, y):
    """{name: (N, *shape)} gradients of each example's cross-entropy (torch.func)."""
    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss(p, xi, yi):
        return F.cross_entropy(functional_call(model, p, (xi[None],)), yi[None])

    return vmap(grad(loss), in_dims=(None, 0, 0))(params, x, y)


def _capture_once(model, x, y=None, fisher="empirical", seed=0):
    """One K-FAC step with factor capture; returns the optimizer (factors = this batch's, decay unused)."""
    opt = KFAC(model, lr=1e-3, fisher=fisher, cov_update_every=1, inv_update_every=1, seed=seed)

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        return loss

    opt.step(closure)
    return opt


def _explicit_patches(x, kernel, stride=1, padding=0):
    """(N, T, C*k*k) patches by python loops over output positions (no unfold)."""
    x = F.pad(x, (padding,) * 4)
    n, _, h, w = x.shape
    rows = []
    for i in range(0, h - kernel + 1, stride):
        for j in range(0, w - kernel + 1, stride):
            rows.append(x[:, :, i : i + kernel, j : j + kernel].reshape(n, -1))
    return torch.stack(rows, dim=1)


@pytest.mark.parametrize(
    "options",
    [
        dict(kernel_size=3),
        dict(kernel_size=(3, 2), padding=(1, 2), stride=(2, 1), dilation=(1, 2)),
        dict(kernel_size=3, padding="same", dilation=2),
        dict(kernel_size=3, padding=1, padding_mode="reflect"),
        dict(kernel_size=3, padding=1, padding_mode="circular", stride=2),
    ],
)
def test_patch_columns_reproduce_the_convolution(options):
    conv = nn.Conv2d(2, 4, bias=False, **options)
    x = torch.randn(3, 2, 9, 8)
    columns = conv_patch_columns(conv, x)
    expected = conv(x)
    rebuilt = (conv.weight.reshape(4, -1) @ columns).reshape(4, 3, *expected.shape[2:]).transpose(0, 1)
    torch.testing.assert_close(rebuilt, expected)


def test_linear_single_example_factors_are_the_exact_fisher():
    """One example: kron(G, A) = vec(grad) vec(grad)^T exactly (row-major vec of [W | b])."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(inplace=True), nn.Linear(4, 3))
    x, y = torch.randn(1, 3), torch.tensor([2])
    opt = KFAC(model, lr=1e-3, fisher="empirical", cov_update_every=1)
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()
    exact = [grad_matrix(layer).reshape(-1) for layer in (model[0], model[2])]
    opt.zero_grad()
    opt.step(lambda: F.cross_entropy(model(x), y).backward())
    for layer, g in zip((model[0], model[2]), exact):
        state = opt.state[layer.weight]
        torch.testing.assert_close(torch.kron(state["kfac_G"], state["kfac_A"]), torch.outer(g, g))


def test_linear_factors_equal_per_example_dense_computation():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(5, 4), nn.ReLU(inplace=True), nn.Linear(4, 3, bias=False))
    x, y = torch.randn(7, 5), torch.randint(0, 3, (7,))
    per_example = _per_example_grads(model, x, y)
    hidden = torch.relu(model[0](x)).detach()
    opt = _capture_once(model, x, y)
    first, second = opt.state[model[0].weight], opt.state[model[2].weight]
    a0 = torch.cat([x, torch.ones(7, 1)], dim=1)
    torch.testing.assert_close(first["kfac_A"], a0.T @ a0 / 7)
    torch.testing.assert_close(second["kfac_A"], hidden.T @ hidden / 7)  # bias-free: no 1 appended
    g0 = per_example["0.bias"]  # a Linear layer's per-example bias gradient is g_n itself
    torch.testing.assert_close(first["kfac_G"], g0.T @ g0 / 7)
    # bias-free last layer: g_n from the per-example weight gradient g_n h_n^T
    g2 = torch.stack([per_example["2.weight"][n] @ hidden[n] / hidden[n].dot(hidden[n]) for n in range(7)])
    torch.testing.assert_close(second["kfac_G"], g2.T @ g2 / 7)


class TinyConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(2, 3, 3, padding=1)
        self.c2 = nn.Conv2d(3, 2, 2, stride=2, bias=False)
        self.fc = nn.Linear(2 * 3 * 3, 3)

    def forward(self, x):
        return self.fc(self.c2(torch.relu_(self.c1(x))).flatten(1))  # in-place ReLU on c1's output


def test_conv_factors_equal_dense_kfc_computation():
    """A = mean over (n, t) of [patch, 1] outer products; G = (1/N) sum over (n, t) of g g^T; and
    sum_t g_nt a_nt^T is the per-example weight gradient from torch.func."""
    torch.manual_seed(2)
    model = TinyConvNet()
    x, y = torch.randn(4, 2, 6, 6), torch.randint(0, 3, (4,))
    per_example = _per_example_grads(model, x, y)
    # dense per-example output gradients: examples do not interact, so d(sum_n loss_n)/d s_n = g_n
    s1 = model.c1(x)
    h1 = torch.relu(s1)
    s2 = model.c2(h1)
    total = F.cross_entropy(model.fc(s2.flatten(1)), y, reduction="sum")
    g1, g2 = torch.autograd.grad(total, (s1, s2))
    patches1 = _explicit_patches(x, 3, padding=1)  # (N, 36, 18)
    patches1 = torch.cat([patches1, torch.ones(*patches1.shape[:2], 1)], dim=2)
    patches2 = _explicit_patches(h1.detach(), 2, stride=2)  # (N, 9, 12), no bias
    rows_g1 = g1.permute(0, 2, 3, 1).reshape(4, -1, 3)
    rows_g2 = g2.permute(0, 2, 3, 1).reshape(4, -1, 2)
    for n in range(4):  # the KFC decomposition of each example's gradient
        torch.testing.assert_close(rows_g1[n].T @ patches1[n], grad_matrix_of(per_example, "c1", n))
        torch.testing.assert_close(rows_g2[n].T @ patches2[n], per_example["c2.weight"][n].reshape(2, -1))
    opt = _capture_once(model, x, y)
    for layer, patches, rows in ((model.c1, patches1, rows_g1), (model.c2, patches2, rows_g2)):
        flat_a, flat_g = patches.reshape(-1, patches.shape[-1]), rows.reshape(-1, rows.shape[-1])
        torch.testing.assert_close(opt.state[layer.weight]["kfac_A"], flat_a.T @ flat_a / flat_a.shape[0])
        torch.testing.assert_close(opt.state[layer.weight]["kfac_G"], flat_g.T @ flat_g / 4)


def grad_matrix_of(per_example, prefix, n):
    weight = per_example[f"{prefix}.weight"][n]
    return torch.cat([weight.reshape(weight.shape[0], -1), per_example[f"{prefix}.bias"][n][:, None]], dim=1)


def test_true_fisher_uses_labels_sampled_from_the_model():
    torch.manual_seed(3)
    model = TinyConvNet()
    x, y = torch.randn(5, 2, 6, 6), torch.randint(0, 3, (5,))
    logits = model(x)
    sampled = sample_labels(logits, torch.Generator().manual_seed(11))
    s1 = model.c1(x)
    out = model.fc(model.c2(torch.relu(s1)).flatten(1))
    (g1,) = torch.autograd.grad(F.cross_entropy(out, sampled, reduction="sum"), (s1,))
    rows = g1.permute(0, 2, 3, 1).reshape(-1, 3)
    opt = _capture_once(model, x, y, fisher="true", seed=11)
    # float64 throughout: a sampled loss evaluated in float32 would be off by ~1e-8 (the default tolerance hid it)
    torch.testing.assert_close(opt.state[model.c1.weight]["kfac_G"], rows.T @ rows / 5, rtol=1e-12, atol=1e-15)


def test_factor_moving_average_only_on_covariance_steps():
    """decay 0.5, period 3: after steps 0..3 the factor is 0.5 F(step 0) + 0.5 F(step 3)."""
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    opt = KFAC(model, lr=0.1, momentum=0.0, stat_decay=0.5, fisher="empirical", cov_update_every=3,
               inv_update_every=100, weight_decay=0.0)
    batches = [(torch.randn(6, 3), torch.randint(0, 2, (6,))) for _ in range(4)]
    expected = []
    for step, (x, y) in enumerate(batches):
        if step % 3 == 0:
            hidden = torch.tanh(model[0](x)).detach()
            a = torch.cat([hidden, torch.ones(6, 1)], dim=1)
            expected.append(a.T @ a / 6)
        opt.step(lambda x=x, y=y: (opt.zero_grad(), F.cross_entropy(model(x), y).backward()))
    torch.testing.assert_close(opt.state[model[2].weight]["kfac_A"], 0.5 * expected[0] + 0.5 * expected[1])


def test_no_capture_under_no_grad_and_batchnorm_sees_one_forward_per_step():
    torch.manual_seed(5)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, bias=False), nn.BatchNorm2d(3), nn.ReLU(inplace=True),
                          nn.Flatten(), nn.Linear(3 * 4 * 4, 2))
    x, y = torch.randn(4, 2, 6, 6), torch.randint(0, 2, (4,))
    opt = KFAC(model, lr=0.1, cov_update_every=1)
    with torch.no_grad():
        model(x)  # evaluation forward between steps: ignored
    assert "kfac_A" not in opt.state[model[0].weight]
    opt.step(lambda: (opt.zero_grad(), F.cross_entropy(model(x), y).backward()))
    assert int(model[1].num_batches_tracked) == 2  # the no_grad forward and the step's single forward
    assert opt.state[model[0].weight]["kfac_A"].shape == (18, 18)


def test_grad_matrix_round_trip():
    layer = nn.Conv2d(2, 3, 2)
    layer.weight.grad, layer.bias.grad = torch.randn_like(layer.weight), torch.randn_like(layer.bias)
    weight, bias = split_matrix(layer, grad_matrix(layer))
    assert torch.equal(weight, layer.weight.grad) and torch.equal(bias, layer.bias.grad)


def test_model_that_is_itself_a_linear_layer():
    """Logistic regression: the layer and model hooks sit on one module; g_n = softmax_n - onehot(y~_n)."""
    torch.manual_seed(6)
    model = nn.Linear(3, 4)
    x, y = torch.randn(6, 3), torch.randint(0, 4, (6,))
    logits = model(x).detach()
    sampled = sample_labels(logits, torch.Generator().manual_seed(2))
    g = torch.softmax(logits, dim=1) - F.one_hot(sampled, 4)
    opt = _capture_once(model, x, y, fisher="true", seed=2)
    torch.testing.assert_close(opt.state[model.weight]["kfac_G"], g.T @ g / 6, rtol=1e-12, atol=1e-15)
