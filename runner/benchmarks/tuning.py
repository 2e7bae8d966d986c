"""How reliably a tuning study finds a good point for its budget (``hoopt-bench tuning``).

A study's best value depends on its sampler's seed as much as on its budget, and one study says nothing about
that spread. This benchmark runs the same study (a tuning preset on a synthetic objective, its search space and
its sampler as ``hoopt-train -m`` builds them) for several budgets (``--trials``) and several sampler seeds, and
prints, per budget, CMA-ES's population, the spread of the best values over the seeds, and how many of the seeds
reach the target (by default twice the paper's value for that optimizer: the LODO paper, Table 8).

Each trial trains in this process through hoopt's own pieces (model, task and optimizer from the composed config,
steps through the closure the training loop uses, the divergence rule, the ``tune`` objective), without writing run
dirs, so that hundreds of studies take minutes; a test checks that a point scores here exactly as a tuning trial of
``hoopt-train`` scores it.

    hoopt-bench tuning                                  # Adam on Rosenbrock: 32, 96 and 320 trials, 20 seeds each
    hoopt-bench tuning --trials 8 --sampler-seeds 2     # smoke test
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
import warnings

import torch
from omegaconf import OmegaConf

from ...models import SYNTHETIC_MODELS
from ..reports.measures import PAPER_LAST_FRACTION_LOSS
from ..training.build import build_model_for, build_optimizer, build_task, seed_everything
from ..training.loop import closure_for, is_divergent, run_dependencies
from ..training.objective import reduce_records, tune_settings
from ..training.presets import compose_config
from ..training.run import loop_settings
from .device import add_device_argument


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="hoopt-bench tuning", description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="lodo_rosenbrock_tune", help="a tuning preset on a synthetic task")
    parser.add_argument("--optimizer", default="adam")
    parser.add_argument("--trials", default="32,96,320", help="comma-separated study budgets (hydra.sweeper.n_trials)")
    parser.add_argument("--sampler-seeds", type=int, default=20, help="studies per budget, sampler seeds 0, 1, ...")
    parser.add_argument("--target", type=float, default=None,
                        help="a study reaches it when its best value is at most this (default: 2 x the paper's)")
    parser.add_argument("overrides", nargs="*", help="more config overrides, e.g. hydra.sweeper.generations=null")
    add_device_argument(parser)
    args = parser.parse_args(argv)
    try:
        args.budgets = [int(n) for n in args.trials.split(",")]
    except ValueError:
        parser.error(f"--trials={args.trials} is not a comma-separated list of whole numbers; e.g. --trials 32,96")
    if min(args.budgets) < 1 or args.sampler_seeds < 1:
        parser.error("--trials and --sampler-seeds must be positive")
    return args


def refuse(message: str) -> None:
    print(f"hoopt-bench tuning: {message}", file=sys.stderr)
    sys.exit(2)


class Study:
    """The preset's study for one optimizer: its composed config, its searched parameters and its sweeper."""

    def __init__(self, experiment: str, optimizer: str, overrides: list[str], device: torch.device):
        from hydra.core.override_parser.overrides_parser import OverridesParser
        from hydra.utils import get_class

        from hydra_plugins.hoopt_tuning._space import mark_list_elements, parse_param
        from hydra_plugins.hoopt_tuning._study import StudyPlan

        cfg = compose_config([f"experiment={experiment}", f"optimizer={optimizer}", *overrides], hydra=True)
        if cfg.model.name not in SYNTHETIC_MODELS:
            refuse(f"{experiment} trains model '{cfg.model.name}', not a synthetic objective; give a preset such as "
                   f"--experiment lodo_rosenbrock_tune.")
        sweeper = OmegaConf.to_container(cfg.hydra.sweeper, resolve=True)
        self.cfg = OmegaConf.create({k: cfg[k] for k in cfg if k != "hydra"})
        self.settings = tune_settings(self.cfg)
        # what run_steps computes: the LODO presets' objective, over a step budget, every step logged
        if ((self.settings.metric, self.settings.reduce) != ("train/loss", "mean_last")
                or self.cfg.trainer.steps is None or self.cfg.logger.log_every != 1):
            refuse(f"{experiment} ranks runs by {self.settings.reduce} {self.settings.metric} (trainer.steps "
                   f"{self.cfg.trainer.steps}, logger.log_every {self.cfg.logger.log_every}); this benchmark scores "
                   f"mean_last train/loss over a step budget logged every step, as the lodo_*_tune presets do.")
        if sweeper.get("_target_") != "hydra_plugins.hoopt_tuning.sweeper.TuningSweeper":
            refuse(f"{experiment} does not use hoopt's tuning sweeper; give a tuning preset (experiment=*_tune).")
        self.device = device
        parser = OverridesParser.create()
        spaces = (sweeper.get("spaces") or {}).get("optimizer") or {}
        if spaces and optimizer not in spaces:  # the sweeper refuses such a study the same way
            refuse(f"{experiment} has no search space for optimizer={optimizer}; choose one of: "
                   f"{', '.join(sorted(spaces))}.")
        specs = {**(sweeper.get("params") or {}), **(spaces.get(optimizer) or {})}
        self.plain = OmegaConf.to_container(self.cfg, resolve=True)
        # the seed is fixed per study, and a config group in params (optimizer: adam,sgd,...) makes one study per
        # choice, not a searched dimension
        specs = {k: v for k, v in specs.items() if k != "seed" and not isinstance(self.plain.get(k), dict)}
        self.params = [parse_param(parser.parse_overrides([f"{k}={v}"])[0]) for k, v in specs.items()]
        if not self.params:
            refuse(f"{experiment} searches nothing for optimizer={optimizer}; give a preset with a search space.")
        mark_list_elements(self.params, self.plain)
        self.plan = StudyPlan("bench", [], self.params, {})
        options = {k: v for k, v in sweeper.items() if k not in ("_target_", "params", "spaces")}
        self.sweeper_class, self.options = get_class(sweeper["_target_"]), options

    def sampler(self, seed: int, n_trials: int):
        options = {**self.options, "sampler": {**self.options["sampler"], "seed": seed}, "n_trials": n_trials}
        sweeper = self.sweeper_class(**options)
        return sweeper._sampler(self.plan, n_trials), sweeper.digits

    def score(self, values: dict) -> float:
        """The objective of one trial with these values (config keys, as the sweeper gives them to a job)."""
        from hydra_plugins.hoopt_tuning._space import point_overrides

        point = point_overrides(self.params, values, self.plain)  # the job's overrides, as the sweeper writes them
        cfg = OmegaConf.merge(self.cfg, OmegaConf.from_dotlist([o.lstrip("+") for o in point]))
        seed_everything(int(cfg.seed), deterministic=False)
        model = build_model_for(cfg, None, self.device)
        task = build_task(cfg, None, model, self.device)
        settings = loop_settings(cfg)
        optimizer = build_optimizer(cfg, model, run_dependencies(model, task, settings))
        return run_steps(model, task, optimizer, settings, self.settings)


def run_steps(model, task, optimizer, settings, tune) -> float:
    """Train for the run's steps with the loop's closure and divergence rule, every step logged, and return the
    run's objective as objective.py computes it from those records (``tune``: TuneSettings); +inf if it diverged."""
    total = int(settings.steps)
    records, reference = [], None
    while len(records) < total:
        for batch in task.epoch_batches():
            if len(records) >= total:
                break
            value = float(optimizer.step(closure_for(optimizer, task, model, batch)).detach())
            reference = value if reference is None and math.isfinite(value) else reference
            if is_divergent(value, reference, settings.divergence_factor):
                return math.inf
            records.append({"step": len(records) + 1, "train/loss": value})
    value = reduce_records(records, tune, total)
    return math.inf if value is None else value


def run_study(study: Study, seed: int, n_trials: int):
    """One study of ``n_trials`` trials with sampler seed ``seed``, in memory; returns the Optuna study and its
    CMA-ES population (None for other samplers)."""
    import optuna

    from hydra_plugins.hoopt_tuning._study import population

    sampler, digits = study.sampler(seed, n_trials)
    optuna_study = optuna.create_study(sampler=sampler, direction="minimize" if study.settings.mode == "min"
                                       else "maximize")
    distributions = {p.search_name: p.distribution() for p in study.params}
    for _ in range(n_trials):
        trial = optuna_study.ask(distributions)
        values = {p.name: p.value(trial.params[p.search_name], digits) for p in study.params}
        value = study.score(values)
        optuna_study.tell(trial, value if math.isfinite(value) else study.settings.worst)
    cmaes = study.options["sampler"]["name"] == "cmaes"
    popsize = population(study.options["sampler"].get("popsize"), n_trials, study.options.get("generations"))
    return optuna_study, popsize if cmaes else None


def run(argv: list[str]) -> None:
    import optuna

    args = parse(argv)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    torch.set_num_threads(1)
    study = Study(args.experiment, args.optimizer, args.overrides, args.device)
    paper = PAPER_LAST_FRACTION_LOSS.get((study.cfg.model.name, args.optimizer))
    target = args.target if args.target is not None else (2 * paper if paper is not None else None)
    reached = f"<= {target:.4g}" if target is not None else ""  # the column of studies that reach the target
    sampler = study.options["sampler"]["name"]
    print(f"device {args.device}, {args.experiment} optimizer={args.optimizer}: {study.settings.reduce} "
          f"{study.settings.metric}, sampler {sampler}, sampler seeds 0-{args.sampler_seeds - 1}"
          + (f"; paper {paper:.4g}" if paper is not None else ""))
    print(f"{'trials':>6}{'popsize':>9}{'median best':>13}{'worst best':>12}{'best best':>11}{reached:>14}{'s':>7}")
    for n_trials in args.budgets:
        start = time.perf_counter()
        results = [run_study(study, seed, n_trials) for seed in range(args.sampler_seeds)]
        bests = [optuna_study.best_value for optuna_study, _ in results]
        popsize = results[0][1]
        hits = f"{sum(b <= target for b in bests)}/{len(bests)}" if target is not None else ""
        print(f"{n_trials:>6}{popsize if popsize else '-':>9}{statistics.median(bests):>13.3e}{max(bests):>12.3e}"
              f"{min(bests):>11.3e}{hits:>14}{time.perf_counter() - start:>7.0f}", flush=True)
