"""LODO's time per step against Adam's, and its memory per parameter, in one process (``hoopt-bench lodo``).

Per model (paper networks; random inputs and integer targets of the batch size on the device): Adam and
LODO train two copies of the same model on the same fixed batch, each with the values a training run of that
model uses (configs/optimizer/ with configs/tuned/: the LODO paper's image-generator settings for pixelcnn,
Appendix E, Table 6; docs/methods/lodo.md). Each timed step is closure (forward, backward) plus the
optimizer's step. Steps alternate Adam / LODO so both share the machine's drift; after the warm-up steps the
table reports the median ms/step over ``--repeats`` steps, and LODO's optimizer-only time (its ``step()`` on
gradients already there). Memory: the estimate of ``lodo_memory_bytes`` and what the constructed optimizer
actually keeps, per model parameter.

    hoopt-bench lodo                                        # pixelcnn at batch 256 and lenet at batch 100, CPU
    hoopt-bench lodo --device cuda --repeats 50
    hoopt-bench lodo --models lenet --batch 8 --repeats 2 --warmup 1     # smoke test
"""

from __future__ import annotations

import argparse
import copy
import statistics

import torch
import torch.nn.functional as F

from ...models import build_model
from ...optimizers.lodo import LODO, lodo_bytes_per_parameter, measured_state_bytes
from ..training.presets import tuned_optimizer_options
from .device import add_device_argument
from .timing import elapsed

# (input shape, classes, default batch): the LODO paper's generator and the NewtonSummary papers' LeNet
MODELS = {"pixelcnn": ((5, 28, 28), 256, 256), "lenet": ((3, 32, 32), 10, 100)}


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="hoopt-bench lodo", description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="pixelcnn,lenet", help="comma-separated: pixelcnn, lenet")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default: 256 pixelcnn, 100 lenet)")
    parser.add_argument("--repeats", type=int, default=10, help="timed steps per optimizer")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per optimizer first")
    parser.add_argument("--depth", type=int, default=None, help="LODO's N (default: the config's)")
    parser.add_argument("--block-size", type=int, default=None, help="LODO's k (default: the config's)")
    add_device_argument(parser)
    args = parser.parse_args(argv)
    unknown = set(args.models.split(",")) - set(MODELS)
    if unknown:
        parser.error(f"unknown model(s) {sorted(unknown)}; choose from {sorted(MODELS)}")
    if args.repeats < 1 or args.warmup < 0:
        parser.error("--repeats must be at least 1 and --warmup non-negative")
    return args


def _closure(model: torch.nn.Module, optimizer: torch.optim.Optimizer, inputs, targets):
    def closure():
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(inputs), targets)
        loss.backward()
        return loss
    return closure


def bench_model(name: str, args: argparse.Namespace) -> dict[str, float]:
    device = args.device
    shape, classes, default_batch = MODELS[name]
    batch = args.batch or default_batch
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(batch, *shape, generator=generator).to(device)
    targets = torch.randint(0, classes, (batch,), generator=generator).to(device)
    torch.manual_seed(0)
    adam_model = build_model(name, input_shape=shape, num_classes=classes).to(device)
    lodo_model = copy.deepcopy(adam_model)
    n = sum(p.numel() for p in lodo_model.parameters())
    adam = torch.optim.Adam(adam_model.named_parameters(), **tuned_optimizer_options(name, "adam"))
    options = tuned_optimizer_options(name, "lodo")
    options.update({key: value for key, value in (("depth", args.depth), ("block_size", args.block_size))
                    if value is not None})
    lodo = LODO(lodo_model.named_parameters(), **options)
    adam_step = _closure(adam_model, adam, inputs, targets)
    lodo_step = _closure(lodo_model, lodo, inputs, targets)
    times: dict[str, list[float]] = {"adam": [], "lodo": [], "lodo_only": []}
    # Rounds by hand rather than timing.interleaved_medians: LODO's step alone needs fresh gradients, made
    # untimed between two timed calls.
    for i in range(args.warmup + args.repeats):
        a = 1000 * elapsed(lambda: adam.step(adam_step), device)
        b = 1000 * elapsed(lambda: lodo.step(lodo_step), device)
        lodo_step()
        c = 1000 * elapsed(lodo.step, device)
        if i >= args.warmup:
            times["adam"].append(a)
            times["lodo"].append(b)
            times["lodo_only"].append(c)
    median = {key: statistics.median(values) for key, values in times.items()}
    return {
        "params": n, "batch": batch, **median, "ratio": median["lodo"] / median["adam"],
        "block_size": options["block_size"], "depth": options["depth"],
        "estimate_bpp": lodo_bytes_per_parameter(n, block_size=options["block_size"], depth=options["depth"]),
        "kept_bpp": measured_state_bytes(lodo) / n,
    }


def run(argv: list[str]) -> None:
    args = parse(argv)
    print(f"LODO vs Adam, ms per step (closure + step), median of {args.repeats} after {args.warmup} warm-up, "
          f"device {args.device}, {torch.get_num_threads()} threads")
    header = (f"{'model':<10}{'params':>10}{'batch':>7}{'k':>3}{'N':>4}{'Adam ms':>10}{'LODO ms':>10}{'LODO/Adam':>11}"
              f"{'LODO step-only ms':>19}{'est. B/param':>14}{'kept B/param':>14}")
    print(header)
    print("-" * len(header))
    for name in args.models.split(","):
        r = bench_model(name, args)
        print(f"{name:<10}{r['params']:>10,}{r['batch']:>7}{r['block_size']:>3}{r['depth']:>4}"
              f"{r['adam']:>10.1f}{r['lodo']:>10.1f}{r['ratio']:>10.2f}x"
              f"{r['lodo_only']:>19.1f}{r['estimate_bpp']:>14.0f}{r['kept_bpp']:>14.0f}")
    print("est. B/param: lodo_memory_bytes (kept state + step workspace); kept B/param: tensors LODO holds")


if __name__ == "__main__":
    import sys

    run(sys.argv[1:])
