"""Today's second-order competitors against Adam, time per step, in one process (``hoopt-bench competitors``).

Per model (paper network and input shape, one random batch on the device), Adam and each competitor (Shampoo,
SOAP, PSGD Kron, AdaHessian, Sophia, with the values a training run uses: configs/optimizer/ and configs/tuned/)
train copies of the same model; whole steps (forward, backward, update) are timed round by round, interleaved,
and the median per step is reported with its ratio to Adam's. AdaHessian and Sophia's steps include the backward
pass with the gradient's graph that their Hutchinson probes need.

    hoopt-bench competitors                                    # mlp and lenet at batch 100 on the CPU
    hoopt-bench competitors --models mlp --batch 16 --steps 2 --repeats 1   # smoke test
"""

from __future__ import annotations

import argparse
import copy

import torch
import torch.nn.functional as F
from hydra.utils import get_class

from ...models import build_model
from ..training.presets import compose_config, tuned_optimizer_options
from .device import add_device_argument
from .timing import interleaved_medians

INPUT_SHAPES = {"mlp": (1, 28, 28), "lenet": (3, 32, 32), "vgg": (3, 32, 32)}
COMPETITORS = ("shampoo", "soap", "kron", "adahessian", "sophia")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="hoopt-bench competitors", description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mlp,lenet", help="comma-separated: mlp, lenet, vgg")
    parser.add_argument("--optimizers", default=",".join(COMPETITORS), help="comma-separated optimizer configs")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--steps", type=int, default=10, help="steps per timed round")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (after one warm-up round)")
    add_device_argument(parser)
    args = parser.parse_args(argv)
    for name in args.models.split(","):
        if name not in INPUT_SHAPES:
            parser.error(f"unknown model '{name}'; choose from {', '.join(INPUT_SHAPES)}")
    if min(args.batch, args.steps, args.repeats) < 1:
        parser.error("--batch, --steps and --repeats must be positive")
    return args


def make_optimizer(model_name: str, optimizer_name: str, model: torch.nn.Module):
    cls = get_class(compose_config([f"model={model_name}", f"optimizer={optimizer_name}"]).optimizer._target_)
    return cls(model.named_parameters(), **tuned_optimizer_options(model_name, optimizer_name))


def steps(model, optimizer, inputs, targets, count):
    def closure(create_graph: bool = False):
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(inputs), targets)
        loss.backward(create_graph=create_graph)
        return loss

    def run():
        for _ in range(count):
            optimizer.step(closure)

    return run


def run(argv: list[str]) -> None:
    args = parse(argv)
    device = args.device
    print(f"device {device}, batch {args.batch}, {args.steps} steps x {args.repeats} rounds (median ms per step)")
    print(f"{'model':8}{'optimizer':12}{'ms/step':>10}{'adam':>10}{'ratio':>8}")
    for model_name in args.models.split(","):
        torch.manual_seed(0)
        base = build_model(model_name, input_shape=INPUT_SHAPES[model_name], num_classes=10).to(device)
        g = torch.Generator().manual_seed(0)
        inputs = torch.randn(args.batch, *INPUT_SHAPES[model_name], generator=g).to(device)
        targets = torch.randint(0, 10, (args.batch,), generator=g).to(device)
        functions = {}
        for name in ["adam", *args.optimizers.split(",")]:
            model = copy.deepcopy(base)
            functions[name] = steps(model, make_optimizer(model_name, name, model), inputs, targets, args.steps)
        seconds = interleaved_medians(functions, device, args.repeats)
        adam_ms = 1000 * seconds["adam"] / args.steps
        for name in args.optimizers.split(","):
            ms = 1000 * seconds[name] / args.steps
            print(f"{model_name:8}{name:12}{ms:10.3f}{adam_ms:10.3f}{ms / adam_ms:8.2f}")
