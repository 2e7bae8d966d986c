"""hoopt-bench summary: one NewtonSummary refresh (gbar, Hbar, D3 on a batch of 100) in units of one
gradient evaluation, ours (optimizers/newton_summary/summaries.py) against the reference procedure of
SPEC 1 (2S + 1 sequential autograd calls on the parameter tensors, written out below), in one process.

    hoopt-bench summary [--models mlp,lenet,vgg,bigmlp] [--batch 100] [--repeats 5] [--device cpu]
                        [--bigmlp-width 1024] [--vmap]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch.func import functional_call

from ...models import build_model
from ...optimizers.newton_summary import build_partition, hessian_summary

SHAPES = {"mlp": (1, 28, 28)}


def reference_summary(loss_fn, params, direction, partition):
    """SPEC 1's reference: forward, gradient with a graph, S restricted double backwards (upper triangle,
    mirrored), then S third backwards of Hbar_ii restricted to group i."""
    names = list(params)
    leaves = {n: p.detach().requires_grad_(True) for n, p in params.items()}
    groups = [[leaves[n] for n in g] for g in partition.groups]
    units = [[direction[n] for n in g] for g in partition.groups]
    S = partition.size
    loss = loss_fn(leaves)
    flat = [t for g in groups for t in g]
    grads = dict(zip(map(id, flat), torch.autograd.grad(loss, flat, create_graph=True)))
    gbar = [sum((grads[id(t)] * u).sum() for t, u in zip(groups[i], units[i])) for i in range(S)]
    hbar = torch.zeros(S, S, dtype=torch.float64)
    own = []
    for i in range(S):
        inputs = [t for j in range(i, S) for t in groups[j]]
        rows = torch.autograd.grad(gbar[i], inputs, create_graph=True, allow_unused=True, materialize_grads=True)
        start, entries = 0, []
        for j in range(i, S):
            entries.append(sum((r * u).sum() for r, u in zip(rows[start:start + len(groups[j])], units[j])))
            start += len(groups[j])
        for j, e in zip(range(i, S), entries):
            hbar[i, j] = hbar[j, i] = float(e.detach())
        own.append(entries[0])
    d3 = torch.zeros(S, dtype=torch.float64)
    for i in range(S):
        thirds = torch.autograd.grad(own[i], groups[i], retain_graph=True, allow_unused=True, materialize_grads=True)
        d3[i] = float(sum((t * u).sum() for t, u in zip(thirds, units[i])).detach())
    return torch.tensor([float(g.detach()) for g in gbar], dtype=torch.float64), hbar, d3


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _median_times(functions, repeats, device):
    for f in functions.values():  # warm-up
        f()
    times = {k: [] for k in functions}
    for _ in range(repeats):  # interleaved, so that load changes hit all alike
        for k, f in functions.items():
            _sync(device)
            start = time.perf_counter()
            f()
            _sync(device)
            times[k].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def bench_model(name, args, device):
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
    if args.vmap:
        functions["vmap"] = lambda: hessian_summary(loss_fn, params, direction, partition, strategy="vmap")
    ref, ours = functions["reference"](), functions["ours"]()
    error = max(((a.cpu() - b.cpu()).abs().max() / b.abs().max().cpu().clamp_min(1e-30)).item()
                for a, b in zip(ours, ref))
    times = _median_times(functions, args.repeats, device)
    return partition.size, times, error


def run(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="hoopt-bench summary", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="mlp,lenet,vgg,bigmlp")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bigmlp-width", type=int, default=1024, help="reduce for a quick smoke test")
    parser.add_argument("--vmap", action="store_true", help="also time the torch.func vmap strategy")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    print(f"summary refresh, batch {args.batch}, {args.device}, {torch.get_num_threads()} threads, "
          f"median of {args.repeats} (times in gradient evaluations)")
    header = f"{'model':8} {'S':>3} {'grad ms':>9} {'reference':>10} {'ours':>7} {'speed-up':>9} {'max rel err':>12}"
    print(header + ("  vmap" if args.vmap else ""))
    for name in args.models.split(","):
        S, t, error = bench_model(name.strip(), args, device)
        g = t["gradient"]
        line = (f"{name:8} {S:>3} {g * 1e3:>9.1f} {t['reference'] / g:>10.2f} {t['ours'] / g:>7.2f} "
                f"{t['reference'] / t['ours']:>8.2f}x {error:>12.1e}")
        print(line + (f"  {t['vmap'] / g:.2f}" if args.vmap else ""), flush=True)


if __name__ == "__main__":
    import sys

    run(sys.argv[1:])
