"""The numbers a run is judged by, computed from its metrics records (metrics.jsonl): shared by ``hoopt-report``
and by the HParams summary each run writes when it ends (training/hparams.py), so both say the same thing."""

from __future__ import annotations

import math

# The LODO paper's measure on its synthetic tasks: the mean training loss over the last 10% of steps
# (docs/methods/lodo.md: "selecting on the mean training loss over the last 10% of steps"; Rosenbrock's
# Table 8 reports it as the mean loss over steps 180-200 of 200).
LAST_FRACTION = 0.1

# The paper's values of that measure, by (model, optimizer config name) and the step budget they belong to
# (docs/methods/lodo.md, "The paper's tasks"; "Momentum" is optimizer=sgd).
PAPER_LAST_FRACTION_LOSS = {
    ("rosenbrock", "adam"): 5.342e-5,
    ("rosenbrock", "rmsprop"): 8.967e-4,
    ("rosenbrock", "sgd"): 0.01397,
    ("rosenbrock", "yogi"): 7.916e-4,
    ("rosenbrock", "lodo"): 1.040e-3,
}
PAPER_STEPS = {"rosenbrock": 200, "noisy_quadratic": 100_000}
PAPER_SOURCE = {"rosenbrock": "LODO paper, Table 8", "noisy_quadratic": "Newton optimum"}


def number(value) -> float | None:
    """A record's value as a float (metrics.jsonl keeps non-finite values as strings: "nan", "inf")."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def mean_loss_last_fraction(records: list[dict], total_steps: int, fraction: float = LAST_FRACTION,
                            tag: str = "train/loss") -> float | None:
    """The mean per-step training loss over the last ``fraction`` of ``total_steps`` (steps 181-200 of 200 for
    the default tenth). ``train/loss`` is the mean over each logging interval, so each record stands for the
    steps since the previous one; records are weighted by how many of their steps fall in the window, which is
    exact whenever the logging interval divides the window (logger.log_every=1 or 10 for Rosenbrock)."""
    start = total_steps - max(1, int(round(fraction * total_steps)))
    previous, weighted, weight = 0, 0.0, 0
    for record in sorted((r for r in records if number(r.get(tag)) is not None), key=lambda r: r["step"]):
        step, value = int(record["step"]), number(record[tag])
        overlap = max(0, min(step, total_steps) - max(previous, start))
        if overlap:
            weighted += overlap * value
            weight += overlap
        previous = step
    return weighted / weight if weight else None


def best(records: list[dict], tag: str, mode: str) -> float | None:
    """The minimum (mode "min") or maximum ("max") finite value a tag took, None when it never had one."""
    values = [v for v in (number(r.get(tag)) for r in records) if v is not None and math.isfinite(v)]
    if not values:
        return None
    return min(values) if mode == "min" else max(values)


def final(records: list[dict], tag: str) -> float | None:
    values = [v for v in (number(r.get(tag)) for r in records) if v is not None]
    return values[-1] if values else None


def paper_value(model: str, optimizer: str, steps: int | None, optimum: float | None) -> tuple[float | None, str]:
    """The paper's number to print beside a group's measure, and where it comes from: Table 8 for Rosenbrock
    (only at the paper's 200-step budget: another budget measures another window), and for the noisy bowl the
    Newton-optimal loss 1/2 sigma^2 tr H (7.41 for the paper's bowl), which every method's loss is bounded by."""
    if model == "noisy_quadratic" and optimum is not None:
        return optimum, PAPER_SOURCE[model]
    if steps == PAPER_STEPS.get(model) and (model, optimizer) in PAPER_LAST_FRACTION_LOSS:
        return PAPER_LAST_FRACTION_LOSS[(model, optimizer)], PAPER_SOURCE[model]
    return None, ""
