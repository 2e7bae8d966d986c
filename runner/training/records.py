"""Arrays an optimizer asks to keep (``TrainingHooks.records()``), saved numerically in the run dir.

``records.npz`` holds, for each record name ``<name>`` (e.g. ``summary/hbar``), the array ``<name>`` of every
value kept, stacked along a first axis, and ``<name>@step``, the training step after which each was kept::

    import numpy as np
    records = np.load("<run dir>/records.npz")
    hbar, steps = records["summary/hbar"], records["summary/hbar@step"]   # (refreshes, S, S), (refreshes,)

The file is rewritten atomically with every checkpoint and at the end of the run; a resumed run drops what the
killed run kept after its checkpoint, like the other logs."""

from __future__ import annotations

import os
from collections import defaultdict

import numpy as np
import torch

RECORDS = "records.npz"
STEP_SUFFIX = "@step"


class RecordLog:
    def __init__(self, run_dir: str, resume_step: int | None = None):
        self.path = os.path.join(run_dir, RECORDS)
        self.values: dict[str, list[np.ndarray]] = defaultdict(list)
        self.steps: dict[str, list[int]] = defaultdict(list)
        if resume_step is not None and os.path.exists(self.path):
            with np.load(self.path) as saved:
                for name in saved.files:
                    if name.endswith(STEP_SUFFIX):
                        continue
                    keep = saved[name + STEP_SUFFIX] <= resume_step
                    self.values[name] = list(saved[name][keep])
                    self.steps[name] = [int(s) for s in saved[name + STEP_SUFFIX][keep]]

    def add(self, records: dict[str, torch.Tensor], step: int) -> None:
        for name, value in records.items():
            self.values[name].append(torch.as_tensor(value).detach().cpu().double().numpy())
            self.steps[name].append(step)

    def save(self) -> None:
        if not self.values:
            return
        arrays = {}
        for name, values in self.values.items():
            arrays[name] = np.stack(values)
            arrays[name + STEP_SUFFIX] = np.asarray(self.steps[name], dtype=np.int64)
        temporary = f"{self.path}.{os.getpid()}.tmp.npz"
        np.savez(temporary, **arrays)
        os.replace(temporary, self.path)
