"""K-FAC's time per step against SGD's, in one process (``hoopt-bench kfac``).

Per model (paper network and input shape, one random batch on the device), SGD with momentum and K-FAC
train copies of the same model. K-FAC has the values a training run of that model uses (configs/optimizer/
kfac.yaml with configs/tuned/; the flags below override some); SGD has K-FAC's learning rate, momentum and
weight decay, so that the two differ only by K-FAC's preconditioning.

K-FAC's steps are of three kinds: plain steps (precondition and update), covariance steps (also capture the
factor statistics and, for the true Fisher, back-propagate sampled labels) and the inverse refresh. Each is
timed on its own (median over repeats, after a warm-up), and the schedule gives the amortised cost exactly:

    per step = plain + (covariance - plain) / T_cov + inversion / T_inv

which needs only a few steps even for VGG-11' on the CPU. ``--direct`` also times whole blocks of
T_inv consecutive steps (the schedule itself) to check that sum.

    hoopt-bench kfac                                     # mlp, lenet, vgg at batch 100 on the CPU
    hoopt-bench kfac --models lenet --direct             # plus the direct block measurement
    hoopt-bench kfac --models mlp --batch 16 --repeats 1 --cov-every 2 --inv-every 4   # smoke test
"""

from __future__ import annotations

import argparse
import statistics

import torch
import torch.nn.functional as F

from ...models import build_model
from ...optimizers.kfac import KFAC
from ..training.presets import tuned_optimizer_options
from .device import add_device_argument
from .timing import elapsed

INPUT_SHAPES = {"mlp": (1, 28, 28), "lenet": (3, 32, 32), "vgg": (3, 32, 32)}


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="hoopt-bench kfac", description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mlp,lenet,vgg", help="comma-separated: mlp, lenet, vgg")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--cov-every", type=int, default=None,
                        help="K-FAC covariance period T_cov (default: the config's, the paper's 10)")
    parser.add_argument("--inv-every", type=int, default=None,
                        help="K-FAC inversion period T_inv (default: the config's, the paper's 100)")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds: T_cov steps and one inversion each")
    parser.add_argument("--direct", action="store_true", help="also time blocks of T_inv consecutive steps")
    parser.add_argument("--fisher", default=None, choices=["true", "empirical"], help="default: the config's")
    parser.add_argument("--inverse-method", default=None, choices=["inverse", "eigen"], help="default: the config's")
    add_device_argument(parser)
    args = parser.parse_args(argv)
    for name in args.models.split(","):
        if name not in INPUT_SHAPES:
            parser.error(f"unknown model '{name}'; choose from {', '.join(INPUT_SHAPES)}")
    if any(value is not None and value < 1 for value in (args.batch, args.cov_every, args.inv_every, args.repeats)):
        parser.error("--batch, --cov-every, --inv-every and --repeats must be positive")
    return args


class Trainee:
    """One model copy, its optimizer and a closure on the fixed batch; ``timed_step`` returns ms."""

    def __init__(self, model, optimizer, inputs, targets, device):
        self.model, self.optimizer, self.device = model, optimizer, device

        def closure():
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(inputs), targets)
            loss.backward()
            return loss

        self.closure = closure

    def timed(self, action) -> float:
        return 1000.0 * elapsed(action, self.device)

    def timed_step(self) -> float:
        return self.timed(lambda: self.optimizer.step(self.closure))


def kfac_options(name: str, args: argparse.Namespace) -> dict:
    """K-FAC's configured values for ``name``, with the flags that were given."""
    options = tuned_optimizer_options(name, "kfac")
    flags = {"cov_update_every": args.cov_every, "inv_update_every": args.inv_every, "fisher": args.fisher,
             "inverse_method": args.inverse_method}
    options.update({key: value for key, value in flags.items() if value is not None})
    return options


def _trainees(name: str, args: argparse.Namespace, options: dict) -> tuple[Trainee, Trainee]:
    device = args.device
    torch.manual_seed(0)
    shape = INPUT_SHAPES[name]
    inputs = torch.randn(args.batch, *shape, device=device)
    targets = torch.randint(0, 10, (args.batch,), device=device)
    sgd_model = build_model(name, input_shape=shape, num_classes=10).to(device)
    kfac_model = build_model(name, input_shape=shape, num_classes=10).to(device)
    kfac_model.load_state_dict(sgd_model.state_dict())
    sgd = torch.optim.SGD(sgd_model.named_parameters(), lr=options["lr"], momentum=options["momentum"],
                          weight_decay=options["weight_decay"])
    kfac = KFAC(kfac_model.named_parameters(), **options, model=kfac_model)
    return Trainee(sgd_model, sgd, inputs, targets, device), Trainee(kfac_model, kfac, inputs, targets, device)


def bench_model(name: str, args: argparse.Namespace) -> dict[str, float]:
    options = kfac_options(name, args)
    cov_every, inv_every = options["cov_update_every"], options["inv_update_every"]
    sgd, kfac = _trainees(name, args, options)
    for _ in range(cov_every):  # warm-up; K-FAC's step 0 also captures and inverts
        sgd.timed_step()
        kfac.timed_step()
    times: dict[str, list[float]] = {"sgd": [], "plain": [], "covariance": [], "inversion": []}
    for _ in range(args.repeats):
        for _ in range(cov_every):  # SGD and K-FAC steps alternate, so both see the same machine load
            times["sgd"].append(sgd.timed_step())
            index = kfac.optimizer._step_index
            ms = kfac.timed_step()
            if index % inv_every == 0:  # the schedule's own inversion: count it as a covariance step
                ms -= kfac.optimizer.diagnostics()["kfac/inversion_ms"]
            times["covariance" if index % cov_every == 0 else "plain"].append(ms)
        times["inversion"].append(kfac.timed(kfac.optimizer.update_inverses))
    row = {key: statistics.median(values) if values else float("nan") for key, values in times.items()}
    if not times["plain"]:  # T_cov = 1: every step is a covariance step
        row["plain"] = row["covariance"]
    row["kfac"] = row["plain"] + (row["covariance"] - row["plain"]) / cov_every + row["inversion"] / inv_every
    row["ratio"] = row["kfac"] / row["sgd"]
    if args.direct:
        direct = _direct_blocks(sgd, kfac, inv_every, args.repeats)
        row.update(direct_sgd=direct[0], direct_kfac=direct[1], direct_ratio=direct[1] / direct[0])
    row.update(cov_every=cov_every, inv_every=inv_every, fisher=options["fisher"],
               inverse_method=kfac.optimizer.param_groups[0]["inverse_method"])
    return row


def _direct_blocks(sgd: Trainee, kfac: Trainee, inv_every: int, repeats: int) -> tuple[float, float]:
    """Median ms/step over blocks of T_inv consecutive steps, K-FAC's block starting at an inversion."""
    while kfac.optimizer._step_index % inv_every:
        kfac.optimizer.step(kfac.closure)
    sgd_blocks, kfac_blocks = [], []
    for _ in range(repeats):  # alternating blocks share the machine's drift
        sgd_blocks.append(sgd.timed(lambda: [sgd.optimizer.step(sgd.closure) for _ in range(inv_every)]))
        kfac_blocks.append(kfac.timed(lambda: [kfac.optimizer.step(kfac.closure) for _ in range(inv_every)]))
    return statistics.median(sgd_blocks) / inv_every, statistics.median(kfac_blocks) / inv_every


def run(argv: list[str]) -> None:
    args = parse(argv)
    print(f"K-FAC vs SGD with K-FAC's momentum: batch {args.batch}, device {args.device}, torch threads "
          f"{torch.get_num_threads()}; medians of {args.repeats} rounds, ms")
    header = (f"{'model':<7}{'T_cov':>6}{'T_inv':>6}{'fisher':>10}{'inverse':>9}{'SGD step':>10}{'plain':>9}"
              f"{'cov step':>10}{'inversion':>11}{'K-FAC/step':>12}{'ratio':>7}")
    if args.direct:
        header += f"{'direct SGD':>12}{'direct K-FAC':>14}{'ratio':>7}"
    print(header)
    for name in args.models.split(","):
        r = bench_model(name, args)
        line = (f"{name:<7}{r['cov_every']:>6}{r['inv_every']:>6}{r['fisher']:>10}{r['inverse_method']:>9}"
                f"{r['sgd']:>10.2f}{r['plain']:>9.2f}{r['covariance']:>10.2f}{r['inversion']:>11.1f}"
                f"{r['kfac']:>12.2f}{r['ratio']:>7.2f}")
        if args.direct:
            line += f"{r['direct_sgd']:>12.2f}{r['direct_kfac']:>14.2f}{r['direct_ratio']:>7.2f}"
        print(line, flush=True)
    print("K-FAC/step = plain + (cov step - plain) / T_cov + inversion / T_inv; ratio = K-FAC/step / SGD step")


if __name__ == "__main__":
    import sys

    run(sys.argv[1:])
