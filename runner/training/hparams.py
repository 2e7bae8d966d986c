"""Hyperparameters and final metrics on TensorBoard's HParams dashboard, written into the run's own event
file (``SummaryWriter.add_hparams`` would create a separate sub-run, which breaks comparing a sweep)."""

from __future__ import annotations

import json
import os

from omegaconf import DictConfig, OmegaConf
from torch.utils.tensorboard.summary import hparams

FINAL_METRICS = ("train/epoch_loss", "train/eval_loss", "train/acc", "val/loss", "val/acc", "test/loss", "test/acc", "eval/loss",
                 "eval/gap")


def flat_hparams(cfg: DictConfig) -> dict:
    container = OmegaConf.to_container(cfg, resolve=True)
    flat = {"seed": container["seed"], "model": container["model"]["name"], "dataset": container["dataset"]["name"]}
    for section in ("optimizer", "trainer"):
        for key, value in container[section].items():
            if key.startswith("_"):
                continue
            flat[f"{section}.{key}"] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return flat


def final_metrics(run_dir: str) -> dict[str, float]:
    last = {}
    path = os.path.join(run_dir, "metrics.jsonl")
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                record = json.loads(line)
                last.update({k: v for k, v in record.items() if k in FINAL_METRICS and isinstance(v, (int, float))})
    return last


def write_hparams(writer, cfg: DictConfig, run_dir: str, status: str) -> None:
    metrics = final_metrics(run_dir)
    hp = {**flat_hparams(cfg), "status": status}
    experiment, session_start, session_end = hparams(hp, {tag: value for tag, value in metrics.items()})
    for summary in (experiment, session_start, session_end):
        writer.file_writer.add_summary(summary)
    writer.flush()
