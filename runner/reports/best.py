"""``hoopt-report --best-by <metric> <tuning sweep dirs>``: per study (per optimizer), the trial that did best by
``metric``, its overrides, and the exact ``hoopt-train -m seed=...`` command that runs the final seeds with them.

Writes ``best.yaml`` (for scripts), ``best.md`` (printed too) and, per study, two PNGs of the search: the objective
of every trial against its number with the best so far, and one panel per searched parameter (a slice plot).

A tuning sweep (hoopt's tuning sweeper, hydra/sweeper=tune_*) leaves ``tuning.yaml`` in its sweep dir: its studies,
each study's group choices (``optimizer=adam``) and searched parameters. Everything else is read from the run dirs,
and the objective is recomputed from each run's metrics.jsonl (runner/training/objective.py), so ``--best-by`` may
name another metric than the one the study optimised. Any other multirun (a grid run by Hydra's basic sweeper, such
as experiment=ns_kfac_grid) works too: its studies are the config-group choices the jobs share, and the searched
parameters are the other overrides whose values vary, the seed aside.
"""

from __future__ import annotations

import math
import os
import re
import shlex
from dataclasses import dataclass, field

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import NullFormatter  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from ..errors import HooptError  # noqa: E402
from ..training.objective import TuneSettings, objective_value, tune_settings  # noqa: E402
from .runs import STATUSES, Run, find_run_dirs, load_run  # noqa: E402

TUNING_FILE = "tuning.yaml"  # written by hydra_plugins/hoopt_tuning (its TUNING_FILE)
DEFAULT_SEEDS = [0, 1, 2, 3, 4]  # configs/tune/default.yaml's final_seeds, for runs without a tune node


@dataclass
class Trial:
    run: Run
    number: int  # the job's folder number (the trial's number in a tuning study)
    overrides: list[str]  # every task override of the job, as Hydra recorded it
    value: float


@dataclass
class Study:
    label: str
    sweep: str  # the sweep dir, absolute
    outer: list[str]  # the group choices that make the study
    params: list[dict]  # name, override, scale (tuning.yaml's entries)
    trials: list[Trial] = field(default_factory=list)
    best: Trial | None = None


def override_key(override: str) -> str:
    return override.lstrip("+~").split("=", 1)[0]


def _job_number(path: str) -> int:
    match = re.match(r"^(\d+)_", os.path.basename(os.path.normpath(path)))
    return int(match.group(1)) if match else -1


def _recorded_overrides(path: str) -> list[str]:
    file = os.path.join(path, ".hydra", "overrides.yaml")
    return [str(o) for o in OmegaConf.load(file)] if os.path.exists(file) else []


def _group_keys() -> set[str]:
    from ..cli.argv_checks import CONFIG_DIR

    return {name for name in os.listdir(CONFIG_DIR) if os.path.isdir(os.path.join(CONFIG_DIR, name))}


def _studies_of_sweep(path: str) -> list[Study]:
    """The studies of one sweep dir, with their trials (runs without a job number are not trials)."""
    sweep = os.path.abspath(path)
    runs = [load_run(p) for p in find_run_dirs([path])]
    trials = [Trial(run, _job_number(run.path), _recorded_overrides(run.path), math.nan) for run in runs]
    trials = [t for t in trials if t.number >= 0 or len(runs) == 1]
    tuning_path = os.path.join(sweep, TUNING_FILE)
    if os.path.exists(tuning_path):
        record = OmegaConf.to_container(OmegaConf.load(tuning_path))
        studies = [Study("", sweep, list(s.get("outer") or []), list(s.get("params") or []))
                   for s in record.get("studies", [])]
        for study in studies:
            study.trials = [t for t in trials if all(o in t.overrides for o in study.outer)]
        return [s for s in studies if s.trials]
    # Any other multirun: a study per combination of group choices, searching what varies among its jobs.
    groups = _group_keys()
    by_choices: dict[tuple, list[Trial]] = {}
    for trial in trials:
        choices = tuple(sorted(o for o in trial.overrides if override_key(o) in groups))
        by_choices.setdefault(choices, []).append(trial)
    studies = []
    for choices, members in by_choices.items():
        values: dict[str, set] = {}
        for trial in members:
            for o in trial.overrides:
                values.setdefault(override_key(o), set()).add(o)
        varying = sorted(k for k, v in values.items() if len(v) > 1 and k not in groups and k != "seed")
        params = [{"name": k, "override": k, "scale": "categorical"} for k in varying]
        studies.append(Study("", sweep, [c for c in choices if _varies(c, by_choices)], params, members))
    return studies


def _varies(choice: str, by_choices: dict) -> bool:
    """A group choice that tells one study from another (not one every study shares)."""
    return not all(choice in key for key in by_choices)


def _label(study: Study) -> str:
    if study.outer:
        return ",".join(study.outer)
    config = study.trials[0].run.config if study.trials else {}
    return f"{(config.get('model') or {}).get('name')}/{(config.get('optimizer') or {}).get('name')}"


def settings_for(study: Study, metric: str, mode: str | None, reduce: str | None,
                 fraction: float | None) -> TuneSettings:
    """The study's own tune settings with the report's choices on top. A metric other than the tuned one gets
    ``max`` for accuracies and ``min`` otherwise, unless --mode says."""
    config = study.trials[0].run.config if study.trials else {}
    tuned = tune_settings(config)
    if mode is None and metric != tuned.metric:
        mode = "max" if metric.rsplit("/", 1)[-1].startswith("acc") else "min"
    return tune_settings(config, metric=metric, mode=mode, reduce=reduce, fraction=fraction)


def choose(study: Study, settings: TuneSettings) -> None:
    for trial in study.trials:
        trial.value = objective_value(trial.run.config, trial.run.path, None, metric=settings.metric,
                                      mode=settings.mode, reduce=settings.reduce, fraction=settings.fraction)
    finite = sorted((t for t in study.trials if math.isfinite(t.value)), key=lambda t: t.number)
    study.best = None
    for trial in finite:  # ties go to the earlier trial
        if study.best is None or settings.better(trial.value, study.best.value):
            study.best = trial


def final_command(study: Study) -> tuple[list[str], list[str], str]:
    """(the chosen overrides, the final-seeds command as an argument list, its sweep dir)."""
    best = study.best
    searched = {p["override"].lstrip("+~") for p in study.params}
    chosen = [o for o in best.overrides if override_key(o) in searched]
    tune = best.run.config.get("tune") or {}
    final_experiment = tune.get("final_experiment")
    seeds = tune.get("final_seeds") or DEFAULT_SEEDS
    seeds = [seeds] if isinstance(seeds, (int, str)) else seeds
    args = []
    for override in best.overrides:
        key = override_key(override)
        if key in searched or key in ("seed", "resume") or key == "tune" or key.startswith("tune."):
            continue
        if key == "experiment" and final_experiment:  # the tuning preset gives way to the experiment it tunes
            override = f"experiment={final_experiment}"
        args.append(override)
    if final_experiment and not any(override_key(a) == "experiment" for a in args):
        args.insert(0, f"experiment={final_experiment}")
    slug = _slug(",".join(study.outer)) if study.outer else ""
    final_dir = os.path.join(f"{study.sweep.rstrip(os.sep)}-final", slug) if slug else f"{study.sweep}-final"
    command = ["hoopt-train", "-m", "seed=" + ",".join(str(s) for s in seeds), *args, *chosen,
               f"hydra.sweep.dir={final_dir}"]
    return chosen, command, final_dir


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=+-]+", "_", text).strip("_") or "study"


def best_by(paths: list[str], out: str, metric: str, mode: str | None = None, reduce: str | None = None,
            fraction: float | None = None) -> dict:
    """Chooses per study, writes best.yaml, best.md and the search figures in ``out``; returns best.yaml's
    content."""
    studies = [s for p in paths for s in _studies_of_sweep(p)]
    if not studies:
        raise HooptError(f"no runs under {', '.join(paths)}; point --best-by at a tuning sweep dir (hoopt-train -m "
                         f"with hydra/sweeper=tune_*, or any multirun).")
    labels: dict[str, int] = {}
    for study in studies:
        study.label = _label(study)
        labels[study.label] = labels.get(study.label, 0) + 1
    for study in studies:  # the same optimizer tuned in two sweep dirs: keep both, told apart by the dir
        if labels[study.label] > 1:
            study.label += f" ({os.path.basename(study.sweep)})"
    os.makedirs(out, exist_ok=True)
    record: dict = {"metric": metric, "mode": None, "reduce": None, "fraction": None, "studies": {}}
    for study in studies:
        settings = settings_for(study, metric, mode, reduce, fraction)
        record.update(mode=settings.mode, reduce=settings.reduce, fraction=settings.fraction)
        choose(study, settings)
        counts = {s: sum(t.run.status == s for t in study.trials) for s in STATUSES}
        entry: dict = {"sweep": study.sweep, "trials": {"total": len(study.trials), **counts}}
        if study.best is None:
            entry.update(objective=None, trial=None, run_dir=None, overrides=None, command=None,
                         note="no trial completed with a finite value of the metric")
        else:
            chosen, command, final_dir = final_command(study)
            entry.update(objective=study.best.value, trial=study.best.number, run_dir=study.best.run.path,
                         overrides=chosen, command=" ".join(shlex.quote(a) for a in command),
                         final_sweep_dir=final_dir)
        entry["figures"] = search_figures(study, settings, out)
        record["studies"][study.label] = entry
    OmegaConf.save(OmegaConf.create(record), os.path.join(out, "best.yaml"))
    write_markdown(record, out)
    return record


def _fmt(value) -> str:
    return "" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def write_markdown(record: dict, out: str) -> None:
    lines = [f"Best per study by {record['metric']} ({record['mode']}, {record['reduce']}"
             + (f" over the last {record['fraction']:g} of steps" if record["reduce"] == "mean_last" else "")
             + "); best.yaml holds the same.\n",
             "| study | best | trial | trials | completed | diverged | failed | unfinished | chosen overrides |",
             "|---|---|---|---|---|---|---|---|---|"]
    for label, entry in record["studies"].items():
        t = entry["trials"]
        chosen = " ".join(entry["overrides"] or []) or entry.get("note", "")
        lines.append(f"| {label} | {_fmt(entry['objective'])} | {_fmt(entry['trial'])} | {t['total']} | "
                     f"{t['completed']} | {t['diverged']} | {t['failed']} | {t['unfinished']} | {chosen} |")
    lines.append("\nThe final seeds, per study (then `hoopt-report` on the final sweep dirs compares them):\n")
    for label, entry in record["studies"].items():
        if entry["command"]:
            lines.append(f"- {label}:\n\n  ```\n  {entry['command']}\n  ```\n")
    lines.append("Figures: " + ", ".join(f for e in record["studies"].values() for f in e["figures"]))
    with open(os.path.join(out, "best.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


# -- figures of the search ------------------------------------------------------------------------------------

def _param_value(run: Run, param: dict):
    node = run.config
    for part in param["name"].split("."):
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return None
    return node


def search_figures(study: Study, settings: TuneSettings, out: str) -> list[str]:
    """``search_<study>_history.png`` (objective per trial, best so far) and ``search_<study>_slice.png``
    (objective against each searched parameter)."""
    slug = _slug(study.label)
    trials = sorted(study.trials, key=lambda t: t.number)
    finite = [t for t in trials if math.isfinite(t.value)]
    log_y = bool(finite) and all(t.value > 0 for t in finite)
    names = []
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if finite:
        ax.plot([t.number for t in finite], [t.value for t in finite], "o", color="C0", markersize=4,
                label="trial")
        running, xs, ys = None, [], []
        for t in finite:
            if running is None or settings.better(t.value, running):
                running = t.value
            xs.append(t.number)
            ys.append(running)
        ax.step(xs, ys, where="post", color="C1", label="best so far")
    ranked_last = [t for t in trials if not math.isfinite(t.value)]
    if ranked_last:  # drawn on the top (or bottom) edge: they have no value to plot
        edge = max((t.value for t in finite), default=1.0) if settings.mode == "min" else \
            min((t.value for t in finite), default=1.0)
        ax.plot([t.number for t in ranked_last], [edge] * len(ranked_last), "x", color="C3",
                label=f"ranked last ({len(ranked_last)}: diverged, failed or unfinished)")
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel("trial")
    ax.set_ylabel(f"{settings.metric} ({settings.reduce})")
    ax.set_title(f"{study.label}: the search", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    name = f"search_{slug}_history.png"
    fig.savefig(os.path.join(out, name), dpi=110)
    plt.close(fig)
    names.append(name)
    if study.params:
        count = len(study.params)
        fig, axes = plt.subplots(1, count, figsize=(3.6 * count, 3.6), squeeze=False)
        for ax, param in zip(axes[0], study.params):
            points = [(_param_value(t.run, param), t.value) for t in finite]
            points = [(x, y) for x, y in points if x is not None]
            scale = param.get("scale", "linear")
            numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x, _ in points)
            if points and numeric and scale != "categorical":
                xs = [1 - x if scale == "log1m" else x for x, _ in points]
                ax.scatter(xs, [y for _, y in points], s=12, color="C0")
                if scale in ("log", "log1m") and all(x > 0 for x in xs):
                    ax.set_xscale("log")
                    ax.xaxis.set_minor_formatter(NullFormatter())  # labels on every minor tick collide
                ax.set_xlabel(f"1 - {param['name']}" if scale == "log1m" else param["name"])
            elif points:
                categories = sorted({str(x) for x, _ in points}, key=_number_first)
                ax.scatter([categories.index(str(x)) for x, _ in points], [y for _, y in points], s=12, color="C0")
                ax.set_xticks(range(len(categories)), categories, rotation=30, fontsize=7)
                ax.set_xlabel(param["name"])
            if study.best is not None:
                x = _param_value(study.best.run, param)
                if isinstance(x, (int, float)) and not isinstance(x, bool) and scale != "categorical":
                    ax.axvline(1 - x if scale == "log1m" else x, color="C1", linewidth=1)
            if log_y:
                ax.set_yscale("log")
            ax.set_ylabel(settings.metric)
            ax.grid(alpha=0.3)
        fig.suptitle(f"{study.label}: {settings.metric} ({settings.reduce}) against each parameter (best: line)",
                     fontsize=9)
        fig.tight_layout()
        name = f"search_{slug}_slice.png"
        fig.savefig(os.path.join(out, name), dpi=110)
        plt.close(fig)
        names.append(name)
    return names


def _number_first(text: str):
    try:
        return (0, float(text), text)
    except ValueError:
        return (1, 0.0, text)
