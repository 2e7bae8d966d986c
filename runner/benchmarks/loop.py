"""hoopt-bench loop: the shared training loop against a bare PyTorch loop on the same model, batch, data and
device, in one process. Both sample batches by index from device-resident tensors and take Adam steps;
evaluation and checkpoints are excluded from both (they happen once per epoch, not per step)."""

from __future__ import annotations

import argparse
import tempfile

import torch
import torch.nn.functional as F

from ...models import build_model
from ..benchmarks.timing import median_seconds
from ..training.build import pick_device
from ..data.dataset import Dataset, Split
from ..training.logger import RunLogger
from ..training.loop import LoopSettings, TrainingLoop


def random_cifar(n: int, device) -> Dataset:
    g = torch.Generator().manual_seed(0)
    split = Split(torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g))
    return Dataset("random", (3, 32, 32), 10, split, None, None).to(device)


def bare_steps(model, opt, dataset, batch_size, steps, generator):
    x_all, y_all = dataset.train.inputs, dataset.train.targets
    order = torch.randperm(len(x_all), generator=generator, device=x_all.device)
    for index in order[: steps * batch_size].view(steps, batch_size):
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x_all[index]), y_all[index])
        loss.backward()
        opt.step()


def run(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="hoopt-bench loop", description=__doc__)
    parser.add_argument("--model", default="lenet")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    device = pick_device(args.device)
    dataset = random_cifar(args.steps * args.batch_size, device)
    torch.manual_seed(0)
    model = build_model(args.model).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    generator = torch.Generator(device=device).manual_seed(0)

    with tempfile.TemporaryDirectory() as run_dir:
        logger = RunLogger(run_dir)
        settings = LoopSettings(epochs=1, steps=args.steps, batch_size=args.batch_size, log_every=10, image_every=0,
                                eval_batch_size=1000, steps_per_epoch=None, checkpoint=False, progress=False)

        def runner_steps():
            loop = TrainingLoop(model, opt, dataset, settings, logger, run_dir, device, 0, "")
            loop._evaluate = dict  # evaluation excluded from both sides
            loop.run()

        def bare():
            bare_steps(model, opt, dataset, args.batch_size, args.steps, generator)

        t_bare, t_runner = [], []
        for _ in range(args.repeats):  # interleaved, so drifts in machine load hit both sides alike
            t_bare.append(median_seconds(bare, device, repeats=1, warmup=0 if t_bare else 1))
            t_runner.append(median_seconds(runner_steps, device, repeats=1, warmup=0 if t_runner else 1))
        logger.close()
    bare_ms = 1000 * sorted(t_bare)[len(t_bare) // 2] / args.steps
    runner_ms = 1000 * sorted(t_runner)[len(t_runner) // 2] / args.steps
    print(f"device {device}, model {args.model}, batch {args.batch_size}, {args.steps} steps x {args.repeats}")
    print(f"{'':14}{'ms/step':>10}")
    print(f"{'bare loop':14}{bare_ms:10.3f}")
    print(f"{'hoopt loop':14}{runner_ms:10.3f}")
    print(f"ratio hoopt/bare: {runner_ms / bare_ms:.3f} (target <= 1.05)")
