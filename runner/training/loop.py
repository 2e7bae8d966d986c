"""The one training loop shared by every task, model and optimizer.

Per step: take the task's next batch, ``optimizer.step(closure)``, accumulate the loss on the device. At the
logging interval: sync, check the loss is finite, write ``train/loss``, ``time/step_ms``, the learning rates and
the optimizer's diagnostics. At the image interval: the optimizer's visuals, rendered. Per epoch: evaluate the
task, call the optimizer's ``on_epoch_end``, write a checkpoint. A non-finite loss stops the run with status
``diverged``; everything logged so far stays. The loop knows tasks only through tasks.base.Task and optimizers
only through optimizers/protocol.py."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from tqdm import tqdm

from ...optimizers.protocol import TrainingHooks
from ..analysis.rendering import render
from ..tasks.base import Task
from .checkpoint import save_checkpoint
from .logger import RunLogger
from .memory import peak_memory_mb


@dataclass
class LoopSettings:
    epochs: int | None
    steps: int | None
    log_every: int
    image_every: int
    checkpoint: bool
    progress: bool
    interrupt_after_epoch: int | None = None  # test aid (configs/debug/): exit like a killed run after this epoch


@dataclass
class LoopResult:
    status: str  # completed, diverged, interrupted
    epoch: int
    step: int
    message: str = ""


class TrainingLoop:
    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, task: Task, settings: LoopSettings,
                 logger: RunLogger, run_dir: str, device: torch.device, config_yaml: str, probes: list | None = None):
        self.model, self.optimizer, self.task = model, optimizer, task
        self.settings, self.logger, self.run_dir, self.device = settings, logger, run_dir, device
        self.config_yaml = config_yaml
        # Plain torch.optim optimizers have no hooks; hoopt's methods implement all of TrainingHooks.
        self.hooks = optimizer if isinstance(optimizer, TrainingHooks) else None
        self.probes = probes or []  # observers called before each epoch (the Hbar probe)
        self.total_steps = settings.steps or settings.epochs * task.steps_per_epoch
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
        self.started = time.perf_counter()

    def wall_seconds(self) -> float:
        return self.wall_before + time.perf_counter() - self.started

    # -- the loop ----------------------------------------------------------------------------------------
    def run(self) -> LoopResult:
        s = self.settings
        bar = tqdm(total=self.total_steps, initial=self.step, disable=None if s.progress else True,
                   dynamic_ncols=True, desc="train")
        try:
            while self.step < self.total_steps:
                for probe in self.probes:
                    probe.before_epoch(self)
                result = self._run_epoch(bar)
                if result is not None:
                    return result
                if s.interrupt_after_epoch is not None and self.epoch >= s.interrupt_after_epoch:
                    return LoopResult("interrupted", self.epoch, self.step, "stopped by trainer.interrupt_after_epoch")
        finally:
            bar.close()
            self.logger.flush()
        return LoopResult("completed", self.epoch, self.step)

    def _closure_for(self, batch):
        def closure():
            self.optimizer.zero_grad(set_to_none=True)
            loss = self.task.loss(self.model, batch)
            loss.backward()
            return loss
        return closure

    def _run_epoch(self, bar) -> LoopResult | None:
        s = self.settings
        self.model.train()
        epoch_sum = torch.zeros((), device=self.device)
        window_sum = torch.zeros((), device=self.device)
        epoch_steps, window_steps, window_start = 0, 0, time.perf_counter()
        for batch in self.task.epoch_batches():
            if self.step >= self.total_steps:
                break
            loss = self.optimizer.step(self._closure_for(batch)).detach()
            epoch_sum += loss
            window_sum += loss
            self.step += 1
            epoch_steps += 1
            window_steps += 1
            bar.update(1)
            if self.step % s.log_every == 0:
                mean = (window_sum / window_steps).item()  # the one sync per logging interval
                elapsed_ms = 1000 * (time.perf_counter() - window_start) / window_steps
                if not math.isfinite(mean):
                    return self._diverged(mean)
                values = {"train/loss": mean, "time/step_ms": elapsed_ms, **self._learning_rates()}
                if self.hooks is not None:
                    values.update(self.hooks.diagnostics())
                self.logger.scalars(values, self.step, self.epoch)
                bar.set_postfix(loss=f"{mean:.4g}", refresh=False)
                window_sum.zero_()
                window_steps, window_start = 0, time.perf_counter()
            if s.image_every and self.hooks is not None and self.step % s.image_every == 0:
                self.logger.images({tag: render(v) for tag, v in self.hooks.visuals().items()}, self.step)
        self.epoch += 1
        epoch_loss = (epoch_sum / max(epoch_steps, 1)).item()
        if not math.isfinite(epoch_loss):
            return self._diverged(epoch_loss)
        metrics = {"train/epoch_loss": epoch_loss, "time/wall_s": self.wall_seconds(), **peak_memory_mb(self.device)}
        metrics.update(self.task.evaluate(self.model))
        if any(isinstance(v, float) and not math.isfinite(v) for v in metrics.values()):
            self.logger.scalars(metrics, self.step, self.epoch)
            return self._diverged(float("nan"), "evaluation loss is not finite")
        if self.hooks is not None:
            self.hooks.on_epoch_end(epoch_loss)
        self.logger.scalars(metrics, self.step, self.epoch)
        self.logger.flush()
        if s.checkpoint:
            save_checkpoint(self.run_dir, self.state_dict())
        return None

    def _learning_rates(self) -> dict[str, float]:
        groups = [g for g in self.optimizer.param_groups if "lr" in g]
        if len(groups) == 1:
            return {"lr/all": float(groups[0]["lr"])}
        return {f"lr/group{i}": float(g["lr"]) for i, g in enumerate(groups)}

    def _diverged(self, value: float, why: str = "") -> LoopResult:
        message = why or f"training loss became {value} at step {self.step}"
        self.logger.scalars({"train/diverged": 1.0}, self.step, self.epoch)
        return LoopResult("diverged", self.epoch, self.step, message)
