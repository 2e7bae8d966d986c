"""The one training loop shared by every model and optimizer.

Per step: take a batch (by index, on the device), ``optimizer.step(closure)``, accumulate the loss on the
device. At the logging interval: sync, check the loss is finite, write ``train/loss`` and ``time/step_ms``
and the optimizer's diagnostics. Per epoch: evaluate, call the optimizer's ``on_epoch_end``, write a
checkpoint. A non-finite loss stops the run with status ``diverged``; everything logged so far stays."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from tqdm import tqdm

from ...optimizers.protocol import TrainingContext, call_hook
from ..training.checkpoint import save_checkpoint
from ..data import Dataset
from ..data.synthetic import stream_for
from ..tasks.evaluate import evaluate_dataset, evaluate_synthetic, peak_memory_mb
from ..training.logger import RunLogger
from ..tasks.objective import Objective


@dataclass
class LoopSettings:
    epochs: int | None
    steps: int | None
    batch_size: int
    log_every: int
    image_every: int
    eval_batch_size: int
    steps_per_epoch: int | None  # synthetic objectives: steps between evaluations
    checkpoint: bool
    progress: bool
    interrupt_after_epoch: int | None = None  # testing aid: exit like a killed run after this epoch


@dataclass
class LoopResult:
    status: str  # completed, diverged, interrupted
    epoch: int
    step: int
    message: str = ""


class EpochSampler:
    """Shuffled index batches on the device, a fresh permutation per epoch, last partial batch dropped."""

    def __init__(self, size: int, batch_size: int, generator: torch.Generator, device: torch.device):
        if batch_size > size:
            raise ValueError(f"trainer.batch_size={batch_size} is larger than the {size} training examples")
        self.size, self.batch_size, self.generator, self.device = size, batch_size, generator, device

    def __len__(self) -> int:
        return self.size // self.batch_size

    def epoch(self):
        order = torch.randperm(self.size, generator=self.generator, device=self.device)
        return order[: len(self) * self.batch_size].view(len(self), self.batch_size)


class TrainingLoop:
    def __init__(self, model, optimizer, dataset: Dataset | None, settings: LoopSettings, logger: RunLogger,
                 run_dir: str, device: torch.device, seed: int, config_yaml: str, l2: float = 0.0,
                 probes: list | None = None):
        self.model, self.optimizer, self.dataset = model, optimizer, dataset
        self.settings, self.logger, self.run_dir, self.device = settings, logger, run_dir, device
        self.config_yaml = config_yaml
        self.probes = probes or []  # observers called before each epoch (the Hbar probe)
        self.objective = Objective(model, is_classifier=dataset is not None, l2=l2)
        self.generator = torch.Generator(device=device).manual_seed(seed)
        if dataset is None:
            self.stream = stream_for(model, self.generator, device)
            self.steps_per_epoch = settings.steps_per_epoch or max(1, (settings.steps or 1000) // 20)
        else:
            self.sampler = EpochSampler(len(dataset.train), settings.batch_size, self.generator, device)
            self.steps_per_epoch = len(self.sampler)
        self.total_steps = settings.steps or settings.epochs * self.steps_per_epoch
        self.total_epochs = math.ceil(self.total_steps / self.steps_per_epoch)
        self.epoch, self.step = 0, 0
        self.wall_before = 0.0  # training seconds spent by earlier processes of a resumed run
        self.started = time.perf_counter()
        self.context = self._context()
        call_hook(optimizer, "bind", self.context)

    # -- the protocol context ------------------------------------------------------------------------
    def _context(self) -> TrainingContext:
        names = [n for n, p in self.model.named_parameters() if p.requires_grad]
        extras = {"hessian": self.model.hessian} if hasattr(self.model, "hessian") else {}
        return TrainingContext(self.model, names, self.objective.functional_loss, self._sample_batch,
                               self.objective.outputs, self.objective.is_classifier, self.device, extras=extras)

    def _sample_batch(self, batch_size: int, generator: torch.Generator):
        if self.dataset is None:
            return self.stream.sample_like(generator)
        train = self.dataset.train
        index = torch.randint(0, len(train), (batch_size,), generator=generator, device=self.device)
        return self.dataset.make_batch(train.inputs[index], train.targets[index], generator)

    def _batches(self):
        """This epoch's batches; the synthetic stream yields one value per step."""
        if self.dataset is None:
            for _ in range(self.steps_per_epoch):
                yield self.stream.next()
            return
        train = self.dataset.train
        for index in self.sampler.epoch():
            yield self.dataset.make_batch(train.inputs[index], train.targets[index], self.generator)

    # -- checkpoints -----------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "epoch": self.epoch,
            "step": self.step,
            "wall_s": self.wall_seconds(),
            "config": self.config_yaml,
        }
        if self.dataset is None:
            state["stream"] = self.stream.state_dict()
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if "cuda_rng" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        if self.dataset is None:
            self.stream.load_state_dict(state["stream"])
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
            loss = self.objective.loss(batch)
            loss.backward()
            return loss
        return closure

    def _run_epoch(self, bar) -> LoopResult | None:
        s = self.settings
        self.model.train()
        epoch_sum = torch.zeros((), device=self.device)
        window_sum = torch.zeros((), device=self.device)
        epoch_steps, window_steps, window_start = 0, 0, time.perf_counter()
        for batch in self._batches():
            if self.step >= self.total_steps:
                break
            self.context.current_batch = batch
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
                values.update(call_hook(self.optimizer, "diagnostics") or {})
                self.logger.scalars(values, self.step, self.epoch)
                bar.set_postfix(loss=f"{mean:.4g}", refresh=False)
                window_sum.zero_()
                window_steps, window_start = 0, time.perf_counter()
            if s.image_every and self.step % s.image_every == 0:
                self.logger.images(call_hook(self.optimizer, "images") or {}, self.step)
        self.epoch += 1
        epoch_loss = (epoch_sum / max(epoch_steps, 1)).item()
        if not math.isfinite(epoch_loss):
            return self._diverged(epoch_loss)
        metrics = {"train/epoch_loss": epoch_loss, "time/wall_s": self.wall_seconds(), **peak_memory_mb(self.device)}
        metrics.update(self._evaluate())
        if any(isinstance(v, float) and not math.isfinite(v) for v in metrics.values()):
            self.logger.scalars(metrics, self.step, self.epoch)
            return self._diverged(float("nan"), "evaluation loss is not finite")
        call_hook(self.optimizer, "on_epoch_end", epoch_loss)
        self.logger.scalars(metrics, self.step, self.epoch)
        self.logger.flush()
        if s.checkpoint:
            save_checkpoint(self.run_dir, self.state_dict())
        return None

    def _evaluate(self) -> dict[str, float]:
        if self.dataset is None:
            return evaluate_synthetic(self.model, self.stream)
        return evaluate_dataset(self.model, self.objective, self.dataset, self.settings.eval_batch_size)

    def _learning_rates(self) -> dict[str, float]:
        groups = [g for g in self.optimizer.param_groups if "lr" in g]
        if len(groups) == 1:
            return {"lr/all": float(groups[0]["lr"])}
        return {f"lr/group{i}": float(g["lr"]) for i, g in enumerate(groups)}

    def _diverged(self, value: float, why: str = "") -> LoopResult:
        message = why or f"training loss became {value} at step {self.step}"
        self.logger.scalars({"train/diverged": 1.0}, self.step, self.epoch)
        return LoopResult("diverged", self.epoch, self.step, message)
