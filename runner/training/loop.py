"""The one training loop shared by every task, model and optimizer.

Per step: take the task's next batch, ``optimizer.step(closure)``, accumulate the loss on the device. At the
logging interval: sync, check the loss is finite, write ``train/loss``, ``time/step_ms``, the learning rates and
the optimizer's diagnostics. At the image interval: the optimizer's visuals, rendered. Per epoch: evaluate the
task, call the optimizer's ``on_epoch_end``, run the probes for the next epoch, write a checkpoint (so everything
logged at a checkpoint's step was written before it, and a resumed run rewrites nothing). A loss that is not finite,
or that exceeds ``divergence_factor`` times the run's first logged loss (at least 1), stops the run with status
``diverged``; everything logged so far stays. The loop knows tasks only through tasks.base.Task and optimizers
only through optimizers/protocol.py."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from ...optimizers.protocol import TrainingHooks
from ..analysis.rendering import render
from ..tasks.base import Task
from .checkpoint import save_checkpoint
from .logger import RunLogger
from .memory import peak_memory_mb
from .progress import Progress


@dataclass
class LoopSettings:
    epochs: int | None
    steps: int | None
    log_every: int
    image_every: int
    checkpoint: bool
    progress: bool
    interrupt_after_epoch: int | None = None  # test aid (configs/debug/): exit like a killed run after this epoch
    # A finite loss above divergence_factor * max(1, first logged loss) counts as diverged (None: only non-finite).
    divergence_factor: float | None = 1e6
    progress_interval_s: float = 60.0  # without a terminal: seconds between two progress lines
    images_each_epoch: bool = False  # also log the optimizer's visuals at the end of every epoch


@dataclass
class LoopResult:
    status: str  # completed, diverged, interrupted
    epoch: int
    step: int
    message: str = ""


def run_length(settings: LoopSettings, task: Task) -> int:
    """The run's length in optimizer steps: its step budget, or its epochs times the steps of an epoch. The loop
    stops there, and an optimizer that names ``total_steps`` in its constructor receives it (optimizers/protocol.py).
    """
    return settings.steps or settings.epochs * task.steps_per_epoch


def run_dependencies(model: torch.nn.Module, task: Task, settings: LoopSettings) -> dict:
    """Everything a run can pass an optimizer's constructor (optimizers/protocol.py, RUN_DEPENDENCIES): the task's
    pieces and the run's length. build.build_optimizer passes those the constructor names."""
    return {**task.dependencies(model), "total_steps": run_length(settings, task)}


def closure_for(optimizer: torch.optim.Optimizer, task: Task, model: torch.nn.Module, batch):
    """The closure of one training step (optimizers/protocol.py, "Stepping")."""
    def closure(create_graph: bool = False):
        optimizer.zero_grad(set_to_none=True)
        loss = task.loss(model, batch)
        loss.backward(create_graph=create_graph)
        return loss
    return closure


def is_divergent(loss: float, reference: float | None, factor: float | None) -> bool:
    """The divergence rule: a loss that is not finite, or above ``factor`` x max(1, |the run's first logged loss|)."""
    if not math.isfinite(loss):
        return True
    return factor is not None and loss > factor * max(1.0, abs(reference or 0.0))


class TrainingLoop:
    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, task: Task, settings: LoopSettings,
                 logger: RunLogger, run_dir: str, device: torch.device, config_yaml: str, probes: list | None = None,
                 console=None, records=None):
        self.model, self.optimizer, self.task = model, optimizer, task
        self.settings, self.logger, self.run_dir, self.device = settings, logger, run_dir, device
        self.config_yaml = config_yaml
        # Plain torch.optim optimizers have no hooks; hoopt's methods implement all of TrainingHooks.
        self.hooks = optimizer if isinstance(optimizer, TrainingHooks) else None
        self.probes = probes or []  # observers called before each epoch (the Hbar probe)
        self.console = console  # RunConsole for progress lines without a terminal (None: no such lines)
        self.records = records  # RecordLog for the optimizer's records() (None: not kept)
        self.reference_loss: float | None = None  # the run's first logged training loss (divergence rule)
        self.total_steps = run_length(settings, task)
        self.epoch, self.step = 0, 0
        self.wall_before = 0.0  # training seconds spent by earlier processes of a resumed run
        self.started = time.perf_counter()

    # -- checkpoints -----------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "task": self.task.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "epoch": self.epoch,
            "step": self.step,
            "wall_s": self.wall_seconds(),
            "reference_loss": self.reference_loss,
            "config": self.config_yaml,
        }
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.task.load_state_dict(state["task"])
        torch.set_rng_state(state["torch_rng"])
        if "cuda_rng" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        self.epoch, self.step = state["epoch"], state["step"]
        self.wall_before = state.get("wall_s", 0.0)
        self.reference_loss = state.get("reference_loss")
        self.started = time.perf_counter()

    def wall_seconds(self) -> float:
        return self.wall_before + time.perf_counter() - self.started

    # -- the loop ----------------------------------------------------------------------------------------
    @property
    def total_epochs(self) -> int:
        return math.ceil(self.total_steps / self.task.steps_per_epoch)

    def run(self) -> LoopResult:
        s = self.settings
        progress = Progress(self.console, self.total_steps, self.total_epochs, self.step,
                            enabled=s.progress and self.console is not None, interval_s=s.progress_interval_s)
        progress.epoch = self.epoch
        try:
            if self.step == 0:  # a resumed run's next-epoch probe was written before its checkpoint
                self._run_probes()
            while self.step < self.total_steps:
                result = self._run_epoch(progress)
                if result is not None:
                    return result
                if s.interrupt_after_epoch is not None and self.epoch >= s.interrupt_after_epoch:
                    return LoopResult("interrupted", self.epoch, self.step, "stopped by trainer.interrupt_after_epoch")
            final = self.task.final_evaluate(self.model)  # costly measures, once (the pixel task's 784 positions)
            if final:
                self.logger.scalars(final, self.step, self.epoch)
        finally:
            progress.close()
            self.logger.flush()
            if self.records is not None:
                self.records.save()
        return LoopResult("completed", self.epoch, self.step)

    def _run_probes(self) -> None:
        for probe in self.probes:
            probe.before_epoch(self)

    def _is_divergent(self, loss: float) -> bool:
        return is_divergent(loss, self.reference_loss, self.settings.divergence_factor)

    def _run_epoch(self, progress: Progress) -> LoopResult | None:
        s = self.settings
        self.model.train()
        epoch_sum = torch.zeros((), device=self.device)
        window_sum = torch.zeros((), device=self.device)
        epoch_steps, window_steps, window_start = 0, 0, time.perf_counter()
        for batch in self.task.epoch_batches():
            if self.step >= self.total_steps:
                break
            loss = self.optimizer.step(closure_for(self.optimizer, self.task, self.model, batch)).detach()
            epoch_sum += loss
            window_sum += loss
            self.step += 1
            epoch_steps += 1
            window_steps += 1
            progress.update(self.step, self.epoch)
            if self.hooks is not None and self.records is not None:
                kept = self.hooks.records()
                if kept:
                    self.records.add(kept, self.step)
            if self.step % s.log_every == 0:
                mean = (window_sum / window_steps).item()  # the one sync per logging interval
                elapsed_ms = 1000 * (time.perf_counter() - window_start) / window_steps
                if self.reference_loss is None and math.isfinite(mean):
                    self.reference_loss = mean
                if self._is_divergent(mean):
                    return self._diverged(mean)
                values = {"train/loss": mean, "time/step_ms": elapsed_ms, **self._learning_rates()}
                if self.hooks is not None:
                    values.update(self.hooks.diagnostics())
                self.logger.scalars(values, self.step, self.epoch)
                progress.logged(mean)
                window_sum.zero_()
                window_steps, window_start = 0, time.perf_counter()
            if s.image_every and self.step % s.image_every == 0:
                self._log_visuals()
        self.epoch += 1
        epoch_loss = (epoch_sum / max(epoch_steps, 1)).item()
        if self.reference_loss is None and math.isfinite(epoch_loss):
            self.reference_loss = epoch_loss
        if self._is_divergent(epoch_loss):
            return self._diverged(epoch_loss)
        metrics = {"train/epoch_loss": epoch_loss, "time/wall_s": self.wall_seconds(), **peak_memory_mb(self.device)}
        metrics.update(self.task.evaluate(self.model))
        if any(isinstance(v, float) and not math.isfinite(v) for v in metrics.values()):
            self.logger.scalars(metrics, self.step, self.epoch)
            return self._diverged(float("nan"), "evaluation loss is not finite")
        if self.hooks is not None:
            self.hooks.on_epoch_end(epoch_loss)
        self.logger.scalars(metrics, self.step, self.epoch)
        if s.images_each_epoch and not (s.image_every and self.step % s.image_every == 0):
            self._log_visuals()
        progress.evaluated(metrics)
        if self.step < self.total_steps:
            self._run_probes()
        self.logger.flush()
        if self.records is not None:
            self.records.save()
        if s.checkpoint:
            save_checkpoint(self.run_dir, self.state_dict())
        return None

    def _log_visuals(self) -> None:
        if self.hooks is not None:
            self.logger.images({tag: render(v) for tag, v in self.hooks.visuals().items()}, self.step)

    def _learning_rates(self) -> dict[str, float]:
        groups = [g for g in self.optimizer.param_groups if "lr" in g]
        if len(groups) == 1:
            return {"lr/all": float(groups[0]["lr"])}
        return {f"lr/group{i}": float(g["lr"]) for i, g in enumerate(groups)}

    def _diverged(self, value: float, why: str = "") -> LoopResult:
        if not why and math.isfinite(value):
            why = (f"training loss reached {value:.4g} at step {self.step}, more than trainer.divergence_factor="
                   f"{self.settings.divergence_factor:g} times the first logged loss {self.reference_loss:.4g}")
        message = why or f"training loss became {value} at step {self.step}"
        self.logger.scalars({"train/diverged": 1.0}, self.step, self.epoch)
        return LoopResult("diverged", self.epoch, self.step, message)
