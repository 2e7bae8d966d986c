"""Hyperparameters and final/best metrics on TensorBoard's HParams dashboard, written into the run's own event
file when the run ends (``SummaryWriter.add_hparams`` would create a separate sub-run, which breaks comparing a
sweep).

Each run writes only its *session* (hparams plugin SessionStartInfo / SessionEndInfo), never an ``Experiment``:
when no run declares an experiment, TensorBoard's hparams backend builds the columns from the union of every
session's hyperparameters, typing each from the values it sees, and takes every scalar tag of the session runs as
a metric (tensorboard/plugins/hparams/backend_context.py, ``_compute_experiment_from_runs``). A declared
experiment wins instead, and TensorBoard uses the first one it finds, so one run's columns would hide every other
optimizer's hyperparameters in a mixed sweep. The protos are built here rather than with
``torch.utils.tensorboard.summary.hparams``, which stores booleans as numbers.

Columns: ``optimizer.name``, ``seed``, every hyperparameter of the run's optimizer (``optimizer.*``), the model's
options, the training budget, the dataset and the run's ``status``; booleans stay booleans and strings strings, a
list becomes its JSON text, and unset (null) values are left out rather than turning a numeric column into text.
Metrics: the last value of every scalar tag (``test/acc``, ``val/loss``, ...) plus ``best/*`` (the best epoch's
value) and, for the synthetic objectives, ``final/last10pct_loss`` (the LODO paper's measure), logged at the
final step. The trial name (the session group) reads like "lodo seed=1 · dataset=digits · 11-45-18#3"."""

from __future__ import annotations

import json
import os
import re
import time

from omegaconf import DictConfig, OmegaConf

from ..reports.measures import best, mean_loss_last_fraction
from .identity import flatten, identity, is_execution_detail
from .metrics_file import read_metrics

# (metric written, tag it is computed from, "min" or "max")
BEST_METRICS = (("best/train_loss", "train/epoch_loss", "min"), ("best/val_loss", "val/loss", "min"),
                ("best/val_acc", "val/acc", "max"), ("best/test_acc", "test/acc", "max"),
                ("best/eval_loss", "eval/loss", "min"))
# Model-config entries that say how a model is set up by default, not what was trained (dataset.name and
# model.l2 / model.kwargs.* carry that).
_NOT_HPARAMS = {"model.paper_dataset", "model.augment_cifar10", "dataset.augment"}
_STATUS = {"completed": "STATUS_SUCCESS", "diverged": "STATUS_FAILURE", "failed": "STATUS_FAILURE",
           "interrupted": "STATUS_ABORTED", "running": "STATUS_RUNNING"}


def _value(value):
    if isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value)  # lists (partition specs, hidden sizes) as their text


def flat_hparams(cfg: DictConfig) -> dict:
    """The run's hyperparameters as the dashboard's columns (see the module docstring)."""
    from ..reports.runs import seed_derived_keys

    container = OmegaConf.to_container(cfg, resolve=True)
    container.pop("hydra", None)
    derived = seed_derived_keys(cfg) - {"seed"}  # optimizer.seed repeats the seed column
    flat = {"seed": container.get("seed"), "model": container["model"]["name"],
            "dataset": container["dataset"]["name"]}
    for key, value in flatten(identity(container)).items():
        section = key.split(".", 1)[0]
        if section not in ("optimizer", "trainer", "model", "dataset") or key in derived or key in _NOT_HPARAMS:
            continue
        if any(part.startswith("_") for part in key.split(".")) or key in ("model.name", "dataset.name"):
            continue
        if value is None or value == {} or is_execution_detail(key):
            continue
        flat[key] = _value(value)
    return {k: v for k, v in flat.items() if v is not None}


def summary_metrics(records: list[dict], cfg: DictConfig) -> dict[str, float]:
    """best/* over the per-epoch records, and the last-10% loss for a synthetic objective."""
    epochs = [r for r in records if "epoch" in r and ("train/epoch_loss" in r or "eval/loss" in r)]
    out = {name: best(epochs, tag, mode) for name, tag, mode in BEST_METRICS}
    if str(cfg.model.get("paper_dataset")) == "none" and cfg.trainer.steps:
        out["final/last10pct_loss"] = mean_loss_last_fraction(records, int(cfg.trainer.steps))
    return {k: v for k, v in out.items() if v is not None}


def trial_name(cfg: DictConfig, run_dir: str) -> str:
    """Readable and unique: the optimizer and seed, the other overrides typed for this run (less execution
    details), and where it ran (a multirun job as <sweep time>#<job number>, a single run by its folder name)."""
    parts = [f"{cfg.optimizer.name} seed={cfg.seed}"]
    overrides_path = os.path.join(run_dir, ".hydra", "overrides.yaml")
    if os.path.exists(overrides_path):
        typed = [str(o) for o in OmegaConf.load(overrides_path)]
        keys = lambda o: o.lstrip("+~").split("=", 1)[0].replace("/", ".")  # noqa: E731
        other = [o for o in typed if keys(o) not in ("seed", "optimizer") and not is_execution_detail(keys(o))]
        if other:
            parts.append(",".join(sorted(other)))
    folder = os.path.basename(os.path.normpath(os.path.abspath(run_dir)))
    job = re.match(r"^(\d+)_", folder)
    parent = os.path.basename(os.path.dirname(os.path.normpath(os.path.abspath(run_dir))))
    parts.append(f"{parent}#{job.group(1)}" if job else folder)
    return " · ".join(parts)


def _summary(tag: str, data):
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.plugins.hparams import metadata

    return Summary(value=[Summary.Value(tag=tag, metadata=metadata.create_summary_metadata(data))])


def session_summaries(hparams: dict, status: str, group_name: str, start_time: float, end_time: float) -> list:
    """The SessionStartInfo and SessionEndInfo summaries of one run (no Experiment: see the module docstring)."""
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    start = plugin_data_pb2.SessionStartInfo(group_name=group_name, start_time_secs=start_time)
    for name, value in hparams.items():
        if isinstance(value, bool):  # before int: bool is an int in Python
            start.hparams[name].bool_value = value
        elif isinstance(value, (int, float)):
            start.hparams[name].number_value = value
        else:
            start.hparams[name].string_value = str(value)
    end = plugin_data_pb2.SessionEndInfo(status=api_pb2.Status.Value(_STATUS.get(status, "STATUS_UNKNOWN")),
                                         end_time_secs=end_time)
    return [_summary(metadata.SESSION_START_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_start_info=start)),
            _summary(metadata.SESSION_END_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_end_info=end))]


def write_hparams(writer, cfg: DictConfig, run_dir: str, status: str) -> None:
    """At the end of a run: the best/* metrics as scalars at the last step, then the run's session."""
    records = read_metrics(run_dir)
    step = max((int(r.get("step", 0)) for r in records), default=0)
    for tag, value in summary_metrics(records, cfg).items():
        writer.add_scalar(tag, value, step)
    end = time.time()
    hp = {**flat_hparams(cfg), "status": status}
    for summary in session_summaries(hp, status, trial_name(cfg, run_dir), end, end):
        writer.file_writer.add_summary(summary)
    writer.flush()
