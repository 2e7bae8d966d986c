"""hoopt-bench epoch: training time per step of NewtonSummary (paper settings, T = 10, summary batch 100)
against Adam on the same model, data and batch size, in one process.

    hoopt-bench epoch [--models mlp,lenet] [--batch 100] [--steps 60] [--repeats 3] [--device cpu]

Each timed run starts after the warm-up refreshes (parameters moving) and covers whole periods, so the
per-step figure includes one summary refresh every T steps.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch.func import functional_call

from ...models import build_model
from ...optimizers.newton_summary import NewtonSummary
from ...optimizers.protocol import TrainingContext

SHAPES = {"mlp": (1, 28, 28)}
PAPER = {"mlp": (0.03, 3e-4), "lenet": (0.3, 3e-4), "vgg": (0.3, 1e-5), "bigmlp": (0.1, 3e-6)}


def _setup(name, args, device):
    shape = SHAPES.get(name, (3, 32, 32))
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.examples, *shape, generator=gen).to(device)
    y = torch.randint(0, 10, (args.examples,), generator=gen).to(device)
    model = build_model(name).to(device)
    return model, x, y


def _context(model, x, y, device):
    def sample_batch(size, generator):
        index = torch.randint(0, len(x), (size,), generator=generator, device=device)
        return x[index], y[index]

    loss = lambda params, batch: F.cross_entropy(functional_call(model, dict(params), (batch[0],)), batch[1])
    names = [n for n, _ in model.named_parameters()]
    return TrainingContext(model, names, loss, sample_batch, lambda b: model(b[0]), True, device)


def _time_steps(model, optimizer, x, y, steps, batch, device, generator):
    def one_step():
        index = torch.randint(0, len(x), (batch,), generator=generator, device=device)

        def closure():
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x[index]), y[index])
            loss.backward()
            return loss

        optimizer.step(closure)

    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        one_step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps, one_step


def bench_model(name, args, device):
    damping, lr = PAPER.get(name, (0.1, 1e-4))
    model, x, y = _setup(name, args, device)
    adam_model = build_model(name).to(device)
    adam_model.load_state_dict(model.state_dict())
    ours = NewtonSummary(model.named_parameters(), damping=damping, lambda_int=1.0, period=10,
                         summary_batch_size=100, window=4, warmup=3)
    ours.bind(_context(model, x, y, device))
    adam = torch.optim.Adam(adam_model.parameters(), lr=lr)
    gen = torch.Generator(device=device).manual_seed(1)
    steps = max(10, args.steps // 10 * 10)
    # warm-up: NewtonSummary's 3 accumulating refreshes (30 steps) and Adam's first steps
    _time_steps(model, ours, x, y, 30, args.batch, device, gen)
    _time_steps(adam_model, adam, x, y, 10, args.batch, device, gen)
    times = {"adam": [], "newton_summary": []}
    for _ in range(args.repeats):  # interleaved
        times["adam"].append(_time_steps(adam_model, adam, x, y, steps, args.batch, device, gen)[0])
        times["newton_summary"].append(_time_steps(model, ours, x, y, steps, args.batch, device, gen)[0])
    return {k: statistics.median(v) for k, v in times.items()}


def run(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="hoopt-bench epoch", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="mlp,lenet")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--steps", type=int, default=60, help="steps per timed run (whole periods of 10)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--examples", type=int, default=5000, help="size of the synthetic training set")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    print(f"time per training step, batch {args.batch}, T = 10, {args.device}, {torch.get_num_threads()} threads, "
          f"median of {args.repeats} runs of {args.steps} steps")
    print(f"{'model':8} {'adam ms':>9} {'newton_summary ms':>18} {'ratio':>7}")
    for name in args.models.split(","):
        t = bench_model(name.strip(), args, device)
        print(f"{name:8} {t['adam'] * 1e3:>9.2f} {t['newton_summary'] * 1e3:>18.2f} "
              f"{t['newton_summary'] / t['adam']:>6.2f}x", flush=True)


if __name__ == "__main__":
    import sys

    run(sys.argv[1:])
