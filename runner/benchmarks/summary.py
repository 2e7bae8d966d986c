"""hoopt-bench summary: one NewtonSummary refresh (gbar, Hbar, D3 on a batch of 100) in units of one
gradient evaluation, ours (optimizers/newton_summary/summaries.py) against the 2S + 1-call reference
procedure (optimizers/newton_summary/reference.py), interleaved in one process.

    hoopt-bench summary [--models mlp,lenet,vgg,bigmlp] [--batch 100] [--repeats 5] [--device cpu|cuda|auto]
                        [--bigmlp-width 1024]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch.func import functional_call

from ...models import build_model
from ...optimizers.newton_summary import build_partition, hessian_summary
from ...optimizers.newton_summary.reference import reference_summary
from .device import add_device_argument
from .timing import interleaved_medians

SHAPES = {"mlp": (1, 28, 28)}


def bench_model(name: str, args: argparse.Namespace) -> tuple[int, dict[str, float], float]:
    """S, the median seconds of a gradient, the reference and ours, and the largest relative difference."""
    device = args.device
    kwargs = {"width": args.bigmlp_width} if name == "bigmlp" else {}
    model = build_model(name, **kwargs).to(device)
    shape = SHAPES.get(name, (3, 32, 32))
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, *shape, generator=gen).to(device)
    y = torch.randint(0, 10, (args.batch,), generator=gen).to(device)
    params = {n: p.detach() for n, p in model.named_parameters()}
    loss_fn = lambda p: F.cross_entropy(functional_call(model, p, (x,)), y)
    partition = build_partition("canonical", list(params))
    leaves = {n: p.clone().requires_grad_(True) for n, p in params.items()}

    def gradient():
        return torch.autograd.grad(loss_fn(leaves), list(leaves.values()))

    direction = dict(zip(params, (g.detach() for g in gradient())))
    functions = {
        "gradient": gradient,
        "reference": lambda: reference_summary(loss_fn, params, direction, partition),
        "ours": lambda: hessian_summary(loss_fn, params, direction, partition),
    }
    ref, ours = functions["reference"](), functions["ours"]()
    error = max(((a.cpu() - b.cpu()).abs().max() / b.abs().max().cpu().clamp_min(1e-30)).item()
                for a, b in zip(ours, ref))
    return partition.size, interleaved_medians(functions, device, args.repeats), error


def run(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="hoopt-bench summary", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="mlp,lenet,vgg,bigmlp")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    add_device_argument(parser)
    parser.add_argument("--bigmlp-width", type=int, default=1024, help="reduce for a quick smoke test")
    args = parser.parse_args(argv)
    print(f"summary refresh, batch {args.batch}, {args.device}, {torch.get_num_threads()} threads, "
          f"median of {args.repeats} (times in gradient evaluations)")
    print(f"{'model':8} {'S':>3} {'grad ms':>9} {'reference':>10} {'ours':>7} {'speed-up':>9} {'max rel err':>12}")
    for name in args.models.split(","):
        S, t, error = bench_model(name.strip(), args)
        g = t["gradient"]
        print(f"{name:8} {S:>3} {g * 1e3:>9.1f} {t['reference'] / g:>10.2f} {t['ours'] / g:>7.2f} "
              f"{t['reference'] / t['ours']:>8.2f}x {error:>12.1e}", flush=True)


if __name__ == "__main__":
    import sys

    run(sys.argv[1:])
