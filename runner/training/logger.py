"""One writer per run dir: TensorBoard events and ``metrics.jsonl`` with the same tag names."""

from __future__ import annotations

import json
import math
import os
import time

import torch
from torch.utils.tensorboard import SummaryWriter

from ..errors import HooptError


EVENT_FILE_PREFIX = "events.out.tfevents."


def wait_for_a_later_second(run_dir: str) -> None:
    """Make the next event file sort after the run dir's earlier ones.

    TensorBoard reads a run's event files in name order, and a name is ``events.out.tfevents.<second>.<host>.<pid>.
    <counter>``. Two files created in the same second are ordered by pid and counter compared as text, so a resume
    in the same second (a fast run resumed in the same process, pid 9999 then 10001) may come first, and the reader
    then drops the earlier file's events as out of order (a hole where the first part of the run was). Waiting for
    the next second, at most one, keeps the files in the order they were written."""
    try:
        names = os.listdir(run_dir)
    except OSError:
        return
    seconds = []
    for name in names:
        if name.startswith(EVENT_FILE_PREFIX):
            try:
                seconds.append(int(name[len(EVENT_FILE_PREFIX):].split(".", 1)[0]))
            except ValueError:
                continue
    if seconds:
        wait = max(seconds) + 1 - time.time()
        if wait > 0:
            time.sleep(wait)


class RunLogger:
    def __init__(self, run_dir: str, resume_step: int | None = None):
        self.run_dir = run_dir
        self.metrics_path = os.path.join(run_dir, "metrics.jsonl")
        if resume_step is not None:
            self._truncate_after(resume_step)
        # TensorBoard drops earlier events whose step is >= purge_step: everything the killed run wrote after its
        # last checkpoint. Everything at the checkpoint's own step (the epoch's evaluation, the next epoch's probe)
        # was written before the checkpoint, so it stays: purging from that step would leave a hole in each
        # resumed curve.
        purge_step = None if resume_step is None else resume_step + 1
        wait_for_a_later_second(run_dir)
        self.writer = SummaryWriter(log_dir=run_dir, purge_step=purge_step)
        self._metrics = open(self.metrics_path, "a", buffering=1)

    def _truncate_after(self, step: int) -> None:
        if not os.path.exists(self.metrics_path):
            return
        kept = []
        with open(self.metrics_path) as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    record_step = json.loads(line).get("step", 0)
                except (json.JSONDecodeError, AttributeError):
                    raise HooptError(f"{self.metrics_path} is damaged at line {number}, so this run cannot be resumed "
                                     f"with its logs intact; start a new run (another hydra.run.dir).") from None
                if record_step <= step:
                    kept.append(line)
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
