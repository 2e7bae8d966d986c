"""The one number a tuning study ranks a run by: ``objective_value(cfg, run_dir, result)``.

The ``tune`` node of the run's config says which number (configs/tune/default.yaml):

- ``tune.metric``: a logging tag of metrics.jsonl (``val/loss``, ``val/acc``, ``train/loss``, ``eval/loss``...);
- ``tune.mode``: ``min`` or ``max``;
- ``tune.reduce``: ``final`` (the last value logged), ``best`` (the best value over the run, in ``mode``'s sense)
  or ``mean_last`` (the mean over the last ``tune.fraction`` of the run's steps, weighted by the steps each
  record stands for: the LODO paper's measure, Rosenbrock's "mean loss over steps 180-200").

A run that did not complete (diverged, failed, interrupted, killed, refused) and a completed run whose metric is
missing or not finite get the value that ranks last (+inf for ``min``, -inf for ``max``), so a sweeper sets the
point aside and the study goes on: the function never raises. ``hoopt-train`` returns this value from every job,
hoopt's tuning sweeper (hydra_plugins/hoopt_tuning) tells it to Optuna, and ``hoopt-report --best-by`` recomputes
it from the run dirs with the metric it is given.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import HooptError
from .metrics_file import read_metrics

MODES = ("min", "max")
REDUCTIONS = ("final", "best", "mean_last")
# What a run config without a ``tune`` node is ranked by (configs/tune/default.yaml holds the same values).
DEFAULTS = {"metric": "val/loss", "mode": "min", "reduce": "final", "fraction": 0.1}


@dataclass(frozen=True)
class TuneSettings:
    metric: str
    mode: str
    reduce: str
    fraction: float

    @property
    def worst(self) -> float:
        return worst_value(self.mode)

    def better(self, a: float, b: float) -> bool:
        """a ranks strictly before b."""
        return a < b if self.mode == "min" else a > b


def worst_value(mode: str = "min") -> float:
    """The value that ranks last: +inf when lower is better, -inf when higher is."""
    return -math.inf if mode == "max" else math.inf


def _plain(cfg) -> dict:
    if cfg is None:
        return {}
    if isinstance(cfg, Mapping) and not hasattr(cfg, "_get_node"):
        return dict(cfg)
    from omegaconf import OmegaConf

    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # an interpolation this process cannot resolve: the tune node is plain values anyway
        return OmegaConf.to_container(cfg, resolve=False)


def tune_settings(cfg, **replace) -> TuneSettings:
    """The run's ``tune`` settings over DEFAULTS, with ``replace`` (non-None entries) on top; a bad value is one
    sentence (HooptError)."""
    given = _plain(cfg).get("tune") or {}
    if not isinstance(given, Mapping):
        raise HooptError(f"tune={given!r} is not a mapping; set tune.metric, tune.mode, tune.reduce, tune.fraction.")
    values = {**DEFAULTS, **{k: v for k, v in given.items() if k in DEFAULTS and v is not None},
              **{k: v for k, v in replace.items() if v is not None}}
    metric, mode, reduce, fraction = values["metric"], values["mode"], values["reduce"], values["fraction"]
    if not isinstance(metric, str) or not metric:
        raise HooptError(f"tune.metric={metric!r} is not a logging tag; give one such as tune.metric=val/loss.")
    if mode not in MODES:
        raise HooptError(f"tune.mode={mode!r} is not understood; give tune.mode=min or tune.mode=max.")
    if reduce not in REDUCTIONS:
        raise HooptError(f"tune.reduce={reduce!r} is not understood; give one of: {', '.join(REDUCTIONS)}.")
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise HooptError(f"tune.fraction={fraction!r} is out of range; give a fraction of the run's steps in (0, 1], "
                         f"e.g. tune.fraction=0.1.")
    return TuneSettings(metric, mode, reduce, float(fraction))


def run_status(run_dir: str, result: Mapping | None = None) -> str | None:
    """``result["status"]`` (what ``run`` returned) or else status.json's; None when neither says."""
    if result is not None and isinstance(result.get("status"), str):
        return result["status"]
    try:
        with open(os.path.join(run_dir, "status.json")) as f:
            status = json.load(f).get("status")
        return status if isinstance(status, str) else None
    except (OSError, ValueError, AttributeError):
        return None


def reduce_records(records: list[dict], settings: TuneSettings, total_steps: int | None) -> float | None:
    """The settings' reduction of one tag over a run's records; None when the tag has no usable value."""
    from ..reports.measures import best, final, mean_loss_last_fraction

    if settings.reduce == "final":
        return final(records, settings.metric)
    if settings.reduce == "best":
        return best(records, settings.metric, settings.mode)
    steps = total_steps or max((int(r.get("step", 0) or 0) for r in records), default=0)
    if steps <= 0:
        return None
    return mean_loss_last_fraction(records, steps, settings.fraction, tag=settings.metric)


def _total_steps(config: dict) -> int | None:
    steps = (config.get("trainer") or {}).get("steps")
    return int(steps) if isinstance(steps, int) and not isinstance(steps, bool) and steps > 0 else None


def objective_value(cfg, run_dir: str, result: Mapping | None = None, **replace) -> float:
    """The run's objective under its ``tune`` settings (``replace``: metric/mode/reduce/fraction to use instead);
    the worst value for a run that did not complete or has no finite value of the metric. Never raises."""
    mode = replace.get("mode") or "min"  # what "last" means if even the settings cannot be read
    try:
        config = _plain(cfg)
        given = config.get("tune")
        if not replace.get("mode") and isinstance(given, Mapping):
            mode = given.get("mode") or "min"
        settings = tune_settings(config, **replace)
        if run_status(run_dir, result) != "completed":
            return settings.worst
        value = reduce_records(read_metrics(run_dir), settings, _total_steps(config))
        if value is None or not math.isfinite(value):
            return settings.worst
        return float(value)
    except Exception:  # a sweeper must get a number whatever went wrong; the run's own status says what did
        return worst_value(mode if mode in MODES else "min")


def missing_metric(cfg, run_dir: str, **replace) -> str | None:
    """For a completed run that never logged the metric at all: one sentence naming the tags it did log (a
    misspelt tune.metric would otherwise rank every trial last). None otherwise."""
    try:
        settings = tune_settings(cfg, **replace)
    except HooptError as error:
        return str(error)
    if run_status(run_dir) != "completed":
        return None
    records = read_metrics(run_dir)
    tags = sorted({k for r in records for k in r if k not in ("step", "epoch")})
    if not records or settings.metric in tags:
        return None
    return (f"tune.metric={settings.metric} is never logged by the run in {run_dir}; choose one of the tags it "
            f"logged: {', '.join(tags)}.")
