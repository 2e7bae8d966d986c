"""Figures and tables of a group of runs: per-group summary rows (final/best losses, accuracies, wall time,
time to a target loss) and metric curves with a min-max band over seeds."""

from __future__ import annotations

import csv
import math
import os
import statistics

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .runs import Run  # noqa: E402

LOSS = "train/epoch_loss"
COLUMNS = ["group", "runs", "diverged", "final_train_loss", "final_train_loss_sd", "best_train_loss", "final_test_loss",
           "final_test_acc", "final_val_acc", "wall_s", "time_to_target_s"]


def mean_sd(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def time_to_target(run: Run, target: float) -> float | None:
    _, walls, losses = run.series(LOSS)
    return next((w for w, loss in zip(walls, losses) if loss <= target), None)


def summarise(label: str, runs: list[Run], target: float | None) -> dict:
    finals = [r.last(LOSS) for r in runs if r.status != "diverged"]
    best = [min(r.series(LOSS)[2]) for r in runs if r.series(LOSS)[2] and r.status != "diverged"]
    hits = [t for t in (time_to_target(r, target) for r in runs) if t is not None] if target is not None else []
    row = {
        "group": label,
        "runs": len(runs),
        "diverged": sum(r.status == "diverged" for r in runs),
        "final_train_loss": mean_sd(finals)[0],
        "final_train_loss_sd": mean_sd(finals)[1],
        "best_train_loss": mean_sd(best)[0],
        "final_test_loss": mean_sd([r.last("test/loss") for r in runs if r.status != "diverged"])[0],
        "final_test_acc": mean_sd([r.last("test/acc") for r in runs if r.status != "diverged"])[0],
        "final_val_acc": mean_sd([r.last("val/acc") for r in runs if r.status != "diverged"])[0],
        "wall_s": mean_sd([r.last("time/wall_s") for r in runs])[0],
        "time_to_target_s": statistics.fmean(hits) if hits else float("nan"),
    }
    return row


def plot_metric(groups: dict[str, list[Run]], tag: str, x_axis: str, path: str, log_y: bool) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (label, runs) in enumerate(groups.items()):
        colour = f"C{i % 10}"
        finished = [r for r in runs if r.status != "diverged" and r.series(tag)[2]]
        if finished:
            length = min(len(r.series(tag)[2]) for r in finished)
            xs = [[(r.series(tag)[0] if x_axis == "epoch" else r.series(tag)[1])[k] for r in finished] for k in range(length)]
            ys = [[r.series(tag)[2][k] for r in finished] for k in range(length)]
            x = [statistics.fmean(v) for v in xs]
            ax.plot(x, [statistics.fmean(v) for v in ys], color=colour, label=f"{label} (n={len(finished)})")
            if len(finished) > 1:
                ax.fill_between(x, [min(v) for v in ys], [max(v) for v in ys], color=colour, alpha=0.2)
        for run in (r for r in runs if r.status == "diverged"):
            epochs, walls, values = run.series(tag)
            xs = epochs if x_axis == "epoch" else walls
            finite = [(a, b) for a, b in zip(xs, values) if math.isfinite(b)]
            if finite:
                ax.plot(*zip(*finite), color=colour, linestyle="--", alpha=0.7)
                ax.plot(*finite[-1], marker="x", color=colour, markersize=9)
            ax.plot([], [], color=colour, linestyle="--", marker="x", label=f"{label}: diverged")
    ax.set_xlabel("epoch" if x_axis == "epoch" else "wall-clock time (s)")
    ax.set_ylabel(tag)
    if log_y:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_tables(rows: list[dict], out: str) -> None:
    with open(os.path.join(out, "summary.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    with open(os.path.join(out, "summary.md"), "w") as f:
        f.write("| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS) + "\n")
        for row in rows:
            f.write("| " + " | ".join(fmt(row[c]) for c in COLUMNS) + " |\n")
