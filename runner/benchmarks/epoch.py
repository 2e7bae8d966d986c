"""hoopt-bench epoch: training time per step of NewtonSummary against Adam on the same model, data and batch
size, interleaved in one process; both with the values a training run of that model uses (configs/optimizer/
with configs/tuned/: the papers' settings, T = 10, summary batch 100).

    hoopt-bench epoch [--models mlp,lenet] [--batch 100] [--steps 60] [--repeats 3] [--device cpu|cuda|auto]

Each timed run starts after the warm-up refreshes (parameters moving) and covers whole periods, so the
per-step figure includes one summary refresh every T steps.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch.func import functional_call

from ...models import build_model
from ...optimizers.newton_summary import NewtonSummary
from ..training.presets import tuned_optimizer_options
from .device import add_device_argument
from .timing import interleaved_medians

SHAPES = {"mlp": (1, 28, 28)}


class SyntheticLossSampler:
    """NewtonSummary's loss sampler (optimizers/protocol.py, ``LossSampler``) over the benchmark's synthetic
    training set: minibatches drawn with the optimizer's generator, cross-entropy as a function of the
    parameters."""

    def __init__(self, model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor):
        self.model, self.inputs, self.targets = model, inputs, targets

    def sample(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.randint(0, len(self.inputs), (batch_size,), generator=generator, device=self.inputs.device)
        return self.inputs[index], self.targets[index]

    def loss(self, params: Mapping[str, torch.Tensor], batch) -> torch.Tensor:
        return F.cross_entropy(functional_call(self.model, dict(params), (batch[0],)), batch[1])


def _steps(model, optimizer, x, y, batch, generator, count):
    """A function taking ``count`` training steps on minibatches drawn from (x, y)."""

    def run_steps():
        for _ in range(count):
            index = torch.randint(0, len(x), (batch,), generator=generator, device=x.device)

            def closure():
                optimizer.zero_grad()
                loss = F.cross_entropy(model(x[index]), y[index])
                loss.backward()
                return loss

            optimizer.step(closure)

    return run_steps


def bench_model(name: str, args: argparse.Namespace) -> dict[str, float]:
    """Median seconds per training step of Adam and of NewtonSummary, and NewtonSummary's period T."""
    device = args.device
    shape = SHAPES.get(name, (3, 32, 32))
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.examples, *shape, generator=gen).to(device)
    y = torch.randint(0, 10, (args.examples,), generator=gen).to(device)
    model = build_model(name).to(device)
    adam_model = build_model(name).to(device)
    adam_model.load_state_dict(model.state_dict())
    options = tuned_optimizer_options(name, "newton_summary")
    period, warmup = options["period"], options["warmup"]
    ours = NewtonSummary(model.named_parameters(), **options, loss_sampler=SyntheticLossSampler(model, x, y))
    adam = torch.optim.Adam(adam_model.named_parameters(), **tuned_optimizer_options(name, "adam"))
    steps = max(period, args.steps // period * period)  # whole periods: one refresh every T steps
    batches = torch.Generator(device=device).manual_seed(1)
    # untimed: NewtonSummary's accumulating refreshes (parameters frozen meanwhile) and Adam's first steps
    _steps(model, ours, x, y, args.batch, batches, warmup * period)()
    _steps(adam_model, adam, x, y, args.batch, batches, period)()
    seconds = interleaved_medians({"adam": _steps(adam_model, adam, x, y, args.batch, batches, steps),
                                   "newton_summary": _steps(model, ours, x, y, args.batch, batches, steps)},
                                  device, args.repeats, warmup=0)
    return {**{key: value / steps for key, value in seconds.items()}, "period": period}


def run(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="hoopt-bench epoch", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="mlp,lenet")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--steps", type=int, default=60, help="steps per timed run (rounded to whole periods T)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--examples", type=int, default=5000, help="size of the synthetic training set")
    add_device_argument(parser)
    args = parser.parse_args(argv)
    if min(args.batch, args.steps, args.repeats, args.examples) < 1:
        parser.error("--batch, --steps, --repeats and --examples must be positive")
    print(f"time per training step, batch {args.batch}, {args.device}, {torch.get_num_threads()} threads, "
          f"median of {args.repeats} runs of about {args.steps} steps")
    print(f"{'model':8} {'T':>3} {'adam ms':>9} {'newton_summary ms':>18} {'ratio':>7}")
    for name in args.models.split(","):
        t = bench_model(name.strip(), args)
        print(f"{name:8} {t['period']:>3} {t['adam'] * 1e3:>9.2f} {t['newton_summary'] * 1e3:>18.2f} "
              f"{t['newton_summary'] / t['adam']:>6.2f}x", flush=True)


if __name__ == "__main__":
    import sys

    run(sys.argv[1:])
