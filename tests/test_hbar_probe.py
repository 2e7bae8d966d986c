"""The Hbar probe equals brute force: the Hessian of phi(t) = L(theta + sum_i t_i g_i) over the whole training
split, g the full-batch gradient, in float64; and it runs through hoopt-train as experiment=probe_lenet."""

import torch

from conftest import read_status, run_cli, tensorboard_tags
from hoopt.runner.data.dataset import Dataset, Split
from hoopt.runner.analysis.hbar_probe import HbarProbe
from hoopt.runner.tasks import ClassificationTask


def tiny_task():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3)).double()
    g = torch.Generator().manual_seed(1)
    split = Split(torch.randn(23, 4, generator=g, dtype=torch.float64), torch.randint(0, 3, (23,), generator=g))
    dataset = Dataset("tiny", (4,), 3, split, None, None)
    return model, ClassificationTask(dataset, 5, 100, torch.Generator(), torch.device("cpu"))


def test_probe_matches_brute_force_full_batch():
    model, task = tiny_task()
    result = HbarProbe(task, chunk_size=7).measure(model)  # 4 uneven chunks: the weighting must be exact
    names = [n for n, _ in model.named_parameters()]
    params = {n: p.detach() for n, p in model.named_parameters()}
    inputs, targets = task.dataset.train.inputs, task.dataset.train.targets
    loss = lambda p: torch.nn.functional.cross_entropy(torch.func.functional_call(model, p, (inputs,)), targets)  # noqa: E731
    leaf = {n: p.clone().requires_grad_(True) for n, p in params.items()}
    gradient = dict(zip(names, torch.autograd.grad(loss(leaf), list(leaf.values()))))

    def phi(t):
        return loss({n: params[n] + t[i] * gradient[n] for i, n in enumerate(names)})

    t0 = torch.zeros(len(names), dtype=torch.float64)
    expected_h = torch.autograd.functional.hessian(phi, t0)
    expected_g = torch.autograd.functional.jacobian(phi, t0)
    assert result["labels"] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert torch.allclose(result["hbar"], expected_h, rtol=1e-8, atol=1e-12)
    assert torch.allclose(result["gbar"], expected_g, rtol=1e-8, atol=1e-12)
    assert torch.allclose(result["gbar"], torch.stack([gradient[n].pow(2).sum() for n in names]))


def test_probe_images_are_split_into_blocks():
    model, task = tiny_task()
    probe = HbarProbe(task)
    result = probe.measure(model)
    images = probe.images(result["hbar"], result["labels"])
    assert set(images) == {f"probe/{m}/{b}" for m in ("hbar", "hbar_inv")
                           for b in ("weight_weight", "bias_bias", "weight_bias")}
    for image in images.values():
        assert image.ndim == 3 and image.shape[0] == 3 and 0 <= image.min() and image.max() <= 1


def test_probe_lenet_preset_runs(tmp_path, tiny_data):
    run_dir = tmp_path / "probe"
    run_cli(["experiment=probe_lenet", f"dataset.root={tiny_data}", "trainer.epochs=2", "trainer.batch_size=20",
             f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert read_status(run_dir)["status"] == "completed"
    acc = tensorboard_tags(str(run_dir))
    assert "probe/hbar/weight_bias" in acc.Tags()["images"]
    assert len(acc.Images("probe/hbar_inv/weight_weight")) == 2  # before each of the two epochs
