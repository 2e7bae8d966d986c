"""One writer per run dir: TensorBoard events and ``metrics.jsonl`` with the same tag names."""

from __future__ import annotations

import json
import math
import os

import torch
from torch.utils.tensorboard import SummaryWriter


class RunLogger:
    def __init__(self, run_dir: str, resume_step: int | None = None):
        self.run_dir = run_dir
        self.metrics_path = os.path.join(run_dir, "metrics.jsonl")
        if resume_step is not None:
            self._truncate_after(resume_step)
        # purge_step drops events the killed run wrote after its last checkpoint.
        self.writer = SummaryWriter(log_dir=run_dir, purge_step=resume_step)
        self._metrics = open(self.metrics_path, "a", buffering=1)

    def _truncate_after(self, step: int) -> None:
        if not os.path.exists(self.metrics_path):
            return
        with open(self.metrics_path) as f:
            kept = [line for line in f if line.strip() and json.loads(line).get("step", 0) <= step]
        with open(self.metrics_path, "w") as f:
            f.writelines(kept)

    def scalars(self, values: dict[str, float], step: int, epoch: int | None = None) -> None:
        record = {"step": step}
        if epoch is not None:
            record["epoch"] = epoch
        for tag, value in values.items():
            value = float(value)
            self.writer.add_scalar(tag, value, step)
            record[tag] = value if math.isfinite(value) else str(value)
        self._metrics.write(json.dumps(record) + "\n")

    def images(self, images: dict[str, torch.Tensor], step: int) -> None:
        for tag, image in images.items():
            self.writer.add_image(tag, image, step, dataformats="CHW")

    def flush(self) -> None:
        self.writer.flush()
        self._metrics.flush()

    def close(self) -> None:
        self.writer.close()
        self._metrics.close()
