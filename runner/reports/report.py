"""Tables and figures of groups of runs (one group = one configuration over seeds).

Every run of a group is counted by status (completed, diverged, failed, unfinished); only completed runs enter
means, standard deviations, curves' means and bands, so a killed 3-epoch run is never averaged with finished
6-epoch ones. Classification runs are measured per epoch (final/best losses and accuracies); synthetic objectives
per step, by the LODO paper's measure (mean training loss over the last 10% of steps) beside the paper's value."""

from __future__ import annotations

import csv
import math
import os
import statistics
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .measures import best, final, mean_loss_last_fraction, paper_value  # noqa: E402
from .runs import STATUSES, Run  # noqa: E402

LOSS = "train/epoch_loss"


@dataclass(frozen=True)
class Column:
    name: str  # the CSV header; a spread column adds "<name>_sd"
    header: str  # the Markdown header
    spread: bool = False  # mean +- sd over the completed runs
    always: bool = False  # shown even when no group has a value (the counts)


COLUMNS = (
    Column("group", "group", always=True),
    Column("runs", "runs", always=True),
    Column("completed", "completed (in means)", always=True),
    Column("diverged", "diverged", always=True),
    Column("failed", "failed", always=True),
    Column("unfinished", "unfinished", always=True),
    # classification (per epoch)
    Column("final_train_loss", "final train loss", spread=True),
    Column("best_train_loss", "best train loss", spread=True),
    Column("final_test_loss", "final test loss", spread=True),
    Column("final_test_acc", "final test acc", spread=True),
    Column("final_val_acc", "final val acc", spread=True),
    Column("best_val_acc", "best val acc", spread=True),
    # synthetic objectives (per step)
    Column("last10pct_loss", "mean loss, last 10% of steps", spread=True),
    Column("paper_value", "paper"),
    Column("paper_source", "paper's source"),
    Column("final_eval_loss", "final eval loss", spread=True),
    # both
    Column("wall_s", "wall s", spread=True),
    Column("time_to_target_s", "time to target s", spread=True),
    Column("target_reached", "reached target"),
)


def mean_sd(values: list[float | None]) -> tuple[float, float]:
    """Mean and sample standard deviation of the finite values (sd nan for fewer than two)."""
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else float("nan")


def time_to_target(run: Run, target: float) -> float | None:
    _, walls, losses = run.series(LOSS)
    return next((w for w, loss in zip(walls, losses) if loss <= target), None)


def _budget(run: Run) -> int:
    steps = run.config.get("trainer", {}).get("steps")
    return int(steps) if isinstance(steps, int) and steps > 0 else run.final_step


def summarise(label: str, runs: list[Run], target: float | None) -> dict:
    """One table row: counts by status over every run, measures as mean/sd over the completed runs."""
    done = [r for r in runs if r.status == "completed"]
    row: dict = {"group": label, "runs": len(runs), **{s: sum(r.status == s for r in runs) for s in STATUSES}}

    def put(name: str, values: list[float | None]) -> None:
        row[name], row[f"{name}_sd"] = mean_sd(values)

    if any(r.synthetic for r in runs):
        put("last10pct_loss", [mean_loss_last_fraction(r.records, _budget(r)) for r in done])
        put("final_eval_loss", [final(r.epochs, "eval/loss") for r in done])
        first = runs[0].config
        optimum = next((final(r.records, "eval/optimum") for r in runs if final(r.records, "eval/optimum") is not None),
                       None)
        row["paper_value"], row["paper_source"] = paper_value(
            first.get("model", {}).get("name"), first.get("optimizer", {}).get("name"), _budget(runs[0]), optimum)
    else:
        put("final_train_loss", [r.last(LOSS) for r in done])
        put("best_train_loss", [best(r.epochs, LOSS, "min") for r in done])
        put("final_test_loss", [r.last("test/loss") for r in done])
        put("final_test_acc", [r.last("test/acc") for r in done])
        put("final_val_acc", [r.last("val/acc") for r in done])
        put("best_val_acc", [best(r.epochs, "val/acc", "max") for r in done])
    put("wall_s", [r.last("time/wall_s") for r in done])
    if target is not None:
        hits = [time_to_target(r, target) for r in done]
        put("time_to_target_s", hits)
        row["target_reached"] = f"{sum(h is not None for h in hits)}/{len(done)}"
    return row


def _absent(value) -> bool:
    return value is None or value == "" or (isinstance(value, float) and math.isnan(value))


def shown_columns(rows: list[dict]) -> list[Column]:
    """The columns some row has a value for (a synthetic report has no accuracies, a run without --target-loss no
    time to target), always with the counts."""
    return [c for c in COLUMNS if c.always or any(not _absent(r.get(c.name)) for r in rows)]


def _fmt(value) -> str:
    if _absent(value):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _cell(row: dict, column: Column) -> str:
    text = _fmt(row.get(column.name))
    if column.spread and text and not _absent(row.get(f"{column.name}_sd")):
        text += f" ± {_fmt(row[column.name + '_sd'])}"
    return text


def write_tables(rows: list[dict], out: str, runs: list[Run] | None = None, root: str | None = None) -> None:
    """summary.csv (one number per cell, spreads in *_sd columns) and summary.md (mean ± sd), then the list of
    runs that are not in the means with what stopped them."""
    columns = shown_columns(rows)
    names = [n for c in columns for n in ((c.name, f"{c.name}_sd") if c.spread else (c.name,))]
    with open(os.path.join(out, "summary.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=names, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({n: ("" if _absent(r.get(n)) else r.get(n)) for n in names} for r in rows)
    counts = {s: sum(r[s] for r in rows) for s in STATUSES}
    total = sum(r["runs"] for r in rows)
    with open(os.path.join(out, "summary.md"), "w") as f:
        f.write(f"{total} runs in {len(rows)} groups: " + ", ".join(f"{counts[s]} {s}" for s in STATUSES)
                + ". Means ± sd (over seeds) and curves use completed runs only.\n\n")
        f.write("| " + " | ".join(c.header for c in columns) + " |\n|" + "---|" * len(columns) + "\n")
        for row in rows:
            f.write("| " + " | ".join(_cell(row, c) for c in columns) + " |\n")
        if any(c.name == "last10pct_loss" for c in columns):
            f.write("\n`mean loss, last 10% of steps`: the LODO paper's measure (steps 181-200 of 200 for "
                    "Rosenbrock); `paper`: its value in the paper at the paper's budget, or the Newton-optimal "
                    "loss of the noisy bowl.\n")
        others = [r for r in (runs or []) if r.status != "completed"]
        if others:
            f.write("\nRuns not in the means:\n\n| run | status | reached | message |\n|---|---|---|---|\n")
            for run in others:
                name = os.path.relpath(os.path.abspath(run.path), root) if root else run.path
                epochs = [r["epoch"] for r in run.records if "epoch" in r]
                reached = (f"epoch {max(epochs) if epochs else run.detail.get('epoch', 0)}, "
                           f"step {run.final_step}")
                raw = run.detail.get("status")
                message = run.message or _STOPPED.get(raw, f"status {raw}")
                f.write(f"| {name} | {run.status} | {reached} | {message.replace('|', '/')} |\n")


_STOPPED = {"running": "no final status: the process was killed (or is still running)",
            None: "no status.json: killed before training started"}


# -- figures ---------------------------------------------------------------------------------------------------

def _curve(run: Run, tag: str, x_axis: str) -> tuple[list[float], list[float]]:
    if x_axis == "step":  # train/loss has a record per logging interval, the rest one per evaluation
        return run.steps(tag) if tag == "train/loss" else run.epoch_steps(tag)
    epochs, walls, values = run.series(tag)
    return (epochs if x_axis == "epoch" else walls), values


def plot_metric(groups: dict[str, list[Run]], tag: str, x_axis: str, path: str, log_y: bool) -> None:
    """Mean over a group's completed runs with a min-max band; diverged runs dashed with an x where they
    stopped; unfinished runs dotted. x_axis: "epoch", "step" or "wall"."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (label, runs) in enumerate(groups.items()):
        colour = f"C{i % 10}"
        finished = [_curve(r, tag, x_axis) for r in runs if r.status == "completed"]
        finished = [c for c in finished if c[1]]
        if finished:
            length = min(len(c[1]) for c in finished)
            x = [statistics.fmean(c[0][k] for c in finished) for k in range(length)]
            ys = [[c[1][k] for c in finished] for k in range(length)]
            ax.plot(x, [statistics.fmean(v) for v in ys], color=colour, label=f"{label} (n={len(finished)})")
            if len(finished) > 1:
                ax.fill_between(x, [min(v) for v in ys], [max(v) for v in ys], color=colour, alpha=0.2)
        for status, style in (("diverged", "--"), ("unfinished", ":")):
            stopped = [r for r in runs if r.status == status]
            for run in stopped:
                xs, values = _curve(run, tag, x_axis)
                points = [(a, b) for a, b in zip(xs, values) if math.isfinite(a) and math.isfinite(b)]
                if points:
                    ax.plot(*zip(*points), color=colour, linestyle=style, alpha=0.7)
                    if status == "diverged":
                        ax.plot(*points[-1], marker="x", color=colour, markersize=9)
            if stopped:
                ax.plot([], [], color=colour, linestyle=style, marker="x" if status == "diverged" else None,
                        label=f"{label}: {len(stopped)} {status}")
    ax.set_xlabel({"epoch": "epoch", "step": "step", "wall": "wall-clock time (s)"}[x_axis])
    ax.set_ylabel(tag)
    if log_y:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def figures(groups: dict[str, list[Run]], out: str) -> list[str]:
    """The report's figures: per epoch and wall time for classification groups, per step and wall time for
    synthetic objectives (their budget is steps; an "epoch" there is only an evaluation interval)."""
    written = []
    kinds = {"classification": {k: v for k, v in groups.items() if not any(r.synthetic for r in v)},
             "synthetic": {k: v for k, v in groups.items() if any(r.synthetic for r in v)}}
    plans = []
    if kinds["classification"]:
        chosen = kinds["classification"]
        accuracy = "val/acc" if any(r.series("val/acc")[2] for v in chosen.values() for r in v) else "train/acc"
        plans += [(chosen, LOSS, x, True) for x in ("epoch", "wall")]
        plans += [(chosen, accuracy, x, False) for x in ("epoch", "wall")]
    if kinds["synthetic"]:
        chosen = kinds["synthetic"]
        plans += [(chosen, "train/loss", "step", True), (chosen, "eval/gap", "step", True),
                  (chosen, "eval/gap", "wall", True)]
    for chosen, tag, x_axis, log_y in plans:
        name = f"{tag.replace('/', '_')}_vs_{x_axis}.png"
        plot_metric(chosen, tag, x_axis, os.path.join(out, name), log_y)
        written.append(name)
    return written
