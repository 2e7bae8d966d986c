"""hoopt-bench loop: the shared training loop against a bare PyTorch loop on the same model, batch, data and
device, in one process. Both sample batches by index from device-resident tensors and take Adam steps;
evaluation and checkpoints are excluded from both (they happen once per epoch, not per step)."""

from __future__ import annotations

import argparse
import tempfile

import torch
import torch.nn.functional as F

from ...models import build_model
from ..data.dataset import Dataset, Split
from ..tasks import ClassificationTask
from ..training.logger import RunLogger
from ..training.loop import LoopSettings, TrainingLoop
from .device import add_device_argument
from .timing import interleaved_medians


def random_cifar(n: int, device) -> Dataset:
    g = torch.Generator().manual_seed(0)
    split = Split(torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g))
    return Dataset("random", (3, 32, 32), 10, split, None, None).to(device)


class TrainingOnlyTask(ClassificationTask):
    """The loop's task without its end-of-epoch evaluation, which the bare loop does not do either."""

    def evaluate(self, model):
        return {}


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
    add_device_argument(parser, default="auto")
    args = parser.parse_args(argv)
    device = args.device
    dataset = random_cifar(args.steps * args.batch_size, device)
    torch.manual_seed(0)
    model = build_model(args.model).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    generator = torch.Generator(device=device).manual_seed(0)

    with tempfile.TemporaryDirectory() as run_dir:
        logger = RunLogger(run_dir)
        settings = LoopSettings(epochs=1, steps=args.steps, log_every=10, image_every=0, checkpoint=False,
                                progress=False)

        def runner_steps():
            task = TrainingOnlyTask(dataset, args.batch_size, 1000, torch.Generator(device=device).manual_seed(0),
                                    device)
            TrainingLoop(model, opt, task, settings, logger, run_dir, device, "").run()

        def bare():
            bare_steps(model, opt, dataset, args.batch_size, args.steps, generator)

        seconds = interleaved_medians({"bare": bare, "hoopt": runner_steps}, device, args.repeats)
        logger.close()
    bare_ms = 1000 * seconds["bare"] / args.steps
    runner_ms = 1000 * seconds["hoopt"] / args.steps
    print(f"device {device}, model {args.model}, batch {args.batch_size}, {args.steps} steps x {args.repeats}")
    print(f"{'':14}{'ms/step':>10}")
    print(f"{'bare loop':14}{bare_ms:10.3f}")
    print(f"{'hoopt loop':14}{runner_ms:10.3f}")
    print(f"ratio hoopt/bare: {runner_ms / bare_ms:.3f} (target <= 1.05)")
