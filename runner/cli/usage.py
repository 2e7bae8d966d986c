"""The first lines of ``hoopt-train --help``: what to type, before Hydra's generic help (config groups, the
composed config). Built from the config folders, so it lists what exists."""

from __future__ import annotations

import textwrap

from .argv_checks import group_options

USAGE_FLAGS = ("--help", "-h")

TEXT = """\
hoopt-train: train a model with an optimizer; every setting is a Hydra override (group=option, key=value).

usage:
  hoopt-train [group=option ...] [key=value ...]               one run, in outputs/<date>/<time>_<model>_<optimizer>
  hoopt-train -m seed=0,1,2 optimizer=adam,newton_summary ...  a sweep: one job per combination, in multirun/
  hoopt-train <the same overrides> resume=<run dir>            continue a stopped run from its checkpoint

examples:
  hoopt-train dataset=digits                                   the paper MLP on 8x8 digits with Adam, offline
  hoopt-train model=vgg optimizer=newton_summary               VGG-11' on CIFAR-10 with NewtonSummary
  hoopt-train model=noisy_quadratic optimizer=lodo             LODO on the noisy quadratic bowl
  hoopt-train -m experiment=ns_mlp                             a paper experiment with its sweep

config groups (group=option):
{groups}

frequent keys: seed=N  trainer.epochs=N  trainer.steps=N  trainer.batch_size=N  trainer.device=auto|cpu|cuda
  optimizer.lr=X  optimizer.<hyperparameter>=X  dataset.root=<folder>  logger.log_every=N  hydra.run.dir=<folder>
every key and its meaning: README.md, "Config keys"; the composed config: hoopt-train <overrides> --cfg job
then: tensorboard --logdir outputs;  hoopt-report multirun/<date>/<time>  (figures and a summary over seeds)
"""

GROUPS = (("model", "network or objective (each with its paper dataset)"),
          ("dataset", "data (default: the model's own)"),
          ("optimizer", "method"), ("experiment", "a paper experiment, with its sweep under -m"),
          ("debug", "test aids"))


def usage() -> str:
    lines = []
    for group, meaning in GROUPS:
        lines.append(textwrap.fill(f"{meaning}: {', '.join(group_options(group))}", width=110,
                                   initial_indent=f"  {group:<11} ", subsequent_indent=" " * 14))
    return TEXT.format(groups="\n".join(lines))


def print_usage() -> None:
    print(usage())
    print("== Hydra's help follows ==\n", flush=True)
